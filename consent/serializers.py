from rest_framework import serializers

from consent.models import Consent


class ConsentSerializer(serializers.ModelSerializer):
    patient_pseudonym = serializers.CharField(source="patient.pseudonym", read_only=True)
    effective_status = serializers.CharField(read_only=True)
    patient_signed = serializers.BooleanField(
        read_only=True, help_text="whether the patient signed the grant with a passkey (false: granted before)"
    )

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
            "patient_signed",
            "grant_signature",
            "revoke_signature",
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


class SignedDocumentSerializer(serializers.Serializer):
    """A document the patient signed: as the signing request gave it, and the WebAuthn assertion over it."""

    document = serializers.DictField(help_text="the signing request's document, unchanged")
    signature = serializers.DictField(
        child=serializers.CharField(max_length=8192),
        help_text="the passkey's assertion: credential_id, authenticator_data, client_data_json, signature (base64url)",
    )


class SigningRequestSerializer(serializers.Serializer):
    """What to sign: navigator.credentials.get with this challenge and these credentials, then submit the document
    and the assertion."""

    document = serializers.DictField()
    challenge = serializers.CharField(help_text="base64url SHA-256 of the document's canonical JSON")
    credential_ids = serializers.ListField(child=serializers.CharField(), help_text="your passkeys on the ledger")


class ConsentChangeSerializer(serializers.Serializer):
    tx_id = serializers.CharField()
    block_number = serializers.IntegerField(allow_null=True)
    timestamp = serializers.DateTimeField()
    status = serializers.CharField()


class GranteeSerializer(serializers.Serializer):
    grantee_id = serializers.CharField()
    kind = serializers.CharField()
    display_name = serializers.CharField()
