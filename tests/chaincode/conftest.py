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
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest

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


@pytest.fixture
def grant(chain) -> Callable[..., dict]:
    """Grant a consent; defaults cover breast-cancer model use of imaging records for a year.

    `identifier` is used as given: pass ident("consent-1")."""

    def _grant(identifier: str, patient: int, **overrides) -> dict:
        body = {
            "consent_id": identifier,
            "patient_pseudonym": pseudonym(patient),
            "grantee": "clinician:alice",
            "purposes": ["diagnostic-model:breast-cancer"],
            "categories": ["imaging"],
            "valid_from": rfc3339(now() - timedelta(days=1)),
            "valid_until": rfc3339(now() + timedelta(days=365)),
            **overrides,
        }
        return chain.submit("consent", "GrantConsent", json.dumps(body)).json()

    return _grant


@pytest.fixture
def anchor(chain) -> Callable[..., dict]:
    """Anchor a record version; `record_id` is used as given: pass ident("rec-1")."""

    def _anchor(record_id: str, patient: int, sha: str, version: int = 1) -> dict:
        return chain.submit("anchors", "AnchorRecord", record_id, pseudonym(patient), sha, str(version)).json()

    return _anchor
