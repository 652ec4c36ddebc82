"""The diagnostic models the platform runs are the kept weights, whatever the machine's BLAS."""

import os
import subprocess
import sys

import pytest
from django.core.management import call_command

from analytics.diagnostic_models import breast_cancer_model, diabetes_model, load_model, trainers
from analytics.models import DiagnosticModel
from analytics.registry import diagnostic_models_register
from tests.conftest import REPO


def test_the_kept_weights_are_what_retraining_gives_within_tolerance(capsys):
    call_command("train_models")
    assert "breast-cancer: largest weight difference" in capsys.readouterr().out


def test_the_model_hash_does_not_depend_on_the_blas_kernels():
    """Retraining differs in the last digits between OpenBLAS kernels; the kept weights do not."""
    probe = "from analytics.diagnostic_models import breast_cancer_model as m; print(m().sha256)"
    hashes = set()
    for coretype in ("Haswell", "Prescott", ""):
        environment = {**os.environ, "OPENBLAS_CORETYPE": coretype}
        hashes.add(
            subprocess.run(
                [sys.executable, "-c", probe],
                cwd=REPO,
                env=environment,
                capture_output=True,
                text=True,
                check=True,
                timeout=120,
            ).stdout.strip()
        )
    assert hashes == {breast_cancer_model().sha256}


def test_kept_documents_round_trip_and_the_hash_covers_every_weight():
    model = load_model("breast-cancer", "1")
    assert model == breast_cancer_model()
    assert model.metrics["accuracy"] > 0.9
    assert diabetes_model().metrics["r2"] > 0.3
    changed = type(model).from_document({**model.to_document(), "bias": model.bias + 1e-12})
    assert changed.sha256 != model.sha256
    assert set(trainers()) == {"breast-cancer", "diabetes-progression"}


@pytest.mark.django_db
def test_registering_anchors_each_model_hash_on_the_ledger(ledger):
    registered = {m.name: m for m in diagnostic_models_register()}
    again = diagnostic_models_register()
    assert DiagnosticModel.objects.count() == 2
    assert [m.anchor_tx_id for m in again] == [registered[m.name].anchor_tx_id for m in again]
    anchor = ledger.evaluate("anchors", "ReadModelAnchor", "breast-cancer", "1").json()
    assert anchor["sha256"] == breast_cancer_model().sha256 == registered["breast-cancer"].sha256
