"""A hospital-size encrypted analysis through the workers: a million records, with every process's peak memory.

    python -m benchmarks.analysis_scale [--records 1000000] [--directory DIR] [--repeat 1]

Setup (timed and reported, but not the figure): the synthetic breast-cancer patients of benchmarks.common, written
as FHIR NDJSON ($export's Patient.ndjson and Observation.ndjson) --part patients at a time, each part ingested by
`manage.py ingest_ndjson` in a process of its own (encrypted at rest, anchored on the embedded ledger); every patient
then consents to the clinician, each grant signed by the patient's software passkey on the ledger, so that every
record goes through the gate, the log and the encryption (benchmarks.analysis measures the gate's refusals); the
consent mirror rebuilt from the ledger (manage.py rebuild_consent_mirror's service). With --directory the set-up
folder is kept, and a later run with the same --records reuses it.

Timed: two custodian and two compute worker processes started as deployed (the embedded default's broker); then
the analysis a clinician asks for at this scale, cohort "consented" (everyone who consented to them for the
model's purpose: an explicit list stops at ANALYTICS_MAX_COHORT), from the request to its status completed; then
every result row read back (decrypted one score ciphertext at a time, analytics.selectors.analysis_result_rows)
and its label checked against scikit-learn in the clear on the same features (a mismatch fails the run).

Memory: the peak resident set (VmHWM) of every worker process (each worker's main process and its pool), reset
when the analysis starts, and of this process while it requests and reads the results (reset before, so the
setup's peak is not counted), and of the largest process of each ingest part (the command or one of its
readers). Printed with the load average at the start and the end.
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.analysis import _check_against_scikit_learn, _load, _settled
from benchmarks.common import (
    REPOSITORY,
    consents_grant,
    report,
    setup_django,
    start_workers,
    synthetic_demo_patients,
    synthetic_features,
)

MIB = 1024 * 1024
CHECKED_AT_ONCE = 50_000  # result rows checked against scikit-learn together


def main() -> None:
    arguments = _arguments()
    load_at_start = _load()
    with tempfile.TemporaryDirectory() as scratch:
        directory = arguments.directory or scratch
        Path(directory).mkdir(parents=True, exist_ok=True)
        setup_django(directory)
        features = synthetic_features(arguments.records)
        marker = Path(directory) / "analysis_scale.done"
        setup_rows = [] if _set_up(marker, arguments.records) else _setup(directory, features, arguments.part)
        marker.write_text(str(arguments.records))
        rows = _analyses(directory, features, arguments.repeat)
    report("analysis_scale_embedded", setup_rows + rows)
    print(f"load average: {load_at_start} at the start, {_load()} at the end")


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--part", type=int, default=100_000, help="patients per NDJSON ingest (one process each)")
    parser.add_argument("--repeat", type=int, default=1, help="analyses after the first (the workers kept)")
    parser.add_argument("--directory", help="keep the set-up folder here, and reuse it if it holds --records")
    return parser.parse_args()


def _set_up(marker: Path, records: int) -> bool:
    return marker.exists() and marker.read_text() == str(records)


def _setup(directory: str, features: np.ndarray, part: int) -> list[dict[str, Any]]:
    """Ingest, consent and mirror; a row each with its time and rate."""
    from django.contrib.auth.models import User

    from analytics.registry import diagnostic_models_register
    from consent.services import consent_mirror_rebuild
    from health_platform import bootstrap
    from health_platform.services import clinician_register
    from records.models import Patient

    if Patient.objects.exists():
        raise SystemExit(
            f"{directory} holds a setup that did not finish (or one for another --records): remove it, or choose "
            "another --directory"
        )
    bootstrap.contracts()
    diagnostic_models_register()
    rows = []
    records = len(features)
    for first in range(0, records, part):
        print(f"ingesting patients {first:,} to {min(first + part, records):,}...", flush=True)
        start = time.perf_counter()
        peak = _ingest_part(Path(directory), synthetic_demo_patients(features[first : first + part], first=first))
        seconds = time.perf_counter() - start
        rows.append(_row(f"setup: ingest_ndjson, patients {first:,}+", min(part, records - first), seconds, peak))

    clinician = User.objects.create(username="bench-clinician")
    grantee = clinician_register(user=clinician, display_name="Bench").grantee_id
    pseudonyms = Patient.objects.order_by("created_at", "pk").values_list("pseudonym", flat=True)
    print("consenting...", flush=True)
    start, granted = time.perf_counter(), 0
    for first in range(0, records, part):  # a signer (and its patients' keys) per part: memory stays bounded
        grants = [(f"bench-{first + i}", p, grantee) for i, p in enumerate(pseudonyms[first : first + part])]
        consents_grant(grants, purposes=["diagnostic-model:breast-cancer"], categories=["imaging"])
        granted += len(grants)
        print(f"  {granted:,} granted, {granted / (time.perf_counter() - start):,.0f}/s", flush=True)
    rows.append(_row("setup: consents signed and granted on the ledger", granted, time.perf_counter() - start))
    start = time.perf_counter()
    mirrored = consent_mirror_rebuild()
    rows.append(_row("setup: consent mirror rebuilt from the ledger", mirrored, time.perf_counter() - start))
    return rows


def _ingest_part(directory: Path, patients: list[Any]) -> float:
    """Write the patients as NDJSON and ingest them with the command, in a process of its own; returns the peak
    memory (MiB) of its largest process."""
    from benchmarks.bulk_ingest import _write_ndjson

    with tempfile.TemporaryDirectory(dir=directory) as folder:
        paths = _write_ndjson(Path(folder), patients)
        with (directory / "ingest_ndjson.log").open("ab") as log:
            command = subprocess.Popen(
                [sys.executable, "manage.py", "ingest_ndjson", *paths], cwd=REPOSITORY, stdout=log, stderr=log
            )
            _, status, usage = os.wait4(command.pid, 0)
        command.returncode = os.waitstatus_to_exitcode(status)
    if command.returncode != 0:
        raise SystemExit(f"ingest_ndjson ended with {command.returncode}: see {directory / 'ingest_ndjson.log'}")
    return usage.ru_maxrss / 1024  # KiB: the largest of the command and the readers it waited for


def _analyses(directory: str, features: np.ndarray, repeat: int) -> list[dict[str, Any]]:
    from django.contrib.auth.models import User

    from analytics.models import AnalysisStatus
    from analytics.selectors import analysis_result_rows
    from analytics.services import analysis_request_create
    from health_platform import bootstrap
    from records.crypto import patient_pseudonym
    from records.models import Patient

    clinician = User.objects.get(username="bench-clinician")
    consenting = len(features)
    # Each patient's pseudonym, sorted, and where its features are: 64 bytes a patient, not a dict of a million.
    known = np.asarray([patient_pseudonym(_patient_key(index)) for index in range(len(features))], "S64")
    order = np.argsort(known)
    known = known[order]
    assert Patient.objects.count() == len(features)

    rows = []
    workers = start_workers(directory)
    try:
        for run in range(1 + repeat):
            for pid in _worker_processes(workers):
                _reset_peak(pid)
            _reset_peak(os.getpid())
            print(f"analysis {run + 1} of {1 + repeat} through the workers...", flush=True)
            start = time.perf_counter()
            request = analysis_request_create(requester=clinician, model_name="breast-cancer", cohort_kind="consented")
            while request.status not in (AnalysisStatus.COMPLETED, AnalysisStatus.FAILED):
                time.sleep(0.2)
                request.refresh_from_db()
            completed = time.perf_counter() - start
            assert request.status == AnalysisStatus.COMPLETED, request.failure_code
            checked, largest, pending = 0, 0.0, []
            for row in analysis_result_rows(request=request, viewer=clinician):
                pending.append(row)
                if len(pending) == CHECKED_AT_ONCE:
                    largest = max(largest, _check(pending, known, order, features))
                    checked, pending = checked + len(pending), []
            largest = max(largest, _check(pending, known, order, features))
            checked += len(pending)
            read = time.perf_counter() - start
            if checked != consenting:
                raise SystemExit(f"{checked} result rows, {consenting} expected")
            settled = _settled(request, timeout=3600) - start
            peaks = {pid: _peak(pid) for pid in _worker_processes(workers)}
            which = "the first after the workers start" if run == 0 else f"run {run + 1}, the workers kept"
            rows.append(
                _row(f"analysis, cohort consented ({which}): to completed", request.total_records, completed)
                | {"peak_mib": max(peaks.values())}
            )
            rows.append(
                _row("  the same, to every row read and checked", checked, read) | {"peak_mib": _peak(os.getpid())}
            )
            rows.append(_row("  the same, to its outcomes logged and accesses mirrored", checked, settled))
            print(
                f"every worker process's peak (MiB): {', '.join(f'{p:.0f}' for p in sorted(peaks.values()))};"
                f" this process reading the results: {_peak(os.getpid()):.0f}; labels equal to scikit-learn's,"
                f" probabilities within {largest:.1e}",
                flush=True,
            )
    finally:
        for worker in workers:
            worker.stop()
    start = time.perf_counter()
    assert bootstrap.contracts().verify().ok
    print(f"ledger verified in {time.perf_counter() - start:.0f} s")
    return rows


def _patient_key(index: int) -> str:
    """synthetic_demo_patients' patient `index`'s key, without making the patient."""
    from records.codes import BREAST_CANCER_DATASET
    from records.demo import DemoPatient

    return DemoPatient(dataset=BREAST_CANCER_DATASET, row=index, features=()).patient_key


def _check(rows: list[Any], known: np.ndarray, order: np.ndarray, features: np.ndarray) -> float:
    if not rows:
        return 0.0
    wanted = np.asarray([row.patient_pseudonym for row in rows], "S64")
    at = np.searchsorted(known, wanted)
    if not (known[np.minimum(at, len(known) - 1)] == wanted).all():
        raise SystemExit("a result row names a patient the benchmark did not make")
    return _check_against_scikit_learn(rows, features[order[at]])


def _worker_processes(workers: list[Any]) -> list[int]:
    """Each worker's main process and its pool's processes."""
    from tests.processes import child_processes

    return [pid for worker in workers for pid in (worker.process.pid, *child_processes(worker.process.pid))]


def _peak(pid: int) -> float:
    """Process `pid`'s peak resident set since its last reset, in MiB."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) / 1024  # type: ignore[union-attr]


def _reset_peak(pid: int) -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def _row(design: str, records: int, seconds: float, peak: float | None = None) -> dict[str, Any]:
    """benchmarks.bulk_ingest's row (records/s and the load average) with a peak memory, in MiB."""
    from benchmarks.bulk_ingest import _row as rate_row

    return rate_row(design, records, seconds) | {"peak_mib": peak}


if __name__ == "__main__":
    main()
