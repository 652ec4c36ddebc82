"""Export formats of the access log: CSV, JSON and FHIR R4 AuditEvent (NDJSON), written and read back.

Every format carries, per event, all the event's fields and where it is on the ledger (batch,
position, transaction, block), so that any copy can be verified against the chain
(audit.verification) after it has been handed over. Rows are written one at a time: an export of
any size is streamed from the database to the file in bounded memory. Every value is an id, a
code, a pseudonym, a hash or a time, each starting with a letter or a digit, so no CSV cell can
be read as a spreadsheet formula.
"""

import base64
import csv
import hashlib
import io
import json
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import IO, Any

import structlog
from django.conf import settings
from django.http import FileResponse
from django.utils import timezone

from audit.fhir import ACTIONS, DETAILS, EVENT_TYPES, KIND_SUBTYPES, audit_event, outcome_code
from audit.log import access_batch_log
from audit.models import (
    COLUMNS,
    EXTENSIONS,
    AuditExport,
    ExportStatus,
    export_batch_id,
    export_event_id,
)
from audit.selectors import AccessEventFilters, audit_export_manifest, mirror_rows
from audit.verification import events_verify
from chaincode.vocabulary import DECISIONS, OUTCOMES, OVERSIGHT_DECISIONS
from health_platform.errors import Conflict, NotFound
from health_platform.fhir_codes import (
    ACCESS_EVENT_KIND_SYSTEM,
    GRANTEE_SYSTEM,
    LEDGER_TRANSACTION_SYSTEM,
    PSEUDONYM_SYSTEM,
    RECORD_SYSTEM,
    PurposeUnmapped,
    access_purpose_from_codings,
)
from ledger import LedgerError, LedgerUnavailable

log = structlog.get_logger(__name__)

# The first FHIR format (copies handed out before are still read, and verify): the platform's own URNs throughout,
# the purpose as the platform's code, outcome 0 or 4.
_LEGACY = "urn:health-platform"
_LEGACY_KIND_SYSTEM = f"{_LEGACY}:access-event-kind"
_LEGACY_ACTIONS = {"record_access": "E", "export": "R", "outcome": "E"}
# Where rows_from_audit_event finds each field: identifier systems (this format's and the first's), kinds by type.
_IDENTIFIED: dict[object, str] = {
    PSEUDONYM_SYSTEM: "patient_pseudonym",
    RECORD_SYSTEM: "record_id",
    LEDGER_TRANSACTION_SYSTEM: "tx_id",
    f"{_LEGACY}:patient-pseudonym": "patient_pseudonym",
    f"{_LEGACY}:record": "record_id",
    f"{_LEGACY}:ledger-transaction": "tx_id",
}
_LEGACY_PURPOSE_SYSTEM = f"{_LEGACY}:purpose"
_GRANTEE_SYSTEMS = (GRANTEE_SYSTEM, f"{_LEGACY}:actor")
_KINDS_BY_TYPE: dict[object, str] = {code: kind for kind, code in EVENT_TYPES.items() if kind not in KIND_SUBTYPES}


class HashingWriter:
    """A text sink that writes UTF-8 to `target` and keeps the SHA-256 and size of what it wrote."""

    def __init__(self, target: IO[bytes]):
        self.target = target
        self.sha256 = hashlib.sha256()
        self.size = 0

    def write(self, text: str) -> int:
        data = text.encode()
        self.target.write(data)
        self.sha256.update(data)
        self.size += len(data)
        return len(text)


class ExportWriter:
    """Writes events to a HashingWriter in one format, one event at a time: begin, write..., end."""

    def __init__(self, format: str, sink: HashingWriter):
        if format not in EXTENSIONS:
            raise ValueError(f"unknown export format {format!r}")
        self.format, self.sink, self.count = format, sink, 0
        self._csv = csv.writer(sink, lineterminator="\n")

    def begin(self) -> None:
        if self.format == "csv":
            self._csv.writerow(COLUMNS)
        elif self.format == "json":
            self.sink.write('{"events": [\n')

    def write(self, row: dict[str, Any]) -> None:
        if self.format == "csv":
            self._csv.writerow(["" if row[name] is None else row[name] for name in COLUMNS])
        elif self.format == "json":
            self.sink.write(("" if self.count == 0 else ",\n") + json.dumps({name: row[name] for name in COLUMNS}))
        else:
            self.sink.write(json.dumps(audit_event(row), separators=(",", ":")) + "\n")
        self.count += 1

    def end(self) -> None:
        if self.format == "json":
            self.sink.write("\n]}\n")


def rows_from_audit_event(event: dict[str, Any]) -> dict[str, Any]:
    """Read an AuditEvent of ours (or of the first FHIR format) back into an event row, each field from its FHIR
    place. A value that names nothing of the platform's (a code edited, a system unknown) reads as absent or as
    itself, so that verification names the field changed; so does a kind whose type or action was edited."""
    row: dict[str, Any] = dict.fromkeys(COLUMNS)
    for entity in event.get("entity") or []:
        identifier = (entity.get("what") or {}).get("identifier") or {}
        name = _IDENTIFIED.get(identifier.get("system"))
        if name is None:
            continue
        row[name] = identifier.get("value")
        if name == "tx_id":
            for detail in entity.get("detail") or []:
                if detail.get("type") in (*DETAILS, "decision"):
                    row[detail["type"]] = detail.get("valueString")
    subtypes = {coding.get("system"): coding.get("code") for coding in event.get("subtype") or []}
    legacy = _LEGACY_KIND_SYSTEM in subtypes
    type_code = (event.get("type") or {}).get("code")
    kind = subtypes.get(ACCESS_EVENT_KIND_SYSTEM) or subtypes.get(_LEGACY_KIND_SYSTEM) or _KINDS_BY_TYPE.get(type_code)
    # The type and action follow from the kind: one edited reads as a changed kind, not as the same event.
    actions = _LEGACY_ACTIONS if legacy else ACTIONS
    if kind in EVENT_TYPES and (EVENT_TYPES[kind], actions.get(kind)) == (type_code, event.get("action")):
        row["kind"] = kind
    row["reason"] = event.get("outcomeDesc")
    outcome = str(event.get("outcome"))
    decisions = OUTCOMES if row["kind"] == "outcome" else DECISIONS
    if row["kind"] in OVERSIGHT_DECISIONS:  # its decision is a detail; the outcome must say it succeeded
        if outcome != outcome_code(kind=row["kind"], decision=row["decision"], reason=None):
            row["decision"] = outcome
    else:
        row["decision"] = next(
            (
                decision
                for decision in decisions
                if outcome_code(kind=row["kind"], decision=decision, reason=row["reason"], legacy=legacy) == outcome
            ),
            outcome,
        )
    row["recorded_at"] = event.get("recorded")
    row["purpose"] = _purpose(event)
    grantees = [
        identifier.get("value")
        for agent in event.get("agent") or []
        if (identifier := (agent.get("who") or {}).get("identifier") or {}).get("system") in _GRANTEE_SYSTEMS
    ]
    row["grantee"] = grantees[0] if grantees else None
    return row


def _purpose(event: dict[str, Any]) -> str | None:
    """The purpose of the event's first purposeOfEvent; None when its codes name no one purpose of the platform."""
    concepts = event.get("purposeOfEvent") or []
    codings = (concepts[0].get("coding") or []) if concepts else []
    legacy = [coding.get("code") for coding in codings if coding.get("system") == _LEGACY_PURPOSE_SYSTEM]
    if legacy:
        return legacy[0]
    try:
        return access_purpose_from_codings(codings)
    except PurposeUnmapped:
        return None


def rows_from_file(stream: IO[bytes], *, format: str) -> Iterator[dict[str, Any]]:
    """Read an export (or an edited copy of one) back into event rows, one at a time.

    Raises ValueError (with a line number, never a value) on a file that is not in `format`.
    """
    text = io.TextIOWrapper(stream, encoding="utf-8", newline="")
    if format == "csv":
        reader = csv.DictReader(text)
        if tuple(reader.fieldnames or ()) != COLUMNS:
            raise ValueError("the CSV header is not the export's")
        for row in reader:
            yield {name: (row.get(name) or None) for name in COLUMNS}
    elif format == "json":
        first = text.readline()
        if first.strip() != '{"events": [':
            raise ValueError("line 1 is not the start of an export's JSON")
        for number, line in enumerate(text, start=2):
            line = line.strip().rstrip(",")
            if line in ("]}", ""):
                continue
            yield _json_line(line, number)
    elif format == "fhir":
        for number, line in enumerate(text, start=1):
            if line.strip():
                yield rows_from_audit_event(_json_line(line, number))
    else:
        raise ValueError(f"unknown export format {format!r}")


def _json_line(line: str, number: int) -> dict[str, Any]:
    try:
        value = json.loads(line)
    except (json.JSONDecodeError, RecursionError):  # RecursionError: nested deeper than the parser goes
        raise ValueError(f"line {number} is not valid JSON") from None
    if not isinstance(value, dict):
        raise ValueError(f"line {number} is not a JSON object")
    return value


# --- the export job ------------------------------------------------------------------------------


class ExportDeferred(Exception):
    """The ledger did not answer while the export was written; nothing is offered yet and it is tried again."""


def audit_export_run(*, export_id: str) -> None:
    """Write the export file, verify it against the ledger, then log the export itself on the ledger.

    The file holds the events under the export's filters recorded before the export was asked for (its
    manifest's requested_at), verified complete against the ledger as it is written.

    Idempotent: a completed or failed export is left alone; a pending one is (re)written from the start (a
    delivery running beside another writes a file of its own; the first to finish is the export).
    Fails closed: no file is offered unless the ledger verified it. The ledger not answering defers the
    export (ExportDeferred: the task tries again later) until AUDIT_EXPORT_DEADLINE_SECONDS after it was
    asked for; then it fails with ledger_unavailable. A refusal by the ledger fails it at once.
    """
    export = AuditExport.objects.filter(pk=export_id, status=ExportStatus.PENDING).first()
    if export is None:
        return
    # The export holds what was logged under its filters before it was asked for, whenever it runs, so that
    # the ledger can say later exactly which events a complete copy holds (audit.manifests).
    scope = AccessEventFilters.from_json(export.filters).bounded_by(export.created_at)
    path = export_path(export)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.{uuid.uuid4().hex}.partial")
    try:
        with partial.open("wb") as target:
            sink = HashingWriter(target)
            writer = ExportWriter(export.format, sink)
            writer.begin()

            def written(rows: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
                for row in rows:
                    writer.write(row)
                    yield row

            verification = events_verify(written(mirror_rows(scope)), filters=scope)
            writer.end()
        digest = sink.sha256.hexdigest()
        logged = access_batch_log(
            batch_id=export_batch_id(export.id),
            events=[
                {
                    "event_id": export_event_id(export.id),
                    "kind": "export",
                    "grantee": export.actor_id,
                    "purpose": "audit",
                    "request_id": str(export.id),
                    "decision": "admit",
                    "export_sha256": digest,
                }
            ],
        )
    except LedgerError as error:
        partial.unlink(missing_ok=True)
        code = "ledger_unavailable" if isinstance(error, LedgerUnavailable) else "ledger_rejected"
        deadline = export.created_at + timedelta(seconds=settings.AUDIT_EXPORT_DEADLINE_SECONDS)
        if code == "ledger_unavailable" and timezone.now() < deadline:
            log.warning("audit_export_deferred", export_id=str(export.id), code=code)
            raise ExportDeferred(str(export.id)) from error
        AuditExport.objects.filter(pk=export.pk, status=ExportStatus.PENDING).update(
            status=ExportStatus.FAILED, failure_code=code, finished_at=timezone.now()
        )
        log.error("audit_export_failed", export_id=str(export.id), code=code)
        return
    partial.replace(path)
    AuditExport.objects.filter(pk=export.pk, status=ExportStatus.PENDING).update(
        status=ExportStatus.COMPLETED,
        event_count=writer.count,
        sha256=digest,
        size_bytes=sink.size,
        verification=verification.as_dict(),
        log_tx_id=logged.tx_id,
        log_block=logged.block_number,
        finished_at=timezone.now(),
    )
    log.info(
        "audit_export_completed",
        export_id=str(export.id),
        events=writer.count,
        verified=verification.ok,
        problems=verification.problem_count,
        tx_id=logged.tx_id,
    )


def export_path(export: AuditExport) -> Path:
    return Path(settings.AUDIT_EXPORT_DIR) / f"{export.id}.{EXTENSIONS[export.format]}"


def export_file_response(*, export: AuditExport, user: Any) -> FileResponse:
    """The export's file, streamed, named as its manifest names it; 409 export_not_ready unless completed."""
    if export.status != ExportStatus.COMPLETED:
        raise Conflict(
            "The export has no file: it is still being written, or it failed.",
            code="export_not_ready",
            detail={"status": export.status},
        )
    try:
        stream = export_path(export).open("rb")
    except FileNotFoundError:
        raise NotFound("The export's file is no longer stored.", code="export_file_missing") from None
    described = audit_export_manifest(export=export)["file"]
    response = FileResponse(
        stream, as_attachment=True, filename=described["name"], content_type=described["media_type"]
    )
    # RFC 9530: the file's SHA-256, as in the manifest, for clients that check what they received.
    response["Repr-Digest"] = f"sha-256=:{base64.b64encode(bytes.fromhex(export.sha256)).decode()}:"
    log.info("audit_export_downloaded", export_id=str(export.pk), user_id=user.pk)
    return response
