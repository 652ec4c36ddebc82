"""Writes: the access log (ledger first, then the mirror), the mirror's rebuild, and exports.

Every access event reaches the ledger through `access_batch_log`, ONE transaction per batch; the
mirror rows are written only after the ledger committed them, with the transaction id and block
that hold them. A batch logged again (a retried task) is a no-op on the ledger that answers with
the original transaction, so the mirror still names where the events really are.
"""

from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import structlog
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from audit.exports import COLUMNS, EXTENSIONS, ExportWriter, HashingWriter, mirror_rows
from audit.models import (
    EVENT_FIELDS,
    AccessEvent,
    AuditExport,
    ExportFormat,
    ExportStatus,
    export_batch_id,
    export_event_id,
)
from audit.selectors import AccessEventFilters
from audit.verification import events_verify
from health_platform import bootstrap
from health_platform.errors import PermissionDenied, ValidationFailed
from health_platform.roles import Role, user_has_role
from ledger import ContractRejected, LedgerError
from ledger.contracts import LoggedBatch

log = structlog.get_logger(__name__)

MIRROR_INSERT_CHUNK = 2000
REBUILD_PAGE = 10_000


def access_batch_log(*, batch_id: str, events: list[dict[str, Any]]) -> LoggedBatch:
    """Log `events` on the ledger as one batch, then mirror them. Idempotent per batch_id.

    Raises ledger.LedgerUnavailable (TransactionConflict included) when the ledger does not answer
    (nothing is mirrored then) and ledger.ContractRejected when the contract refuses the batch.
    """
    logged = bootstrap.contracts().append_access_events(batch_id=batch_id, events=events)
    _mirror(
        [{**event, "position": position} for position, event in enumerate(events)],
        batch_id=batch_id,
        recorded_at=logged.recorded_at,
        tx_id=logged.tx_id,
        block_number=logged.block_number,
    )
    log.info(
        "access_batch_logged",
        batch_id=batch_id,
        events=len(events),
        tx_id=logged.tx_id,
        block=logged.block_number,
        appended=logged.appended,
    )
    return logged


def access_log_mirror_rebuild() -> int:
    """Rebuild the mirror from the ledger alone (every batch, by time); return the events mirrored.

    Rows the ledger does not hold are removed; rows it holds are rewritten from it.
    """
    contracts = bootstrap.contracts()
    blocks: dict[str, int | None] = {}
    count, bookmark = 0, ""
    with transaction.atomic():
        AccessEvent.objects.all().delete()
        while True:
            page = contracts.query_access_events(limit=REBUILD_PAGE, bookmark=bookmark)
            for batch_id, events in _by_batch(page.events):
                tx_id = events[0]["tx_id"]
                if tx_id not in blocks:
                    blocks[tx_id] = contracts.block_of(tx_id)
                _mirror(
                    events,
                    batch_id=batch_id,
                    recorded_at=events[0]["recorded_at"],
                    tx_id=tx_id,
                    block_number=blocks[tx_id],
                )
                count += len(events)
            bookmark = page.bookmark
            if not bookmark:
                break
    log.info("access_log_mirror_rebuilt", events=count)
    return count


def _by_batch(events: list[dict[str, Any]]) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    current: list[dict[str, Any]] = []
    for event in events:
        if current and current[0]["batch_id"] != event["batch_id"]:
            yield current[0]["batch_id"], current
            current = []
        current.append(event)
    if current:
        yield current[0]["batch_id"], current


def _mirror(
    events: Iterable[dict[str, Any]],
    *,
    batch_id: str,
    recorded_at: str,
    tx_id: str,
    block_number: int | None,
) -> None:
    """Insert mirror rows for one ledger batch; rows already there are left as they are.

    One multi-row INSERT ... ON CONFLICT DO NOTHING (SQLite and PostgreSQL alike) rather than
    bulk_create: building 5,000 model instances per batch cost three times the insert itself.
    """
    moment = connection.ops.adapt_datetimefield_value(datetime.fromisoformat(recorded_at.replace("Z", "+00:00")))
    table = connection.ops.quote_name(AccessEvent._meta.db_table)
    columns = ", ".join(connection.ops.quote_name(name) for name in COLUMNS)
    placeholders = ", ".join(["%s"] * len(COLUMNS))
    # Table and column names come from the model; every value is bound.
    statement = f"INSERT INTO {table} ({columns}) VALUES ({placeholders}) ON CONFLICT DO NOTHING"  # noqa: S608
    rows = [
        (
            *(event.get(name) or "" for name in EVENT_FIELDS),
            moment,
            batch_id,
            event["position"],
            tx_id,
            block_number,
        )
        for event in events
    ]
    with transaction.atomic(), connection.cursor() as cursor:
        for start in range(0, len(rows), MIRROR_INSERT_CHUNK):
            cursor.executemany(statement, rows[start : start + MIRROR_INSERT_CHUNK])


# --- exports -------------------------------------------------------------------------------------


def auditor_actor_id(user: Any) -> str:
    """An auditor's identity on the ledger (no name or e-mail: the user's primary key)."""
    return f"auditor:u{user.pk}"


def audit_export_create(*, requester: Any, format: str, filters: AccessEventFilters) -> AuditExport:
    """Queue an export of the events under `filters` in `format` (csv, json or fhir)."""
    if not user_has_role(requester, Role.AUDITOR):
        raise PermissionDenied("Only auditors can export the access log.", code="audit_forbidden")
    if format not in ExportFormat.values:
        raise ValidationFailed(
            "Choose an export format: csv, json or fhir.", code="unknown_export_format", detail={"field": "format"}
        )
    export = AuditExport.objects.create(
        requester=requester, actor_id=auditor_actor_id(requester), format=format, filters=filters.as_json()
    )
    from audit import tasks

    transaction.on_commit(lambda: tasks.audit_export_run.delay(str(export.id)))
    log.info("audit_export_requested", export_id=str(export.id), format=format, actor=export.actor_id)
    return export


def audit_export_run(*, export_id: str) -> None:
    """Write the export file, verify it against the ledger, then log the export itself on the ledger.

    Idempotent: a completed or failed export is left alone; a pending one is (re)written from the start.
    Fails closed: if the ledger cannot verify, the export fails and no file is offered.
    """
    export = AuditExport.objects.filter(pk=export_id, status=ExportStatus.PENDING).first()
    if export is None:
        return
    filters = AccessEventFilters.from_json(export.filters)
    path = export_path(export)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    try:
        with partial.open("wb") as target:
            sink = HashingWriter(target)
            writer = ExportWriter(export.format, sink)
            writer.begin()

            def written(rows: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
                for row in rows:
                    writer.write(row)
                    yield row

            verification = events_verify(written(mirror_rows(filters)), filters=filters)
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
        code = "ledger_rejected" if isinstance(error, ContractRejected) else "ledger_unavailable"
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
