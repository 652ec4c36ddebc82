import json
from pathlib import Path
from typing import Any

from django.core.management.base import CommandError, CommandParser

from health_platform.commands import PlatformCommand
from health_platform.errors import ValidationFailed
from ledger.errors import LedgerError
from records.erasure import MAX_RECEIPT_BYTES, erasure_receipt_verify

# Exit codes (2 is argparse's, for a command line it cannot parse).
DIFFERENCES_FOUND = 1
INPUT_REFUSED = 4
LEDGER_FAILED = 5


class Command(PlatformCommand):
    help = (
        "Check a patient's erasure receipt (the JSON file the portal gives) against the ledger: its record ids' "
        "digest and count, the ledger's erasure entry and block, and every record's anchor marked erased by it. "
        "Prints the result as JSON (ids and field names only). Exits 0 when everything matches; "
        f"{DIFFERENCES_FOUND} when something differs (named); {INPUT_REFUSED} when the file is not a receipt "
        f"(receipt_invalid); {LEDGER_FAILED} when the ledger did not answer (try again)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", help="the receipt (JSON)")

    def handle(self, *args: Any, **options: Any) -> None:
        path = Path(options["file"])
        try:
            with path.open("rb") as receipt:
                raw = receipt.read(MAX_RECEIPT_BYTES + 1)
        except OSError:
            raise CommandError("receipt_unreadable: the file cannot be read", returncode=INPUT_REFUSED) from None
        try:
            verification = erasure_receipt_verify(raw=raw)
        except ValidationFailed as error:
            reason = error.detail.get("reason") if isinstance(error.detail, dict) else None
            raise CommandError(f"{error.code}: {reason or error.message}", returncode=INPUT_REFUSED) from None
        except LedgerError as error:
            raise CommandError(f"{error.code}: {error.as_dict()['message']}", returncode=LEDGER_FAILED) from None
        self.stdout.write(json.dumps(verification.as_dict(), indent=2, sort_keys=True))
        if not verification.ok:
            raise CommandError("not verified: the ledger differs from the receipt", returncode=DIFFERENCES_FOUND)
