from rest_framework import serializers

from consent.models import Consent


class ConsentSerializer(serializers.ModelSerializer):
    patient_pseudonym = serializers.CharField(source="patient.pseudonym", read_only=True)
    effective_status = serializers.CharField(read_only=True)

    class Meta:
        model = Consent
        fields = [
            "consent_id",
            "patient_pseudonym",
            "grantee",
            "purposes",
            "categories",
            "valid_from",
            "valid_until",
            "status",
            "effective_status",
            "granted_at",
            "granted_tx_id",
            "granted_block",
            "revoked_at",
            "revoked_tx_id",
            "revoked_block",
        ]
        read_only_fields = fields


class ConsentGrantSerializer(serializers.Serializer):
    """The shape of a grant. The meaning (known grantee, codes, period) is checked by the service, which
    answers with stable codes; no field here echoes a submitted value in its errors."""

    grantee = serializers.CharField(max_length=80)
    purposes = serializers.ListField(child=serializers.CharField(max_length=64), allow_empty=False, max_length=32)
    categories = serializers.ListField(child=serializers.CharField(max_length=64), allow_empty=False, max_length=32)
    valid_from = serializers.DateTimeField()
    valid_until = serializers.DateTimeField()
    patient_pseudonym = serializers.CharField(
        max_length=64, required=False, help_text="optional; must be your own if given"
    )


class ConsentChangeSerializer(serializers.Serializer):
    tx_id = serializers.CharField()
    block_number = serializers.IntegerField(allow_null=True)
    timestamp = serializers.DateTimeField()
    status = serializers.CharField()


class GranteeSerializer(serializers.Serializer):
    grantee_id = serializers.CharField()
    kind = serializers.CharField()
    display_name = serializers.CharField()
