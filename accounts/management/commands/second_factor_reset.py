"""Reset a member of staff's lost second factor (any account, custodians and auditors included): every authenticator
removed, every session ended, the person told by e-mail; they enrol a new one at their next sign-in."""

from typing import Any

from django.contrib.auth import get_user_model

from accounts.services import second_factor_reset
from health_platform.commands import PlatformCommand
from health_platform.errors import NotFound


class Command(PlatformCommand):
    help = __doc__

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("username")

    def handle(self, *args: Any, **options: Any) -> None:
        user = get_user_model().objects.filter(username=options["username"]).first()
        if user is None:
            raise NotFound("No account has this username.", code="unknown_user")
        removed = second_factor_reset(user=user, actor=None)
        self.stdout.write(
            f"{user.get_username()}: {removed} authenticator(s) removed, signed out everywhere; they enrol a new "
            "second factor at their next sign-in."
        )
