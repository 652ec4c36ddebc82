"""An export's manifest, read back and checked: what a copy of the export must hold.

A manifest is the JSON the platform serves beside each export (audit.selectors.audit_export_manifest): the
export's id, format, filters, count, the time it was asked for, who exported it and the file's SHA-256. A
copy is complete when it holds exactly the ledger's events under those filters recorded before that time.

The manifest itself travels with the copy and can be edited like it, so it is trusted only as far as it is
checked: against the ledger's own entry of the export (`export:<id>`, one event `exp:<id>` carrying the
file's SHA-256 and the exporter, logged after the file was written: the anchor of trust) and against the
platform's record of the export when the platform holds one (the filters, count and time, which the ledger
entry does not carry). A manifest that fails either check is refused with invalid_manifest, naming the
fields, never their values.
"""

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from django.core.exceptions import ValidationError as DjangoValidationError

from audit.filters import ACTOR_VALIDATOR, AccessEventFilter
from audit.models import EXTENSIONS, AccessEvent, ExportStatus, export_batch_id, export_event_id
from audit.selectors import (
    AccessEventFilters,
    audit_export_id_of_file,
    audit_export_manifest,
    audit_export_recorded,
)
from health_platform import bootstrap
from health_platform.errors import ValidationFailed
from ledger.contracts import AccessBatch

MAX_MANIFEST_BYTES = 64 * 1024
# A manifest's filter names (AccessEventFilters) and the search's names that validate them (audit.filters).
_FILTER_NAMES = {
    "patient_pseudonym": "patient",
    "grantee": "grantee",
    "request_id": "request",
    "model_hash": "model",
    "decision": "decision",
    "reason": "reason",
    "kind": "kind",
    "since": "since",
    "until": "until",
}
_SHA256_HEX = frozenset("0123456789abcdef")


@dataclass(frozen=True)
class ExportManifest:
    """The parts of a manifest that say what a copy must hold."""

    export_id: UUID
    format: str
    filters: AccessEventFilters
    count: int
    requested_at: datetime
    exported_by: str
    sha256: str
    tx_id: str | None = None

    @property
    def scope(self) -> AccessEventFilters:
        """The ledger events the export holds: those under its filters recorded before it was asked for."""
        return self.filters.bounded_by(self.requested_at)


@dataclass(frozen=True)
class ExportAnchor:
    """The ledger's entry of an export: the SHA-256 of the file as written, and when it was logged."""

    export_id: UUID
    sha256: str
    recorded_at: datetime
    tx_id: str


def invalid_manifest(reason: str, *, field: str | None = None, fields: list[str] | None = None) -> ValidationFailed:
    """400 invalid_manifest; `reason` names fields and checks, never a value of the manifest."""
    detail: dict[str, Any] = {"reason": reason}
    if field is not None:
        detail["field"] = field
    if fields is not None:
        detail["fields"] = fields
    return ValidationFailed(f"The manifest cannot be used: {reason}.", code="invalid_manifest", detail=detail)


def manifest_read(data: bytes) -> ExportManifest:
    """A manifest from its file's bytes (at most MAX_MANIFEST_BYTES, UTF-8 JSON)."""
    if len(data) > MAX_MANIFEST_BYTES:
        raise invalid_manifest(f"it is larger than {MAX_MANIFEST_BYTES} bytes")
    try:
        values = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise invalid_manifest("it is not JSON") from None
    return manifest_parse(values)


def manifest_parse(values: Any) -> ExportManifest:
    """A manifest from its JSON value; every field the check needs is validated, unknown ones are ignored."""
    if not isinstance(values, dict):
        raise invalid_manifest("it is not a JSON object")
    if values.get("status") != ExportStatus.COMPLETED:
        raise invalid_manifest("it is the manifest of an export that did not complete", field="status")
    try:
        export_id = UUID(_text(values, "export_id"))
    except ValueError:
        raise invalid_manifest("export_id is not an export id", field="export_id") from None
    format = _text(values, "format")
    if format not in EXTENSIONS:
        raise invalid_manifest("format is not csv, json or fhir", field="format")
    count = values.get("count")
    if not isinstance(count, int) or isinstance(count, bool) or count < 0:
        raise invalid_manifest("count is not a number of events", field="count")
    requested_at = _moment(values, "requested_at")
    exported_by = _text(values, "exported_by")
    try:
        ACTOR_VALIDATOR(exported_by)
    except DjangoValidationError:
        raise invalid_manifest("exported_by is not an auditor's id", field="exported_by") from None
    described = values.get("file")
    sha256 = described.get("sha256") if isinstance(described, dict) else None
    if not isinstance(sha256, str) or len(sha256) != 64 or not set(sha256) <= _SHA256_HEX:
        raise invalid_manifest("file.sha256 is not a SHA-256", field="file.sha256")
    ledger = values.get("ledger")
    if ledger is None:
        ledger = {}
    if not isinstance(ledger, dict):
        raise invalid_manifest("ledger is not an object", field="ledger")
    for name, expected in (("event_id", export_event_id(export_id)), ("batch_id", export_batch_id(export_id))):
        if ledger.get(name) is not None and ledger[name] != expected:
            raise invalid_manifest(f"ledger.{name} is not this export's", field=f"ledger.{name}")
    tx_id = ledger.get("tx_id")
    if tx_id is not None and not isinstance(tx_id, str):
        raise invalid_manifest("ledger.tx_id is not a transaction id", field="ledger.tx_id")
    return ExportManifest(
        export_id=export_id,
        format=format,
        filters=_filters(values.get("filters")),
        count=count,
        requested_at=requested_at,
        exported_by=exported_by,
        sha256=sha256,
        tx_id=tx_id or None,
    )


def manifest_of_export(*, export: Any) -> ExportManifest:
    """The manifest of an export the platform holds, as it serves it (read back through the same checks)."""
    return manifest_parse(audit_export_manifest(export=export))


def manifest_check(*, manifest: ExportManifest) -> ExportAnchor:
    """Check a manifest against the ledger's entry of its export and the platform's record of it.

    The ledger must hold the export (`export:<id>`) with the manifest's file SHA-256 and exporter, logged after
    the manifest's requested_at (and in the manifest's transaction, when it names one). The platform's record,
    when it has one, must agree on the format, filters, count, time, exporter and SHA-256: a manifest whose
    filters were narrowed to fit a copy with rows cut out is refused here. Raises invalid_manifest naming the
    fields that disagree; LedgerUnavailable when the ledger does not answer.
    """
    batch = bootstrap.contracts().read_access_batch(export_batch_id(manifest.export_id))
    entry = _export_entry(batch, manifest.export_id)
    if batch is None or entry is None:
        raise invalid_manifest("the ledger holds no export with this export_id", field="export_id")
    logged_at = datetime.fromisoformat(batch.recorded_at.replace("Z", "+00:00"))
    disagree = [
        name
        for name, agrees in (
            ("file.sha256", entry.get("export_sha256") == manifest.sha256),
            ("exported_by", entry.get("grantee") == manifest.exported_by),
            ("requested_at", manifest.requested_at < logged_at),
            ("ledger.tx_id", manifest.tx_id in (None, batch.tx_id)),
        )
        if not agrees
    ]
    if disagree:
        raise invalid_manifest("it does not match the ledger's entry of the export", fields=disagree)
    recorded = audit_export_recorded(export_id=manifest.export_id)
    if recorded is not None:
        if recorded.status != ExportStatus.COMPLETED:
            raise invalid_manifest("the platform's record of this export is not completed", field="status")
        ours = manifest_of_export(export=recorded)
        differ = [
            label
            for name, label in (
                ("format", "format"),
                ("filters", "filters"),
                ("count", "count"),
                ("requested_at", "requested_at"),
                ("exported_by", "exported_by"),
                ("sha256", "file.sha256"),
            )
            if getattr(ours, name) != getattr(manifest, name)
        ]
        if differ:
            raise invalid_manifest("it does not match the platform's record of the export", fields=differ)
    return ExportAnchor(export_id=manifest.export_id, sha256=manifest.sha256, recorded_at=logged_at, tx_id=batch.tx_id)


def export_of_file(*, sha256: str) -> UUID | None:
    """The export whose file has this SHA-256 on the ledger, if any (a copy checked against the manifest of
    another export is named so). Looked up in the mirror, confirmed on the ledger."""
    candidate = audit_export_id_of_file(sha256=sha256)
    try:
        export_id = UUID(str(candidate))
    except ValueError:
        return None
    entry = _export_entry(bootstrap.contracts().read_access_batch(export_batch_id(export_id)), export_id)
    return export_id if entry is not None and entry.get("export_sha256") == sha256 else None


def _export_entry(batch: AccessBatch | None, export_id: UUID) -> dict[str, Any] | None:
    if batch is None or len(batch.events) != 1:
        return None
    event = batch.events[0]
    if (event.get("event_id"), event.get("kind"), event.get("request_id")) != (
        export_event_id(export_id),
        "export",
        str(export_id),
    ):
        return None
    return event


def _text(values: dict[str, Any], name: str) -> str:
    value = values.get(name)
    if not isinstance(value, str) or not value:
        raise invalid_manifest(f"{name} is missing or not text", field=name)
    return value


def _moment(values: dict[str, Any], name: str) -> datetime:
    try:
        moment = datetime.fromisoformat(_text(values, name))
    except ValueError:
        raise invalid_manifest(f"{name} is not a time", field=name) from None
    if moment.tzinfo is None:
        raise invalid_manifest(f"{name} has no time zone", field=name)
    return moment


def _filters(values: Any) -> AccessEventFilters:
    """The manifest's filters, validated as a search's are (audit.filters); errors name the filter."""
    if not isinstance(values, dict):
        raise invalid_manifest("filters is not an object", field="filters")
    unknown = sorted(name for name in values if name not in _FILTER_NAMES)
    if unknown:
        raise invalid_manifest("filters names a filter that exports do not have", field="filters")
    if any(not isinstance(value, str) for value in values.values()):
        raise invalid_manifest("a filter is not text", field="filters")
    search = AccessEventFilter(
        data={_FILTER_NAMES[name]: value for name, value in values.items()}, queryset=AccessEvent.objects.none()
    )
    if not search.is_valid():
        by_search_name = {search_name: name for name, search_name in _FILTER_NAMES.items()}
        names = sorted(by_search_name.get(name, name) for name in search.errors)
        raise invalid_manifest("a filter is not valid", field=f"filters.{names[0]}" if names else "filters")
    return search.terms().filters
