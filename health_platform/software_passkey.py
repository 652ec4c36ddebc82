"""A passkey held in software, made and used exactly as an authenticator would (a P-256 key, ES256, the "none"
attestation, a counter that moves forward, user presence and verification flagged).

For what must register a passkey or sign consent without a browser and a person: the demo data, the benchmarks
and the tests. Never for a real patient: whoever holds this object can sign as the patient, which is the very
thing the platform's web process must not be able to do.
"""

import hashlib
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from fido2 import cbor
from fido2.cose import ES256
from fido2.utils import websafe_encode
from fido2.webauthn import AttestationObject, AttestedCredentialData, AuthenticatorData, CollectedClientData

from chaincode.contracts.patient_keys import MAX_ENROL_BATCH
from chaincode.validation import format_timestamp
from chaincode.webauthn import b64url, document_digest
from ledger.contracts import grant_document, revoke_document
from ledger.errors import ContractRejected

_FLAGS = AuthenticatorData.FLAG.UP | AuthenticatorData.FLAG.UV


@dataclass
class SoftwarePasskey:
    rp_id: str = "localhost"
    origin: str = "http://localhost:8000"
    private_key: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))
    credential_id: bytes = field(default_factory=lambda: os.urandom(16))
    counter: int = 0

    @property
    def cose_public_key(self) -> ES256:
        return ES256.from_cryptography_key(self.private_key.public_key())

    @property
    def credential_id_text(self) -> str:
        return b64url(self.credential_id)

    @property
    def rp_id_hash(self) -> bytes:
        return hashlib.sha256(self.rp_id.encode()).digest()

    def ledger_key(self, pseudonym: str) -> dict[str, str]:
        """The key as EnrolPatientKey takes it for the patient `pseudonym`."""

        return {
            "patient_pseudonym": pseudonym,
            "credential_id": self.credential_id_text,
            "public_key": b64url(cbor.encode(dict(self.cose_public_key))),
            "rp_id_hash": self.rp_id_hash.hex(),
            "origin": self.origin,
        }

    def registration(self) -> dict[str, Any]:
        """A registration response as the browser sends it (JSON, base64url fields), as allauth stores it."""
        auth_data = AuthenticatorData.create(
            self.rp_id_hash,
            _FLAGS | AuthenticatorData.FLAG.AT,
            0,
            bytes(AttestedCredentialData.create(b"\0" * 16, self.credential_id, self.cose_public_key)),
        )
        client_data = CollectedClientData.create("webauthn.create", os.urandom(16), self.origin)
        return {
            "type": "public-key",
            "id": websafe_encode(self.credential_id),
            "rawId": websafe_encode(self.credential_id),
            "response": {
                "clientDataJSON": websafe_encode(bytes(client_data)),
                "attestationObject": websafe_encode(bytes(AttestationObject.create("none", auth_data, {}))),
            },
            "clientExtensionResults": {"credProps": {"rk": True}},
        }

    def sign(self, document: Any, *, challenge: bytes | None = None) -> dict[str, str]:
        """A WebAuthn assertion over `document` (its challenge: SHA-256 of the canonical JSON, unless given)."""
        self.counter += 1
        client_data = bytes(
            CollectedClientData.create("webauthn.get", challenge or document_digest(document), self.origin)
        )
        return self.assertion(bytes(AuthenticatorData.create(self.rp_id_hash, _FLAGS, self.counter)), client_data)

    def assertion(self, auth_data: bytes, client_data: bytes) -> dict[str, str]:
        """The assertion of these authenticator data and client data, as the authenticator signs them."""
        signed = auth_data + hashlib.sha256(client_data).digest()
        return {
            "credential_id": self.credential_id_text,
            "authenticator_data": b64url(auth_data),
            "client_data_json": b64url(client_data),
            "signature": b64url(self.private_key.sign(signed, ec.ECDSA(hashes.SHA256()))),
        }


class SoftwareSigner:
    """Patients' software passkeys, each enrolled on the ledger as its patient's first on first use, signing their
    grants and revocations: how the demo data and the benchmarks consent without a browser."""

    def __init__(self, contracts: Any, *, rp_id: str = "localhost", origin: str = "http://localhost:8000"):
        self.contracts, self.rp_id, self.origin = contracts, rp_id, origin
        self.passkeys: dict[str, SoftwarePasskey] = {}

    def passkey(self, pseudonym: str) -> SoftwarePasskey:
        if pseudonym not in self.passkeys:
            passkey = SoftwarePasskey(rp_id=self.rp_id, origin=self.origin)
            self.contracts.enrol_patient_key(passkey.ledger_key(pseudonym))
            self.passkeys[pseudonym] = passkey
        return self.passkeys[pseudonym]

    def enrol(self, pseudonyms: list[str]) -> None:
        """A passkey for each of `pseudonyms` that has none here yet, enrolled MAX_ENROL_BATCH to a transaction;
        raises the contract's refusal of the first key the ledger refuses (the others of its batch are enrolled)."""
        pending = [pseudonym for pseudonym in dict.fromkeys(pseudonyms) if pseudonym not in self.passkeys]
        for start in range(0, len(pending), MAX_ENROL_BATCH):
            batch = [
                (p, SoftwarePasskey(rp_id=self.rp_id, origin=self.origin))
                for p in pending[start : start + MAX_ENROL_BATCH]
            ]
            answers = self.contracts.enrol_patient_keys([passkey.ledger_key(p) for p, passkey in batch])
            refused = [answer for answer in answers if isinstance(answer, ContractRejected)]
            self.passkeys.update(pair for pair, answer in zip(batch, answers, strict=True) if answer not in refused)
            if refused:
                raise refused[0]

    def grant(self, pseudonym: str, *grants: Any) -> list[Any]:
        """Grant `grants` (ledger.contracts.ConsentGrant) as the patient `pseudonym`, in one signed document."""
        document = grant_document(pseudonym, grants, issued_at=_now())
        return list(self.contracts.grant_consents(document, self.passkey(pseudonym).sign(document)))

    def revoke(self, pseudonym: str, consent_id: str) -> Any:
        document = revoke_document(pseudonym, consent_id, issued_at=_now())
        return self.contracts.revoke_consent(document, self.passkey(pseudonym).sign(document))


def _now() -> str:
    return format_timestamp(datetime.now(UTC))
