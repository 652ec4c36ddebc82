"""Federated training of the breast-cancer model on 10,000 synthetic records across two organisations, against
training the same model centrally in plaintext on the same records.

    python -m benchmarks.training [--records 10000] [--rounds 8] [--dp-epsilon E [--dp-delta D]]
                                  [--linear-records 2000] [--held-out 2000] [--profile FILE]

Federated (the platform, timed end to end): a model steward's run request (its CKKS keys), then the run as a worker
runs it (training.rounds.training_run_execute): a Flower server and one Flower client per organisation over TLS on
loopback; each round each organisation gates its records (purpose training:breast-cancer) and logs every decision
in one ledger transaction per batch, computes its Newton statistics on the admitted records and encrypts them; the
aggregator adds the ciphertexts, the steward's key opens the sum; then the validation, the lineage in one ledger
transaction and the model's registration. On SQLite and the embedded ledger, in this process.

Central (the baseline, on the same admitted training records, read from the run's manifest): the same Newton steps
in numpy (training.maths.central_weights) and scikit-learn's LogisticRegression (C = 1/ridge on the same scaled
features, the intercept unpenalised: the optimum Newton converges to) as a reference.

Reported: the federated run's wall time (target <= 30 s on 2 cores), the time inside CKKS (key generation,
encryption, ciphertext addition, decryption: TenSEALEngine's methods timed for the run only) and its share, the gate
and the log; accuracy of each model on held-out synthetic records never ingested (target: federated within 1 point
of central), the largest weight difference federated vs central Newton (target 1e-4 without differential privacy);
and the same for the linear family (diabetes-progression, sufficient statistics, one round) against central least
squares. Setup (ingesting the records, granting the consents) is not timed. 9 in 10 patients consent to training
(the gate refuses the others). Figures also go to benchmarks/results/training.json; the load average is printed
at the start and the end. Targets are reported as met or not; a run that does not complete fails the benchmark.
"""

import argparse
import cProfile
import os
import tempfile
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from benchmarks.common import (
    consents_grant,
    patients_ingest,
    report,
    setup_django,
    synthetic_patients,
    synthetic_targets,
    time_spent_in,
)

TIME_TARGET_SECONDS = 30.0
ACCURACY_TARGET_POINTS = 1.0
WEIGHTS_TARGET = 1e-4
CATEGORY = {"breast-cancer": "imaging", "diabetes-progression": "laboratory"}


@dataclass(frozen=True)
class Cohort:
    """A family's synthetic patients, their outcomes (1 for malignant in a logistic family) and what each
    organisation offers a run."""

    family: str
    patients: list[Any]
    targets: np.ndarray
    offered: dict[str, list[int]]  # organisation -> record version ids
    index_of_record: dict[str, int]  # record id -> patient index


def _outcomes(family: str, patients: list[Any]) -> np.ndarray:
    """The value a model of `family` learns for each patient: 1.0 for malignant, or the disease progression."""
    from analytics.selectors import declared_model_of_family
    from records.codes import load_dataset

    targets = synthetic_targets(patients).astype(float)
    spec = declared_model_of_family(family=family)
    if spec is None or spec.kind != "logistic":
        return targets
    positive = [str(name) for name in load_dataset(spec.dataset).target_names].index(spec.positive_label)
    return (targets == positive).astype(float)


def _cohort(family: str, count: int, organisations: list[str], actor: Any, *, seed: int) -> Cohort:
    """Ingest `count` synthetic patients of `family`'s dataset, half per organisation, 9 in 10 of them consenting to
    training with their organisation."""
    from analytics.selectors import declared_model_of_family
    from records.crypto import patient_pseudonym
    from records.models import RecordVersion

    spec = declared_model_of_family(family=family)
    assert spec is not None
    patients = synthetic_patients(count, dataset=spec.dataset, seed=seed)
    patients_ingest(patients, actor=actor)
    pseudonyms = [patient_pseudonym(patient.patient_key) for patient in patients]
    organisation_of = [organisations[index * len(organisations) // count] for index in range(count)]
    consents_grant(
        [
            (f"bench-{family}-{index}", pseudonym, organisation_of[index])
            for index, pseudonym in enumerate(pseudonyms)
            if index % 10
        ],
        purposes=[f"training:{family}"],
        categories=[CATEGORY[family]],
    )
    index_of = {pseudonym: index for index, pseudonym in enumerate(pseudonyms)}
    offered: dict[str, list[int]] = {organisation: [] for organisation in organisations}
    index_of_record: dict[str, int] = {}
    versions = RecordVersion.objects.filter(record__patient__pseudonym__in=pseudonyms, record__category=spec.category)
    for version_id, record_id, pseudonym in versions.values_list("pk", "record_id", "record__patient__pseudonym"):
        index = index_of[pseudonym]
        offered[organisation_of[index]].append(version_id)
        index_of_record[str(record_id)] = index
    return Cohort(family, patients, _outcomes(family, patients), offered, index_of_record)


def _federated(cohort: Cohort, steward: Any, **terms: Any) -> tuple[Any, Any, float, dict[str, float]]:
    """Request and run a federated training run over the cohort, timed, with the time spent in CKKS, the gate and
    the log. Returns (run, trained model, seconds, seconds per part)."""
    from analytics.he import TenSEALEngine
    from analytics.models import DiagnosticModel
    from analytics.registry import model_spec
    from training import local
    from training.labels import label_source_of
    from training.models import TrainingStatus
    from training.services import training_run_execute, training_run_request

    features = np.asarray([patient.features for patient in cohort.patients])
    labels = label_source_of(rows=features, targets=cohort.targets)
    parts = {
        "keys": (TenSEALEngine, "keygen_for_sums"),
        "encrypt": (TenSEALEngine, "encrypt_vector"),
        "add": (TenSEALEngine, "add"),
        "decrypt": (TenSEALEngine, "decrypt_many"),
        "gate": (local, "records_gate"),
        "log": (local, "access_batch_log"),
    }
    with time_spent_in(parts) as spent:
        start = time.perf_counter()
        requested = training_run_request(steward=steward, family=cohort.family, organisations=cohort.offered, **terms)
        run = training_run_execute(run_id=str(requested.pk), labels=labels)
        seconds = time.perf_counter() - start
    if run is None or run.status != TrainingStatus.COMPLETED:
        raise SystemExit(f"the {cohort.family} run did not complete: {getattr(run, 'failure_code', 'gone')}")
    trained = model_spec(DiagnosticModel.objects.get(name=run.model_name, version=run.model_version))
    return run, trained, seconds, dict(spent)


def _training_rows(run: Any, cohort: Cohort) -> list[int]:
    """The patients the run trained on (its manifest's training split, organisations in order)."""
    from training.local import TRAIN

    return [
        cohort.index_of_record[entry["record_id"]]
        for organisation in sorted(run.manifest)
        for entry in run.manifest[organisation]
        if entry["split"] == TRAIN
    ]


def _central(run: Any, cohort: Cohort, trained: Any) -> dict[str, tuple[np.ndarray, float]]:
    """The same model trained centrally in the clear on the run's training records: the same Newton steps (or
    least squares) in numpy, and scikit-learn's."""
    from sklearn.linear_model import LinearRegression, LogisticRegression

    from training import maths

    rows = _training_rows(run, cohort)
    features = np.asarray([cohort.patients[row].features for row in rows])
    targets = cohort.targets[rows]
    scaling = maths.Scaling.of_range(trained.feature_min, trained.feature_max)
    ridge = float(run.hyperparameters["ridge"])
    numpy_weights = maths.central_weights(
        trained.kind, features, targets, scaling, ridge=ridge, rounds=run.rounds_requested
    )
    design = scaling.design(features)[:, :-1]
    if trained.kind == "logistic":
        reference: Any = LogisticRegression(C=1 / ridge, tol=1e-10, max_iter=10_000).fit(design, targets)
        scaled = np.append(reference.coef_.ravel(), reference.intercept_[0])
    else:
        reference = LinearRegression().fit(design, targets)
        scaled = np.append(reference.coef_, reference.intercept_)
    return {"numpy": numpy_weights, "scikit-learn": scaling.unscale(scaled)}


def _accuracy(weights: np.ndarray, bias: float, features: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(((features @ weights + bias) >= 0) == (labels == 1)) * 100)


def _largest_difference(trained: Any, weights: tuple[np.ndarray, float]) -> float:
    return float(np.max(np.abs(np.append(trained.weights, trained.bias) - np.append(weights[0], weights[1]))))


def _met(met: bool) -> str:
    return "yes" if met else "NO"


def _load() -> str:
    return " / ".join(f"{value:.2f}" for value in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=10_000, help="breast-cancer records, split over 2 organisations")
    parser.add_argument("--rounds", type=int, default=8, help="federated Newton rounds")
    parser.add_argument("--dp-epsilon", type=float, default=None, help="train under differential privacy")
    parser.add_argument("--dp-delta", type=float, default=1e-5, help="with --dp-epsilon")
    parser.add_argument("--linear-records", type=int, default=2_000, help="diabetes-progression records")
    parser.add_argument("--held-out", type=int, default=2_000, help="synthetic records to measure accuracy on")
    parser.add_argument("--profile", metavar="FILE", help="write a cProfile of the federated run to FILE")
    parser.add_argument("--report-name", default="training", help=argparse.SUPPRESS)  # the smoke test's
    arguments = parser.parse_args()
    load_at_start = _load()

    with tempfile.TemporaryDirectory() as directory:
        setup_django(directory)
        from django.contrib.auth.models import User

        from analytics.registry import diagnostic_models_register
        from health_platform.roles import Role, role_group
        from health_platform.services import organisation_create

        print(f"setting up {arguments.records} + {arguments.linear_records} records and consents (not timed)...")
        diagnostic_models_register()
        custodian = User.objects.create(username="bench-custodian")
        custodian.groups.add(role_group(Role.CUSTODIAN))
        steward = User.objects.create(username="bench-steward")
        steward.groups.add(role_group(Role.MODEL_STEWARD))
        organisations = [
            organisation_create(slug="st-marys", name="St Mary's").grantee_id,
            organisation_create(slug="northgate", name="Northgate").grantee_id,
        ]
        logistic = _cohort("breast-cancer", arguments.records, organisations, custodian, seed=0)
        linear = _cohort("diabetes-progression", arguments.linear_records, organisations, custodian, seed=1)

        privacy = {} if arguments.dp_epsilon is None else {"dp_epsilon": arguments.dp_epsilon}
        if privacy:
            privacy["dp_delta"] = arguments.dp_delta
        print(f"federated training, breast-cancer, {arguments.rounds} rounds...", flush=True)
        profiler = cProfile.Profile() if arguments.profile else None
        if profiler:
            profiler.enable()
        run, trained, seconds, spent = _federated(logistic, steward, rounds=arguments.rounds, **privacy)
        if profiler:
            profiler.disable()
            profiler.dump_stats(arguments.profile)
        central = _central(run, logistic, trained)

        held_out = synthetic_patients(arguments.held_out + len(logistic.patients), seed=99)[len(logistic.patients) :]
        held_out_features = np.asarray([patient.features for patient in held_out])
        held_out_labels = _outcomes("breast-cancer", held_out)
        accuracy = {
            "federated": _accuracy(np.asarray(trained.weights), trained.bias, held_out_features, held_out_labels),
            **{name: _accuracy(*weights, held_out_features, held_out_labels) for name, weights in central.items()},
        }
        difference = {name: _largest_difference(trained, weights) for name, weights in central.items()}

        print("federated training, diabetes-progression (linear, one round)...", flush=True)
        linear_terms = {} if not privacy else {**privacy, "dp_target_bound": 400.0}
        linear_run, linear_trained, linear_seconds, _ = _federated(linear, steward, **linear_terms)
        linear_central = _central(linear_run, linear, linear_trained)
        linear_difference = {name: _largest_difference(linear_trained, w) for name, w in linear_central.items()}

    ckks = spent["keys"] + spent["encrypt"] + spent["add"] + spent["decrypt"]
    admitted = sum(count["admitted"] for count in run.organisation_counts.values())
    dp_label = "no DP" if not privacy else f"DP ε={arguments.dp_epsilon:g}, δ={arguments.dp_delta:g}"
    rows: list[dict[str, Any]] = [
        {
            "what": f"federated run, breast-cancer ({arguments.rounds} Newton rounds, {dp_label})",
            "records": arguments.records,
            "seconds": seconds,
            "figure": f"{admitted:,} admitted",
            "target": f"<= {TIME_TARGET_SECONDS:g} s",
            "met": _met(seconds <= TIME_TARGET_SECONDS),
        },
        {
            "what": "  of which CKKS (keys, encrypt, add, decrypt)",
            "records": arguments.records,
            "seconds": ckks,
            "figure": f"{ckks / seconds:.1%} of the run; "
            + ", ".join(f"{name} {spent[name]:.2f} s" for name in ("keys", "encrypt", "add", "decrypt")),
            "target": "",
            "met": "",
        },
        {
            "what": "  of which gate + log (ledger)",
            "records": arguments.records,
            "seconds": spent["gate"] + spent["log"],
            "figure": f"gate {spent['gate']:.2f} s, log {spent['log']:.2f} s",
            "target": "",
            "met": "",
        },
        *(
            {
                "what": f"held-out accuracy, {name}",
                "records": arguments.held_out,
                "seconds": "",
                "figure": f"{value:.2f} %",
                "target": "" if name != "federated" or privacy else f"within {ACCURACY_TARGET_POINTS:g} point of numpy",
                "met": ""
                if name != "federated" or privacy
                else _met(abs(value - accuracy["numpy"]) <= ACCURACY_TARGET_POINTS),
            }
            for name, value in accuracy.items()
        ),
        *(
            {
                "what": f"largest weight difference, {family} federated vs central {name}",
                "records": records,
                "seconds": "",
                "figure": f"{value:.2e}",
                "target": f"<= {WEIGHTS_TARGET:g}" if name == "numpy" and not privacy else "",
                "met": _met(value <= WEIGHTS_TARGET) if name == "numpy" and not privacy else "",
            }
            for family, records, differences in (
                ("breast-cancer", arguments.records, difference),
                ("diabetes", arguments.linear_records, linear_difference),
            )
            for name, value in differences.items()
        ),
        {
            "what": "federated run, diabetes-progression (sufficient statistics, 1 round)",
            "records": arguments.linear_records,
            "seconds": linear_seconds,
            "figure": "",
            "target": "",
            "met": "",
        },
    ]
    report(arguments.report_name, rows)
    missed = [row["what"].strip() for row in rows if row["met"] == _met(False)]
    print(f"\nload average at the start {load_at_start}, at the end {_load()} ({os.cpu_count()} cores)")
    print(f"targets: {'met' if not missed else 'NOT met: ' + '; '.join(missed)}")


if __name__ == "__main__":
    main()
