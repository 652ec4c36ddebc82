"""The access log: one event per record per access, admitted or refused, appended in batches.

An event names who (grantee: a clinician, organisation or auditor id), what (record id, patient
pseudonym, data category), why (purpose, request id, model hash) and the decision with its reason. An export event (an
auditor exporting the log) carries the export's id as request id and the SHA-256 of the file. A read for
treatment (kind "record_read", purpose treatment) carries the consent that admitted it as consent_id; a read in an
emergency (kind "record_read", purpose emergency) carries the emergency declaration that allowed it as request_id.
The time and the transaction id are the transaction's.

Oversight events (kinds emergency_declared, emergency_review, alert, alert_triage) are written only by the
transaction that declares or reviews the emergency, or raises or triages the alert (chaincode.contracts.emergency,
chaincode.contracts.oversight), in a batch of their own: AppendAccessEvents refuses them, so the log cannot hold a
declaration the emergency state does not, or the other way round. Their request_id names the declaration or the
alert; their decision is theirs (declared; justified or unjustified; flagged; confirmed or dismissed); a
declaration's reason is its emergency reason.

Layout: a batch of events is ONE state entry, `access_batch/<batch_id>`, plus one index entry by
time and one per request id it names. On Fabric every state write is a round trip on the chaincode
stream, so per-event keys and indexes (5 writes per event) would make logging a 5,000-record batch
cost 25,000 round trips; this layout costs three. Searches by patient, grantee, model or decision
are served by the audit mirror, which is verified batch by batch against these entries.

Compact form: the fields every event of a batch shares (an analysis batch's grantee, purpose, request, model, kind...)
are written once, as the entry's `common`, and each event keeps only its own fields; the client may send a batch the
same way (`common` beside `events`). An analysis batch of 5,000 events (one in ten refused) is then 1.4 MB instead of
2.8 MB, both as the transaction's argument and as its write: what every endorser, orderer and peer carries and keeps.
Reads (ReadAccessBatch, QueryAccessEvents) answer whole events, whichever form an entry was written in, so the
mirror, exports and verification see the same events as before.

What became of the records a batch admitted is logged after the gate's decision, as events of kind
"outcome" in a batch of their own, `<batch_id>:outcome`: one for the batch (no record: computed, or not
computed and why) and one per admitted record whose outcome differs from the batch's (a record the custodian
could not read, say).

Batches are never changed: appending an identical batch again is a no-op that answers with the
original transaction (so a retried batch is logged once), a different batch under an existing
batch_id is refused. Event ids are unique within a batch; across batches they are unique by
construction (the analytics pipeline derives them from the request and the record).
"""

from typing import Any

from chaincode import state, validation
from chaincode.errors import AlreadyExists, InvalidArgument, NotFound
from chaincode.library import Contract, TransactionContext
from chaincode.vocabulary import (
    ACCESS_EVENT_FIELDS,
    AUDIT_PURPOSES,
    CATEGORIES,
    DECISIONS,
    EMERGENCY,
    EMERGENCY_REASONS,
    EVENT_KINDS,
    NOT_COMPUTED_REASONS,
    OUTCOMES,
    OVERSIGHT_DECISIONS,
    REFUSAL_REASONS,
)

BATCH = "access_batch"
BY_REQUEST = "access_by_request"
BY_TIME = "access_by_time"
_EVENT_FIELDS = set(ACCESS_EVENT_FIELDS)
# Events about one record, which must name it and its patient.
RECORD_KINDS = frozenset({"record_access", "record_read"})
TREATMENT = "treatment"
_REQUIRED_EVENT_FIELDS = {"event_id", "kind", "grantee", "purpose", "decision"}
_APPEND_FIELDS = {"batch_id", "events", "common"}
_APPEND_REQUIRED = {"batch_id", "events"}
# Kept in each event, never hoisted into `common`, even when a batch has one event.
_OWN_FIELDS = frozenset({"event_id"})
_QUERY_FIELDS = {"patient_pseudonym", "grantee", "request_id", "since", "until", "limit", "bookmark"}
DEFAULT_QUERY_LIMIT = 1000
MAX_QUERY_LIMIT = 10_000


def batch_key(stub: Any, batch_id: str) -> str:
    return stub.create_composite_key(BATCH, [batch_id])


class AccessLogContract(Contract):
    Name = "accesslog"

    def get_evaluate_transactions(self) -> list[str]:
        return ["ReadAccessBatch", "QueryAccessEvents"]

    async def AppendAccessEvents(self, ctx: TransactionContext, batch_json: str) -> str:
        """Append a batch of events in one transaction, as one state entry."""
        request = validation.json_argument(batch_json, "batch", dict)
        validation.only_fields(request, "batch", _APPEND_FIELDS, _APPEND_REQUIRED)
        batch_id = validation.identifier(request["batch_id"], "batch.batch_id")
        items = _with_common(request.get("common"), validation.object_list(request["events"], "batch.events"))
        for index, item in enumerate(items):
            if item.get("kind") in OVERSIGHT_DECISIONS:
                raise InvalidArgument(
                    f"batch.events[{index}].kind {item['kind']} is written by its own transaction only"
                )
        return state.dumps(await append_batch(ctx.get_stub(), batch_id, items, "batch.events")).decode()

    async def ReadAccessBatch(self, ctx: TransactionContext, batch_id: str) -> str:
        validation.identifier(batch_id, "batch_id")
        entry = await state.get_json(ctx.get_stub(), batch_key(ctx.get_stub(), batch_id))
        if entry is None:
            raise NotFound("no access batch with this batch_id")
        return state.dumps(whole(entry)).decode()

    async def QueryAccessEvents(self, ctx: TransactionContext, query_json: str) -> str:
        """Events by request (index) or by time, filtered by patient and grantee, in [since, until),
        oldest first; at most `limit` events per page and a `bookmark` to continue.

        Each event comes with its batch_id, its position in the batch, recorded_at and tx_id.
        """
        stub = ctx.get_stub()
        query = validation.json_argument(query_json, "query", dict)
        validation.only_fields(query, "query", _QUERY_FIELDS, set())
        filters: dict[str, str] = {}
        if query.get("patient_pseudonym"):
            filters["patient_pseudonym"] = validation.pseudonym(query["patient_pseudonym"], "query.patient_pseudonym")
        if query.get("grantee"):
            filters["grantee"] = validation.actor(query["grantee"], "query.grantee")
        request_id = validation.identifier(query["request_id"], "query.request_id") if query.get("request_id") else ""
        if request_id:
            filters["request_id"] = request_id
        since = _time_bound(query, "since")
        until = _time_bound(query, "until")
        limit = validation.positive_int(query.get("limit", DEFAULT_QUERY_LIMIT), "query.limit", MAX_QUERY_LIMIT)
        index_name, prefix = (BY_REQUEST, [request_id]) if request_id else (BY_TIME, [])
        start = stub.create_composite_key(index_name, [*prefix, since] if since else prefix)
        end = (
            stub.create_composite_key(index_name, [*prefix, until])
            if until
            else stub.create_composite_key(index_name, prefix) + state.MAX_RUNE
        )
        skip = 0
        if query.get("bookmark"):
            start, skip = _bookmark(query["bookmark"], start, end)

        events: list[dict[str, Any]] = []
        next_bookmark = ""
        async for key, _ in state.scan(stub, start, end):
            _, attributes = stub.split_composite_key(key)
            entry = await state.get_json(stub, batch_key(stub, attributes[-1]))
            if entry is None:
                continue
            entry = whole(entry)
            stamp = {"batch_id": entry["batch_id"], "recorded_at": entry["recorded_at"], "tx_id": entry["tx_id"]}
            for position, event in enumerate(entry["events"][skip:], start=skip):
                if any(event.get(name) != value for name, value in filters.items()):
                    continue
                if len(events) == limit:
                    next_bookmark = state.dumps([key, position]).decode()
                    break
                events.append({**event, **stamp, "position": position})
            skip = 0
            if next_bookmark:
                break
        return state.dumps({"events": events, "bookmark": next_bookmark}).decode()


async def append_batch(stub: Any, batch_id: str, items: list[dict[str, Any]], field: str) -> dict[str, Any]:
    """Validate `items` and write them as batch `batch_id` with its indexes; answer where it is logged.

    The same events again answer the original batch (appended False); other events under the id are refused."""
    events: list[dict[str, Any]] = []
    seen: set[str] = set()
    for index, item in enumerate(items):
        event = _validated_event(item, f"{field}[{index}]")
        if event["event_id"] in seen:
            raise InvalidArgument(f"{field}[{index}].event_id repeats an earlier event in the batch")
        seen.add(event["event_id"])
        events.append(event)

    key = batch_key(stub, batch_id)
    existing = await state.get_json(stub, key)
    if existing is not None:
        if whole(existing)["events"] != events:
            raise AlreadyExists("batch.batch_id is already logged with other events")
        return _answer(existing, appended=False)
    recorded_at = state.tx_time_text(stub)
    common, own = compact(events)
    entry = {
        "batch_id": batch_id,
        "recorded_at": recorded_at,
        "tx_id": stub.get_txid(),
        "common": common,
        "events": own,
    }
    await state.put_json(stub, key, entry)
    await stub.put_state(stub.create_composite_key(BY_TIME, [recorded_at, batch_id]), state.INDEX_MARKER)
    for request_id in sorted({e["request_id"] for e in events if e["request_id"]}):
        await stub.put_state(
            stub.create_composite_key(BY_REQUEST, [request_id, recorded_at, batch_id]), state.INDEX_MARKER
        )
    return _answer(entry, appended=True)


def compact(events: list[dict[str, Any]]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(common, own): the fields with the same value in every event (event_id never), and each event without them.
    `{**common, **own[i]}` is events[i] exactly."""
    if not events:
        return {}, []
    common = {
        name: value
        for name, value in events[0].items()
        if name not in _OWN_FIELDS and all(name in event and event[name] == value for event in events[1:])
    }
    return common, [{name: value for name, value in event.items() if name not in common} for event in events]


def whole(entry: dict[str, Any]) -> dict[str, Any]:
    """A stored batch with whole events, whichever form it was written in (no `common`: written before the compact
    form)."""
    common = entry.get("common")
    if common is None:
        return entry
    return {
        **{name: value for name, value in entry.items() if name != "common"},
        "events": [{**common, **event} for event in entry["events"]],
    }


def _with_common(common: Any, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The events of an AppendAccessEvents argument, each with the batch's `common` fields (absent: as they are). A
    field in both is refused: an event says its own value once."""
    if common is None:
        return items
    if not isinstance(common, dict):
        raise InvalidArgument("batch.common must be a JSON object")
    validation.only_fields(common, "batch.common", _EVENT_FIELDS - _OWN_FIELDS, set())
    for index, item in enumerate(items):
        if not common.keys().isdisjoint(item):
            raise InvalidArgument(f"batch.events[{index}] repeats a field of batch.common")
    return [{**common, **item} for item in items]


def _answer(entry: dict[str, Any], *, appended: bool) -> dict[str, Any]:
    return {
        "batch_id": entry["batch_id"],
        "count": len(entry["events"]),
        "recorded_at": entry["recorded_at"],
        "tx_id": entry["tx_id"],
        "appended": appended,
    }


def _time_bound(query: dict[str, Any], name: str) -> str:
    if not query.get(name):
        return ""
    return validation.format_timestamp(validation.timestamp(query[name], f"query.{name}"))


def _bookmark(value: Any, start: str, end: str) -> tuple[str, int]:
    """A bookmark is [index key, position in its batch] from an earlier page of the same query."""
    invalid = InvalidArgument("query.bookmark does not belong to this query")
    if not isinstance(value, str) or len(value) > 2048:
        raise invalid
    try:
        key, position = validation.json_argument(value, "query.bookmark", list)
    except (InvalidArgument, ValueError, TypeError):
        raise invalid from None
    if not isinstance(key, str) or not isinstance(position, int) or position < 0 or not (start <= key < end):
        raise invalid
    return key, position


def _check_read(event: dict[str, Any], field: str) -> None:
    """A read is for treatment, explained by the consent that admitted it, or in an emergency, explained by the
    declaration (its request_id) that allowed it, admitted or not."""
    if event["purpose"] == TREATMENT:
        if event["decision"] == "admit" and event["consent_id"] is None:
            raise InvalidArgument(f"{field}: an admitted record_read event names the consent that allowed it")
    elif event["purpose"] == EMERGENCY:
        if event["request_id"] is None or event["consent_id"] is not None:
            raise InvalidArgument(f"{field}: an emergency record_read event names its declaration as request_id only")
    else:
        raise InvalidArgument(f"{field}.purpose of a record_read event must be {TREATMENT} or {EMERGENCY}")


def _check_reason(event: dict[str, Any], field: str) -> None:
    """A refusal says why; a record not computed says why; nothing else has a reason."""
    if event["decision"] == "refuse":
        validation.code(event["reason"], f"{field}.reason", REFUSAL_REASONS)
    elif event["decision"] == "not_computed":
        validation.code(event["reason"], f"{field}.reason", NOT_COMPUTED_REASONS)
    elif event["reason"] is not None:
        raise InvalidArgument(f"{field}.reason must be empty when the decision is {event['decision']}")


def _check_oversight(event: dict[str, Any], field: str) -> None:
    """An oversight event names its declaration or alert (request_id) and carries a decision of its kind; only a
    declaration has a reason (its emergency reason), and it is for the emergency purpose."""
    validation.code(event["decision"], f"{field}.decision", OVERSIGHT_DECISIONS[event["kind"]])
    if event["request_id"] is None:
        raise InvalidArgument(f"{field}: a {event['kind']} event names its declaration or alert as request_id")
    if event["kind"] == "emergency_declared":
        validation.code(event["reason"], f"{field}.reason", EMERGENCY_REASONS)
        if event["purpose"] != EMERGENCY or event["patient_pseudonym"] is None:
            raise InvalidArgument(f"{field}: a declaration is for the {EMERGENCY} purpose and names its patient")
    elif event["reason"] is not None:
        raise InvalidArgument(f"{field}.reason must be empty for a {event['kind']} event")


def _validated_event(item: dict[str, Any], field: str) -> dict[str, Any]:
    validation.only_fields(item, field, _EVENT_FIELDS, _REQUIRED_EVENT_FIELDS)
    event: dict[str, Any] = {name: item.get(name) or None for name in sorted(_EVENT_FIELDS)}
    validation.identifier(event["event_id"], f"{field}.event_id")
    validation.code(event["kind"], f"{field}.kind", EVENT_KINDS)
    validation.actor(event["grantee"], f"{field}.grantee")
    validation.purpose(event["purpose"], f"{field}.purpose", AUDIT_PURPOSES)
    is_outcome = event["kind"] == "outcome"
    if event["kind"] in OVERSIGHT_DECISIONS:
        _check_oversight(event, field)
    else:
        validation.code(event["decision"], f"{field}.decision", OUTCOMES if is_outcome else DECISIONS)
    for name in ("record_id", "request_id", "consent_id"):
        if event[name] is not None:
            validation.identifier(event[name], f"{field}.{name}")
    if event["patient_pseudonym"] is not None:
        validation.pseudonym(event["patient_pseudonym"], f"{field}.patient_pseudonym")
    if event["model_hash"] is not None:
        validation.sha256(event["model_hash"], f"{field}.model_hash")
    if event["export_sha256"] is not None:
        validation.sha256(event["export_sha256"], f"{field}.export_sha256")
        if event["kind"] != "export":
            raise InvalidArgument(f"{field}.export_sha256 belongs to export events only")
    if event["category"] is not None:
        validation.code(event["category"], f"{field}.category", CATEGORIES)
    if event["kind"] not in OVERSIGHT_DECISIONS:
        _check_reason(event, field)
    if event["kind"] in RECORD_KINDS and (event["record_id"] is None or event["patient_pseudonym"] is None):
        raise InvalidArgument(f"{field}: a {event['kind']} event needs record_id and patient_pseudonym")
    if event["kind"] == "record_read":
        _check_read(event, field)
    if is_outcome and (event["record_id"] is None) != (event["patient_pseudonym"] is None):
        raise InvalidArgument(f"{field}: an outcome event names a record with its patient, or neither (the batch)")
    return event
