from typing import Any

from django.conf import settings

from directory.services import patient_invitation_issue
from health_platform.commands import PlatformCommand


class Command(PlatformCommand):
    help = (
        "Invite the person behind an ingested patient identifier to create their account: by e-mail (--email), "
        "or print a single-use code to hand over at the desk. Earlier pending invitations are revoked."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--system", required=True, help="the identifier's system")
        parser.add_argument("--value", required=True, help="the identifier's value")
        parser.add_argument("--email", default="")

    def handle(self, *args: Any, **options: Any) -> None:
        issued = patient_invitation_issue(
            actor=None,
            identifier_system=options["system"],
            identifier_value=options["value"],
            email=options["email"],
            base_url=settings.DIRECTORY_LINK_BASE_URL,
        )
        expires = f"{issued.invitation.expires_at:%Y-%m-%d %H:%M} UTC"
        if issued.invitation.by_email:
            self.stdout.write(f"Invitation {issued.invitation.id} e-mailed; it expires {expires}.")
        else:
            self.stdout.write(f"Invitation {issued.invitation.id}: code {issued.code} (expires {expires}).")
