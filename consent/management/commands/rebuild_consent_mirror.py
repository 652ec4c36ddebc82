from django.core.management.base import BaseCommand, CommandError

from consent.services import consent_mirror_rebuild
from health_platform.errors import ApplicationError


class Command(BaseCommand):
    help = "Rebuild the consent mirror table from the ledger (the ledger is the truth)."

    def handle(self, *args, **options):
        try:
            count = consent_mirror_rebuild()
        except ApplicationError as error:
            raise CommandError(f"{error.code}: {error.message}") from error
        self.stdout.write(f"Consent mirror rebuilt from the ledger: {count} consents.")
