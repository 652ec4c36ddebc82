"""The access log: one event per record per access, admitted or refused, appended in batches.

An event names who (grantee: a clinician, organisation or auditor id), what (record id, patient
pseudonym, data category), why (purpose, request id, model hash) and the decision with its reason.
The time is the transaction's. Events are never changed: appending an identical event again is a
no-op (so a retried batch is logged once), a different event under an existing id is refused.
Indexes by patient, grantee, request and time serve the auditors' queries.
"""

from typing import Any

from chaincode import state, validation
from chaincode.errors import AlreadyExists, InvalidArgument, NotFound
from chaincode.library import Contract, TransactionContext
from chaincode.vocabulary import AUDIT_PURPOSES, CATEGORIES, DECISIONS, PURPOSES, REFUSAL_REASONS

EVENT = "access"
BY_PATIENT = "access_by_patient"
BY_GRANTEE = "access_by_grantee"
BY_REQUEST = "access_by_request"
BY_TIME = "access_by_time"
EVENT_KINDS = {"record_access": "A record was requested for use", "export": "An access log export"}
_EVENT_FIELDS = {
    "event_id",
    "kind",
    "record_id",
    "patient_pseudonym",
    "grantee",
    "purpose",
    "request_id",
    "model_hash",
    "category",
    "decision",
    "reason",
}
_REQUIRED_EVENT_FIELDS = {"event_id", "kind", "grantee", "purpose", "decision"}
_QUERY_FIELDS = {"patient_pseudonym", "grantee", "request_id", "since", "until", "limit", "bookmark"}
DEFAULT_QUERY_LIMIT = 1000
MAX_QUERY_LIMIT = 10_000


def event_key(stub: Any, event_id: str) -> str:
    return stub.create_composite_key(EVENT, [event_id])


class AccessLogContract(Contract):
    Name = "accesslog"

    def get_evaluate_transactions(self) -> list[str]:
        return ["ReadAccessEvent", "QueryAccessEvents"]

    async def AppendAccessEvents(self, ctx: TransactionContext, events_json: str) -> str:
        """Append a batch of events in one transaction."""
        stub = ctx.get_stub()
        items = validation.batch(events_json, "events")
        recorded_at = state.tx_time_text(stub)
        event_ids: list[str] = []
        seen: set[str] = set()
        for index, item in enumerate(items):
            event = _validated_event(item, f"events[{index}]")
            if event["event_id"] in seen:
                raise InvalidArgument(f"events[{index}].event_id repeats an earlier event in the batch")
            seen.add(event["event_id"])
            event_ids.append(event["event_id"])
            key = event_key(stub, event["event_id"])
            existing = await state.get_json(stub, key)
            if existing is not None:
                if {k: existing.get(k) for k in event} != event:
                    raise AlreadyExists(f"events[{index}].event_id is already logged with other content")
                continue
            await state.put_json(stub, key, {**event, "recorded_at": recorded_at, "tx_id": stub.get_txid()})
            for index_name, attribute in (
                (BY_PATIENT, "patient_pseudonym"),
                (BY_GRANTEE, "grantee"),
                (BY_REQUEST, "request_id"),
            ):
                if event[attribute]:
                    await stub.put_state(
                        stub.create_composite_key(index_name, [event[attribute], recorded_at, event["event_id"]]),
                        state.INDEX_MARKER,
                    )
            await stub.put_state(
                stub.create_composite_key(BY_TIME, [recorded_at, event["event_id"]]), state.INDEX_MARKER
            )
        return state.dumps({"count": len(event_ids), "event_ids": event_ids, "recorded_at": recorded_at}).decode()

    async def ReadAccessEvent(self, ctx: TransactionContext, event_id: str) -> str:
        validation.identifier(event_id, "event_id")
        event = await state.get_json(ctx.get_stub(), event_key(ctx.get_stub(), event_id))
        if event is None:
            raise NotFound("no access event with this event_id")
        return state.dumps(event).decode()

    async def QueryAccessEvents(self, ctx: TransactionContext, query_json: str) -> str:
        """Events by request, patient or grantee (the first given, the others filter), in a time
        range [since, until), oldest first; `limit` per page and a `bookmark` to continue."""
        stub = ctx.get_stub()
        query = validation.json_argument(query_json, "query", dict)
        validation.only_fields(query, "query", _QUERY_FIELDS, set())
        filters: dict[str, str] = {}
        if query.get("request_id"):
            filters["request_id"] = validation.identifier(query["request_id"], "query.request_id")
        if query.get("patient_pseudonym"):
            filters["patient_pseudonym"] = validation.pseudonym(query["patient_pseudonym"], "query.patient_pseudonym")
        if query.get("grantee"):
            filters["grantee"] = validation.actor(query["grantee"], "query.grantee")
        since = (
            validation.format_timestamp(validation.timestamp(query["since"], "query.since"))
            if query.get("since")
            else ""
        )
        until = (
            validation.format_timestamp(validation.timestamp(query["until"], "query.until"))
            if query.get("until")
            else ""
        )
        limit = validation.positive_int(query.get("limit", DEFAULT_QUERY_LIMIT), "query.limit", MAX_QUERY_LIMIT)
        bookmark = query.get("bookmark") or ""
        if not isinstance(bookmark, str) or len(bookmark) > 1024:
            raise InvalidArgument("query.bookmark must be a bookmark returned by an earlier query")

        if "request_id" in filters:
            index_name, prefix = BY_REQUEST, [filters["request_id"]]
        elif "patient_pseudonym" in filters:
            index_name, prefix = BY_PATIENT, [filters["patient_pseudonym"]]
        elif "grantee" in filters:
            index_name, prefix = BY_GRANTEE, [filters["grantee"]]
        else:
            index_name, prefix = BY_TIME, []
        start = (
            stub.create_composite_key(index_name, [*prefix, since])
            if since
            else stub.create_composite_key(index_name, prefix)
        )
        end = (
            stub.create_composite_key(index_name, [*prefix, until])
            if until
            else stub.create_composite_key(index_name, prefix) + state.MAX_RUNE
        )
        if bookmark:
            if not (start < bookmark < end):
                raise InvalidArgument("query.bookmark does not belong to this query")
            start = bookmark + "\x00"

        events: list[dict[str, Any]] = []
        next_bookmark = last_key = ""
        async for key, _ in state.scan(stub, start, end):
            if len(events) == limit:
                next_bookmark = last_key
                break
            _, attributes = stub.split_composite_key(key)
            event = await state.get_json(stub, event_key(stub, attributes[-1]))
            last_key = key
            if event is None or any(event.get(name) != value for name, value in filters.items()):
                continue
            events.append(event)
        return state.dumps({"events": events, "bookmark": next_bookmark}).decode()


def _validated_event(item: dict[str, Any], field: str) -> dict[str, Any]:
    validation.only_fields(item, field, _EVENT_FIELDS, _REQUIRED_EVENT_FIELDS)
    event: dict[str, Any] = {name: item.get(name) or None for name in sorted(_EVENT_FIELDS)}
    validation.identifier(event["event_id"], f"{field}.event_id")
    validation.code(event["kind"], f"{field}.kind", EVENT_KINDS)
    validation.actor(event["grantee"], f"{field}.grantee")
    validation.code(event["purpose"], f"{field}.purpose", {**PURPOSES, **AUDIT_PURPOSES})
    validation.code(event["decision"], f"{field}.decision", DECISIONS)
    for name, check in (("record_id", validation.identifier), ("request_id", validation.identifier)):
        if event[name] is not None:
            check(event[name], f"{field}.{name}")
    if event["patient_pseudonym"] is not None:
        validation.pseudonym(event["patient_pseudonym"], f"{field}.patient_pseudonym")
    if event["model_hash"] is not None:
        validation.sha256(event["model_hash"], f"{field}.model_hash")
    if event["category"] is not None:
        validation.code(event["category"], f"{field}.category", CATEGORIES)
    if event["decision"] == "refuse":
        validation.code(event["reason"], f"{field}.reason", REFUSAL_REASONS)
    elif event["reason"] is not None:
        raise InvalidArgument(f"{field}.reason must be empty when the decision is admit")
    if event["kind"] == "record_access" and (event["record_id"] is None or event["patient_pseudonym"] is None):
        raise InvalidArgument(f"{field}: a record_access event needs record_id and patient_pseudonym")
    return event
