from django.core.management.base import BaseCommand, CommandError

from analytics.registry import diagnostic_models_register
from health_platform.errors import ApplicationError


class Command(BaseCommand):
    help = "Train the diagnostic models from scikit-learn's bundled datasets and anchor their hashes (idempotent)."

    def handle(self, *args, **options):
        try:
            models = diagnostic_models_register()
        except ApplicationError as error:
            raise CommandError(f"{error.code}: {error.message}") from error
        for model in models:
            self.stdout.write(
                f"{model.name}@{model.version}  sha256 {model.sha256}  anchored in block {model.anchor_block}"
            )
