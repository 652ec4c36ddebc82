"""Contract tests run through a ledger backend, the way clients call them.

`chain` is parametrised over backends: the embedded ledger (a fresh file per test) always; a real
Fabric network (one per test session, see tests/fabric/network.py) where FABRIC_BIN_DIR points to
Fabric v2.5 binaries, skipped with the reason otherwise. Select or leave out the Fabric cases with
`-m fabric` / `-m "not fabric"`.

A Fabric ledger keeps every test's writes for the whole session, so every id a test writes comes
from the helpers below, which are unique to the running test (the autouse `namespace` fixture):
`ident("rec-1")` for record, consent, event, batch and request ids, `pseudonym(n)` for patients,
`digest(n)` for hashes. The same name gives the same value within a test and a different one in the
next. Tests that cannot run on Fabric (they edit the SQLite file, or need a fresh, empty ledger) use
their own EmbeddedLedger instead of `chain`.
"""

import hashlib
import json
import re
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest

from health_platform.software_passkey import SoftwarePasskey
from ledger import contracts
from tests.fabric.network import BACKENDS, backend

_namespace = {"current": ""}


@pytest.fixture(autouse=True)
def namespace() -> Iterator[str]:
    """This test's namespace: what keeps its ids apart from every other test's on a shared ledger."""
    _namespace["current"] = uuid.uuid4().hex[:10]
    yield _namespace["current"]
    _namespace["current"] = ""


@pytest.fixture(params=BACKENDS)
def chain(request, tmp_path):
    yield from backend(request.param, request, tmp_path)


def ident(name: str) -> str:
    """An id (record, consent, event, batch, request...) unique to the running test: "rec-1-<namespace>"."""
    current = _namespace["current"]
    return f"{name}-{current}" if current else name


def pseudonym(n: int) -> str:
    """Patient n's pseudonym in the running test (64 hex digits)."""
    return hashlib.sha256(f"pseudonym:{_namespace['current']}:{n}".encode()).hexdigest()


def digest(n: int) -> str:
    """The n-th content hash in the running test (64 hex digits, never equal to a pseudonym)."""
    return hashlib.sha256(f"digest:{_namespace['current']}:{n}".encode()).hexdigest()


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def now() -> datetime:
    return datetime.now(UTC)


class Passkeys:
    """Each patient's passkey (held in software), enrolled on the ledger on first use; they sign documents."""

    def __init__(self, client):
        self.client = client
        self.held: dict[str, SoftwarePasskey] = {}

    def of(self, patient_pseudonym: str) -> SoftwarePasskey:
        if patient_pseudonym not in self.held:
            passkey = self.held[patient_pseudonym] = SoftwarePasskey()
            if re.fullmatch(r"[0-9a-f]{64}", patient_pseudonym):
                self.client.submit("patient_keys", "EnrolPatientKey", json.dumps(passkey.ledger_key(patient_pseudonym)))
        return self.held[patient_pseudonym]

    def grant(self, patient_pseudonym: str, *grants: dict, issued_at: datetime | None = None) -> list[dict]:
        """GrantConsent of a document holding `grants`, signed by the patient's passkey."""
        document = grant_document(patient_pseudonym, *grants, issued_at=issued_at)
        signature = self.of(patient_pseudonym).sign(document)
        return self.client.submit("consent", "GrantConsent", json.dumps(document), json.dumps(signature)).json()

    def revoke(self, consent_id: str, patient_pseudonym: str) -> dict:
        document = revoke_document(consent_id, patient_pseudonym)
        signature = self.of(patient_pseudonym).sign(document)
        return self.client.submit("consent", "RevokeConsent", json.dumps(document), json.dumps(signature)).json()


def grant_document(patient_pseudonym: str, *grants: dict, issued_at: datetime | None = None) -> dict:
    return {
        "action": "grant_consent",
        "patient_pseudonym": patient_pseudonym,
        "issued_at": rfc3339(issued_at or now()),
        "grants": list(grants),
    }


def revoke_document(consent_id: str, patient_pseudonym: str) -> dict:
    return contracts.revoke_document(patient_pseudonym, consent_id, issued_at=rfc3339(now()))


def grant_terms(identifier: str, **overrides) -> dict:
    """One grant: breast-cancer model use of imaging records for a year, from yesterday."""
    return {
        "consent_id": identifier,
        "grantee": "clinician:alice",
        "purposes": ["diagnostic-model:breast-cancer"],
        "categories": ["imaging"],
        "valid_from": rfc3339(now() - timedelta(days=1)),
        "valid_until": rfc3339(now() + timedelta(days=365)),
        **overrides,
    }


@pytest.fixture
def passkeys(chain) -> Passkeys:
    return Passkeys(chain)


@pytest.fixture
def grant(passkeys) -> Callable[..., dict]:
    """Grant one consent, signed by patient `patient`'s passkey; defaults: grant_terms.

    `identifier` is used as given: pass ident("consent-1"). `patient_pseudonym=` names the patient otherwise."""

    def _grant(identifier: str, patient: int, **overrides) -> dict:
        patient_pseudonym = overrides.pop("patient_pseudonym", pseudonym(patient))
        return passkeys.grant(patient_pseudonym, grant_terms(identifier, **overrides))[0]

    return _grant


@pytest.fixture
def revoke(passkeys) -> Callable[..., dict]:
    """Revoke consent `identifier` of patient `patient`, signed by their passkey."""

    def _revoke(identifier: str, patient: int) -> dict:
        return passkeys.revoke(identifier, pseudonym(patient))

    return _revoke


@pytest.fixture
def anchor(chain) -> Callable[..., dict]:
    """Anchor a record version; `record_id` is used as given: pass ident("rec-1")."""

    def _anchor(record_id: str, patient: int, sha: str, version: int = 1) -> dict:
        return chain.submit("anchors", "AnchorRecord", record_id, pseudonym(patient), sha, str(version)).json()

    return _anchor
