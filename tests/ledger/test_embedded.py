"""The embedded ledger: MVCC, the hash-chained block log, verify(), durability and concurrency."""

import json
import sqlite3
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from benchmarks.faults import LedgerLock
from chaincode.library import Contract, ContractChaincode, TransactionContext
from ledger import ContractRejected, LedgerUnavailable, TransactionConflict, open_ledger
from ledger.embedded import MVCC_READ_CONFLICT, PHANTOM_READ_CONFLICT, EmbeddedLedger
from ledger.errors import error_from_response

REPO = Path(__file__).resolve().parents[2]
PSEUDONYM = "a" * 64


def sha(n: int) -> str:
    return format(n, "064x")


@pytest.fixture
def chain(tmp_path):
    ledger = EmbeddedLedger(tmp_path / "ledger.sqlite3")
    yield ledger
    ledger.close()


def edit(path: Path, sql: str, *parameters) -> None:
    """Change the ledger file behind the ledger's back, as an attacker with file access would."""
    connection = sqlite3.connect(path)
    with connection:
        changed = connection.execute(sql, parameters).rowcount
    connection.close()
    assert changed == 1


def anchor_key(record_id: str) -> bytes:
    return f"\x00anchor\x00{record_id}\x00".encode()


def test_second_of_two_conflicting_transactions_is_rejected_and_nothing_of_it_commits(chain):
    first = chain.simulate("anchors", "AnchorRecord", "rec-1", PSEUDONYM, sha(1), "1")
    second = chain.simulate("anchors", "AnchorRecord", "rec-1", PSEUDONYM, sha(2), "1")
    committed = chain.commit(first)
    with pytest.raises(TransactionConflict):
        chain.commit(second)

    assert chain.evaluate("anchors", "ReadAnchor", "rec-1").json()["sha256"] == sha(1)
    history = chain.evaluate("anchors", "AnchorHistory", "rec-1").json()
    assert [entry["tx_id"] for entry in history] == [committed.tx_id]
    rejected = chain.transaction(second.tx_id)
    assert rejected["status"] == MVCC_READ_CONFLICT
    assert rejected["block_number"] == committed.block_number + 1
    assert chain.verify().ok


class _RacedLedger(EmbeddedLedger):
    """Lets another client commit between this client's simulation and its commit, once."""

    racer_tx_id = None

    def commit(self, simulation):
        if self.racer_tx_id is None:
            racer = EmbeddedLedger(self.path)
            self.racer_tx_id = racer.submit("anchors", "AnchorRecord", "rec-1", PSEUDONYM, sha(1), "1").tx_id
            racer.close()
        return super().commit(simulation)


def test_submit_re_simulates_after_a_conflict_and_succeeds_on_fresh_state(tmp_path):
    chain = _RacedLedger(tmp_path / "raced.sqlite3")
    receipt = chain.submit("anchors", "AnchorRecord", "rec-1", PSEUDONYM, sha(1), "1")
    statuses = [
        chain.transaction(chain.block_summary(n).transactions[0].tx_id)["status"] for n in range(1, chain.height())
    ]
    # racer's anchor, our invalidated first attempt, our re-simulated retry
    assert statuses == ["VALID", MVCC_READ_CONFLICT, "VALID"]
    # The retry found the racer's identical anchor and wrote nothing new: one anchor, the racer's.
    assert receipt.json()["tx_id"] == chain.racer_tx_id
    assert len(chain.evaluate("anchors", "AnchorHistory", "rec-1").json()) == 1


class _CounterContract(Contract):
    """A contract that reads a range, to exercise the phantom-read check."""

    Name = "counter"

    async def CountAndRecord(self, ctx: TransactionContext, name: str) -> str:
        stub = ctx.get_stub()
        seen = [kv.key async for kv in await stub.get_state_by_range("item:", "item;")]
        await stub.put_state(f"item:{name}", str(len(seen)).encode())
        return str(len(seen))


def test_a_range_read_changed_before_commit_is_a_phantom_conflict(tmp_path):
    chain = EmbeddedLedger(tmp_path / "phantom.sqlite3", chaincode=ContractChaincode.new_chaincode(_CounterContract()))
    first = chain.simulate("counter", "CountAndRecord", "a")
    second = chain.simulate("counter", "CountAndRecord", "b")
    chain.commit(first)
    with pytest.raises(TransactionConflict):
        chain.commit(second)
    assert chain.transaction(second.tx_id)["status"] == PHANTOM_READ_CONFLICT
    assert chain.submit("counter", "CountAndRecord", "b").payload == b"1"


def test_blocks_are_hash_chained(chain):
    chain.submit("anchors", "AnchorRecord", "rec-1", PSEUDONYM, sha(1), "1")
    chain.submit("anchors", "AnchorRecord", "rec-2", PSEUDONYM, sha(2), "1")
    blocks = [chain.block_summary(n) for n in range(chain.height())]
    assert [b.number for b in blocks] == [0, 1, 2]
    assert blocks[1].previous_hash == blocks[0].hash
    assert blocks[2].previous_hash == blocks[1].hash
    assert len(blocks[2].transactions) == 1


@pytest.fixture
def used_chain(chain):
    chain.submit("anchors", "AnchorRecord", "rec-1", PSEUDONYM, sha(1), "1")
    chain.submit("anchors", "AnchorRecord", "rec-2", PSEUDONYM, sha(2), "1")
    chain.submit("anchors", "AnchorRecord", "rec-1", PSEUDONYM, sha(3), "2")
    return chain


def test_verify_reports_a_clean_ledger_as_clean(used_chain):
    report = used_chain.verify()
    assert report.ok
    assert report.problems == ()
    assert report.height == 4
    assert report.transactions == 3


def test_verify_reports_an_edited_block(used_chain):
    edit(used_chain.path, "UPDATE blocks SET created_at = '2020-01-01T00:00:00Z' WHERE number = 2")
    problems = used_chain.verify().problems
    assert ("block", "2", "hash does not match the block's contents") in [(p.kind, p.ref, p.detail) for p in problems]


def test_verify_reports_a_block_whose_hash_was_recomputed_by_the_chain_link(used_chain):
    edit(used_chain.path, "UPDATE blocks SET hash = ? WHERE number = 1", "f" * 64)
    refs = {(p.kind, p.ref) for p in used_chain.verify().problems}
    assert ("block", "1") in refs
    assert ("block", "2") in refs  # its previous_hash no longer matches


def test_verify_reports_an_edited_transaction(used_chain):
    tx_id = used_chain.block_summary(2).transactions[0].tx_id
    edit(used_chain.path, "UPDATE transactions SET args = ? WHERE tx_id = ?", json.dumps(["rec-9"]), tx_id)
    problems = used_chain.verify().problems
    assert [(p.kind, p.ref) for p in problems] == [("transaction", tx_id)]


def test_verify_reports_an_edited_transaction_even_with_its_hash_recomputed(used_chain):
    tx_id = used_chain.block_summary(2).transactions[0].tx_id
    edit(used_chain.path, "UPDATE transactions SET hash = ? WHERE tx_id = ?", "0" * 64, tx_id)
    refs = {(p.kind, p.ref) for p in used_chain.verify().problems}
    assert ("block", "2") in refs  # the block's data hash no longer matches


def test_verify_reports_an_edited_state_row(used_chain):
    edit(used_chain.path, "UPDATE state SET value = ? WHERE key = ?", b'{"sha256":"forged"}', anchor_key("rec-2"))
    problems = used_chain.verify().problems
    assert [(p.kind, p.detail) for p in problems] == [("state", "state row differs from the block log")]
    assert "rec-2" in problems[0].ref


def test_verify_reports_a_deleted_and_an_inserted_state_row(used_chain):
    edit(used_chain.path, "DELETE FROM state WHERE key = ?", anchor_key("rec-2"))
    edit(used_chain.path, "INSERT INTO state VALUES (?, ?, 1, 0)", anchor_key("rec-x"), b"{}")
    details = sorted(p.detail for p in used_chain.verify().problems if p.kind == "state")
    assert details == ["state row is missing", "state row written by no transaction"]


def test_verify_reports_an_edited_history_row(used_chain):
    edit(used_chain.path, "UPDATE history SET value = ? WHERE key = ? AND block_number = 1", b"{}", anchor_key("rec-1"))
    assert [p.kind for p in used_chain.verify().problems] == ["history"]


def test_the_edited_state_is_what_contracts_would_read_so_verify_is_the_guard(used_chain):
    """An attacker's edit to state changes what a contract reads; verify() is what catches it."""
    edit(used_chain.path, "DELETE FROM state WHERE key = ?", anchor_key("rec-2"))
    assert not used_chain.verify().ok


def _run(code: str, ledger_path: Path) -> subprocess.CompletedProcess:
    script = textwrap.dedent(code)
    return subprocess.run(
        [sys.executable, "-c", script, str(ledger_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )


def test_state_and_history_survive_a_process_restart(tmp_path):
    path = tmp_path / "durable.sqlite3"
    _run(
        """
        import sys
        from ledger.embedded import EmbeddedLedger
        chain = EmbeddedLedger(sys.argv[1])
        chain.submit("anchors", "AnchorRecord", "rec-1", "a" * 64, "1" * 64, "1")
        chain.submit("anchors", "AnchorRecord", "rec-1", "a" * 64, "2" * 64, "2")
    """,
        path,
    )
    reopened = EmbeddedLedger(path)
    assert reopened.evaluate("anchors", "ReadAnchor", "rec-1").json()["version"] == 2
    assert len(reopened.evaluate("anchors", "AnchorHistory", "rec-1").json()) == 2
    assert reopened.height() == 3
    assert reopened.verify().ok


def test_two_processes_writing_at_once_lose_no_transaction(tmp_path):
    path = tmp_path / "shared.sqlite3"
    EmbeddedLedger(path).close()
    writer = textwrap.dedent("""
        import json, sys
        from ledger.embedded import EmbeddedLedger
        chain = EmbeddedLedger(sys.argv[1])
        name = sys.argv[2]
        for i in range(60):
            chain.submit("anchors", "AnchorRecord", f"{name}-{i}", "a" * 64, format(i, "064x"), "1")
            chain.submit("accesslog", "AppendAccessEvents", json.dumps({"batch_id": f"{name}-b{i}", "events": [{
                "event_id": f"{name}-e{i}", "kind": "record_access", "record_id": f"{name}-{i}",
                "patient_pseudonym": "a" * 64, "grantee": "clinician:alice", "purpose": "research",
                "decision": "admit"}]}))
        print("done")
    """)
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", writer, str(path), name],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("web", "worker")
    ]
    outputs = [p.communicate(timeout=240) for p in processes]
    assert [p.returncode for p in processes] == [0, 0], outputs

    chain = EmbeddedLedger(path)
    for name in ("web", "worker"):
        for i in range(60):
            assert chain.evaluate("anchors", "ReadAnchor", f"{name}-{i}").json()["sha256"] == format(i, "064x")
    events = chain.evaluate("accesslog", "QueryAccessEvents", json.dumps({"grantee": "clinician:alice"})).json()
    assert events["bookmark"] == ""
    assert len(events["events"]) == 120
    assert chain.height() == 1 + 240
    assert chain.verify().ok


def test_an_unreachable_ledger_file_raises_ledger_unavailable(tmp_path):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    with pytest.raises(LedgerUnavailable):
        open_ledger(f"embedded://{blocker / 'ledger.sqlite3'}")


def test_open_ledger_refuses_an_unknown_backend():
    with pytest.raises(ValueError, match="unknown ledger backend"):
        open_ledger("carrier-pigeon://somewhere")


def test_locate_finds_the_block_and_status_of_a_committed_transaction(chain):
    receipt = chain.submit("anchors", "AnchorRecord", "rec-1", PSEUDONYM, sha(1), "1")
    location = chain.locate(receipt.tx_id)
    assert (location.block_number, location.status) == (receipt.block_number, "VALID")
    assert chain.locate("f" * 64) is None


def test_transaction_hashes_are_computed_over_the_same_text_as_before_orjson():
    """_canonical's fast path (orjson) must give json.dumps' ASCII text byte for byte, or old
    transactions would no longer verify."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from ledger.embedded import _canonical

    leaves = st.none() | st.integers(min_value=-(2**70), max_value=2**70) | st.text()
    values = st.recursive(leaves, lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner), max_leaves=25)

    @settings(max_examples=600, deadline=None)
    @given(values)
    def same_text(value):
        assert _canonical(value) == json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)

    same_text()
    for tricky in ["\x7f", "caf\u00e9", "\U0001f600", "\ud800", "\x00\x1f", 2**80]:
        assert _canonical([tricky]) == json.dumps([tricky], sort_keys=True, separators=(",", ":"), ensure_ascii=True)


@pytest.fixture
def locked(tmp_path):
    """An embedded ledger with committed state, and a lock on it held by another process (taken in the test)."""
    chain = EmbeddedLedger(tmp_path / "ledger.sqlite3", busy_timeout_seconds=0.5)
    chain.submit("anchors", "AnchorModel", "m", "1", "a" * 64)
    lock = LedgerLock(chain.path)
    yield chain, lock
    lock.release()


LEDGER_CALLS = {
    "evaluate (a read inside the contract)": lambda chain: chain.evaluate("anchors", "ReadModelAnchor", "m", "1"),
    "submit": lambda chain: chain.submit("anchors", "AnchorModel", "n", "1", "b" * 64),
    "height": lambda chain: chain.height(),
    "block_summary": lambda chain: chain.block_summary(1),
    "transaction": lambda chain: chain.transaction("x"),
    "locate": lambda chain: chain.locate("x"),
    "verify": lambda chain: chain.verify(),
}


def test_a_locked_ledger_is_unavailable_on_every_call_never_a_contract_refusal_and_heals(locked):
    """A storage fault raised inside the contract's state read used to come back as the contract's error
    response (ContractRejected); every call now says LedgerUnavailable, and works once the lock is gone."""
    chain, lock = locked
    lock.take()
    with ThreadPoolExecutor(len(LEDGER_CALLS)) as pool:  # SQLite's WAL read retries take ~10 s per call
        answers = pool.map(_outcome, [(call, chain) for call in LEDGER_CALLS.values()])
        outcomes = dict(zip(LEDGER_CALLS, answers, strict=True))
    assert outcomes == dict.fromkeys(LEDGER_CALLS, "LedgerUnavailable")
    lock.release()
    assert chain.evaluate("anchors", "ReadModelAnchor", "m", "1").json()["sha256"] == "a" * 64
    assert LEDGER_CALLS["submit"](chain).status == "VALID"
    assert chain.verify().ok


def _outcome(call_and_chain):  # type: ignore[no-untyped-def]
    call, chain = call_and_chain
    try:
        call(EmbeddedLedger(chain.path, busy_timeout_seconds=0.5))  # a connection of its own, as each process has
    except Exception as error:
        return type(error).__name__
    return "answered"


def test_a_contract_refusal_stays_a_refusal(chain):
    with pytest.raises(ContractRejected) as refused:
        chain.evaluate("anchors", "ReadModelAnchor", "never", "1")
    assert refused.value.code == "not_found"
    assert not isinstance(refused.value, LedgerUnavailable)


@pytest.mark.parametrize("code", ["peer_error", "ledger_unavailable"])
def test_a_storage_fault_reported_by_the_chaincode_is_unavailable_not_rejected(code):
    assert isinstance(error_from_response(f"{code}: the peer refused GET_STATE"), LedgerUnavailable)
    assert isinstance(error_from_response("not_found: no anchor"), ContractRejected)
