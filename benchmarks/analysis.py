"""A 10,000-record encrypted analysis end to end on the embedded ledger, against the naive design.

    python -m benchmarks.analysis [--records 10000] [--naive-sample 50] [--repeat 3] [--broker redis]
    FABRIC_BIN_DIR=/path/to/fabric/bin python -m benchmarks.analysis      # then the same on a real Fabric network

With FABRIC_BIN_DIR set, the same benchmark runs a second time in the same command, on the native network of
network/fabric.sh started for it (every organisation's peers, chaincode services and orderers on this machine;
the gate endorsed by both organisations), its report headed analysis_fabric; the network is stopped after it.

Design (the platform): batches of ANALYTICS_BATCH_SIZE records (5,000, evened out); per batch ONE
CheckAccessBatch, ONE AppendAccessEvents, column-packed CKKS encryption (one ciphertext per feature),
Σ wᵢ·ctᵢ + b, then decryption of the scores; on SQLite and the embedded ledger.

Naive (the tutorial's way, on a sample, same run): one ciphertext per record scored with a dot product
(Galois keys), one CheckAccessBatch call and one AppendAccessEvents transaction per record.

The analysis runs on the same records once with every task in this process (Celery eager, one core),
then --repeat times (default 3; the median is reported, and each run printed) through real worker
processes as deployed: two custodian processes and two compute processes, on the embedded default's
broker or (--broker redis) a redis-server started for the run, which is what two cores give: first with the
custodians scoring what they encrypt (ANALYTICS_SCORE_ON=custodian, the default), then with the compute
workers scoring (ANALYTICS_SCORE_ON=compute), in the same window. The
first analysis after the workers start is reported on its own ("first after start") and left out of
the median, so that the timed ones see the workers in their steady state (long-lived, as deployed)
rather than paying each process's start-up. Each timed analysis ends when its results are read; the next one
starts once the workers have done what follows it (every batch's outcome logged on the ledger, its accesses
mirrored for the auditors), whose time is reported too: one analysis on an otherwise idle platform, not two
sharing the workers.

Also measured: encrypt+score+decrypt alone, in 1 process and in 2 processes.
Setup (ingesting the records, granting the consents, starting workers) is not timed.
"""

import argparse
import contextlib
import cProfile
import json
import multiprocessing
import os
import shutil
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import (
    consents_grant,
    patients_ingest,
    redis_server,
    setup_django,
    start_workers,
    synthetic_patients,
)


def _he_throughput(records: int, processes: int, *, way: str = "engine") -> float:
    """Records/s for encrypt + score + decrypt alone, chunks of 4,096 shared out over `processes`.

    As in the pipeline, the keys exist beforehand (made at the request), each process reads the public and
    compute contexts once (the engine keeps them), and the scores of a process's chunks are decrypted in one
    call that reads the secret context once (the results page decrypts a request's scores so). Key generation
    and starting the processes are not timed.

    `way`: "engine", as the custodian scores (ANALYTICS_SCORE_ON=custodian: encrypt_and_score, one ciphertext
    serialised per chunk); "split", as with a compute worker (each feature column serialised, then read back and
    scored); "reference", the same work written plainly against TenSEAL with the same parameters, each context
    deserialised once per process and nothing serialised: the near-limit the engine is held to.
    """
    from analytics.he import TenSEALEngine

    keys = TenSEALEngine().keygen()
    sizes = [min(4096, records - start) for start in range(0, records, 4096)]
    shares = [(sizes[index::processes], keys, way) for index in range(processes)]
    if processes == 1:
        _he_share(([1], keys, way))  # this process's contexts read, as a worker's are after its first request
        return records / _median_seconds(lambda: _he_share(shares[0]))
    # Spawned, not forked: this process already runs TenSEAL's thread pools, which a fork does not copy.
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(processes, mp_context=spawn) as pool:
        list(pool.map(_he_share, [([1], keys, way)] * processes))  # started, each with its contexts read
        return records / _median_seconds(lambda: list(pool.map(_he_share, shares)))


HE_RUNS = 5


def _median_seconds(work) -> float:
    """The median time of HE_RUNS runs of `work`: a shared machine's speed wanders from second to second."""
    times = []
    for _ in range(HE_RUNS):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


_he_engine = None
_reference_contexts: dict[bytes, object] = {}


def _he_share(share) -> int:
    """Encrypt and score each chunk of `share` (sizes), then decrypt all their scores."""
    from analytics.diagnostic_models import breast_cancer_model
    from analytics.he import TenSEALEngine

    global _he_engine
    sizes, keys, way = share
    model = breast_cancer_model()
    low, high = np.asarray(model.feature_min), np.asarray(model.feature_max)
    chunks = [low + np.random.default_rng(size).random((size, 30)) * (high - low) for size in sizes]
    if way == "reference":
        _reference_share(keys.secret, chunks, model.weights, model.bias)
        return sum(sizes)
    if _he_engine is None:
        _he_engine = TenSEALEngine()
    engine = _he_engine
    if way == "split":
        scores = [
            (
                engine.linear_score(
                    keys.compute, engine.encrypt_columns(keys.public, chunk), model.weights, model.bias
                ),
                len(chunk),
            )
            for chunk in chunks
        ]
    else:
        scores = [
            (engine.encrypt_and_score(keys.public, chunk, model.weights, model.bias), len(chunk)) for chunk in chunks
        ]
    _he_engine.decrypt_many(keys.secret, scores)
    return sum(sizes)


def _reference_share(secret: bytes, chunks: list[np.ndarray], weights, bias: float) -> list[np.ndarray]:
    """Column-packed CKKS with nothing around it: encrypt each feature column, Σ wᵢ·ctᵢ + b, then decrypt."""
    import tenseal as ts

    context = _reference_contexts.get(secret)
    if context is None:
        context = _reference_contexts[secret] = ts.context_from(secret)
    totals: list[Any] = []
    for features in chunks:
        total: Any = None
        for column, weight in zip(features.T, weights, strict=True):
            term = ts.ckks_vector(context, column.tolist()) * float(weight)
            total = term if total is None else total + term
        totals.append(total + float(bias))
    return [np.asarray(total.decrypt()) for total in totals]


def _check_against_scikit_learn(rows, features: np.ndarray) -> float:
    """Every result row's label must be scikit-learn's on the same features in the clear (a LogisticRegression
    holding the model's weights; `features`: each row's patient's, in the rows' order), and its probability within
    1e-3 of it; returns the largest difference. A mismatch fails the run."""
    from sklearn.linear_model import LogisticRegression

    from analytics.diagnostic_models import breast_cancer_model

    model = breast_cancer_model()
    plain = LogisticRegression()
    plain.coef_, plain.intercept_, plain.classes_ = np.asarray([model.weights]), np.asarray([model.bias]), np.arange(2)
    features, _ = model.clip(np.asarray(features))
    labels = [model.positive_label if label else model.negative_label for label in plain.predict(features)]
    probabilities = plain.predict_proba(features)[:, 1]
    mismatches = [row.record_id for row, label in zip(rows, labels, strict=True) if row.label != label]
    if mismatches:
        raise SystemExit(f"{len(mismatches)} of {len(rows)} labels differ from scikit-learn's in the clear")
    largest = max((abs(row.score - p) for row, p in zip(rows, probabilities, strict=True)), default=0.0)
    if largest > 1e-3:
        raise SystemExit(f"a probability differs from scikit-learn's by {largest:.2e}")
    return largest


def _features_of(rows, features_by_pseudonym: dict[str, tuple[float, ...]]) -> np.ndarray:
    return np.asarray([features_by_pseudonym[row.patient_pseudonym] for row in rows])


def _naive(sample, grantee: str, contracts) -> float:
    """One ciphertext per record (dot product with Galois keys), one ledger call per record each way."""
    import tenseal as ts

    from analytics.diagnostic_models import breast_cancer_model
    from ledger.contracts import AccessItem
    from records.selectors import content_sha256, record_version_plaintext

    model = breast_cancer_model()
    context = ts.context(ts.SCHEME_TYPE.CKKS, 8192, coeff_mod_bit_sizes=[60, 40, 40, 60])
    context.global_scale = 2**40
    context.generate_galois_keys()
    start = time.perf_counter()
    for index, version in enumerate(sample):
        plaintext = record_version_plaintext(record_version=version)
        item = AccessItem(str(version.record_id), "imaging", content_sha256(plaintext))
        (answer,) = contracts.check_access_batch(
            grantee=grantee,
            organisation=None,
            purpose=model.purpose,
            at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            items=[item],
        )
        contracts.append_access_events(
            batch_id=f"naive-{index}",
            events=[
                {
                    "event_id": f"naive-{index}",
                    "kind": "record_access",
                    "record_id": item.record_id,
                    "patient_pseudonym": version.record.patient.pseudonym,
                    "grantee": grantee,
                    "purpose": model.purpose,
                    "decision": answer.decision,
                    "reason": answer.reason,
                }
            ],
        )
        if answer.admitted:
            entries = json.loads(plaintext)["entry"]
            values = {
                c["code"]: e["resource"]["valueQuantity"]["value"]
                for e in entries
                if e["resource"]["resourceType"] == "Observation"
                for c in e["resource"]["code"]["coding"]
            }
            features = [values[code] for code in model.feature_codes]
            encrypted = ts.ckks_vector(context, features)
            (encrypted.dot(list(model.weights)) + model.bias).decrypt()
    return len(sample) / (time.perf_counter() - start)


def _settled(request, *, timeout: float = 120) -> float:
    """Wait for what the workers do after a request's results are readable (each batch's outcome logged on the
    ledger, its access events mirrored for the auditors), so that the next timed analysis has the workers to
    itself, as one analysis on an otherwise idle platform; return the time (perf_counter) it was all done."""
    from django.db.models import Q

    from analytics.models import AnalysisBatch

    trailing = Q(outcome_tx_id="") | Q(outcome_tx_id__startswith="claim:") | Q(access_mirror_pending=True)
    deadline = time.monotonic() + timeout
    while AnalysisBatch.objects.filter(request=request).filter(trailing).exists():
        if time.monotonic() > deadline:
            raise SystemExit(f"a batch's outcome was not logged, or its accesses not mirrored, within {timeout:.0f} s")
        time.sleep(0.01)
    return time.perf_counter()


def _load() -> str:
    return " / ".join(f"{value:.2f}" for value in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--naive-sample", type=int, default=50)
    parser.add_argument(
        "--repeat", type=int, default=3, help="timed analyses through the workers; the median is reported"
    )
    parser.add_argument("--profile", metavar="FILE", help="write a cProfile of the timed analysis to FILE")
    parser.add_argument("--batch-size", type=int, default=None, help="records per batch (default: the setting)")
    parser.add_argument("--keep-logs", metavar="DIR", help="copy the workers' logs to DIR")
    parser.add_argument("--on-fabric", action="store_true", help=argparse.SUPPRESS)  # the Fabric run's own process
    parser.add_argument(
        "--broker",
        choices=["filesystem", "redis"],
        default="filesystem",
        help="the workers' broker: the embedded default's folder, or a redis-server started for the run",
    )
    arguments = parser.parse_args()
    load_at_start = _load()
    backend = "fabric" if arguments.on_fabric else "embedded"

    with tempfile.TemporaryDirectory() as directory, contextlib.ExitStack() as stack:
        if arguments.broker == "redis":
            os.environ["CELERY_BROKER_URL"] = stack.enter_context(redis_server(directory)).url
        setup_django(directory)
        from django.contrib.auth.models import User

        from analytics.models import AnalysisStatus
        from analytics.registry import diagnostic_models_register
        from analytics.selectors import analysis_results
        from analytics.services import analysis_request_create
        from benchmarks.common import report
        from health_platform import bootstrap
        from health_platform.celery import app
        from health_platform.roles import Role, role_group
        from health_platform.services import clinician_register
        from records.crypto import patient_pseudonym
        from records.models import Patient, RecordVersion

        print(f"setting up {arguments.records} records and consents (not timed)...", flush=True)
        app.conf.update(CELERY_TASK_ALWAYS_EAGER=True, CELERY_TASK_EAGER_PROPAGATES=True)
        contracts = bootstrap.contracts()
        diagnostic_models_register()
        custodian = User.objects.create(username="bench-custodian")
        custodian.groups.add(role_group(Role.CUSTODIAN))
        patients = synthetic_patients(arguments.records + arguments.naive_sample)
        features_by_pseudonym = {patient_pseudonym(p.patient_key): p.features for p in patients}
        patients_ingest(patients, actor=custodian)
        clinician = User.objects.create(username="bench-clinician")
        grantee = clinician_register(user=clinician, display_name="Bench").grantee_id
        pseudonyms = list(Patient.objects.order_by("created_at", "pk").values_list("pseudonym", flat=True))
        consents_grant(  # 9 in 10 consent; the gate refuses the others
            [(f"bench-{index}", pseudonyms[index], grantee) for index in range(len(pseudonyms)) if index % 10],
            purposes=["diagnostic-model:breast-cancer"],
            categories=["imaging"],
        )
        cohort, naive_cohort = pseudonyms[: arguments.records], pseudonyms[arguments.records :]

        expected_rows = sum(1 for i in range(arguments.records) if i % 10)
        print("running the analysis in this process...", flush=True)
        profiler = cProfile.Profile() if arguments.profile else None
        if profiler:
            profiler.enable()
        start = time.perf_counter()
        request = analysis_request_create(
            requester=clinician, model_name="breast-cancer", cohort_kind="explicit", pseudonyms=cohort
        )
        request.refresh_from_db()
        results = analysis_results(request=request, viewer=clinician)
        end_to_end = time.perf_counter() - start
        if profiler:
            profiler.disable()
            profiler.dump_stats(arguments.profile)
        assert request.status == AnalysisStatus.COMPLETED, request.failure_code
        assert len(results.rows) == expected_rows
        largest_difference = _check_against_scikit_learn(
            results.rows, _features_of(results.rows, features_by_pseudonym)
        )

        print("running the analysis through worker processes...", flush=True)
        app.conf.update(CELERY_TASK_ALWAYS_EAGER=False)

        def analysis_through_workers() -> float:
            start = time.perf_counter()
            request = analysis_request_create(
                requester=clinician,
                model_name="breast-cancer",
                cohort_kind="explicit",
                pseudonyms=cohort,
                batch_size=arguments.batch_size,
            )
            while request.status not in (AnalysisStatus.COMPLETED, AnalysisStatus.FAILED):
                time.sleep(0.02)
                request.refresh_from_db()
            results = analysis_results(request=request, viewer=clinician)
            elapsed = time.perf_counter() - start
            assert request.status == AnalysisStatus.COMPLETED, request.failure_code
            assert len(results.rows) == expected_rows
            nonlocal largest_difference
            largest_difference = max(
                largest_difference,
                _check_against_scikit_learn(results.rows, _features_of(results.rows, features_by_pseudonym)),
            )
            trailing.append(_settled(request) - start)
            return elapsed

        trailing: list[float] = []  # seconds from each request to its outcomes logged and accesses mirrored
        # Each way of scoring in the same window: the custodians scoring in memory (the default), then a
        # compute worker scoring what the custodians wrote.
        through_workers: dict[str, tuple[float, list[float]]] = {}
        for score_on in ("custodian", "compute"):
            workers = start_workers(directory, score_on=score_on)
            try:
                # Steady state, as deployed: workers live long. The first analysis after the workers start
                # pays each process's one-off costs: imports, ledger and TenSEAL set-up, and growing its
                # heap to a batch's size (about 100,000 page faults, over a second of system time on this
                # machine). It runs in full, is timed and reported, and is left out of the median.
                first = analysis_through_workers()
                through_workers[score_on] = (first, [analysis_through_workers() for _ in range(arguments.repeat)])
            finally:
                for worker in workers:
                    worker.stop()
                if arguments.keep_logs:
                    Path(arguments.keep_logs).mkdir(parents=True, exist_ok=True)
                    for worker in workers:
                        shutil.copy(worker.log_path, Path(arguments.keep_logs) / f"{score_on}-{worker.log_path.name}")
        first_run, worker_runs = through_workers["custodian"]
        end_to_end_workers = statistics.median(worker_runs)
        naive_versions = list(
            RecordVersion.objects.filter(record__patient__pseudonym__in=naive_cohort).select_related("record__patient")
        )
        naive_rate = _naive(naive_versions, grantee, contracts)
        he_one, he_two = _he_throughput(arguments.records, 1), _he_throughput(arguments.records, 2)
        split_one, split_two = (_he_throughput(arguments.records, n, way="split") for n in (1, 2))
        reference_one = _he_throughput(arguments.records, 1, way="reference")
        reference_two = _he_throughput(arguments.records, 2, way="reference")
        assert contracts.verify().ok

    design_rate = arguments.records / end_to_end_workers
    rows = [
        {
            "what": "analysis end to end (gate, log, encrypt, score, decrypt)",
            "design": "batched, column-packed; 1 process",
            "records": arguments.records,
            "seconds": end_to_end,
            "records_per_s": arguments.records / end_to_end,
        },
        {
            "what": "analysis end to end (gate, log, encrypt, score, decrypt)",
            "design": f"batched, column-packed; workers 2+2 processes, {arguments.broker} broker,"
            " scored by the custodians (the default)"
            + (f"; median of {len(worker_runs)}" if len(worker_runs) > 1 else ""),
            "records": arguments.records,
            "seconds": end_to_end_workers,
            "records_per_s": design_rate,
        },
        {
            "what": "analysis end to end (gate, log, encrypt, score, decrypt)",
            "design": f"the same, scored by the compute workers; median of {len(through_workers['compute'][1])}",
            "records": arguments.records,
            "seconds": statistics.median(through_workers["compute"][1]),
            "records_per_s": arguments.records / statistics.median(through_workers["compute"][1]),
        },
        {
            "what": "analysis end to end (gate, log, encrypt, score, decrypt)",
            "design": f"the same, first analysis after the workers start ({arguments.broker} broker)",
            "records": arguments.records,
            "seconds": first_run,
            "records_per_s": arguments.records / first_run,
        },
        {
            "what": "analysis end to end",
            "design": "naive: 1 ciphertext + 2 ledger calls per record",
            "records": len(naive_versions),
            "seconds": len(naive_versions) / naive_rate,
            "records_per_s": naive_rate,
        },
        *(
            {
                "what": "encrypt+score+decrypt only",
                "design": f"{design}, {processes}",
                "records": arguments.records,
                "seconds": arguments.records / rate,
                "records_per_s": rate,
            }
            for design, rates in (
                ("column-packed, with a compute worker (columns serialised)", (split_one, split_two)),
                ("column-packed, scored where encrypted (the default)", (he_one, he_two)),
                ("reference: plain TenSEAL, same parameters", (reference_one, reference_two)),
            )
            for processes, rate in zip(("1 process", "2 processes"), rates, strict=True)
        ),
    ]
    report(f"analysis_{backend}", rows)
    print(
        f"\nend to end: {design_rate:,.0f} records/s vs naive {naive_rate:,.1f} records/s"
        f" = {design_rate / naive_rate:,.0f}x; {arguments.records:,} records in {end_to_end_workers:.2f} s"
        f" (median; each run: {', '.join(f'{run:.2f} s' for run in worker_runs)};"
        f" the first after the workers start, not counted: {first_run:.2f} s)"
    )
    print(
        f"then every batch's outcome on the ledger and its accesses in the audit mirror:"
        f" {statistics.median(trailing):.2f} s after the request (median of {len(trailing)} runs, both ways of"
        " scoring; each timed analysis starts once the last one's are)"
    )
    print(
        f"encrypt+score+decrypt on 2 processes: {he_two:,.0f} records/s = {he_two / reference_two:.0%} of the plain"
        f" reference's {reference_two:,.0f} (1 process: {he_one / reference_one:.0%})"
    )
    print(
        f"every result row of every run checked against scikit-learn in the clear: labels equal, probabilities"
        f" within {largest_difference:.1e}"
    )
    print(f"load average: {load_at_start} at the start, {_load()} at the end")
    if not arguments.on_fabric and os.environ.get("FABRIC_BIN_DIR"):
        _again_on_fabric(os.environ["FABRIC_BIN_DIR"])


def _again_on_fabric(bin_dir: str) -> None:
    """The same benchmark, with the same arguments, in a process of its own on a Fabric network started for it."""
    import subprocess
    import sys

    from tests.fabric.network import start_network

    with tempfile.TemporaryDirectory() as directory:
        print("\nstarting a Fabric network for the same benchmark on Fabric...", flush=True)
        network = start_network(bin_dir, Path(directory) / "fabric")
        try:
            environment = {**os.environ, **network.client_environment}
            command = [sys.executable, "-m", "benchmarks.analysis", *sys.argv[1:], "--on-fabric"]
            subprocess.run(command, env=environment, check=True)
        finally:
            network.run("down", timeout=60)


if __name__ == "__main__":
    main()
