"""The directory API (custodians only): grantees (list, add clinicians and organisations, deactivate,
reactivate, reset a clinician's lost second factor), model stewards (add) and patient invitations (list, issue,
re-issue, revoke).

Errors: validation_failed, invalid_slug, invalid_username, invalid_email, unknown_organisation (400);
permission_denied (403); not_found, unknown_grantee, unknown_clinician, patient_not_found (404); organisation_exists,
username_taken, patient_already_enrolled (409); ledger_unavailable (503).
"""

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from directory.access import CanManageDirectory
from directory.models import PatientInvitation
from directory.selectors import directory_entries, directory_entry_get, invitation_get, invitations_recent
from directory.serializers import (
    ClinicianInviteSerializer,
    DirectoryEntrySerializer,
    GranteeStatusSerializer,
    InvitationIssueSerializer,
    InvitationReissueSerializer,
    InvitationSerializer,
    IssuedInvitationSerializer,
    ModelStewardInviteSerializer,
    OrganisationAddSerializer,
    StaffAccountSerializer,
)
from directory.services import (
    IssuedInvitation,
    directory_clinician_invite,
    directory_grantee_set_active,
    directory_model_steward_invite,
    directory_organisation_add,
    directory_second_factor_reset,
    patient_invitation_issue,
    patient_invitation_reissue,
    patient_invitation_revoke,
)
from health_platform.errors import NotFound
from health_platform.roles import user_roles
from health_platform.serializers import ERROR_RESPONSE

_ERROR = ERROR_RESPONSE
_ENTRY_ADDED = {201: DirectoryEntrySerializer, 400: _ERROR, 403: _ERROR, 409: _ERROR, 503: _ERROR}


class _CustodianView(APIView):
    permission_classes = [IsAuthenticated, CanManageDirectory]


def _base_url(request: Request) -> str:
    return request.build_absolute_uri("/")


def _validated(serializer_class: type[serializers.Serializer], request: Request) -> dict[str, Any]:
    """The request body as the serializer cleans it; an invalid one raises (answered as validation_failed)."""
    payload = serializer_class(data=request.data)
    payload.is_valid(raise_exception=True)
    return payload.validated_data


def _entry_added(grantee_id: str) -> Response:
    entry = directory_entry_get(grantee_id=grantee_id)
    return Response(DirectoryEntrySerializer(entry).data, status=status.HTTP_201_CREATED)


def _issued(issued: IssuedInvitation) -> Response:
    body = {"invitation": issued.invitation, "code": None if issued.invitation.by_email else issued.code}
    return Response(IssuedInvitationSerializer(body).data, status=status.HTTP_201_CREATED)


class GranteeListView(_CustodianView):
    @extend_schema(
        summary="The directory: every clinician and organisation with its ledger status (custodians)",
        responses={200: DirectoryEntrySerializer(many=True), 403: _ERROR},
    )
    def get(self, request: Request) -> Response:
        return Response(DirectoryEntrySerializer(directory_entries(), many=True).data)


class OrganisationAddView(_CustodianView):
    @extend_schema(
        summary="Add an organisation (registered on the ledger as active)",
        request=OrganisationAddSerializer,
        responses=_ENTRY_ADDED,
    )
    def post(self, request: Request) -> Response:
        data = _validated(OrganisationAddSerializer, request)
        return _entry_added(directory_organisation_add(actor=request.user, **data).grantee_id)


class ClinicianInviteView(_CustodianView):
    @extend_schema(
        summary="Add a clinician: their account, registered on the ledger, and an e-mail to set a password",
        request=ClinicianInviteSerializer,
        responses=_ENTRY_ADDED,
    )
    def post(self, request: Request) -> Response:
        data = _validated(ClinicianInviteSerializer, request)
        profile = directory_clinician_invite(actor=request.user, base_url=_base_url(request), **data)
        return _entry_added(profile.grantee_id)


class ModelStewardInviteView(_CustodianView):
    @extend_schema(
        summary="Add a model steward: their account and an e-mail to set a password (not a grantee: nothing on the "
        "ledger)",
        request=ModelStewardInviteSerializer,
        responses={201: StaffAccountSerializer, 400: _ERROR, 403: _ERROR, 409: _ERROR},
    )
    def post(self, request: Request) -> Response:
        data = _validated(ModelStewardInviteSerializer, request)
        user = directory_model_steward_invite(actor=request.user, base_url=_base_url(request), **data)
        body = {"username": user.get_username(), "email": user.email, "roles": sorted(user_roles(user))}
        return Response(StaffAccountSerializer(body).data, status=status.HTTP_201_CREATED)


class GranteeStatusView(_CustodianView):
    """POST .../deactivate/ or .../reactivate/: the grantee's status on the ledger, from the gate's next batch."""

    active = True

    @extend_schema(
        summary="Change a grantee's status on the ledger (idempotent)",
        request=None,
        responses={200: GranteeStatusSerializer, 403: _ERROR, 404: _ERROR, 503: _ERROR},
    )
    def post(self, request: Request, grantee_id: str) -> Response:
        changed = directory_grantee_set_active(actor=request.user, grantee_id=grantee_id, active=self.active)
        body = {
            "grantee_id": changed.grantee_id,
            "active": changed.active,
            "tx_id": changed.tx_id,
            "block_number": changed.block_number,
        }
        return Response(GranteeStatusSerializer(body).data)


class SecondFactorResetView(_CustodianView):
    """POST .../second-factor-reset/: a clinician lost their second factor; it is removed, their sessions end."""

    @extend_schema(
        summary="Reset a clinician's lost second factor (they enrol a new one at their next sign-in)",
        request=None,
        responses={200: DirectoryEntrySerializer, 403: _ERROR, 404: _ERROR},
    )
    def post(self, request: Request, grantee_id: str) -> Response:
        profile = directory_second_factor_reset(actor=request.user, grantee_id=grantee_id)
        return Response(DirectoryEntrySerializer(directory_entry_get(grantee_id=profile.grantee_id)).data)


class InvitationListView(_CustodianView):
    @extend_schema(
        summary="The latest patient invitations (custodians)",
        responses={200: InvitationSerializer(many=True), 403: _ERROR},
    )
    def get(self, request: Request) -> Response:
        return Response(InvitationSerializer(invitations_recent(), many=True).data)

    @extend_schema(
        summary="Invite the person behind an ingested patient identifier (e-mail, or a desk code)",
        request=InvitationIssueSerializer,
        responses={201: IssuedInvitationSerializer, 400: _ERROR, 403: _ERROR, 404: _ERROR, 409: _ERROR},
    )
    def post(self, request: Request) -> Response:
        data = _validated(InvitationIssueSerializer, request)
        return _issued(patient_invitation_issue(actor=request.user, base_url=_base_url(request), **data))


def _invitation(invitation_id: str) -> PatientInvitation:
    invitation = invitation_get(invitation_id=invitation_id)
    if invitation is None:
        raise NotFound("No such invitation.")
    return invitation


class InvitationRevokeView(_CustodianView):
    @extend_schema(
        summary="Revoke a pending invitation (its link and code stop working; idempotent)",
        request=None,
        responses={200: InvitationSerializer, 403: _ERROR, 404: _ERROR},
    )
    def post(self, request: Request, invitation_id: str) -> Response:
        revoked = patient_invitation_revoke(actor=request.user, invitation=_invitation(invitation_id))
        return Response(InvitationSerializer(revoked).data)


class InvitationReissueView(_CustodianView):
    @extend_schema(
        summary="Issue a new invitation to the same patient (the earlier ones are revoked)",
        request=InvitationReissueSerializer,
        responses={201: IssuedInvitationSerializer, 400: _ERROR, 403: _ERROR, 404: _ERROR, 409: _ERROR},
    )
    def post(self, request: Request, invitation_id: str) -> Response:
        invitation = _invitation(invitation_id)
        data = _validated(InvitationReissueSerializer, request)
        return _issued(
            patient_invitation_reissue(actor=request.user, invitation=invitation, base_url=_base_url(request), **data)
        )
