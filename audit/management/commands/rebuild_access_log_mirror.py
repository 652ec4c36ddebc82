from typing import Any

from audit.services import access_log_mirror_rebuild
from health_platform.commands import PlatformCommand


class Command(PlatformCommand):
    help = "Rebuild the access-log mirror from the ledger (the ledger is the truth)."

    def handle(self, *args: Any, **options: Any) -> None:
        count = access_log_mirror_rebuild()
        self.stdout.write(f"Access-log mirror rebuilt from the ledger: {count} events.")
