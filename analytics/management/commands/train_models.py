import numpy as np
from django.core.management.base import BaseCommand, CommandError

from analytics.diagnostic_models import load_model, trainers, write_model

# Retraining on another machine may differ in the last digits (BLAS kernels); beyond this it is another model.
TOLERANCE = 1e-6


class Command(BaseCommand):
    help = (
        "Retrain the diagnostic models from scikit-learn's bundled datasets and compare them with the weights "
        "kept in the catalogue folder (--check, the default), or replace those weights (--write: declare the new "
        "version first, then register it to anchor it)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--write", action="store_true", help="overwrite the kept weights with the retrained ones")

    def handle(self, *args, **options):
        differing = []
        for name, train in trainers().items():
            trained = train()
            if options["write"]:
                self.stdout.write(f"wrote {write_model(trained)} (sha256 {trained.sha256})")
                continue
            kept = load_model(trained.name, trained.version)
            gap = float(np.max(np.abs(np.subtract((*trained.weights, trained.bias), (*kept.weights, kept.bias)))))
            scale = float(np.max(np.abs((*kept.weights, kept.bias))))
            self.stdout.write(f"{name}: largest weight difference {gap:.3g} (relative {gap / scale:.3g})")
            if gap > TOLERANCE * scale:
                differing.append(name)
        if differing:
            raise CommandError(f"retrained weights differ from the kept ones: {', '.join(differing)}")
