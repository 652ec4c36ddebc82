"""Checking a copy of the access log (the mirror, or an export file) against the ledger.

A copy passes when every event in it is on the ledger, unchanged, in the batch, transaction and
block it claims, that transaction committed as valid; when no event of a batch it touches that
matches its filters is left out; and when the chain itself checks out (the embedded ledger
re-derives its hash chain, transactions, history and state; Fabric checks the block hash chain).

Streaming: the copy is read once, in order; ledger batches are fetched once each (events of a
batch are contiguous in a copy ordered by time) and only the ids seen per batch are kept, so
memory stays bounded whatever the size of the copy. Problems name event ids and field names only.
"""

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from audit.models import EVENT_FIELDS
from audit.selectors import AccessEventFilters, mirror_rows
from health_platform import bootstrap
from ledger.contracts import Contracts

MAX_NAMED_PROBLEMS = 1000
_BATCH_CACHE = 4
VALID = "VALID"


@dataclass(frozen=True)
class EventProblem:
    """What is wrong with one event of a copy.

    kind: absent_from_ledger | changed | wrong_transaction | wrong_block | not_committed |
          missing_from_copy | duplicated
    """

    event_id: str
    kind: str
    fields: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {"event_id": self.event_id, "kind": self.kind, "fields": list(self.fields)}


@dataclass
class VerificationResult:
    checked: int = 0
    problem_count: int = 0
    problems: list[EventProblem] = field(default_factory=list)
    chain_ok: bool = True
    chain: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.problem_count == 0 and self.chain_ok

    def add(self, problem: EventProblem) -> None:
        self.problem_count += 1
        if len(self.problems) < MAX_NAMED_PROBLEMS:
            self.problems.append(problem)

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "checked": self.checked,
            "problem_count": self.problem_count,
            "problems": [p.as_dict() for p in self.problems],
            "chain": self.chain,
        }


@dataclass
class _Batch:
    recorded_at: str
    tx_id: str
    events: dict[str, dict[str, Any]]
    positions: dict[str, int]
    seen: set[str] = field(default_factory=set)


def events_verify(
    events: Iterable[dict[str, Any]], *, filters: AccessEventFilters | None = None, check_chain: bool = True
) -> VerificationResult:
    """Verify a copy: `events` are dicts with the event fields plus batch_id, position,
    recorded_at (RFC 3339 text), tx_id and block_number, as exports and the mirror hold them."""
    contracts = bootstrap.contracts()
    result = VerificationResult()
    batches: OrderedDict[str, _Batch | None] = OrderedDict()
    locations: dict[str, tuple[int | None, str] | None] = {}
    finished: set[str] = set()
    for event in events:
        result.checked += 1
        event_id = str(event.get("event_id") or "")
        batch_id = str(event.get("batch_id") or "")
        if batch_id not in batches:
            if batch_id in finished:
                result.add(EventProblem(event_id, "duplicated", ("batch_id",)))  # a batch split across the copy
            batches[batch_id] = _fetch(contracts, batch_id)
            while len(batches) > _BATCH_CACHE:
                evicted_id, evicted = batches.popitem(last=False)
                _finish(evicted_id, evicted, filters, result)
                finished.add(evicted_id)
        batch = batches[batch_id]
        stored = batch.events.get(event_id) if batch is not None else None
        if batch is None or stored is None:
            result.add(EventProblem(event_id, "absent_from_ledger"))
            continue
        if event_id in batch.seen:
            result.add(EventProblem(event_id, "duplicated"))
            continue
        batch.seen.add(event_id)
        changed = [name for name in EVENT_FIELDS if (event.get(name) or None) != stored.get(name)]
        if str(event.get("recorded_at") or "") != batch.recorded_at:
            changed.append("recorded_at")
        if _as_int(event.get("position")) != batch.positions[event_id]:
            changed.append("position")
        if changed:
            result.add(EventProblem(event_id, "changed", tuple(changed)))
        if event.get("tx_id") != batch.tx_id:
            result.add(EventProblem(event_id, "wrong_transaction", ("tx_id",)))
            continue
        if batch.tx_id not in locations:
            location = contracts.locate(batch.tx_id)
            locations[batch.tx_id] = (location.block_number, location.status) if location is not None else None
        where = locations[batch.tx_id]
        if where is None or where[1] != VALID:
            result.add(EventProblem(event_id, "not_committed", ("tx_id",)))
        elif _as_int(event.get("block_number")) != where[0]:
            result.add(EventProblem(event_id, "wrong_block", ("block_number",)))
    for batch_id, batch in batches.items():
        _finish(batch_id, batch, filters, result)
    if check_chain:
        report = contracts.verify()
        result.chain_ok = report.ok
        result.chain = {
            "ok": report.ok,
            "height": report.height,
            "transactions": report.transactions,
            "problems": [{"kind": p.kind, "ref": p.ref, "detail": p.detail} for p in report.problems[:100]],
            "problem_count": len(report.problems),
        }
    return result


def _fetch(contracts: Contracts, batch_id: str) -> _Batch | None:
    entry = contracts.read_access_batch(batch_id) if batch_id else None
    if entry is None:
        return None
    events = {e["event_id"]: e for e in entry.events}
    positions = {e["event_id"]: index for index, e in enumerate(entry.events)}
    return _Batch(entry.recorded_at, entry.tx_id, events, positions)


def _finish(
    batch_id: str, batch: _Batch | None, filters: AccessEventFilters | None, result: VerificationResult
) -> None:
    """Name the ledger events of a touched batch that the copy should hold but does not."""
    if batch is None or filters is None:
        return
    recorded_at = datetime.fromisoformat(batch.recorded_at.replace("Z", "+00:00"))
    for event_id, stored in batch.events.items():
        if event_id not in batch.seen and filters.matches(stored, recorded_at):
            result.add(EventProblem(event_id, "missing_from_copy"))
    batch.events.clear()


def _as_int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def mirror_verify(*, filters: AccessEventFilters | None = None) -> VerificationResult:
    """Verify the audit mirror (all of it, or what `filters` select) against the ledger."""
    filters = filters or AccessEventFilters()
    return events_verify(mirror_rows(filters), filters=filters)
