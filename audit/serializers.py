from typing import Any

from django.urls import reverse
from rest_framework import serializers

from audit.models import COLUMNS, AccessEvent, AuditExport


class AccessEventSerializer(serializers.ModelSerializer):
    """An access event as the ledger logged it, and where: batch, position, transaction, block.

    Ids, codes, pseudonyms, hashes and times only: no clinical value or score is ever logged.
    """

    class Meta:
        model = AccessEvent
        fields = [*COLUMNS, "outcome", "outcome_reason"]
        read_only_fields = fields


class ExportCreateSerializer(serializers.Serializer):
    """The format of an export; its filters are the search's (patient, grantee, … until), in the same body.

    The format is checked by the export service, which answers unknown_export_format."""

    format = serializers.CharField(max_length=16, help_text="csv, json or fhir (FHIR R4 AuditEvent, NDJSON)")


class ExportVerificationSerializer(serializers.Serializer):
    ok = serializers.BooleanField()
    checked = serializers.IntegerField()
    problem_count = serializers.IntegerField()
    chain_ok = serializers.BooleanField(allow_null=True)


class ExportLedgerEntrySerializer(serializers.Serializer):
    tx_id = serializers.CharField(allow_null=True)
    block_number = serializers.IntegerField(allow_null=True)


class ExportLinksSerializer(serializers.Serializer):
    self = serializers.CharField()
    manifest = serializers.CharField()
    file = serializers.CharField()


class AuditExportSerializer(serializers.ModelSerializer):
    """An export: what was asked, its state and, once completed, its count, file hash and verification."""

    count = serializers.IntegerField(source="event_count", read_only=True)
    exported_by = serializers.CharField(source="actor_id", read_only=True)
    verification = serializers.SerializerMethodField()
    ledger = serializers.SerializerMethodField()
    links = serializers.SerializerMethodField()

    class Meta:
        model = AuditExport
        fields = [
            "id",
            "format",
            "filters",
            "status",
            "failure_code",
            "count",
            "sha256",
            "size_bytes",
            "verification",
            "ledger",
            "exported_by",
            "created_at",
            "finished_at",
            "links",
        ]
        read_only_fields = fields

    def get_verification(self, export: AuditExport) -> dict[str, Any] | None:
        result = export.verification or None
        if result is None:
            return None
        chain = result.get("chain") or {}
        return {
            "ok": bool(result.get("ok")),
            "checked": int(result.get("checked") or 0),
            "problem_count": int(result.get("problem_count") or 0),
            "chain_ok": chain.get("ok") if chain else None,
        }

    def get_ledger(self, export: AuditExport) -> dict[str, Any]:
        return {"tx_id": export.log_tx_id or None, "block_number": export.log_block}

    def get_links(self, export: AuditExport) -> dict[str, str]:
        return {
            "self": reverse("api-audit-export-detail", kwargs={"pk": export.pk}),
            "manifest": reverse("api-audit-export-manifest", kwargs={"pk": export.pk}),
            "file": reverse("api-audit-export-file", kwargs={"pk": export.pk}),
        }


class VerifyUploadSerializer(serializers.Serializer):
    file = serializers.FileField(help_text="a copy of an export (possibly edited), as handed over")
    format = serializers.CharField(max_length=16, help_text="csv, json or fhir")
    manifest = serializers.FileField(
        required=False,
        help_text="the export's manifest (the JSON of /api/audit/exports/{id}/manifest/): completeness is checked "
        "against it",
    )
    export = serializers.UUIDField(
        required=False, help_text="or the export's id: the platform then uses its own manifest of the export"
    )


class EventProblemSerializer(serializers.Serializer):
    event_id = serializers.CharField()
    kind = serializers.CharField()
    fields = serializers.ListField(child=serializers.CharField())


class CompletenessSerializer(serializers.Serializer):
    recorded_before = serializers.CharField(
        allow_null=True, help_text="the copy's scope ends here (the export's request time)"
    )
    expected = serializers.IntegerField(allow_null=True, help_text="the ledger's events in the copy's scope")
    manifest_count = serializers.IntegerField(allow_null=True, help_text="the events the manifest says it holds")


class VerificationResultSerializer(serializers.Serializer):
    """The verdict on a copy: ok only when every event checks out AND completeness was checked."""

    ok = serializers.BooleanField()
    message = serializers.CharField(help_text='the verdict in words, e.g. "completeness was not checked: no manifest"')
    checked = serializers.IntegerField()
    problem_count = serializers.IntegerField()
    problems = EventProblemSerializer(many=True)
    chain = serializers.JSONField()
    completeness_checked = serializers.BooleanField()
    completeness = CompletenessSerializer()
    sha256 = serializers.CharField()
    matches_export = serializers.BooleanField(
        allow_null=True, help_text="the copy's SHA-256 is the one the ledger holds for the export (null: no manifest)"
    )
    export_id = serializers.CharField(allow_null=True)


class BlockTransactionSerializer(serializers.Serializer):
    tx_id = serializers.CharField()
    status = serializers.CharField()
    contract = serializers.CharField()
    function = serializers.CharField()
    timestamp = serializers.CharField()


class BlockSummarySerializer(serializers.Serializer):
    number = serializers.IntegerField()
    hash = serializers.CharField()
    previous_hash = serializers.CharField()
    data_hash = serializers.CharField()
    transaction_count = serializers.SerializerMethodField()
    transactions = BlockTransactionSerializer(many=True)

    def get_transaction_count(self, block: Any) -> int:
        return len(block.transactions)


class LedgerBlocksSerializer(serializers.Serializer):
    blocks = BlockSummarySerializer(many=True)
    next_before = serializers.IntegerField(allow_null=True)


class LedgerBlocksQuerySerializer(serializers.Serializer):
    before = serializers.IntegerField(required=False, min_value=0, help_text="blocks numbered below this")
    limit = serializers.IntegerField(required=False, min_value=1, max_value=100, default=20)
