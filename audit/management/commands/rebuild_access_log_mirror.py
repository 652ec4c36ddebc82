from django.core.management.base import BaseCommand, CommandError

from audit.services import access_log_mirror_rebuild
from ledger import LedgerError


class Command(BaseCommand):
    help = "Rebuild the access-log mirror from the ledger (the ledger is the truth)."

    def handle(self, *args, **options):
        try:
            count = access_log_mirror_rebuild()
        except LedgerError as error:
            raise CommandError(f"ledger_unavailable: the ledger did not answer ({type(error).__name__})") from error
        self.stdout.write(f"Access-log mirror rebuilt from the ledger: {count} events.")
