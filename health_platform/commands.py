"""What every management command of the platform shares."""

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from health_platform.errors import ApplicationError
from ledger.errors import LedgerError


class PlatformCommand(BaseCommand):
    """A command whose errors of the family (the application's and the ledger's) end as one line with their
    stable code, as `manage.py` prints a CommandError, never as a traceback or a value from the input."""

    def execute(self, *args: Any, **options: Any) -> Any:
        try:
            return super().execute(*args, **options)
        except (ApplicationError, LedgerError) as error:
            body = error.as_dict()
            raise CommandError(f"{body['code']}: {body['message']}") from error
