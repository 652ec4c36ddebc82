import json
from pathlib import Path
from typing import Any

from django.core.management.base import CommandError, CommandParser

from audit.exports import EXTENSIONS, rows_from_file
from audit.verification import events_verify, mirror_verify
from health_platform.commands import PlatformCommand


class Command(PlatformCommand):
    help = (
        "Verify the access-log mirror, or a copy (an export file), against the ledger. Prints the result as JSON "
        "(event ids and field names only) and exits 1 if anything does not match."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", nargs="?", help="an export file (csv, json or fhir NDJSON); default: the mirror")
        parser.add_argument("--format", choices=sorted(EXTENSIONS), help="the file's format (default: its extension)")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["file"]:
            path = Path(options["file"])
            format = options["format"] or {v: k for k, v in EXTENSIONS.items()}.get(path.suffix.lstrip("."))
            if format is None:
                raise CommandError("invalid_export_file: give --format csv, json or fhir")
            try:
                with path.open("rb") as stream:
                    result = events_verify(rows_from_file(stream, format=format))
            except OSError as error:
                raise CommandError(f"invalid_export_file: the file cannot be read ({error.strerror})") from None
            except ValueError as error:
                raise CommandError(f"invalid_export_file: {error}") from None
        else:
            result = mirror_verify()
        self.stdout.write(json.dumps(result.as_dict(), indent=2, sort_keys=True))
        if not result.ok:
            raise SystemExit(1)
