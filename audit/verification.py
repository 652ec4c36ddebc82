"""Checking a copy of the access log (the mirror, or an export file) against the ledger.

A copy passes when
- every event in it is on the ledger, unchanged, in the batch, transaction and block it claims, that
  transaction committed as valid;
- it is complete: it holds every ledger event of its scope and nothing else, in the export's order (time,
  batch, position). The scope of an export's copy is its manifest's: the export's filters, before the time it
  was asked for (audit.manifests, checked against the ledger's entry of the export first); the mirror's is
  every event logged before the check starts;
- the chain itself checks out (the embedded ledger re-derives its hash chain, transactions, history and
  state; Fabric checks the block hash chain).
Without a scope completeness cannot be checked, and the answer says so and is not ok: a copy with rows
cut out holds nothing by which to notice.

Streaming: the copy is read once, in order; ledger batches are fetched once each (events of a batch are
contiguous in a copy ordered by time) and only the ids seen per batch are kept; then the ledger's events of
the scope are enumerated page by page (Contracts.query_access_events, by time, with the filters the
contract applies, the rest filtered here) and those of batches the copy never touched are named missing.
Memory holds the ids of the batches touched, not of the events, whatever the size of the copy. Only the
Contracts facade is used, so the check is the same on either backend. Problems name event ids and field
names only.
"""

from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.utils import timezone

from audit.models import EVENT_FIELDS
from audit.selectors import AccessEventFilters, mirror_rows
from chaincode.validation import format_timestamp
from health_platform import bootstrap
from ledger.contracts import Contracts

MAX_NAMED_PROBLEMS = 1000
_BATCH_CACHE = 4
LEDGER_PAGE = 2000
VALID = "VALID"
NO_MANIFEST = "completeness was not checked: no manifest"


@dataclass(frozen=True)
class EventProblem:
    """What is wrong with one event of a copy.

    kind: absent_from_ledger | changed | wrong_transaction | wrong_block | not_committed |
          missing_from_copy (a ledger event of the copy's scope that the copy does not hold) |
          out_of_scope (a ledger event the copy holds that its scope does not cover: another export's, a later one) |
          reordered (an event out of the export's order: time, batch, position) | duplicated
    """

    event_id: str
    kind: str
    fields: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {"event_id": self.event_id, "kind": self.kind, "fields": list(self.fields)}


@dataclass
class VerificationResult:
    """What a verification found. `ok` only when nothing is wrong AND completeness was checked.

    expected: the ledger's events in the copy's scope; manifest_count: what the manifest says the export holds
    (when there is one: it must be the ledger's number).
    """

    checked: int = 0
    problem_count: int = 0
    problems: list[EventProblem] = field(default_factory=list)
    chain_ok: bool = True
    chain: dict[str, Any] = field(default_factory=dict)
    completeness_checked: bool = False
    recorded_before: datetime | None = None
    expected: int | None = None
    manifest_count: int | None = None

    @property
    def count_ok(self) -> bool:
        return self.manifest_count is None or self.manifest_count == self.expected

    @property
    def found_wrong(self) -> bool:
        """Anything found wrong (named events, the chain, the manifest's count), completeness aside."""
        return self.problem_count > 0 or not self.chain_ok or not self.count_ok

    @property
    def ok(self) -> bool:
        return self.completeness_checked and not self.found_wrong

    def add(self, problem: EventProblem) -> None:
        self.problem_count += 1
        if len(self.problems) < MAX_NAMED_PROBLEMS:
            self.problems.append(problem)

    def message(self) -> str:
        """The verdict in plain words (counts and checks only)."""
        found = []
        if self.problem_count:
            found.append(f"{self.problem_count} problem{'s' if self.problem_count != 1 else ''} found")
        if not self.chain_ok:
            found.append("the chain does not verify")
        if not self.count_ok:
            found.append(f"the manifest counts {self.manifest_count} events, the ledger {self.expected}")
        if not self.completeness_checked:
            found.append(NO_MANIFEST)
        if found:
            return "; ".join(found)
        return "verified: every event is on the ledger, unchanged, and the copy is complete and in order"

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "message": self.message(),
            "checked": self.checked,
            "problem_count": self.problem_count,
            "problems": [p.as_dict() for p in self.problems],
            "chain": self.chain,
            "completeness_checked": self.completeness_checked,
            "completeness": {
                "recorded_before": self.recorded_before.isoformat() if self.recorded_before else None,
                "expected": self.expected,
                "manifest_count": self.manifest_count,
            },
        }


@dataclass
class _Batch:
    recorded_at: str
    tx_id: str
    events: dict[str, dict[str, Any]]
    positions: dict[str, int]
    seen: set[str] = field(default_factory=set)
    again: bool = False  # met again after the copy had left it: what it lacks was named the first time

    @property
    def moment(self) -> datetime:
        return _moment(self.recorded_at)


@dataclass(frozen=True)
class _Place:
    """Where an event is in the export's order, as the ledger says (not as the copy claims)."""

    moment: datetime
    batch_id: str
    position: int


def events_verify(
    events: Iterable[dict[str, Any]],
    *,
    filters: AccessEventFilters | None = None,
    expected_count: int | None = None,
    check_chain: bool = True,
) -> VerificationResult:
    """Verify a copy: `events` are dicts with the event fields plus batch_id, position,
    recorded_at (RFC 3339 text), tx_id and block_number, as exports and the mirror hold them.

    `filters` is the copy's scope: the copy must hold every ledger event under them, and no other, in order
    (give an `until`, or events logged since the copy was made count as missing). Without a scope the result
    says completeness_checked: false and is not ok. `expected_count` is the manifest's count, if any.
    """
    contracts = bootstrap.contracts()
    result = VerificationResult(
        completeness_checked=filters is not None,
        recorded_before=filters.until if filters is not None else None,
        manifest_count=expected_count,
    )
    batches: OrderedDict[str, _Batch | None] = OrderedDict()
    locations: dict[str, tuple[int | None, str] | None] = {}
    touched: set[str] = set()
    previous: _Place | None = None
    for event in events:
        result.checked += 1
        event_id = str(event.get("event_id") or "")
        batch_id = str(event.get("batch_id") or "")
        touched_before, split = batch_id in touched, False
        if batch_id not in batches:
            if touched_before:
                result.add(EventProblem(event_id, "duplicated", ("batch_id",)))  # a batch split across the copy
                split = True
            touched.add(batch_id)
            batches[batch_id] = _fetch(contracts, batch_id, again=touched_before)
            while len(batches) > _BATCH_CACHE:
                _, evicted = batches.popitem(last=False)
                _finish(evicted, filters, result)
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
        place = _Place(batch.moment, batch_id, batch.positions[event_id])
        if previous is not None and not split and not _in_order(previous, place, touched_before=touched_before):
            result.add(EventProblem(event_id, "reordered"))
        previous = place
        if filters is not None and not filters.matches(stored, place.moment):
            result.add(EventProblem(event_id, "out_of_scope"))
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
    for batch in batches.values():
        _finish(batch, filters, result)
    if filters is not None:
        result.expected = _untouched_named(contracts, filters, touched, result)
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


def _fetch(contracts: Contracts, batch_id: str, *, again: bool = False) -> _Batch | None:
    entry = contracts.read_access_batch(batch_id) if batch_id else None
    if entry is None:
        return None
    events = {e["event_id"]: e for e in entry.events}
    positions = {e["event_id"]: index for index, e in enumerate(entry.events)}
    return _Batch(entry.recorded_at, entry.tx_id, events, positions, again=again)


def _in_order(previous: _Place, place: _Place, *, touched_before: bool) -> bool:
    """Whether `place` may follow `previous` in an export: later positions within a batch; a new batch not
    earlier in time and not one the copy has already left. Batches logged at the same instant may come in
    either order (an export orders them by batch id, which the database may collate otherwise than here)."""
    if place.batch_id == previous.batch_id:
        return place.position > previous.position
    return place.moment >= previous.moment and not touched_before


def _finish(batch: _Batch | None, filters: AccessEventFilters | None, result: VerificationResult) -> None:
    """Name the ledger events of a touched batch that the copy should hold but does not."""
    if batch is None or filters is None or batch.again:
        return
    recorded_at = batch.moment
    for event_id, stored in batch.events.items():
        if event_id not in batch.seen and filters.matches(stored, recorded_at):
            result.add(EventProblem(event_id, "missing_from_copy"))
    batch.events.clear()


def _untouched_named(
    contracts: Contracts, filters: AccessEventFilters, touched: set[str], result: VerificationResult
) -> int:
    """Name every ledger event under `filters` in a batch the copy never touched; return how many events the
    ledger holds under `filters` (the events of touched batches were named by _finish)."""
    expected = 0
    for event in ledger_events_under(contracts, filters):
        expected += 1
        if event["batch_id"] not in touched:
            result.add(EventProblem(str(event["event_id"]), "missing_from_copy"))
    return expected


def ledger_events_under(contracts: Contracts, filters: AccessEventFilters) -> Iterator[dict[str, Any]]:
    """The ledger's events under `filters`, oldest first, page by page: the contract applies the patient,
    grantee, request and time filters, the others are applied here."""
    bookmark = ""
    while True:
        page = contracts.query_access_events(
            limit=LEDGER_PAGE,
            bookmark=bookmark,
            patient_pseudonym=filters.patient_pseudonym,
            grantee=filters.grantee,
            request_id=filters.request_id,
            since=format_timestamp(filters.since) if filters.since is not None else "",
            until=format_timestamp(filters.until) if filters.until is not None else "",
        )
        for event in page.events:
            if filters.matches(event, _moment(event["recorded_at"])):
                yield event
        bookmark = page.bookmark
        if not bookmark:
            return


def _moment(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _as_int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def mirror_verify(*, filters: AccessEventFilters | None = None) -> VerificationResult:
    """Verify the audit mirror (all of it, or what `filters` select) against the ledger, completeness included.

    The mirror is written after the ledger commits (audit.log), so it is complete only if every such write
    happened: a process that dies between the two, or a mirror insert that fails and is never retried, leaves
    a batch on the ledger that the mirror (and every export made from it) lacks. The check therefore
    enumerates the ledger up to the moment it starts. A batch being logged at that very moment (committed,
    its mirror rows not yet written) is named missing: check again. So is a batch of an analysis still running,
    whose accesses are mirrored once the analysis is done (analytics.pipeline.analysis_access_mirror).
    """
    scope = (filters or AccessEventFilters()).bounded_by(timezone.now())
    return events_verify(mirror_rows(scope), filters=scope)
