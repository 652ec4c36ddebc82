"""Add a grantee to the directory, registered on the ledger as active: an organisation (--organisation SLUG
--name NAME) or a clinician (--clinician USERNAME --name NAME --email ADDRESS [--member-of SLUG]), whose account
is created and who is e-mailed a link to choose a password."""

from typing import Any

from django.conf import settings

from directory.services import directory_clinician_invite, directory_organisation_add
from health_platform.commands import PlatformCommand


class Command(PlatformCommand):
    help = __doc__

    def add_arguments(self, parser: Any) -> None:
        kind = parser.add_mutually_exclusive_group(required=True)
        kind.add_argument("--organisation", metavar="SLUG")
        kind.add_argument("--clinician", metavar="USERNAME")
        parser.add_argument("--name", required=True, help="the name patients see")
        parser.add_argument("--email", default="", help="the clinician's e-mail address")
        parser.add_argument("--member-of", default="", metavar="SLUG", help="the clinician's organisation")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["organisation"]:
            organisation = directory_organisation_add(actor=None, slug=options["organisation"], name=options["name"])
            self.stdout.write(f"Added {organisation.grantee_id}, registered on the ledger as active.")
            return
        profile = directory_clinician_invite(
            actor=None,
            username=options["clinician"],
            display_name=options["name"],
            email=options["email"],
            organisation_slug=options["member_of"],
            base_url=settings.DIRECTORY_LINK_BASE_URL,
        )
        self.stdout.write(f"Added {profile.grantee_id}, registered on the ledger as active; invitation e-mailed.")
