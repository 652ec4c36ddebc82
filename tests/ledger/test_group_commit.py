"""ledger.group_commit.GroupCommit: concurrent calls share batches; each caller gets its own result or refusal;
a batch's fault is every item's; one key is never in two places at once; a caller alone is sent at once, in its
own thread."""

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from ledger.group_commit import GroupCommit

FAULT = 1013  # an item whose batch the runner cannot send


class Recorder:
    """A batch runner that takes `seconds`, records its batches and the thread that sent each, and answers each
    item doubled (an int), a ValueError for an item < 0, or raises for a batch holding FAULT."""

    def __init__(self, seconds: float = 0.05):
        self.seconds = seconds
        self.batches: list[list[int]] = []
        self.threads: list[int] = []
        self.lock = threading.Lock()
        self.in_flight: set[int] = set()
        self.overlaps: list[int] = []

    def __call__(self, items: list[tuple[str, int]]) -> list[int | BaseException]:
        keys = {key for key, _ in items}
        with self.lock:
            self.batches.append([value for _, value in items])
            self.threads.append(threading.get_ident())
            self.overlaps += sorted(keys & self.in_flight)
            self.in_flight |= keys
        try:
            time.sleep(self.seconds)
            if any(value == FAULT for _, value in items):
                raise ConnectionError("the ledger is away")
            return [ValueError(f"{value} refused") if value < 0 else value * 2 for _, value in items]
        finally:
            with self.lock:
                self.in_flight -= keys


def group(runner: Recorder, **options) -> GroupCommit:
    return GroupCommit(runner, key=lambda item: item[0], **{"max_items": 8, "senders": 2, **options})


def test_a_caller_alone_is_sent_at_once_in_its_own_thread():
    runner = Recorder(seconds=0)
    commit = group(runner)
    started = time.monotonic()
    assert commit.call(("p1", 21)) == 42
    assert time.monotonic() - started < 0.05
    assert runner.batches == [[21]]
    assert runner.threads == [threading.get_ident()]


def test_concurrent_callers_share_batches_and_each_gets_its_own_result():
    runner = Recorder()
    commit = group(runner)
    with ThreadPoolExecutor(32) as pool:
        results = list(pool.map(lambda n: commit.call((f"p{n}", n)), range(64)))
    assert results == [n * 2 for n in range(64)]
    assert sorted(value for batch in runner.batches for value in batch) == list(range(64))
    assert len(runner.batches) < 64 / 2  # shared: far fewer transactions than calls
    assert max(map(len, runner.batches)) <= 8


def test_a_refused_item_is_its_callers_alone():
    runner = Recorder()
    commit = group(runner)
    with ThreadPoolExecutor(8) as pool:
        futures = {n: pool.submit(commit.call, (f"p{n}", n)) for n in (-1, 1, 2, 3)}
        with pytest.raises(ValueError, match="-1 refused"):
            futures[-1].result()
        assert [futures[n].result() for n in (1, 2, 3)] == [2, 4, 6]


def test_a_batchs_fault_is_every_item_of_that_batch_and_only_of_it():
    runner = Recorder(seconds=0.2)
    commit = group(runner, senders=1)
    with ThreadPoolExecutor(8) as pool:
        first = pool.submit(commit.call, ("p0", 0))
        time.sleep(0.05)  # the first batch is on its way: the next ones wait and leave together
        futures = [pool.submit(commit.call, (f"p{n}", n)) for n in (12, FAULT, 14)]
        assert first.result() == 0
        for future in futures:
            with pytest.raises(ConnectionError):
                future.result()
    assert [sorted(batch) for batch in runner.batches] == [[0], [12, 14, FAULT]]
    assert commit.call(("p1", 1)) == 2  # and the group goes on


def test_one_key_never_travels_twice_in_a_batch_nor_in_two_batches_at_once():
    runner = Recorder(seconds=0.02)
    commit = group(runner, senders=4)
    with ThreadPoolExecutor(24) as pool:
        results = list(pool.map(lambda n: commit.call((f"p{n % 3}", n)), range(24)))
    assert results == [n * 2 for n in range(24)]
    assert all(len({value % 3 for value in batch}) == len(batch) for batch in runner.batches)
    assert runner.overlaps == []


def test_a_runner_answering_the_wrong_number_of_results_fails_the_batch():
    commit = GroupCommit(lambda items: [], key=lambda item: item, max_items=4)
    with pytest.raises(RuntimeError, match="0 results for 1 items"):
        commit.call("p1")


# --- the platform's grants, on the embedded ledger -----------------------------------------------------------------
def test_patients_granting_at_once_share_transactions_and_each_gets_their_own_consents_or_refusal(tmp_path):
    from datetime import UTC, datetime, timedelta

    from health_platform.software_passkey import SoftwarePasskey, SoftwareSigner
    from ledger import ContractRejected
    from ledger.contracts import ConsentGrant, Contracts, grant_document
    from ledger.embedded import EmbeddedLedger

    chain = EmbeddedLedger(tmp_path / "chain.sqlite3")
    contracts = Contracts(chain, group_grants=True)
    signer = SoftwareSigner(contracts)
    patients = [f"{n:064x}" for n in range(24)]
    for patient in patients:
        signer.passkey(patient)
    now = datetime.now(UTC)
    stamp = "%Y-%m-%dT%H:%M:%SZ"

    def grant(index: int):
        terms = ConsentGrant(
            consent_id=f"c-{index}",
            grantee="clinician:alice",
            purposes=["treatment"],
            categories=["imaging"],
            valid_from=(now - timedelta(minutes=1)).strftime(stamp),
            valid_until=(now + timedelta(days=1)).strftime(stamp),
        )
        document = grant_document(patients[index], [terms], issued_at=now.strftime(stamp))
        passkey = SoftwarePasskey() if index == 7 else signer.passkey(patients[index])  # 7: not the patient's key
        return contracts.grant_consents(document, passkey.sign(document))

    with ThreadPoolExecutor(24) as pool:
        futures = [pool.submit(grant, index) for index in range(24)]
        with pytest.raises(ContractRejected) as refused:
            futures[7].result()
        granted = {index: futures[index].result() for index in range(24) if index != 7}
    assert refused.value.code == "unknown_key"
    assert {index: [c.consent_id for c in consents] for index, consents in granted.items()} == {
        index: [f"c-{index}"] for index in granted
    }
    assert all(contracts.read_consent(patients[i], f"c-{i}", with_blocks=False) is not None for i in granted)
    assert contracts.read_consent(patients[7], "c-7", with_blocks=False) is None
    transactions = {consent.granted_tx_id for consents in granted.values() for consent in consents}
    assert len(transactions) < len(granted)  # shared
    chain.close()


def test_an_item_whose_key_cannot_be_taken_fails_its_own_caller_and_no_other():
    runner = Recorder(seconds=0)
    commit = GroupCommit(runner, key=lambda item: item[0].lower(), max_items=8)
    with pytest.raises(AttributeError):
        commit.call((None, 1))
    assert commit.call(("P1", 2)) == 4
    assert runner.batches == [[2]]


def test_the_group_of_a_client_does_not_keep_the_client_alive(tmp_path):
    import gc
    import weakref

    from ledger.contracts import Contracts
    from ledger.embedded import EmbeddedLedger

    chain = EmbeddedLedger(tmp_path / "chain.sqlite3")
    contracts = Contracts(chain, group_grants=True)
    with pytest.raises(Exception):  # noqa: B017, PT011 - any refusal: only the group's creation matters here
        contracts.grant_consents({"patient_pseudonym": "p"}, {})
    assert Contracts._grant_groups.get(chain) is not None
    gone = weakref.ref(chain)
    chain.close()
    del chain, contracts
    gc.collect()
    assert gone() is None
