"""Adding a diagnostic model is one declaration plus its weights file: a third model, declared in a folder
of its own, is registered, consented to, and run end to end under CKKS, scoring what scikit-learn scores."""

import shutil

import numpy as np
import pytest
from django.core.exceptions import ImproperlyConfigured
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from analytics.diagnostic_models import write_model
from analytics.models import AnalysisStatus, DiagnosticModel
from analytics.registry import diagnostic_models_register
from analytics.selectors import analysis_results
from analytics.services import analysis_request_create
from analytics.trainers import SPLIT_SEED, dataset_split, logistic_regression
from health_platform.apps import HealthPlatformConfig
from health_platform.model_catalogue import DEFAULT_FOLDER, catalogue, consent_purposes, declared
from records.codes import BREAST_CANCER_DATASET, dataset_columns, load_dataset
from records.demo import demo_patients
from tests.conftest import grant

pytestmark = [pytest.mark.he, pytest.mark.django_db(transaction=True)]

MEAN_FEATURES = [f"bc-mean-{stem}" for stem in ("radius", "texture", "perimeter", "area", "smoothness")]
DECLARATION = f"""
name = "breast-cancer-mean"
kind = "logistic"
purpose = "diagnostic-model:breast-cancer-mean"
category = "imaging"
dataset = "breast_cancer"
trainer = "analytics.trainers:logistic_regression"
versions = ["1"]
description = "Logistic regression on five mean nucleus measurements."
positive_label = "malignant"
negative_label = "benign"
features = {MEAN_FEATURES!r}
""".replace("'", '"')


@pytest.fixture
def third_model(tmp_path, monkeypatch):
    """The shipped catalogue plus breast-cancer-mean: its declaration, then its weights from its trainer."""
    folder = tmp_path / "catalogue"
    shutil.copytree(DEFAULT_FOLDER, folder)
    (folder / "breast-cancer-mean.toml").write_text(DECLARATION)
    monkeypatch.setenv("DIAGNOSTIC_MODELS_DIR", str(folder))
    write_model(logistic_regression(declared("breast-cancer-mean")))
    return folder


def test_a_third_declared_model_is_registered_consented_to_and_scored_like_scikit_learn(
    third_model, cohort, clinician, ledger, blob_dir, eager
):
    HealthPlatformConfig.ready(None)  # type: ignore[arg-type]  # the start-up check accepts the new declaration
    registered = {model.name for model in diagnostic_models_register()}
    assert registered == {"breast-cancer", "diabetes-progression", "breast-cancer-mean"}
    anchor = ledger.evaluate("anchors", "ReadModelAnchor", "breast-cancer-mean", "1").json()
    assert anchor["sha256"] == DiagnosticModel.objects.get(name="breast-cancer-mean").sha256
    assert consent_purposes()["diagnostic-model:breast-cancer-mean"].startswith("Running the breast-cancer-mean")

    people = cohort(8)
    for user, patient, _ in people[:6]:
        grant(user, patient, clinician, purposes=["diagnostic-model:breast-cancer-mean"])
    grant(*people[6][:2], clinician)  # consent for the breast-cancer model only: refused for this one

    request = analysis_request_create(requester=clinician, model_name="breast-cancer-mean", cohort_kind="consented")

    request.refresh_from_db()
    assert request.status == AnalysisStatus.COMPLETED
    results = analysis_results(request=request, viewer=clinician)
    assert sorted(row.record_id for row in results.rows) == sorted(str(record.id) for _, _, record in people[:6])
    # scikit-learn's own pipeline, trained the same way on the same five columns, on the same patients
    x_train, _, y_train, _ = dataset_split(declared("breast-cancer-mean"))
    reference = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000, random_state=SPLIT_SEED))
    reference.fit(x_train, y_train)
    columns = dataset_columns(BREAST_CANCER_DATASET, tuple(MEAN_FEATURES))
    rows = np.asarray([p.features for p in demo_patients(dataset=BREAST_CANCER_DATASET, count=6)])[:, columns]
    malignant = reference.predict_proba(rows)[
        :, list(load_dataset(BREAST_CANCER_DATASET).target_names).index("malignant")
    ]
    by_record = {row.record_id: row for row in results.rows}
    for (_, _, record), probability in zip(people[:6], malignant, strict=True):
        row = by_record[str(record.id)]
        assert abs(row.score - probability) < 1e-3
        assert row.label == ("malignant" if probability >= 0.5 else "benign")


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (("category", '"imagin"'), "category must be one of"),
        (("purpose", '"diagnostic_model:x"'), "purpose must be"),
        (("kind", '"cubic"'), "kind must be one of"),
        (("versions", '["2"]'), "version 2 has no weights file"),
    ],
)
def test_a_declaration_the_platform_cannot_run_stops_start_up_naming_it(tmp_path, monkeypatch, change, named):
    folder = tmp_path / "catalogue"
    shutil.copytree(DEFAULT_FOLDER, folder)
    declaration = folder / "breast-cancer.toml"
    field, value = change
    lines = [
        f"{field} = {value}" if line.startswith(f"{field} =") else line for line in declaration.read_text().split("\n")
    ]
    declaration.write_text("\n".join(lines))
    monkeypatch.setenv("DIAGNOSTIC_MODELS_DIR", str(folder))
    with pytest.raises(ImproperlyConfigured, match=f"breast-cancer.toml: {named}"):
        HealthPlatformConfig.ready(None)  # type: ignore[arg-type]
    assert len(catalogue(DEFAULT_FOLDER)) == 2  # the shipped catalogue is untouched
