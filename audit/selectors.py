"""Reads: who may see which access events, searches over the mirror, and the auditor's ledger view.

`access_events_visible_to` is the ONE place that decides what a user may read of the access log:
an auditor every event; a patient the events about their own records; anyone else nothing.
Auditors see codes, pseudonyms, ids and hashes only: no clinical value or score is ever logged.
"""

from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from typing import Any
from uuid import UUID

from django.db.models import Count, Q, QuerySet
from django.db.models.functions import TruncDate
from django.utils import timezone

from audit.access import auditor_required
from audit.fhir import MINOR_FAILURE, SERIOUS_FAILURE, SERIOUS_FAILURE_REASONS, SUCCESS, audit_event
from audit.models import (
    COLUMNS,
    EVENT_FIELDS,
    EXTENSIONS,
    MEDIA_TYPES,
    AccessEvent,
    AuditExport,
    ExportStatus,
    export_batch_id,
    export_event_id,
)
from chaincode.validation import format_timestamp
from health_platform import bootstrap
from health_platform.errors import NotFound, PermissionDenied
from health_platform.roles import Role, user_roles
from ledger import BlockSummary, LedgerError

FETCH_CHUNK = 2000
SEARCH_FIELDS = ("patient_pseudonym", "grantee", "request_id", "model_hash", "decision", "reason", "kind")


@dataclass(frozen=True)
class AccessEventFilters:
    """A search over the access log. Empty strings and None mean "any"."""

    patient_pseudonym: str = ""
    grantee: str = ""
    request_id: str = ""
    model_hash: str = ""
    decision: str = ""
    reason: str = ""
    kind: str = ""
    since: datetime | None = None
    until: datetime | None = None

    def as_json(self) -> dict[str, str]:
        """The filters that are set, as strings (what a manifest records)."""
        values: dict[str, str] = {name: getattr(self, name) for name in SEARCH_FIELDS if getattr(self, name)}
        for name in ("since", "until"):
            moment = getattr(self, name)
            if moment is not None:
                values[name] = moment.isoformat()
        return values

    @classmethod
    def from_json(cls, values: dict[str, Any]) -> "AccessEventFilters":
        texts: dict[str, Any] = {name: values.get(name) or "" for name in SEARCH_FIELDS}
        for name in ("since", "until"):
            texts[name] = datetime.fromisoformat(values[name]) if values.get(name) else None
        return cls(**texts)

    def bounded_by(self, moment: datetime) -> "AccessEventFilters":
        """These filters, narrowed to the events recorded before `moment` (an export's scope: what was logged
        under its filters before it was asked for)."""
        return replace(self, until=moment if self.until is None else min(self.until, moment))

    def matches(self, event: dict[str, Any], recorded_at: datetime) -> bool:
        """Whether a ledger event (fields as the contract stores them) falls under these filters."""
        for name in SEARCH_FIELDS:
            wanted = getattr(self, name)
            if wanted and (event.get(name) or "") != wanted:
                return False
        if self.since is not None and recorded_at < self.since:
            return False
        return self.until is None or recorded_at < self.until


def access_events_visible_to(*, viewer: Any) -> QuerySet[AccessEvent]:
    """Every event `viewer` may read. Raises PermissionDenied for a user with no such right."""
    roles = user_roles(viewer)
    if Role.AUDITOR in roles:
        return AccessEvent.objects.all()
    if Role.PATIENT in roles:
        from records.models import Patient

        pseudonyms = Patient.objects.filter(user=viewer).values("pseudonym")
        return AccessEvent.objects.filter(patient_pseudonym__in=pseudonyms)
    raise PermissionDenied("Only auditors and patients can read the access log.", code="audit_forbidden")


def access_events_search(
    *, viewer: Any, filters: AccessEventFilters, newest_first: bool = False
) -> QuerySet[AccessEvent]:
    """The events `viewer` may read that match `filters`, ordered by time."""
    return _filtered(access_events_visible_to(viewer=viewer), filters, newest_first=newest_first)


def access_events_matching(filters: AccessEventFilters) -> QuerySet[AccessEvent]:
    """Every event under `filters`, oldest first, for services that have already checked the caller's right."""
    return _filtered(AccessEvent.objects.all(), filters, newest_first=False)


def _filtered(
    events: QuerySet[AccessEvent], filters: AccessEventFilters, *, newest_first: bool
) -> QuerySet[AccessEvent]:
    conditions = Q(**{name: getattr(filters, name) for name in SEARCH_FIELDS if getattr(filters, name)})
    if filters.since is not None:
        conditions &= Q(recorded_at__gte=filters.since)
    if filters.until is not None:
        conditions &= Q(recorded_at__lt=filters.until)
    order = ("recorded_at", "batch_id", "position")
    return events.filter(conditions).order_by(*(f"-{name}" for name in order) if newest_first else order)


def emergency_events(*, request_ids: set[str]) -> dict[str, tuple[str, str]]:
    """declaration id -> (its emergency reason, the auditor's verdict or ""), from the declarations' and reviews'
    events in the log."""
    found: dict[str, tuple[str, str]] = dict.fromkeys(request_ids, ("", ""))
    events = AccessEvent.objects.filter(request_id__in=request_ids, kind__in=["emergency_declared", "emergency_review"])
    for kind, request_id, reason, decision in events.values_list("kind", "request_id", "reason", "decision"):
        declared, verdict = found[request_id]
        found[request_id] = (reason, verdict) if kind == "emergency_declared" else (declared, decision)
    return found


def audit_exports_of(*, viewer: Any) -> QuerySet[AuditExport]:
    """Exports an auditor may see: every auditor's (an audit team shares its evidence)."""
    auditor_required(viewer, "Only auditors can see exports.")
    return AuditExport.objects.select_related("requester")


def audit_export_recorded(*, export_id: UUID) -> AuditExport | None:
    """The platform's record of an export, for services that have checked the caller's right already (the
    verification of a copy compares the manifest it is given with this record)."""
    return AuditExport.objects.filter(pk=export_id).first()


def audit_export_id_of_file(*, sha256: str) -> str | None:
    """The id of the export whose file has this SHA-256, as the mirror of its ledger entry says (None if none)."""
    return AccessEvent.objects.filter(kind="export", export_sha256=sha256).values_list("request_id", flat=True).first()


def audit_export_get(*, viewer: Any, export_id: Any) -> AuditExport | None:
    return audit_exports_of(viewer=viewer).filter(pk=export_id).first()


def export_of_auditor(*, user: Any, export_id: object) -> AuditExport:
    """An export the user may see (403 for non-auditors); a malformed or unknown id is 404."""
    audit_exports_of(viewer=user)
    try:
        key = UUID(str(export_id))
    except ValueError:
        raise NotFound("No such export.") from None
    export = audit_export_get(viewer=user, export_id=key)
    if export is None:
        raise NotFound("No such export.")
    return export


def ledger_recent_blocks(*, viewer: Any, limit: int = 20, before: int | None = None) -> list[BlockSummary]:
    """The newest blocks (ids, hashes, transaction counts; no payloads), newest first."""
    auditor_required(viewer, "Only auditors can read the ledger view.")
    return bootstrap.contracts().recent_blocks(limit=limit, before=before)


def audit_export_manifest_name(*, export: AuditExport) -> str:
    """The file name a manifest is saved under: the export file's, plus ".manifest.json", which is where
    `manage.py verify_access_log` looks for the manifest of a copy when none is named."""
    return f"access-log-{export.id}.{EXTENSIONS[export.format]}.manifest.json"


def audit_export_manifest(*, export: AuditExport) -> dict[str, Any]:
    """What an export is: filters, count, time, file hash, verification result and its own ledger entry.

    The export holds the events under `filters` recorded before `requested_at`, in the order (time, batch,
    position); the ledger's own entry of the export (`ledger`) carries the file's SHA-256. Verifying a copy
    with its manifest (audit.copies.copy_verify) checks the copy against both."""
    return {
        "export_id": str(export.id),
        "status": export.status,
        "failure_code": export.failure_code or None,
        "format": export.format,
        "filters": export.filters,
        "count": export.event_count,
        "requested_at": export.created_at.isoformat(),
        "exported_at": export.finished_at.isoformat() if export.finished_at else None,
        "exported_by": export.actor_id,
        "file": {
            "name": f"access-log-{export.id}.{EXTENSIONS[export.format]}",
            "media_type": MEDIA_TYPES[export.format],
            "sha256": export.sha256 or None,
            "bytes": export.size_bytes,
        },
        "verification": export.verification or None,
        "ledger": {
            "event_id": export_event_id(export.id),
            "batch_id": export_batch_id(export.id),
            "tx_id": export.log_tx_id or None,
            "block_number": export.log_block,
        },
    }


def mirror_rows(filters: AccessEventFilters) -> Iterator[dict[str, Any]]:
    """The mirror's events under `filters`, oldest first, as flat dicts (COLUMNS); streamed in chunks.

    For services and commands that have checked the caller's right to read the log already.
    """
    for values in access_events_matching(filters).values_list(*COLUMNS).iterator(chunk_size=FETCH_CHUNK):
        yield _row(values)


def access_events_as_fhir(events: QuerySet[AccessEvent]) -> list[dict[str, Any]]:
    """The events (a page of what the caller may read) as FHIR R4 AuditEvents, as the FHIR export writes them."""
    return [audit_event(_row(values)) for values in events.values_list(*COLUMNS)]


def access_events_with_fhir_outcome(events: QuerySet[AccessEvent], outcomes: set[str]) -> QuerySet[AccessEvent]:
    """Filter by AuditEvent.outcome as access_events_as_fhir writes it (audit.fhir.outcome_code): 0 an admitted access
    or a computed outcome, 8 an outcome that failed unexpectedly, 4 any other; 12 is never logged."""
    success = Q(decision__in=("admit", "computed"))
    serious = ~success & Q(kind="outcome", reason__in=SERIOUS_FAILURE_REASONS)
    conditions = {SUCCESS: success, SERIOUS_FAILURE: serious, MINOR_FAILURE: ~success & ~serious}
    wanted = Q(pk__in=[])
    for outcome in outcomes & conditions.keys():
        wanted |= conditions[outcome]
    return events.filter(wanted)


def _row(values: tuple[Any, ...]) -> dict[str, Any]:
    """An event's COLUMNS as the exports write them: the time in the ledger's format, absent fields None."""
    row = dict(zip(COLUMNS, values, strict=True))
    row["recorded_at"] = format_timestamp(row["recorded_at"])
    for name in EVENT_FIELDS:
        row[name] = row[name] or None
    return row


@dataclass(frozen=True)
class AccessLogOverview:
    """The state of the access log for the auditor's home: counts by day and by refusal reason, the chain's
    height, the latest exports and the latest verification (an export's, written as it was verified)."""

    total_events: int
    events_per_day: list[tuple[date, int]]
    refusals_by_reason: list[tuple[str, int]]
    latest_exports: list[AuditExport]
    last_verified: AuditExport | None
    chain_height: int | None


def access_log_overview(*, viewer: Any, days: int = 14, exports: int = 5) -> AccessLogOverview:
    """The access log's state, from the mirror (counts) and the ledger (height; None when it does not answer)."""
    auditor_required(viewer, "Only auditors can read the state of the access log.")
    today = timezone.now().date()
    since = today - timedelta(days=days - 1)
    per_day = dict(
        AccessEvent.objects.filter(recorded_at__date__gte=since)
        .annotate(day=TruncDate("recorded_at"))
        .values("day")
        .annotate(count=Count("id"))
        .values_list("day", "count")
    )
    refusals = (
        AccessEvent.objects.filter(decision="refuse")
        .values("reason")
        .annotate(count=Count("id"))
        .order_by("-count", "reason")
        .values_list("reason", "count")
    )
    try:
        height: int | None = bootstrap.contracts().height()
    except LedgerError:
        height = None
    finished = AuditExport.objects.select_related("requester").order_by("-created_at", "id")
    return AccessLogOverview(
        total_events=AccessEvent.objects.count(),
        events_per_day=[(since + timedelta(days=n), per_day.get(since + timedelta(days=n), 0)) for n in range(days)],
        refusals_by_reason=list(refusals),
        latest_exports=list(finished[:exports]),
        last_verified=finished.filter(status=ExportStatus.COMPLETED).exclude(verification={}).first(),
        chain_height=height,
    )
