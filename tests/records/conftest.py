import pytest
from rest_framework.test import APIClient

from health_platform.roles import Role
from tests.records.factories import UserFactory


@pytest.fixture
def custodian(db):
    return UserFactory(username="custodian", roles=[Role.CUSTODIAN])


@pytest.fixture
def auditor(db):
    return UserFactory(username="auditor", roles=[Role.AUDITOR])


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
def ledger_down(settings, tmp_path):
    """Point LEDGER_URL where no ledger can be opened (a directory that cannot be created), then back.

    Not a fake: the real embedded backend fails to open and raises LedgerUnavailable.
    """
    working = settings.LEDGER_URL

    class Switch:
        def down(self):
            settings.LEDGER_URL = "embedded:///proc/health-platform-no-such-dir/ledger.sqlite3"

        def up(self):
            settings.LEDGER_URL = working

    switch = Switch()
    switch.down()
    yield switch
    switch.up()
