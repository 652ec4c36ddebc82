from typing import Any

from django.core.management.base import CommandError, CommandParser

from health_platform.commands import PlatformCommand
from records.services import ResealProgress, record_versions_reseal_per_patient


class Command(PlatformCommand):
    help = (
        "Move every record version still sealed under a master key (RECORD_ENCRYPTION_KEYS) to its patient's own "
        "data key, a batch of patients per transaction, and rewrap the data keys after a master key rotation. "
        "Safe to interrupt at any point: run it again and it continues. Content and hashes do not change, so the "
        "anchors still hold. Prints progress in counts (no content)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--batch-patients", type=int, default=200, help="patients per transaction (default 200, at least 1)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        batch_patients = options["batch_patients"]
        if batch_patients < 1:
            raise CommandError("invalid_argument: --batch-patients must be at least 1")

        def report(progress: ResealProgress) -> None:
            self.stdout.write(
                f"batch {progress.batches}: {progress.moved} versions moved, {progress.remaining} left", ending="\n"
            )
            self.stdout.flush()

        done = record_versions_reseal_per_patient(batch_patients=batch_patients, after_batch=report)
        self.stdout.write(
            f"done: {done.moved} versions moved in {done.batches} batches; {done.remaining} left under master keys"
            f" ({done.unopenable} do not open)"
        )
