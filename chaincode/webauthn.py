"""Patient signatures: a WebAuthn assertion over a document, checked by the contracts before they write.

A document (a consent grant, a revocation, a new passkey) is signed as WebAuthn signs anything: the browser
asks the patient's passkey for an assertion whose challenge is SHA-256 of the document's canonical JSON
(`document_challenge`). The authenticator signs `authenticatorData || SHA-256(clientDataJSON)`, and
clientDataJSON carries the challenge; so checking the signature with the key on the ledger, then the challenge
against the document, proves that the holder of that passkey approved exactly this document. The web process
only carries the assertion: it cannot make one.

`verify_assertion` checks, in this order, each refusal with its stable code:
- signature_malformed: the assertion is not four base64url fields of sane size;
- unknown_key / foreign_key / key_revoked: its credential is not one of the patient's keys on the ledger (it
  belongs to another patient, or to no one), or was revoked;
- not_an_assertion: clientDataJSON is not a "webauthn.get" (a registration's signature proves nothing here);
- challenge_mismatch: the signed challenge is not this document's (a signature over another document);
- origin_mismatch / rp_mismatch: made for another site than the key was registered on;
- user_not_verified: the authenticator did not verify the patient (PIN or biometric), or saw no one present;
- counter_regressed: the authenticator's signature counter did not move forward (a cloned authenticator, or
  an assertion replayed);
- signature_invalid: the signature does not verify under the key.

Keys are COSE public keys as the authenticator gave them at registration (ES256, EdDSA or RS256): fido2 parses
and verifies them. Free of Django.
"""

import base64
import binascii
import hashlib
import re
from collections.abc import Mapping
from typing import Any

from cryptography.exceptions import InvalidSignature
from fido2 import cbor
from fido2.cose import CoseKey
from fido2.webauthn import AuthenticatorData, CollectedClientData

from chaincode import state, validation
from chaincode.errors import ContractError, InvalidArgument

SUPPORTED_ALGORITHMS = {-7: "ES256", -8: "EdDSA", -257: "RS256"}
ASSERTION_FIELDS = {"credential_id", "authenticator_data", "client_data_json", "signature"}
MAX_PUBLIC_KEY_BYTES = 1024
MAX_CREDENTIAL_ID_BYTES = 1023  # WebAuthn's own bound
_FIELD_LIMITS = {"authenticator_data": 1024, "client_data_json": 4096, "signature": 1024}
_BASE64URL = re.compile(r"[A-Za-z0-9_-]+={0,2}")
_ORIGIN = re.compile(
    r"https://[a-z0-9.-]{1,253}(:[0-9]{1,5})?|http://(localhost|127\.0\.0\.1|testserver)(:[0-9]{1,5})?"
)


class SignatureRefused(ContractError):
    """A document's signature does not prove the patient approved it; `code` says why."""

    code = "signature_invalid"


def b64url_decode(value: Any, field: str, maximum: int) -> bytes:
    if not isinstance(value, str) or not value or len(value) > maximum * 4 // 3 + 4 or not _BASE64URL.fullmatch(value):
        raise SignatureRefused(f"{field} must be base64url", code="signature_malformed")
    try:
        return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError):
        raise SignatureRefused(f"{field} must be base64url", code="signature_malformed") from None


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def document_digest(document: Mapping[str, Any]) -> bytes:
    """SHA-256 of the document's canonical JSON (sorted keys, no spaces): the challenge its signature carries."""
    return hashlib.sha256(state.dumps(document)).digest()


def document_challenge(document: Mapping[str, Any]) -> str:
    """The WebAuthn challenge for `document`, as clientDataJSON carries it (base64url, no padding)."""
    return b64url(document_digest(document))


def credential_id(value: Any, field: str = "credential_id") -> str:
    """A credential id as base64url text (WebAuthn's rawId); returned without padding, the one spelling stored."""
    return b64url(b64url_decode(value, field, MAX_CREDENTIAL_ID_BYTES))


def public_key(value: Any, field: str = "public_key") -> str:
    """A COSE public key (base64url of its CBOR) of a supported algorithm that can verify a signature; refused as
    unsupported_key otherwise (garbage, another algorithm, or a map without the key's own parameters)."""
    raw = b64url_decode(value, field, MAX_PUBLIC_KEY_BYTES)
    try:
        key = CoseKey.parse(cbor.decode(raw))  # type: ignore[arg-type]  # not a map: refused below
        usable = key.ALGORITHM in SUPPORTED_ALGORITHMS
        if usable:  # a key missing its coordinates parses, then fails at the first signature: find out now
            key.verify(b"probe", _PROBE_SIGNATURE)
    except InvalidSignature:
        pass  # the key was built and checked the probe: it can verify
    except Exception:  # fido2 and cryptography raise many kinds on malformed keys; all mean the same here
        usable = False
    if not usable:
        allowed = ", ".join(SUPPORTED_ALGORITHMS.values())
        raise InvalidArgument(f"{field} must be a COSE public key, one of {allowed}", code="unsupported_key")
    return b64url(raw)


_PROBE_SIGNATURE = bytes.fromhex("3006020101020101")  # DER (r=1, s=1): never valid, always well-formed


def origin(value: Any, field: str = "origin") -> str:
    return validation.matching(_ORIGIN, value, field, "an https origin (or http on localhost)")


def assertion_fields(value: Any, field: str = "signature") -> dict[str, str]:
    """The assertion's four fields, checked for presence and form (not yet for meaning)."""
    if value in (None, "", {}):
        raise SignatureRefused(
            f"{field} is required: the patient signs every change with a passkey", code="signature_required"
        )
    if not isinstance(value, dict):
        raise SignatureRefused(f"{field} must be a JSON object", code="signature_malformed")
    unknown, missing = set(value) - ASSERTION_FIELDS, ASSERTION_FIELDS - set(value)
    if unknown or missing:
        raise SignatureRefused(
            f"{field} must hold exactly {', '.join(sorted(ASSERTION_FIELDS))}", code="signature_malformed"
        )
    checked = {"credential_id": credential_id(value["credential_id"], f"{field}.credential_id")}
    for name, limit in _FIELD_LIMITS.items():
        b64url_decode(value[name], f"{field}.{name}", limit)
        checked[name] = value[name]
    return checked


def verify_assertion(assertion: Mapping[str, str], *, document: Mapping[str, Any], key: Mapping[str, Any]) -> int:
    """Check `assertion` (assertion_fields' output) over `document` with `key` (a patient key as the ledger holds
    it: public_key, rp_id_hash, origin, sign_count). Returns the authenticator's new signature counter."""
    client_data_bytes = b64url_decode(assertion["client_data_json"], "signature.client_data_json", 4096)
    auth_data_bytes = b64url_decode(assertion["authenticator_data"], "signature.authenticator_data", 1024)
    try:
        client_data = CollectedClientData(client_data_bytes)
        auth_data = AuthenticatorData(auth_data_bytes)
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise SignatureRefused(
            "signature.client_data_json or .authenticator_data is malformed", code="signature_malformed"
        ) from None
    if client_data.type != "webauthn.get":
        raise SignatureRefused("the signature is not a WebAuthn assertion", code="not_an_assertion")
    if client_data.challenge != document_digest(document):
        raise SignatureRefused("the signature was made over another document", code="challenge_mismatch")
    if client_data.origin != key["origin"]:
        raise SignatureRefused("the signature was made on another site than the key's", code="origin_mismatch")
    if auth_data.rp_id_hash.hex() != key["rp_id_hash"]:
        raise SignatureRefused("the signature was made for another relying party", code="rp_mismatch")
    if not (auth_data.is_user_present() and auth_data.is_user_verified()):
        raise SignatureRefused("the authenticator did not verify the patient", code="user_not_verified")
    stored = int(key.get("sign_count", 0))
    if (stored or auth_data.counter) and auth_data.counter <= stored:
        raise SignatureRefused("the authenticator's counter did not move forward", code="counter_regressed")
    cose = CoseKey.parse(cbor.decode(b64url_decode(key["public_key"], "public_key", MAX_PUBLIC_KEY_BYTES)))  # type: ignore[arg-type]
    signature = b64url_decode(assertion["signature"], "signature.signature", 1024)
    try:
        cose.verify(auth_data_bytes + hashlib.sha256(client_data_bytes).digest(), signature)
    except Exception:  # InvalidSignature, or a signature the key's algorithm cannot even parse
        raise SignatureRefused("the signature does not verify under the patient's key") from None
    return int(auth_data.counter)
