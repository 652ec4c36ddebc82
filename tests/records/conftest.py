import pytest
from rest_framework.test import APIClient

from health_platform.roles import Role
from tests.records.factories import UserFactory


@pytest.fixture
def clinician(db):
    return UserFactory(username="clinician", roles=[Role.CLINICIAN])


@pytest.fixture
def api_client():
    return APIClient()


@pytest.fixture
def client_for():
    """client_for(user) -> an APIClient signed in (session) as `user`."""

    def make(user):
        client = APIClient()
        client.force_login(user)
        return client

    return make


@pytest.fixture
def scheduled_anchoring(monkeypatch):
    """Record (instead of sending to the broker) every scheduling of the anchoring task."""
    from records.tasks import anchor_pending_records

    calls = []
    monkeypatch.setattr(anchor_pending_records, "apply_async", lambda *args, **kwargs: calls.append(kwargs))
    return calls


@pytest.fixture
def ledger_down(ledger_switch):
    """tests/conftest.py's ledger_switch, already down: ledger_down.up() brings this test's ledger back."""
    ledger_switch.down()
    return ledger_switch
