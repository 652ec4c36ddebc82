"""Contract tests run through a ledger backend, the way clients call them.

`chain` is parametrised over backends: the embedded ledger always; a real Fabric network joins the
same suite where one is available.
"""

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from ledger.embedded import EmbeddedLedger


@pytest.fixture(params=["embedded"])
def chain(request, tmp_path):
    backend = EmbeddedLedger(tmp_path / "chain.sqlite3")
    yield backend
    backend.close()


def pseudonym(n: int) -> str:
    return format(n, "064x")


def digest(n: int) -> str:
    return format(n + 10**6, "064x")


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def now() -> datetime:
    return datetime.now(UTC)


@pytest.fixture
def grant(chain) -> Callable[..., dict]:
    """Grant a consent; defaults cover breast-cancer model use of imaging records for a year."""

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
    def _anchor(record_id: str, patient: int, sha: str, version: int = 1) -> dict:
        return chain.submit("anchors", "AnchorRecord", record_id, pseudonym(patient), sha, str(version)).json()

    return _anchor
