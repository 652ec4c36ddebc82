"""Acceptance: the ordering service's Raft leader crashes in the middle of an analysis, and the analysis completes.

The orderer that leads the channel's Raft is found from the orderers themselves: each one's operations endpoint
serves consensus_etcdraft_is_leader, a gauge its own Raft node sets to 1 when it becomes leader and to 0 when it
stops being it, and the leader is the one orderer of the three that says 1 (FabricNetwork.raft_leader). Not osnadmin:
its channel list gives an orderer's consensus relation, status and height, not who leads; not the "Raft leader
changed" log lines: they need INFO logs and parsing, and say what one node saw, not what it is now.

The leader is crashed for real: SIGKILL to its whole process tree. So this module runs on a network of its own
(dedicated_network, its orderers serving Prometheus metrics): the session's shared network is never left a node
short, whatever happens here, and no other test's timing depends on an election. Every crashed orderer is started
again as `up` starts it (fabric.sh start-node) before the next test, with three orderers each time.

Proven:
- an analysis of two batches whose Raft leader is crashed just before the second batch's access-log write (the first
  write the ordering service gets without its leader) completes: patient 0's record alone scored, as the model scores
  it in the clear; each refused record logged with its reason; every access logged once on the chain, in two valid
  transactions, the second ordered after the crash; the chain verifies;
- with the leader dead, a submit (contracts.anchor_model) commits while the other two elect a new leader among
  themselves; both times are recorded (election_seconds, commit_seconds: record_property, and printed);
- the crashed orderer, started again, catches up: the block of a submit made once it is back reaches its ledger as
  it reaches the others' (their consensus_etcdraft_committed_block_number).

Celery runs eagerly, with a task's errors kept in the task (CELERY_TASK_EAGER_PROPAGATES off) as on a worker: a
batch whose ledger write meets LedgerUnavailable is retried by its task (at once, eagerly) instead of raising Celery's
Retry into the test. Each attempt at the access-log writes is recorded (log_writes), whether or not one failed.
"""

import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from analytics import pipeline
from analytics.models import AnalysisStatus
from health_platform import bootstrap
from health_platform.celery import app
from ledger.contracts import Contracts
from tests.conftest import every_gate_answer, every_gate_answer_scored, explicit_analysis
from tests.fabric.network import ORDERERS, FabricNetwork, dedicated_network, until_available

pytestmark = [pytest.mark.fabric, pytest.mark.he, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def fabric_network():
    """This module's own network, its orderers serving their metrics (tests/fabric/conftest.py's ledger_url puts
    the application on it)."""
    with dedicated_network({"ORDERER_METRICS_PROVIDER": "prometheus"}) as network:
        yield network


class Crashes:
    """The orderers a test crashed (SIGKILL) and when; restart() starts each again as `up` does."""

    def __init__(self, network: FabricNetwork):
        self.network = network
        self.killed: dict[str, float] = {}

    def kill(self, name: str) -> None:
        self.killed[name] = self.network.kill(name)

    def since(self) -> float | None:
        """Seconds since the first crash (None before any)."""
        return time.monotonic() - min(self.killed.values()) if self.killed else None

    def restart(self) -> None:
        for name in list(self.killed):
            self.network.start_node(name)
            del self.killed[name]


@pytest.fixture
def crashes(fabric_network):
    crashes = Crashes(fabric_network)
    yield crashes
    crashes.restart()  # whatever became of the test: the next one starts with three orderers


def catches_up(network: FabricNetwork, contracts: Contracts) -> float:
    """With every orderer running again: a submit commits, and its block reaches every orderer's ledger (the one
    started again included). Returns the seconds that took."""
    started = time.monotonic()
    version = uuid.uuid4().hex
    anchor = until_available(lambda: contracts.anchor_model(name="after-restart", version=version, sha256="e" * 64))
    assert anchor.block_number is not None
    deadline = started + 60
    while True:
        blocks = network.committed_blocks()
        if all(number is not None and number >= anchor.block_number for number in blocks.values()):
            return time.monotonic() - started
        assert time.monotonic() < deadline, f"block {anchor.block_number} has not reached every orderer: {blocks}"
        time.sleep(0.1)


def test_the_raft_leader_crashing_between_two_batches_of_an_analysis_does_not_stop_it(
    cohort,
    clinician,
    models_registered,
    ledger,
    blob_dir,
    eager,
    monkeypatch,
    settings,
    fabric_network,
    crashes,
    record_property,
):
    settings.ANALYTICS_BATCH_SIZE = 3  # every_gate_answer's six records in two batches
    app.conf.update(CELERY_TASK_EAGER_PROPAGATES=False)  # restored by `eager`
    people = every_gate_answer(cohort, clinician, monkeypatch)
    log_writes: list[tuple[str, str, float | None]] = []  # ledger batch id, tx id or error, seconds since the crash
    height_at_crash: list[int] = []  # the peer's height when the leader was crashed: the next block's number
    access_batch_log = pipeline.access_batch_log

    def crashing_the_leader_before_the_second_batch(*, batch_id: str, events: list, **options: object) -> object:
        if batch_id.endswith(":1") and not crashes.killed:
            height_at_crash.append(ledger.height())
            crashes.kill(fabric_network.raft_leader())
        try:
            entry = access_batch_log(batch_id=batch_id, events=events, **options)
        except Exception as error:
            log_writes.append((batch_id, type(error).__name__, crashes.since()))
            raise
        log_writes.append((batch_id, entry.tx_id, crashes.since()))
        return entry

    monkeypatch.setattr("analytics.pipeline.access_batch_log", crashing_the_leader_before_the_second_batch)
    request = explicit_analysis(clinician, people)
    (crashed,) = crashes.killed
    print(f"crashed {crashed}; the analysis's access-log writes: {log_writes}")
    record_property("log_writes", log_writes)

    assert request.status == AnalysisStatus.COMPLETED, (request.failure_code, log_writes)
    logged = every_gate_answer_scored(request, clinician, people)
    events = bootstrap.contracts().query_access_events(request_id=str(request.id), limit=100).events
    accesses = [event for event in events if event["kind"] == "record_access"]
    assert len(accesses) == len(people)
    assert {event["record_id"]: (event["decision"], event["reason"]) for event in accesses} == logged
    first, second = request.batches.order_by("index")
    assert {event["tx_id"] for event in accesses} == {first.access_log_tx_id, second.access_log_tx_id}
    after_crash = ledger.locate(second.access_log_tx_id)
    assert after_crash is not None
    assert (after_crash.status, after_crash.block_number >= height_at_crash[0]) == ("VALID", True)
    assert [(event["decision"], event["reason"]) for event in events if event["kind"] == "outcome"] == [
        ("computed", None)
    ] * 2
    assert ledger.verify().ok

    crashes.restart()
    catch_up_seconds = catches_up(fabric_network, bootstrap.contracts())
    print(f"{crashed} started again and caught up in {catch_up_seconds:.2f} s")
    record_property("catch_up_seconds", catch_up_seconds)


def test_with_the_raft_leader_dead_a_submit_commits_once_the_other_two_elect_a_leader(
    ledger, fabric_network, crashes, record_property
):
    contracts = bootstrap.contracts()
    leader = fabric_network.raft_leader()
    survivors = tuple(name for name in ORDERERS if name != leader)
    version = uuid.uuid4().hex
    with ThreadPoolExecutor(max_workers=1) as pool:
        crashes.kill(leader)
        election = pool.submit(lambda: (fabric_network.raft_leader(among=survivors), crashes.since()))
        anchor = until_available(
            lambda: contracts.anchor_model(name="leader-crashed", version=version, sha256="d" * 64)
        )
        commit_seconds = crashes.since()
        new_leader, election_seconds = election.result()
    print(
        f"crashed {leader}: {new_leader} elected after {election_seconds:.2f} s, submit committed after "
        f"{commit_seconds:.2f} s in block {anchor.block_number}"
    )
    record_property("election_seconds", election_seconds)
    record_property("commit_seconds", commit_seconds)

    assert new_leader in survivors
    assert anchor.block_number is not None
    assert contracts.block_of(anchor.tx_id) == anchor.block_number
    assert fabric_network.committed_blocks()[leader] is None  # still dead: the two others ordered it

    crashes.restart()
    catch_up_seconds = catches_up(fabric_network, contracts)
    print(f"{leader} started again and caught up in {catch_up_seconds:.2f} s")
    record_property("catch_up_seconds", catch_up_seconds)
