from typing import Any

from analytics.registry import diagnostic_models_register
from health_platform.commands import PlatformCommand


class Command(PlatformCommand):
    help = "Train the diagnostic models from scikit-learn's bundled datasets and anchor their hashes (idempotent)."

    def handle(self, *args: Any, **options: Any) -> None:
        for model in diagnostic_models_register():
            self.stdout.write(
                f"{model.name}@{model.version}  sha256 {model.sha256}  anchored in block {model.anchor_block}"
            )
