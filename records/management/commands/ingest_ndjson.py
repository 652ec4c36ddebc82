"""Ingest FHIR NDJSON files (the Bulk Data format: Patient.ndjson, Observation.ndjson, or one mixed file) as
encrypted, anchored records; run again on the same files, it resumes where an interruption left it.

Exit codes: 0 every patient's records stored; 1 done, but some patients were refused (each listed by file, line
and stable code; their other lines too were left out); 2 the files were refused before anything was stored (one
line: the stable code, file and line). Messages name files, lines and codes, never what a line holds.
"""

import gc
import sys
from typing import Any

from django.core.management.base import CommandError

from health_platform.commands import PlatformCommand
from records.errors import BundleRejected, BundleTooLarge
from records.models import BulkIngestJob
from records.services import record_ingest_ndjson

EXIT_PATIENTS_REFUSED = 1
EXIT_FILES_REFUSED = 2


class Command(PlatformCommand):
    help = __doc__

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("paths", nargs="+", metavar="PATH", help="NDJSON files, one FHIR resource a line")
        parser.add_argument(
            "--slice-patients", type=int, default=None, help="patients per slice (INGEST_NDJSON_SLICE_PATIENTS)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        paths: list[str] = options["paths"]
        try:
            result = ndjson_ingest_command(paths=paths, slice_patients=options["slice_patients"], out=self.stdout.write)
        except (BundleRejected, BundleTooLarge) as error:
            raise CommandError(_refusal_line(error), returncode=EXIT_FILES_REFUSED) from error
        if result.patients_refused:
            sys.exit(EXIT_PATIENTS_REFUSED)


def ndjson_ingest_command(*, paths: list[str], slice_patients: int | None, out: Any) -> BulkIngestJob:
    """What the command does, callable as a function (the benchmark times it): ingest, then a summary.

    What is alive when it starts (Django, the FHIR models and their validators: about a million objects, none of
    them garbage) is frozen out of the cyclic collector for the run (gc.freeze), and so in the reader processes
    forked from it: every slice allocates enough to set off full collections, which walked all of it each time,
    an eighth of the run. What the run allocates is collected as usual; the frozen objects are handed back to the
    collector when it ends."""
    gc.collect()
    gc.freeze()
    try:
        result = record_ingest_ndjson(
            paths=paths,
            slice_patients=slice_patients,
            after_slice=lambda job: out(f"slice {job.slices_done}/{job.slices_total} committed"),
        )
    finally:
        gc.unfreeze()
    job = result.job
    if result.resumed_at and result.resumed_at < job.slices_total:
        out(f"Resumed job {job.pk} at slice {result.resumed_at + 1} of {job.slices_total}.")
    out(
        f"Job {job.pk}: {job.status}; {job.slices_done}/{job.slices_total} slices; "
        f"{job.records_new} new record versions, {job.records_unchanged} unchanged, "
        f"{job.patients_refused} patients refused."
    )
    for refusal in job.refusals:
        out(f"refused: {paths[refusal['file']]} line {refusal['line']}: {refusal['code']} {refusal['path']}".rstrip())
    return job


def _refusal_line(error: BundleRejected | BundleTooLarge) -> str:
    detail = error.detail if isinstance(error.detail, dict) else {}
    errors = detail.get("errors")
    where = errors[0] if isinstance(errors, list) and errors and isinstance(errors[0], dict) else detail
    located = f" ({where['file']} line {where['line']})" if "file" in where and "line" in where else ""
    path = f" at {where['path']}" if where.get("path") else ""
    return f"{error.code}: {error.message}{located}{path} Nothing was stored."
