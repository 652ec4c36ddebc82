"""API shapes of the directory and the invitations. No patient identifier and no token is ever answered back,
except the desk code in the answer that issued it (once)."""

from rest_framework import serializers

from directory.models import PatientInvitation


class GranteeStatusSerializer(serializers.Serializer):
    """A grantee's status on the ledger and the transaction that last set it."""

    grantee_id = serializers.CharField()
    active = serializers.BooleanField()
    tx_id = serializers.CharField()
    block_number = serializers.IntegerField(allow_null=True)


class DirectoryEntrySerializer(GranteeStatusSerializer):
    """A grantee's status, with who the grantee is."""

    kind = serializers.ChoiceField(choices=["clinician", "organisation"])
    name = serializers.CharField()
    organisation = serializers.CharField()
    username = serializers.CharField()
    on_ledger = serializers.BooleanField()


class OrganisationAddSerializer(serializers.Serializer):
    slug = serializers.CharField(max_length=63)
    name = serializers.CharField(max_length=200)


class ClinicianInviteSerializer(serializers.Serializer):
    username = serializers.CharField(max_length=150)
    display_name = serializers.CharField(max_length=200)
    email = serializers.EmailField(max_length=254)
    organisation = serializers.CharField(
        source="organisation_slug", max_length=63, required=False, allow_blank=True, default=""
    )


class ModelStewardInviteSerializer(serializers.Serializer):
    username = serializers.CharField(max_length=150)
    email = serializers.EmailField(max_length=254)


class StaffAccountSerializer(serializers.Serializer):
    """A member of staff the custodian added: their username, e-mail and roles (no grantee id: not a grantee)."""

    username = serializers.CharField()
    email = serializers.EmailField()
    roles = serializers.ListField(child=serializers.CharField())


class InvitationIssueSerializer(serializers.Serializer):
    identifier_system = serializers.CharField(max_length=200)
    identifier_value = serializers.CharField(max_length=200)
    email = serializers.EmailField(max_length=254, required=False, allow_blank=True, default="")


class InvitationReissueSerializer(serializers.Serializer):
    email = serializers.EmailField(max_length=254, required=False, allow_blank=True, default="")


class InvitationSerializer(serializers.ModelSerializer):
    patient_pseudonym = serializers.CharField(source="patient.pseudonym")
    state = serializers.CharField()

    class Meta:
        model = PatientInvitation
        fields = ["id", "patient_pseudonym", "state", "by_email", "created_at", "expires_at", "used_at", "revoked_at"]


class IssuedInvitationSerializer(serializers.Serializer):
    invitation = InvitationSerializer()
    code = serializers.CharField(
        allow_null=True, help_text="the desk code, only when no e-mail was sent; shown once, never stored"
    )
