import json
from pathlib import Path
from typing import Any

from django.core.management.base import CommandError, CommandParser

from audit.copies import copy_verify
from audit.exports import EXTENSIONS
from audit.manifests import MAX_MANIFEST_BYTES, ExportManifest, invalid_manifest, manifest_read
from audit.verification import mirror_verify
from health_platform.commands import PlatformCommand
from health_platform.errors import ValidationFailed
from ledger.errors import LedgerError

MANIFEST_SUFFIX = ".manifest.json"
# Exit codes (2 is argparse's, for a command line it cannot parse).
PROBLEMS_FOUND = 1
COMPLETENESS_NOT_CHECKED = 3
INPUT_REFUSED = 4
LEDGER_FAILED = 5


class Command(PlatformCommand):
    help = (
        "Verify the access-log mirror, or a copy of an export (a file), against the ledger, completeness "
        "included: a copy is checked against its manifest (--manifest FILE, or FILE.manifest.json beside it). "
        "Prints the result as JSON (event ids and field names only). Exits 0 when everything checks out; "
        f"{PROBLEMS_FOUND} when something does not (the problems name the events); {COMPLETENESS_NOT_CHECKED} "
        f"when nothing was found wrong but completeness could not be checked (no manifest); {INPUT_REFUSED} when "
        f"the file or the manifest cannot be used (invalid_export_file, invalid_manifest); {LEDGER_FAILED} when "
        "the ledger did not answer (try again)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", nargs="?", help="an export file (csv, json or fhir NDJSON); default: the mirror")
        parser.add_argument("--format", choices=sorted(EXTENSIONS), help="the file's format (default: its extension)")
        parser.add_argument(
            "--manifest",
            metavar="MANIFEST",
            help=f"the export's manifest (default: FILE{MANIFEST_SUFFIX}, if there is one)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            if options["file"]:
                body = self._copy_verified(Path(options["file"]), options["format"], options["manifest"])
            elif options["manifest"]:
                raise CommandError("a manifest describes a copy: give the copy's FILE too", returncode=INPUT_REFUSED)
            else:
                body = mirror_verify().as_dict()
        except ValidationFailed as error:
            reason = (error.detail or {}).get("reason") if isinstance(error.detail, dict) else None
            raise CommandError(f"{error.code}: {reason or error.message}", returncode=INPUT_REFUSED) from None
        except LedgerError as error:
            raise CommandError(f"{error.code}: {error.as_dict()['message']}", returncode=LEDGER_FAILED) from None
        self.stdout.write(json.dumps(body, indent=2, sort_keys=True))
        if body["ok"]:
            return
        self.stderr.write(f"not verified: {body['message']}")
        if not body["completeness_checked"] and body["problem_count"] == 0 and body["chain"].get("ok", True):
            self.stderr.write(
                f"give the export's manifest (--manifest FILE, or save it beside the copy as <copy>{MANIFEST_SUFFIX})"
            )
            raise SystemExit(COMPLETENESS_NOT_CHECKED)
        raise SystemExit(PROBLEMS_FOUND)

    def _copy_verified(self, path: Path, format: str | None, manifest_name: str | None) -> dict[str, Any]:
        manifest = _manifest(Path(manifest_name) if manifest_name else None, sidecar=_sidecar(path))
        format = format or {v: k for k, v in EXTENSIONS.items()}.get(path.suffix.lstrip("."))
        if format is None and manifest is not None:
            format = manifest.format
        if format is None:
            raise CommandError("invalid_export_file: give --format csv, json or fhir", returncode=INPUT_REFUSED)
        try:
            with path.open("rb") as stream:
                return copy_verify(stream=stream, format=format, manifest=manifest)
        except OSError as error:
            raise CommandError(
                f"invalid_export_file: the file cannot be read ({error.strerror})", returncode=INPUT_REFUSED
            ) from None


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + MANIFEST_SUFFIX)


def _manifest(named: Path | None, *, sidecar: Path) -> ExportManifest | None:
    """The manifest named, else the one beside the copy, else None."""
    path = named if named is not None else sidecar if sidecar.is_file() else None
    if path is None:
        return None
    try:
        with path.open("rb") as stream:
            data = stream.read(MAX_MANIFEST_BYTES + 1)
    except OSError as error:
        raise invalid_manifest(f"the manifest cannot be read ({error.strerror})") from None
    return manifest_read(data)
