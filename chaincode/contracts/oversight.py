"""Oversight on the ledger: emergency access (break-the-glass) and its review, a patient's refusal of it, and
the misuse detector's alerts and their triage.

Each declaration, review, alert and triage is state (what the gate and the portals read) AND an event of the
access log (what the audit export verifies), written in ONE transaction: an oversight event cannot exist without
its state, nor the other way round. AppendAccessEvents refuses these kinds (chaincode.contracts.access_log).

- `emergency/<declaration_id>`: a clinician's declaration for one patient: a reason from a fixed list, the
  SHA-256 of the justification (the text stays off the ledger, encrypted), declared_at and expires_at (the
  transaction's time plus the duration asked, at most EMERGENCY_MAX_SECONDS), and once reviewed, its judgement:
  the auditor's verdict with the SHA-256 of the note. Logged as batch `emergency:<id>`, its review as
  `emergency-review:<id>`.
- `emergency_refusal/<patient>`: the data categories the patient forbids emergency access to (the whole set is
  written each time; its history is every change).
- `alert/<alert_id>`: a clinician-day the misuse detector flagged: the reason codes and score, the detector's
  version and weights hash (anchored with AnchorModel before an alert may cite them), and once triaged its
  judgement. Logged per scoring run as batch `alerts:<run_id>`; a triage as `alert-triage:<id>`.

Retries are safe: the same declaration, review, alert or triage again answers what is stored and writes
nothing; a different one under the same id is refused (already_exists). No health data: ids, pseudonyms, codes,
hashes and times.
"""

from datetime import timedelta
from typing import Any

from chaincode import state, validation
from chaincode.contracts.access_log import append_batch
from chaincode.contracts.anchors import MODEL
from chaincode.contracts.directory import grantee_status
from chaincode.errors import AlreadyExists, InvalidArgument, NotFound
from chaincode.library import Contract, TransactionContext
from chaincode.vocabulary import (
    ALERT_REASONS,
    ALERT_VERDICTS,
    CATEGORIES,
    DECLARED,
    EMERGENCY,
    EMERGENCY_MAX_SECONDS,
    EMERGENCY_REASONS,
    EMERGENCY_VERDICTS,
    FLAGGED,
)

EMERGENCY_KEY = "emergency"
REFUSAL_KEY = "emergency_refusal"
ALERT_KEY = "alert"
MIN_EMERGENCY_SECONDS = 60
MAX_ALERTS = 1000
_DECLARE_FIELDS = {
    "declaration_id",
    "grantee",
    "organisation",
    "patient_pseudonym",
    "reason",
    "justification_sha256",
    "duration_seconds",
}
_VERDICT_FIELDS = {"subject_id", "reviewer", "verdict", "note_sha256"}
_RAISE_FIELDS = {"run_id", "detector_name", "detector_version", "detector_sha256", "alerts"}
_ALERT_FIELDS = {"alert_id", "grantee", "day", "score", "reasons"}


def emergency_key(stub: Any, declaration_id: str) -> str:
    return stub.create_composite_key(EMERGENCY_KEY, [declaration_id])


def refusal_key(stub: Any, pseudonym: str) -> str:
    return stub.create_composite_key(REFUSAL_KEY, [pseudonym])


async def emergency_of(stub: Any, declaration_id: str) -> dict[str, Any] | None:
    return await state.get_json(stub, emergency_key(stub, declaration_id))


async def refused_categories(stub: Any, pseudonym: str) -> frozenset[str]:
    entry = await state.get_json(stub, refusal_key(stub, pseudonym))
    return frozenset(entry["categories"]) if entry else frozenset()


def emergency_decision(
    declaration: dict[str, Any] | None, requester: str, pseudonym: str, moment: str, category: str, refused: frozenset
) -> str | None:
    """Why the declaration does not admit this record of `pseudonym` for `requester` at `moment`, or None to admit.

    Stored times are format_timestamp's fixed-width UTC text, so they compare as text in time order."""
    if declaration is None or declaration["grantee"] != requester or declaration["patient_pseudonym"] != pseudonym:
        return "no_emergency"
    if not declaration["declared_at"] <= moment < declaration["expires_at"]:
        return "emergency_expired"
    if category in refused:
        return "emergency_refused"
    return None


class EmergencyContract(Contract):
    Name = "emergency"

    def get_evaluate_transactions(self) -> list[str]:
        return ["ReadEmergency", "ReadEmergencyRefusals", "EmergencyRefusalHistory"]

    async def DeclareEmergency(self, ctx: TransactionContext, declaration_json: str) -> str:
        """Open one patient's records to one clinician for `duration_seconds` from now, and log it.

        Refused when the clinician (or its organisation) is inactive in the directory."""
        stub = ctx.get_stub()
        request = validation.json_argument(declaration_json, "declaration", dict)
        validation.only_fields(request, "declaration", _DECLARE_FIELDS, _DECLARE_FIELDS - {"organisation"})
        declaration_id = validation.identifier(request["declaration_id"], "declaration.declaration_id")
        grantee = validation.grantee(request["grantee"], "declaration.grantee")
        if not grantee.startswith("clinician:"):
            raise InvalidArgument("declaration.grantee must be a clinician")
        organisation = request.get("organisation") or None
        if organisation is not None:
            validation.grantee(organisation, "declaration.organisation")
        pseudonym = validation.pseudonym(request["patient_pseudonym"], "declaration.patient_pseudonym")
        reason = validation.code(request["reason"], "declaration.reason", EMERGENCY_REASONS)
        justification = validation.sha256(request["justification_sha256"], "declaration.justification_sha256")
        duration = validation.positive_int(
            request["duration_seconds"], "declaration.duration_seconds", EMERGENCY_MAX_SECONDS
        )
        if duration < MIN_EMERGENCY_SECONDS:
            raise InvalidArgument(f"declaration.duration_seconds must be at least {MIN_EMERGENCY_SECONDS}")
        asked = {
            "declaration_id": declaration_id,
            "grantee": grantee,
            "organisation": organisation,
            "patient_pseudonym": pseudonym,
            "reason": reason,
            "justification_sha256": justification,
        }
        key = emergency_key(stub, declaration_id)
        current = await state.get_json(stub, key)
        if current is not None:
            if any(current[name] != value for name, value in asked.items()):
                raise AlreadyExists("declaration.declaration_id is already declared with other values")
            return await _answer(stub, current, f"emergency:{declaration_id}", [_declared_event(current)])
        for actor in filter(None, (grantee, organisation)):
            if await grantee_status(stub, actor) != "active":
                raise InvalidArgument(f"{actor.split(':')[0]} is inactive in the directory", code="grantee_inactive")
        now = state.tx_time(stub)
        declaration = {
            **asked,
            "duration_seconds": duration,
            "declared_at": validation.format_timestamp(now),
            "expires_at": validation.format_timestamp(now + timedelta(seconds=duration)),
            "tx_id": stub.get_txid(),
            "judgement": None,
        }
        await state.put_json(stub, key, declaration)
        return await _answer(stub, declaration, f"emergency:{declaration_id}", [_declared_event(declaration)])

    async def ReviewEmergency(self, ctx: TransactionContext, review_json: str) -> str:
        """An auditor's verdict on a declaration (justified or not) with the hash of their note, logged."""
        return await _judge(ctx.get_stub(), review_json, EMERGENCY_KEY, "emergency_review", EMERGENCY_VERDICTS)

    async def ReadEmergency(self, ctx: TransactionContext, declaration_id: str) -> str:
        validation.identifier(declaration_id, "declaration_id")
        declaration = await emergency_of(ctx.get_stub(), declaration_id)
        if declaration is None:
            raise NotFound("no emergency declaration with this id")
        return state.dumps(declaration).decode()

    async def SetEmergencyRefusals(self, ctx: TransactionContext, patient_pseudonym: str, categories_json: str) -> str:
        """The categories the patient forbids emergency access to, as a whole set (empty: none). The same set
        again writes nothing."""
        stub = ctx.get_stub()
        pseudonym = validation.pseudonym(patient_pseudonym)
        listed = validation.json_argument(categories_json, "categories", list)
        categories = validation.code_list(listed, "categories", CATEGORIES) if listed else []
        key = refusal_key(stub, pseudonym)
        current = await state.get_json(stub, key)
        if current is not None and current["categories"] == categories:
            return state.dumps(current).decode()
        if current is None and not categories:
            return state.dumps(_no_refusal(pseudonym)).decode()
        entry = {
            "patient_pseudonym": pseudonym,
            "categories": categories,
            "changed_at": state.tx_time_text(stub),
            "tx_id": stub.get_txid(),
        }
        await state.put_json(stub, key, entry)
        return state.dumps(entry).decode()

    async def ReadEmergencyRefusals(self, ctx: TransactionContext, patient_pseudonym: str) -> str:
        pseudonym = validation.pseudonym(patient_pseudonym)
        entry = await state.get_json(ctx.get_stub(), refusal_key(ctx.get_stub(), pseudonym))
        return state.dumps(entry or _no_refusal(pseudonym)).decode()

    async def EmergencyRefusalHistory(self, ctx: TransactionContext, patient_pseudonym: str) -> str:
        pseudonym = validation.pseudonym(patient_pseudonym)
        return state.dumps(await state.history(ctx.get_stub(), refusal_key(ctx.get_stub(), pseudonym))).decode()


class AlertContract(Contract):
    Name = "alerts"

    def get_evaluate_transactions(self) -> list[str]:
        return ["ReadAlert"]

    async def RaiseAlerts(self, ctx: TransactionContext, run_json: str) -> str:
        """The alerts of one scoring run, each citing the anchored detector that raised it, logged as one batch."""
        stub = ctx.get_stub()
        run = validation.json_argument(run_json, "run", dict)
        validation.only_fields(run, "run", _RAISE_FIELDS, _RAISE_FIELDS)
        run_id = validation.identifier(run["run_id"], "run.run_id")
        name = validation.identifier(run["detector_name"], "run.detector_name")
        version = validation.identifier(run["detector_version"], "run.detector_version")
        digest = validation.sha256(run["detector_sha256"], "run.detector_sha256")
        anchored = await state.get_json(stub, stub.create_composite_key(MODEL, [name, version]))
        if anchored is None or anchored["sha256"] != digest:
            raise InvalidArgument("run.detector_version is not anchored with this hash", code="detector_not_anchored")
        items = validation.object_list(run["alerts"], "run.alerts", MAX_ALERTS)
        if not items:
            raise InvalidArgument("run.alerts must name at least one alert")
        detector = {"detector_name": name, "detector_version": version, "detector_sha256": digest}
        events = []
        for index, item in enumerate(items):
            alert = await _raised(stub, item, f"run.alerts[{index}]", detector)
            events.append(
                {
                    "event_id": f"alert:{alert['alert_id']}",
                    "kind": "alert",
                    "grantee": alert["grantee"],
                    "purpose": "audit",
                    "request_id": alert["alert_id"],
                    "model_hash": digest,
                    "decision": FLAGGED,
                }
            )
        logged = await append_batch(stub, f"alerts:{run_id}", events, "run.alerts")
        return state.dumps({"run_id": run_id, **detector, "logged": logged}).decode()

    async def TriageAlert(self, ctx: TransactionContext, triage_json: str) -> str:
        """An auditor's verdict on an alert (confirmed or dismissed) with the hash of their note, logged."""
        return await _judge(ctx.get_stub(), triage_json, ALERT_KEY, "alert_triage", ALERT_VERDICTS)

    async def ReadAlert(self, ctx: TransactionContext, alert_id: str) -> str:
        validation.identifier(alert_id, "alert_id")
        alert = await state.get_json(ctx.get_stub(), ctx.get_stub().create_composite_key(ALERT_KEY, [alert_id]))
        if alert is None:
            raise NotFound("no alert with this id")
        return state.dumps(alert).decode()


def _declared_event(declaration: dict[str, Any]) -> dict[str, Any]:
    return {
        "event_id": f"emergency:{declaration['declaration_id']}",
        "kind": "emergency_declared",
        "patient_pseudonym": declaration["patient_pseudonym"],
        "grantee": declaration["grantee"],
        "purpose": EMERGENCY,
        "request_id": declaration["declaration_id"],
        "decision": DECLARED,
        "reason": declaration["reason"],
    }


def _no_refusal(pseudonym: str) -> dict[str, Any]:
    return {"patient_pseudonym": pseudonym, "categories": [], "changed_at": None, "tx_id": None}


async def _answer(stub: Any, entry: dict[str, Any], batch_id: str, events: list[dict[str, Any]]) -> str:
    """The entry and where its event is logged (appending the batch again is a no-op on a retry)."""
    logged = await append_batch(stub, batch_id, events, "events")
    return state.dumps({**entry, "logged": logged}).decode()


def _verdict(argument: str, field: str, verdicts: dict[str, str]) -> dict[str, str]:
    verdict = validation.json_argument(argument, field, dict)
    validation.only_fields(verdict, field, _VERDICT_FIELDS, _VERDICT_FIELDS)
    return {
        "subject_id": validation.identifier(verdict["subject_id"], f"{field}.subject_id"),
        "reviewer": validation.auditor(verdict["reviewer"], f"{field}.reviewer"),
        "verdict": validation.code(verdict["verdict"], f"{field}.verdict", verdicts),
        "note_sha256": validation.sha256(verdict["note_sha256"], f"{field}.note_sha256"),
    }


_JUDGED = {EMERGENCY_KEY: ("declaration_id", "emergency declaration"), ALERT_KEY: ("alert_id", "alert")}


async def _judge(stub: Any, argument: str, object_type: str, kind: str, verdicts: dict[str, str]) -> str:
    """Record an auditor's verdict on a declaration or an alert, once, and log it as a `kind` event in a batch of
    its own (`emergency-review:<id>`, `alert-triage:<id>`) naming the patient or the detector the entry names."""
    verdict = _verdict(argument, kind.split("_")[1], verdicts)
    key = stub.create_composite_key(object_type, [verdict["subject_id"]])
    entry = await state.get_json(stub, key)
    id_field, noun = _JUDGED[object_type]
    if entry is None:
        raise NotFound(f"no {noun} with this id")
    entry = await _judged(stub, key, entry, verdict)
    event = {
        "event_id": f"{kind.replace('_', '-')}:{entry[id_field]}",
        "kind": kind,
        "patient_pseudonym": entry.get("patient_pseudonym"),
        "grantee": verdict["reviewer"],
        "purpose": "audit",
        "request_id": entry[id_field],
        "model_hash": entry.get("detector_sha256"),
        "decision": verdict["verdict"],
    }
    return await _answer(stub, entry, event["event_id"], [event])


async def _judged(stub: Any, key: str, entry: dict[str, Any], verdict: dict[str, str]) -> dict[str, Any]:
    """`entry` with its judgement (an auditor's verdict), written once: the same verdict again is answered as
    stored, another is refused."""
    asked = {"reviewer": verdict["reviewer"], "verdict": verdict["verdict"], "note_sha256": verdict["note_sha256"]}
    current = entry.get("judgement")
    if current is not None:
        if any(current[field] != value for field, value in asked.items()):
            raise AlreadyExists("a verdict is already recorded, another one")
        return entry
    judged = {**entry, "judgement": {**asked, "at": state.tx_time_text(stub), "tx_id": stub.get_txid()}}
    await state.put_json(stub, key, judged)
    return judged


async def _raised(stub: Any, item: dict[str, Any], field: str, detector: dict[str, str]) -> dict[str, Any]:
    validation.only_fields(item, field, _ALERT_FIELDS, _ALERT_FIELDS)
    asked = {
        "alert_id": validation.identifier(item["alert_id"], f"{field}.alert_id"),
        "grantee": validation.grantee(item["grantee"], f"{field}.grantee"),
        "day": validation.day(item["day"], f"{field}.day"),
        "score": validation.decimal(item["score"], f"{field}.score"),
        "reasons": validation.code_list(item["reasons"], f"{field}.reasons", ALERT_REASONS),
        **detector,
    }
    key = stub.create_composite_key(ALERT_KEY, [asked["alert_id"]])
    current = await state.get_json(stub, key)
    if current is not None:
        if any(current[name] != value for name, value in asked.items()):
            raise AlreadyExists(f"{field}.alert_id is already raised with other values")
        return current
    alert = {**asked, "raised_at": state.tx_time_text(stub), "tx_id": stub.get_txid(), "judgement": None}
    await state.put_json(stub, key, alert)
    return alert
