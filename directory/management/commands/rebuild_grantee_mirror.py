from typing import Any

from health_platform.commands import PlatformCommand
from health_platform.services import grantee_mirror_rebuild


class Command(PlatformCommand):
    help = (
        "Rebuild the grantee status mirror from the ledger; --register-missing first registers on the ledger "
        "every directory grantee it does not know (those created before the directory was on the ledger)."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--register-missing", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        count = grantee_mirror_rebuild(register_missing=options["register_missing"])
        self.stdout.write(f"Grantee mirror rebuilt from the ledger: {count} grantees.")
