"""Reset the passkeys of a patient who lost every one (the custodian's recovery): every passkey taken off the ledger,
where the reset stays for the patient to see, the account's passkeys removed, the patient told by e-mail; they add
a new passkey at their next sign-in. Check the patient's identity first: a new passkey can sign for them."""

from typing import Any

from django.contrib.auth import get_user_model

from consent.passkeys import RECOVERY_REASONS, patient_passkeys_recover
from health_platform.commands import PlatformCommand
from health_platform.errors import NotFound
from records.selectors import patient_by_identifier


class Command(PlatformCommand):
    help = __doc__

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("identifier", help="the patient's hospital identifier, system|value")
        parser.add_argument("--reason", required=True, choices=sorted(RECOVERY_REASONS))
        parser.add_argument("--custodian", required=True, help="the username of the custodian who checked identity")

    def handle(self, *args: Any, **options: Any) -> None:
        system, _, value = options["identifier"].rpartition("|")
        patient = patient_by_identifier(system=system, value=value) if system and value else None
        if patient is None:
            raise NotFound("No ingested patient has this identifier.", code="unknown_patient")
        custodian = get_user_model().objects.filter(username=options["custodian"]).first()
        if custodian is None:
            raise NotFound("No account has this username.", code="unknown_user")
        keys = patient_passkeys_recover(actor=custodian, patient=patient, reason=options["reason"])
        recovery = keys.recoveries[-1]
        self.stdout.write(
            f"{len(recovery.revoked)} passkey(s) taken off the ledger in transaction {recovery.tx_id}; the patient "
            "was told and adds a new passkey at their next sign-in."
        )
