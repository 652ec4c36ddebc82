"""manage.py score_access_log [--until YYYY-MM-DD] [--days N]: run the misuse detector now, in this process."""

from datetime import date
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from health_platform.errors import ValidationFailed
from ledger import LedgerError
from oversight.services import misuse_score


class Command(BaseCommand):
    help = "Score the access log from the ledger (the days before --until; yesterday and today by default)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--until", help="the day after the last day scored (YYYY-MM-DD; default tomorrow, UTC)")
        parser.add_argument("--days", type=int, default=2, help="how many days to score (1-31)")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            until = date.fromisoformat(options["until"]) if options["until"] else None
        except ValueError:
            raise CommandError("--until must be a date, YYYY-MM-DD (code invalid_date)") from None
        try:
            run = misuse_score(until=until, days=options["days"])
        except ValidationFailed as invalid:
            raise CommandError(f"{invalid.message} (code {invalid.code})") from None
        except LedgerError as error:  # nothing is scored without the ledger: the beat will try again
            raise CommandError(f"{error.public_message} (code {error.code})") from None
        if run.skipped:
            self.stdout.write(f"Nothing scored from {run.scored_from} to {run.scored_until}: {run.skipped}.")
            return
        detector = run.detector.version if run.detector else "-"
        self.stdout.write(
            f"Scored {run.scored_from} to {run.scored_until} ({run.events} events) with {detector}: "
            f"{len(run.alerts)} new alert(s)."
        )
