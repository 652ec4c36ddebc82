from typing import Any

from consent.services import consent_mirror_rebuild
from health_platform.commands import PlatformCommand


class Command(PlatformCommand):
    help = "Rebuild the consent mirror table from the ledger (the ledger is the truth)."

    def handle(self, *args: Any, **options: Any) -> None:
        count = consent_mirror_rebuild()
        self.stdout.write(f"Consent mirror rebuilt from the ledger: {count} consents.")
