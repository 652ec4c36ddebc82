"""The diagnostic models the platform runs are the kept weights, whatever the machine's BLAS."""

import hashlib
import json
import os
import shutil
import tomllib
from pathlib import Path

import numpy as np
import pytest
from django.core.management import call_command

from analytics.diagnostic_models import all_models, breast_cancer_model, diabetes_model, load_model, trainers
from analytics.models import DiagnosticModel
from analytics.registry import diagnostic_models_register
from health_platform.model_catalogue import DEFAULT_FOLDER, model_labels
from tests.conftest import python_output

HASHED_NUMBERS = ("weights", "feature_min", "feature_max")


def hash_of_kept_files(folder: Path, name: str, version: str) -> str:
    """The SHA-256 a version's weights must have, computed here from the catalogue's files on disk, not by
    the platform's code: the declaration's kind and the weights document's numbers (each as Python's
    shortest repr of the float), in canonical JSON (sorted keys, no spaces)."""
    declaration = tomllib.loads((folder / f"{name}.toml").read_text(encoding="utf-8"))
    kept = json.loads((folder / f"{name}@{version}.json").read_text(encoding="utf-8"))
    document = {
        "name": name,
        "version": version,
        "kind": declaration["kind"],
        "feature_codes": kept["feature_codes"],
        "bias": repr(float(kept["bias"])),
        **{field: [repr(float(value)) for value in kept[field]] for field in HASHED_NUMBERS},
    }
    return hashlib.sha256(json.dumps(document, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def test_the_kept_weights_are_what_retraining_gives_within_tolerance(capsys):
    call_command("train_models")
    assert "breast-cancer: largest weight difference" in capsys.readouterr().out


def test_the_model_hash_does_not_depend_on_the_blas_kernels():
    """Retraining differs in the last digits between OpenBLAS kernels; the kept weights do not."""
    probe = "from analytics.diagnostic_models import breast_cancer_model as m; print(m().sha256)"
    hashes = set()
    for coretype in ("Haswell", "Prescott", ""):
        environment = {**os.environ, "OPENBLAS_CORETYPE": coretype}
        hashes.add(python_output(probe, environment, timeout=120))
    assert hashes == {breast_cancer_model().sha256}


def test_kept_documents_round_trip_and_the_hash_covers_every_weight():
    model = load_model("breast-cancer", "1")
    assert model == breast_cancer_model()
    assert model.metrics["accuracy"] > 0.9
    assert diabetes_model().metrics["r2"] > 0.3
    changed = type(model).from_document({**model.to_document(), "bias": model.bias + 1e-12})
    assert changed.sha256 != model.sha256
    assert set(trainers()) == {"breast-cancer", "diabetes-progression"}


def test_each_model_hash_is_the_hash_of_its_weights_document_on_disk():
    models = all_models()
    assert {model.model_id for model in models} == {"breast-cancer@1", "diabetes-progression@1"}
    for model in models:
        on_disk = hash_of_kept_files(DEFAULT_FOLDER, model.name, model.version)
        assert model.sha256 == on_disk, model.model_id
        assert model_labels()[on_disk] == model.model_id  # what auditors read for the hash an event cites
    assert len({model.sha256 for model in models}) == len(models)
    assert breast_cancer_model().metrics["accuracy"] > 0.9


def _changes_of_every_number(kept: dict) -> list[tuple[str, dict]]:
    """(what changed, the weights document with that one number moved to the next float up), for the bias
    and every weight and range bound: the smallest change a float can take."""
    changes = [("bias", {**kept, "bias": float(np.nextafter(kept["bias"], np.inf))})]
    for field in HASHED_NUMBERS:
        for index, value in enumerate(kept[field]):
            numbers = list(kept[field])
            numbers[index] = float(np.nextafter(value, np.inf))
            changes.append((f"{field}[{index}]", {**kept, field: numbers}))
    return changes


@pytest.mark.parametrize("name", ["breast-cancer", "diabetes-progression"])
def test_the_model_hash_changes_when_any_weight_bias_or_range_bound_changes(name, tmp_path, monkeypatch):
    original = load_model(name).sha256
    version = load_model(name).version
    kept = json.loads((DEFAULT_FOLDER / f"{name}@{version}.json").read_text(encoding="utf-8"))
    seen = {original}
    for number, (changed, document) in enumerate(_changes_of_every_number(kept)):
        folder = tmp_path / f"catalogue-{number}"  # a folder of its own: the catalogue is read once per folder
        shutil.copytree(DEFAULT_FOLDER, folder)
        (folder / f"{name}@{version}.json").write_text(json.dumps(document))
        monkeypatch.setenv("DIAGNOSTIC_MODELS_DIR", str(folder))

        model = load_model(name, version)

        assert model.sha256 == hash_of_kept_files(folder, name, version), changed
        assert model.sha256 not in seen, changed
        seen.add(model.sha256)
    assert len(seen) == 1 + 1 + sum(len(kept[field]) for field in HASHED_NUMBERS)


@pytest.mark.django_db
def test_registering_anchors_each_model_hash_on_the_ledger(ledger):
    registered = {m.name: m for m in diagnostic_models_register()}
    again = diagnostic_models_register()
    assert DiagnosticModel.objects.count() == 2
    assert [m.anchor_tx_id for m in again] == [registered[m.name].anchor_tx_id for m in again]
    anchor = ledger.evaluate("anchors", "ReadModelAnchor", "breast-cancer", "1").json()
    assert anchor["sha256"] == breast_cancer_model().sha256 == registered["breast-cancer"].sha256
