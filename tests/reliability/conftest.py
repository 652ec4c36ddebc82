"""Fault-injection fixtures: real Celery workers whose arguments and environment a test chooses, a
Redis server that can be stopped and restarted on the same port with its data, and probes into
the ledger and the blob store that tell what really happened (not what the application says)."""

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest
from django.db.models import Q

from benchmarks.common import redis_server
from tests.conftest import broker_switched, wait_for


@pytest.fixture
def spawn_worker(start_worker, blob_dir):
    """tests/conftest.py's start_worker, on the custodian queue unless told otherwise; the test's blob
    folder is this test's (blob_dir). A test kills a worker whole with kill_group."""

    def spawn(queues: str = "custodian", **options):  # type: ignore[no-untyped-def]
        return start_worker(queues=queues, **options)

    return spawn


def kill_group(process: subprocess.Popen) -> None:
    """SIGKILL a worker started by spawn_worker and its pool children (its own process group)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


# --- a ledger that goes away ---------------------------------------------------------------------

UNREACHABLE = "/proc/health-platform-ledger-unreachable"


class LedgerMount:
    """The directory the worker opens the ledger through; cut() makes it unreachable, restore() heals it."""

    def __init__(self, tmp_path, ledger):
        self.target = ledger.path.parent
        self.link = tmp_path / "ledger-mount"
        os.symlink(self.target, self.link)
        self.url = f"embedded://{self.link / ledger.path.name}"

    def worker(self, spawn_worker, **overrides: str):
        """A custodian worker that reaches the ledger through this mount and opens it afresh for every task
        (--max-tasks-per-child 1), retrying the ledger after 1 s at first; `overrides` are more settings."""
        return spawn_worker(
            queues="custodian",
            extra=["--max-tasks-per-child", "1"],
            overrides={
                "LEDGER_URL": self.url,
                "ANALYTICS_LEDGER_RETRY_BACKOFF_SECONDS": "1",
                **overrides,
            },
        )

    def cut(self) -> datetime:
        replacement = self.link.with_name("ledger-mount.new")
        os.symlink(UNREACHABLE, replacement)
        os.replace(replacement, self.link)  # atomic: the path is either reachable or not
        return datetime.now(UTC)

    def restore(self) -> datetime:
        """The moment just before the ledger is reachable again: whatever is gated from now on comes after it."""
        replacement = self.link.with_name("ledger-mount.new")
        os.symlink(self.target, replacement)
        moment = datetime.now(UTC)
        os.replace(replacement, self.link)
        return moment


# --- Redis that survives a restart -------------------------------------------------------------


@pytest.fixture
def durable_redis(tmp_path, broker):
    """Switch this process and every worker the test starts to a durable Redis broker."""
    with (
        redis_server(tmp_path / "redis", durable=True) as server,
        broker_switched(broker, server.url, {"CELERY_BROKER_URL": server.url}),
    ):
        yield server


@pytest.fixture(params=["filesystem", "redis"])
def either_broker(request, broker):
    """The test runs once on the embedded default's filesystem broker and once on a durable Redis.

    List it before spawn_worker: the workers are then stopped before the broker."""
    if request.param == "redis":
        return request.getfixturevalue("durable_redis").url
    return "filesystem://"


# --- what really happened ------------------------------------------------------------------------


def ledger_access_events(ledger, request_id: object, kind: str | None = "record_access") -> list[dict]:
    """Every access event of `kind` (default: the record accesses; None: every kind, the outcome events after the
    gate's decisions included) the ledger holds for a request (all pages)."""
    events, bookmark = [], ""
    while True:
        page = ledger.evaluate(
            "accesslog",
            "QueryAccessEvents",
            json.dumps({"request_id": str(request_id), "limit": 1000, "bookmark": bookmark}),
        ).json()
        events.extend(e for e in page["events"] if kind is None or e["kind"] == kind)
        bookmark = page["bookmark"]
        if not bookmark:
            return events


def ledger_transactions(ledger, function: str) -> list[dict]:
    """The committed transactions of one contract function, read from the ledger file itself."""
    with sqlite3.connect(ledger.path) as connection:
        rows = connection.execute(
            "SELECT tx_id, block_number, status, args, write_set FROM transactions WHERE function = ? "
            "ORDER BY block_number",
            (function,),
        ).fetchall()
    return [
        {"tx_id": r[0], "block_number": r[1], "status": r[2], "args": json.loads(r[3]), "writes": json.loads(r[4])}
        for r in rows
    ]


def access_log_transactions(ledger, request_id: object, *, outcomes: bool = False) -> dict[str, list[str]]:
    """{batch_id: [statuses of the AppendAccessEvents transactions that wrote it]} for a request: the batches of
    its record accesses, or with `outcomes` those of their outcomes (<batch_id>:outcome).

    A batch redone after a crash may submit its batch again: the contract answers that with the
    original transaction and the new one writes nothing, so it logs nothing and is not counted.
    """
    found: dict[str, list[str]] = {}
    for tx in ledger_transactions(ledger, "AppendAccessEvents"):
        batch = json.loads(tx["args"][0])
        is_outcome = batch["batch_id"].endswith(":outcome")
        if batch["batch_id"].startswith(f"{request_id}:") and tx["writes"] and is_outcome == outcomes:
            found.setdefault(batch["batch_id"], []).append(tx["status"])
    return found


def request_finished(request_id: object):
    from analytics.models import AnalysisRequest, AnalysisStatus

    def check():
        status = AnalysisRequest.objects.get(pk=request_id).status
        return status if status in (AnalysisStatus.COMPLETED, AnalysisStatus.FAILED) else None

    return check


def wait_until_finished(request_id: object, timeout: float = 120) -> str:
    return wait_for(request_finished(request_id), timeout=timeout, interval=0.1, what="the analysis to finish")


def wait_until_gating_began(analysis) -> None:
    """Until the gate has decided the analysis's first batch (the moment to bring a fault)."""
    from analytics.models import AnalysisBatch, BatchStatus

    wait_for(
        lambda: AnalysisBatch.objects.filter(request=analysis).exclude(status=BatchStatus.PENDING).exists(),
        timeout=60,
        interval=0.005,
        what="the first batch to be gated",
    )


def stored_blobs(blob_dir: Path) -> set[str]:
    return {p.name for p in blob_dir.rglob("*") if p.is_file() and not p.name.startswith(".")}


def assert_done_once(analysis, people, ledger, clinician) -> None:
    """The analysis completed exactly once whatever befell it: every batch scored; each batch's record accesses
    logged in exactly one valid ledger transaction, and its outcome (computed) in exactly one more; every
    record on the ledger, in the mirror and among the results exactly once."""
    from analytics.models import AnalysisBatch, BatchStatus
    from analytics.selectors import analysis_results
    from audit.models import AccessEvent

    batches = list(AnalysisBatch.objects.filter(request=analysis))
    assert {b.status for b in batches} == {BatchStatus.SCORED}
    from analytics.pipeline import OUTCOME_CLAIM

    unlogged = Q(outcome_tx_id="") | Q(outcome_tx_id__startswith=OUTCOME_CLAIM)
    wait_for(  # outcomes are logged just after each batch is collected
        lambda: not AnalysisBatch.objects.filter(unlogged, request=analysis).exists(),
        timeout=30,
        what="every batch's outcome to be logged",
    )
    for outcomes in (False, True):
        logged = access_log_transactions(ledger, analysis.id, outcomes=outcomes)
        suffix = ":outcome" if outcomes else ""
        assert sorted(logged) == sorted(f"{analysis.id}:{b.index}{suffix}" for b in batches), logged
        assert all(statuses == ["VALID"] for statuses in logged.values()), logged
    record_ids = sorted(str(record.id) for _, _, record in people)
    assert sorted(e["record_id"] for e in ledger_access_events(ledger, analysis.id)) == record_ids
    mirrored = AccessEvent.objects.filter(request_id=str(analysis.id), kind="record_access")
    assert sorted(mirrored.values_list("record_id", flat=True)) == record_ids
    assert {(event.decision, event.outcome) for event in mirrored} == {("admit", "computed")}
    rows = analysis_results(request=analysis, viewer=clinician).rows
    assert sorted(row.record_id for row in rows) == record_ids
