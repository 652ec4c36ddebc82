"""What every LedgerClient backend does alike: one suite, run on the embedded ledger and on a real
Fabric network (tests/fabric/network.py; skipped without FABRIC_BIN_DIR).

Fabric keeps state for the whole session, so every id here is unique to the test (tests.chaincode.conftest
helpers). Embedded-only behaviour (the SQLite file, tampering, processes) is in test_embedded.py.
"""

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ledger import ContractRejected, LedgerClient
from tests.chaincode.conftest import digest, ident, namespace, pseudonym, revoke_document
from tests.fabric.network import BACKENDS, shared_network

__all__ = ["namespace"]  # the autouse fixture that makes ident/pseudonym/digest unique to each test


@dataclass
class Backend:
    """A backend under test: `client` for the test, `connect()` for more clients of the same ledger."""

    kind: str
    client: LedgerClient
    connect: Callable[[], LedgerClient]


@pytest.fixture(params=BACKENDS)
def backend(request, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "embedded":
        from ledger.embedded import EmbeddedLedger

        path = tmp_path / "chain.sqlite3"

        def connect() -> LedgerClient:
            return EmbeddedLedger(path)
    else:
        connect = shared_network(request).open_ledger
    opened: list[LedgerClient] = []

    def tracked() -> LedgerClient:
        client = connect()
        opened.append(client)
        return client

    yield Backend(kind=request.param, client=tracked(), connect=tracked)
    for client in opened:
        client.close()


def anchor_args(record: str, version: int = 1, content: int = 1) -> tuple[str, ...]:
    return (ident(record), pseudonym(1), digest(content), str(version))


def test_submit_returns_a_committed_receipt_that_locate_finds(backend):
    receipt = backend.client.submit("anchors", "AnchorRecord", *anchor_args("rec-1"))
    assert receipt.status == "VALID"
    assert isinstance(receipt.block_number, int)
    assert receipt.block_number >= 1
    assert receipt.tx_id
    assert receipt.json()["tx_id"] == receipt.tx_id
    location = backend.client.locate(receipt.tx_id)
    assert (location.tx_id, location.block_number, location.status) == (receipt.tx_id, receipt.block_number, "VALID")


def test_a_committed_transaction_is_read_by_every_client_at_once(backend):
    backend.client.submit("anchors", "AnchorRecord", *anchor_args("rec-1"))
    other = backend.connect()
    assert other.evaluate("anchors", "ReadAnchor", ident("rec-1")).json()["sha256"] == digest(1)


def test_locate_of_an_unknown_transaction_is_none(backend):
    assert backend.client.locate("f" * 64) is None


def test_evaluate_answers_and_records_nothing(backend):
    height = backend.client.height()
    answer = backend.client.evaluate("anchors", "AnchorRecord", *anchor_args("rec-1"))
    assert answer.status == "EVALUATED"
    assert answer.block_number is None
    assert answer.json()["record_id"] == ident("rec-1")
    assert backend.client.height() == height
    assert backend.client.locate(answer.tx_id) is None
    with pytest.raises(ContractRejected) as missing:
        backend.client.evaluate("anchors", "ReadAnchor", ident("rec-1"))
    assert missing.value.code == "not_found"


@pytest.mark.parametrize("call", ["submit", "evaluate"])
def test_a_contract_refusal_is_contract_rejected_with_the_contract_code_and_writes_nothing(backend, call):
    height = backend.client.height()
    with pytest.raises(ContractRejected) as refused:
        getattr(backend.client, call)("anchors", "AnchorRecord", ident("rec-1"), pseudonym(1), "not-a-hash", "1")
    assert refused.value.code == "invalid_argument"
    assert "sha256 must be 64" in refused.value.message
    revocation = json.dumps(revoke_document(ident("no-such-consent"), pseudonym(1)))
    with pytest.raises(ContractRejected) as unknown:
        getattr(backend.client, call)("consent", "RevokeConsent", revocation, "")
    assert unknown.value.code == "not_found"
    assert backend.client.height() == height


def test_an_unknown_function_is_rejected(backend):
    with pytest.raises(ContractRejected):
        backend.client.evaluate("anchors", "NoSuchFunction", "x")


def at_once(work, count: int) -> list[BaseException]:
    """Run work(0) ... work(count - 1) on as many threads, released together; returns what they raised."""
    start = threading.Barrier(count)
    errors: list[BaseException] = []

    def run(index: int) -> None:
        start.wait()
        try:
            work(index)
        except BaseException as error:  # reported to the caller, with the others
            errors.append(error)

    threads = [threading.Thread(target=run, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return errors


def test_conflicting_concurrent_submits_are_retried_until_each_commits(backend):
    """Every client reads and writes the same key at once; the conflicts among them are retried on
    fresh state, so each submit returns committed and the record is anchored exactly once."""
    clients = [backend.connect() for _ in range(4)]
    receipts: list = [None] * len(clients)

    def anchor(index: int) -> None:
        receipts[index] = clients[index].submit("anchors", "AnchorRecord", *anchor_args("rec-1"))

    assert at_once(anchor, len(clients)) == []
    assert {receipt.status for receipt in receipts} == {"VALID"}
    anchored = {receipt.json()["tx_id"] for receipt in receipts}
    assert len(anchored) == 1
    history = backend.client.evaluate("anchors", "AnchorHistory", ident("rec-1")).json()
    assert [entry["tx_id"] for entry in history] == list(anchored)


def test_concurrent_submits_to_different_keys_all_commit(backend):
    clients = [backend.connect() for _ in range(4)]

    def anchor(index: int) -> None:
        for version in range(3):
            clients[index].submit("anchors", "AnchorRecord", *anchor_args(f"rec-{index}", version + 1, version))

    assert at_once(anchor, len(clients)) == []
    for index in range(len(clients)):
        assert backend.client.evaluate("anchors", "ReadAnchor", ident(f"rec-{index}")).json()["version"] == 3


def test_height_block_summary_and_verify_agree(backend):
    first = backend.client.submit("anchors", "AnchorRecord", *anchor_args("rec-1"))
    second = backend.client.submit("anchors", "AnchorRecord", *anchor_args("rec-2"))
    height = backend.client.height()
    assert second.block_number > first.block_number
    assert height >= second.block_number + 1

    summary = backend.client.block_summary(second.block_number)
    assert summary.number == second.block_number
    mine = [t for t in summary.transactions if t.tx_id == second.tx_id]
    assert [(t.status, t.contract, t.function) for t in mine] == [("VALID", "anchors", "AnchorRecord")]
    previous = backend.client.block_summary(second.block_number - 1)
    assert summary.previous_hash == previous.hash
    assert backend.client.block_summary(height) is None
    assert backend.client.block_summary(-1) is None

    report = backend.client.verify()
    assert report.ok, report.problems
    assert report.height == backend.client.height()
    assert report.transactions >= 2


def test_block_summaries_carry_ids_and_codes_never_arguments(backend):
    receipt = backend.client.submit("anchors", "AnchorRecord", *anchor_args("rec-1"))
    summary = backend.client.block_summary(receipt.block_number)
    assert pseudonym(1) not in repr(summary)
    assert digest(1) not in repr(summary)
