"""Verifying a copy of an export, as handed over (an upload, a file on disk), against the ledger.

The one service behind `POST /api/audit/verify/` and `manage.py verify_access_log FILE`: the copy's manifest
checked first (audit.manifests), then the copy itself (audit.verification.events_verify) with the manifest's
scope, so that a copy with a row deleted, added, moved or changed fails and names the event.
"""

import csv
import hashlib
from typing import IO, Any

from audit.exports import rows_from_file
from audit.manifests import ExportManifest, export_of_file, invalid_manifest, manifest_check
from audit.selectors import AccessEventFilters
from audit.verification import VerificationResult, events_verify
from health_platform.errors import ValidationFailed

HASH_CHUNK = 1024 * 1024


def copy_verify(
    *,
    stream: IO[bytes],
    format: str,
    manifest: ExportManifest | None = None,
    filters: AccessEventFilters | None = None,
) -> dict[str, Any]:
    """Verify a copy of an export (a seekable binary stream in `format`) against the ledger.

    With its manifest: the manifest is checked first (audit.manifests.manifest_check: against the ledger's
    entry of the export and the platform's record), then the copy, event by event and for completeness
    against the manifest's scope and count; `matches_export` says whether the copy's SHA-256 is the one the
    ledger holds for the export (a copy whose bytes differ but whose events all check out, say re-saved by
    another program, is still ok). Without a manifest, `filters` (if any) are the scope; without either,
    completeness is not checked and the answer is not ok.

    Raises ValidationFailed: invalid_manifest (the manifest is malformed, does not match the ledger or the
    platform's record, describes another format, or the copy is the file of another export);
    invalid_export_file (the copy is not in `format`, naming the line).
    """
    anchor = None
    if manifest is not None:
        if manifest.format != format:
            raise invalid_manifest("the manifest describes an export in another format", field="format")
        anchor = manifest_check(manifest=manifest)
    digest = _sha256(stream)
    if anchor is not None and digest != anchor.sha256:
        other = export_of_file(sha256=digest)
        if other is not None and other != anchor.export_id:
            raise invalid_manifest("the copy is the file of another export", field="export_id")
    result = _verified(
        stream,
        format=format,
        filters=manifest.scope if manifest is not None else filters,
        expected_count=manifest.count if manifest is not None else None,
    )
    return {
        **result.as_dict(),
        "sha256": digest,
        "matches_export": digest == anchor.sha256 if anchor is not None else None,
        "export_id": str(anchor.export_id) if anchor is not None else None,
    }


def _sha256(stream: IO[bytes]) -> str:
    digest = hashlib.sha256()
    stream.seek(0)
    while chunk := stream.read(HASH_CHUNK):
        digest.update(chunk)
    stream.seek(0)
    return digest.hexdigest()


def _verified(
    stream: IO[bytes], *, format: str, filters: AccessEventFilters | None, expected_count: int | None
) -> VerificationResult:
    """events_verify over the copy; a copy that is not in `format` is invalid_export_file naming the line."""
    invalid = "The file is not a {format} export of the access log: {reason}."
    try:
        return events_verify(rows_from_file(stream, format=format), filters=filters, expected_count=expected_count)
    except UnicodeDecodeError:
        reason = "it is not UTF-8 text"
    except (ValueError, csv.Error) as error:
        reason = str(error)  # rows_from_file names lines, never values
    except (AttributeError, TypeError, KeyError):
        reason = "an event is not shaped as the export writes it"
    raise ValidationFailed(
        invalid.format(format=format.upper() if format != "fhir" else "FHIR", reason=reason),
        code="invalid_export_file",
        detail={"field": "file", "reason": reason},
    )
