from typing import Any

from directory.services import directory_grantee_set_active
from health_platform.commands import PlatformCommand


class Command(PlatformCommand):
    help = (
        "Deactivate a grantee on the ledger (clinician:<id> or org:<slug>): its consents admit nothing from the "
        "gate's next batch."
    )
    active = False

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("grantee_id")

    def handle(self, *args: Any, **options: Any) -> None:
        status = directory_grantee_set_active(actor=None, grantee_id=options["grantee_id"], active=self.active)
        state = "active" if status.active else "inactive"
        self.stdout.write(f"{status.grantee_id} is {state} on the ledger (transaction {status.tx_id}).")
