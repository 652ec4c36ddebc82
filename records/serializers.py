"""API shapes. Metadata only, except `bundle`, which only the owning patient ever receives."""

from rest_framework import serializers

from chaincode.vocabulary import CATEGORIES
from records.models import Record, RecordVersion


class RecordVersionSerializer(serializers.ModelSerializer):
    class Meta:
        model = RecordVersion
        fields = [
            "version",
            "sha256",
            "key_id",
            "anchor_state",
            "anchor_tx_id",
            "anchor_block",
            "anchored_at",
            "created_at",
        ]
        read_only_fields = fields


class RecordSerializer(serializers.ModelSerializer):
    """A record's metadata: ids, pseudonym, category, versions, hashes and anchor state."""

    patient_pseudonym = serializers.CharField(source="patient.pseudonym", read_only=True)
    latest_version = serializers.SerializerMethodField()
    versions = RecordVersionSerializer(many=True, read_only=True)

    class Meta:
        model = Record
        fields = ["id", "patient_pseudonym", "category", "created_at", "latest_version", "versions"]
        read_only_fields = fields

    def get_latest_version(self, record: Record) -> dict | None:
        versions = list(record.versions.all())  # prefetched, ordered by version
        return RecordVersionSerializer(versions[-1]).data if versions else None


class RecordDetailSerializer(RecordSerializer):
    bundle = serializers.SerializerMethodField(
        help_text="The latest version's FHIR Bundle, decrypted: only for the patient the record belongs to."
    )

    class Meta(RecordSerializer.Meta):
        fields = [*RecordSerializer.Meta.fields, "bundle"]
        read_only_fields = fields

    def get_bundle(self, record: Record) -> dict | None:
        return self.context.get("bundle")


class IngestedRecordSerializer(serializers.Serializer):
    record_id = serializers.UUIDField()
    version = serializers.IntegerField()
    category = serializers.ChoiceField(choices=sorted(CATEGORIES.items()))
    sha256 = serializers.CharField()
    patient_pseudonym = serializers.CharField()
    anchored = serializers.BooleanField()
    tx_id = serializers.CharField(allow_null=True)
    block_number = serializers.IntegerField(allow_null=True)
    unchanged = serializers.BooleanField()


class IngestResponseSerializer(serializers.Serializer):
    records = IngestedRecordSerializer(many=True)


class IntegritySerializer(serializers.Serializer):
    ok = serializers.BooleanField()
    reason = serializers.CharField(
        help_text="ok, ciphertext_invalid, hash_mismatch_local, not_anchored, ledger_unavailable, no_anchor "
        "or hash_mismatch"
    )
    record_id = serializers.UUIDField()
    version = serializers.IntegerField()
    sha256 = serializers.CharField()
    ledger_sha256 = serializers.CharField(allow_null=True)
    tx_id = serializers.CharField(allow_null=True)
    block_number = serializers.IntegerField(allow_null=True)
    anchored_at = serializers.CharField(allow_null=True)
