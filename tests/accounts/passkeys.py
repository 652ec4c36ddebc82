"""A passkey's stored credential, made in the test as an authenticator would make it (a fresh P-256 key, the
"none" attestation): for tests that need a user who holds a passkey without a browser to enrol one."""

import hashlib
import os
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec
from fido2.cose import ES256
from fido2.utils import websafe_encode
from fido2.webauthn import AttestationObject, AttestedCredentialData, AuthenticatorData, CollectedClientData


def passkey_credential(*, rp_id: str = "testserver", origin: str = "http://testserver") -> dict[str, Any]:
    """A registration response as allauth stores it (JSON, base64url fields), for a new key pair."""
    credential_id = os.urandom(16)
    public_key = ES256.from_cryptography_key(ec.generate_private_key(ec.SECP256R1()).public_key())
    flags = AuthenticatorData.FLAG.UP | AuthenticatorData.FLAG.UV | AuthenticatorData.FLAG.AT
    auth_data = AuthenticatorData.create(
        hashlib.sha256(rp_id.encode()).digest(),
        flags,
        0,
        bytes(AttestedCredentialData.create(b"\0" * 16, credential_id, public_key)),
    )
    client_data = CollectedClientData.create("webauthn.create", os.urandom(16), origin)
    return {
        "type": "public-key",
        "id": websafe_encode(credential_id),
        "rawId": websafe_encode(credential_id),
        "response": {
            "clientDataJSON": websafe_encode(bytes(client_data)),
            "attestationObject": websafe_encode(bytes(AttestationObject.create("none", auth_data, {}))),
        },
        "clientExtensionResults": {"credProps": {"rk": True}},
    }
