"""A custodian worker process readies itself at start (analytics.tasks.worker_process_ready), and starts whatever
is down: a ledger that does not answer yet is for its first task to meet and retry."""

import gc

import pytest
from django.db import connection
from structlog.testing import capture_logs

from analytics import engines
from analytics.tasks import worker_process_ready
from tests.conftest import ledger_at

UNREACHABLE = "embedded:///proc/health-platform-no-such-dir/ledger.sqlite3"


@pytest.mark.django_db
def test_a_new_worker_process_opens_its_database_and_ledger_and_makes_its_engine_before_its_first_task(
    monkeypatch, ledger
):
    connection.close()
    engines_made = []
    monkeypatch.setattr(engines, "homomorphic_engine", lambda: engines_made.append(1))
    heights = []
    real = type(ledger).height
    monkeypatch.setattr(type(ledger), "height", lambda self: heights.append(1) or real(self))

    gc.unfreeze()

    with capture_logs() as logs:
        worker_process_ready()

    frozen = gc.get_freeze_count()
    gc.unfreeze()  # the rest of the test session collects as usual
    assert connection.connection is not None
    assert engines_made == [1]
    assert heights == [1]
    assert logs == []
    # What lives once it is ready (its modules, its connection, its ledger client) is out of the collector's way.
    assert frozen > 10_000


@pytest.mark.django_db
def test_a_worker_process_starts_with_the_ledger_away_and_says_so_without_anything_of_it(settings):
    with ledger_at(settings, UNREACHABLE), capture_logs() as logs:
        worker_process_ready()  # no exception: the process starts
    gc.unfreeze()

    assert [(entry["event"], entry["log_level"]) for entry in logs] == [("worker_start_not_ready", "warning")]
    assert set(logs[0]) == {"event", "log_level", "error"}
    assert logs[0]["error"] == "LedgerUnavailable"
