"""The service API between platform instances (one per organisation): a steward's instance invites this instance's
organisation to a run, and reads what it did at the end (training.participation). Only a peer instance may call it,
with a request signed by the key the two share (training.peers); a user's session or token counts for nothing here.

Error codes: not_authenticated (401: not signed), federation_unknown_peer, federation_stale,
federation_signature_invalid (401); the invitation's own (400, training.participation.invitation_check);
invitation_conflict (409); not_found (404); payload_too_large (413)."""

from typing import Any
from uuid import UUID

from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.authentication import BaseAuthentication
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from health_platform.errors import ApplicationError
from health_platform.parsers import LimitedJSONParser
from health_platform.serializers import ERROR_RESPONSE
from training.participation import MAX_CONTEXT_BYTES, participation_get, participation_outcome
from training.peers import SENDER_HEADER, Peer, SignatureRefused, signature_check
from training.services import training_participation_accept

INVITATION_MAX_BYTES = MAX_CONTEXT_BYTES * 4 // 3 + 64 * 1024  # the base64 public context and a few small fields


class PeerRefused(ApplicationError):
    code = "federation_signature_invalid"
    status = 401
    message = "The request is not signed by a peer instance's key."


class PeerSignatureAuthentication(BaseAuthentication):
    """A request signed by a configured peer instance (training.peers): request.auth is the Peer."""

    def authenticate(self, request: Request) -> tuple[Any, Peer] | None:
        if SENDER_HEADER not in request.headers:
            return None  # not signed: refused by IsPeer as not_authenticated
        try:
            peer = signature_check(
                peers=settings.TRAINING_FEDERATION_PEERS,
                headers=request.headers,
                method=request.method or "",
                path=request._request.path,
                body=request._request.body,
            )
        except SignatureRefused as refused:
            raise PeerRefused(code=refused.code) from None
        return AnonymousUser(), peer

    def authenticate_header(self, request: Request) -> str:
        return "Federation-Signature"


class PeerSignatureScheme(OpenApiAuthenticationExtension):
    target_class = PeerSignatureAuthentication
    name = "peerSignature"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {
            "type": "apiKey",
            "in": "header",
            "name": "X-Federation-Signature",
            "description": "HMAC-SHA256 of the method, path, X-Federation-Timestamp and the body's SHA-256, with the "
            "key the two instances share; X-Federation-Sender names the signing organisation (training.peers).",
        }


class IsPeer(BasePermission):
    def has_permission(self, request: Request, view: Any) -> bool:
        return isinstance(request.auth, Peer)


class _PeersOnly(APIView):
    authentication_classes = [PeerSignatureAuthentication]
    permission_classes = [IsPeer]


class FederationInvitationsView(_PeersOnly):
    """POST: a peer instance's invitation to take part in its training run."""

    parser_classes = [LimitedJSONParser]
    json_max_bytes = INVITATION_MAX_BYTES

    @extend_schema(
        summary="Invite this instance's organisation to a federated training run (peer instances only)",
        description=__doc__,
        request=OpenApiTypes.OBJECT,
        responses={200: OpenApiTypes.OBJECT, 201: OpenApiTypes.OBJECT, 400: ERROR_RESPONSE, 401: ERROR_RESPONSE},
    )
    def post(self, request: Request) -> Response:
        participation, created = training_participation_accept(
            steward_organisation=request.auth.organisation, invitation=request.data
        )
        answer = status.HTTP_201_CREATED if created else status.HTTP_200_OK
        return Response(participation_outcome(participation), status=answer)


class FederationInvitationView(_PeersOnly):
    """GET: what this instance's organisation did in a run it was invited to (its status, counts and manifest)."""

    @extend_schema(
        summary="This instance's participation in a peer's training run (peer instances only)",
        description=__doc__,
        responses={200: OpenApiTypes.OBJECT, 401: ERROR_RESPONSE, 404: ERROR_RESPONSE},
    )
    def get(self, request: Request, run_id: UUID, attempt: int) -> Response:
        participation = participation_get(
            steward_organisation=request.auth.organisation, run_id=run_id, attempt=attempt
        )
        return Response(participation_outcome(participation))
