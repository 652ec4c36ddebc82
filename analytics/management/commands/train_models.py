from typing import Any

from django.core.management.base import CommandError, CommandParser

from analytics.trainers import retrain
from health_platform.commands import PlatformCommand


class Command(PlatformCommand):
    help = (
        "Retrain the declared diagnostic models from scikit-learn's bundled datasets and compare them with the "
        "weights kept in the catalogue folder (--check, the default), or replace those weights (--write: declare "
        "the new version first, then register it to anchor it). `python -m analytics.trainers` does the same "
        "without starting the platform."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("names", nargs="*", help="declared models (default: all)")
        parser.add_argument("--write", action="store_true", help="overwrite the kept weights with the retrained ones")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            differing = retrain(options["names"], write=options["write"], say=self.stdout.write)
        except LookupError as error:
            raise CommandError(str(error)) from None
        if differing:
            raise CommandError(f"retrained weights differ from the kept ones: {', '.join(differing)}")
