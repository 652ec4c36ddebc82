"""Writes of the audit app: logging access events (audit.log, for every app) and requesting exports.

An export is written, verified against the ledger and logged by the export job (audit.exports), run
by a custodian worker (audit.tasks).
"""

from typing import Any

import structlog
from django.db import transaction

from audit import tasks
from audit.access import auditor_actor_id, auditor_required
from audit.log import access_batch_log, access_batch_mirror, access_log_mirror_rebuild, logged_batch_mirror
from audit.models import AuditExport, ExportFormat
from audit.selectors import AccessEventFilters
from audit.verdicts import NOTE_MAX, verdict_note_open, verdict_record
from health_platform.errors import ValidationFailed

__all__ = [
    "NOTE_MAX",
    "access_batch_log",
    "access_batch_mirror",
    "access_log_mirror_rebuild",
    "audit_export_create",
    "auditor_actor_id",
    "logged_batch_mirror",
    "verdict_note_open",
    "verdict_record",
]

log = structlog.get_logger(__name__)


def audit_export_create(*, requester: Any, format: str, filters: AccessEventFilters) -> AuditExport:
    """Queue an export of the events under `filters` in `format` (csv, json or fhir)."""
    auditor_required(requester, "Only auditors can export the access log.")
    if format not in ExportFormat.values:
        raise ValidationFailed(
            "Choose an export format: csv, json or fhir.", code="unknown_export_format", detail={"field": "format"}
        )
    export = AuditExport.objects.create(
        requester=requester, actor_id=auditor_actor_id(requester), format=format, filters=filters.as_json()
    )
    transaction.on_commit(lambda: tasks.audit_export_run.delay(str(export.id)))
    log.info("audit_export_requested", export_id=str(export.id), format=format, actor=export.actor_id)
    return export
