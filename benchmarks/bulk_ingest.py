"""Bulk ingest throughput on the embedded defaults (SQLite, embedded ledger): FHIR NDJSON through
`manage.py ingest_ndjson`'s function, against the per-bundle ingest in the same run.

    python -m benchmarks.bulk_ingest [--patients 10000] [--bundle-patients 1000]

Breast-cancer demo patients (a record: the Patient and 30 Observations; rows past the dataset's 569 reuse its
features under new identifiers), written as Patient.ndjson and Observation.ndjson in a temporary folder (not
timed). The baseline posts the same kind of patients, not yet ingested, as bundles of INGEST_MAX_ENTRIES entries
through record_ingest (the API's service). Prints records/s and the machine's load average at the time.
"""

import argparse
import json
import os
import tempfile
from functools import partial
from pathlib import Path
from typing import Any

from benchmarks.common import report, setup_django, timed
from benchmarks.ingest import _ingest_all as ingest_bundles


def _demo_patients(first: int, count: int) -> list[Any]:
    from records.codes import BREAST_CANCER_DATASET
    from records.demo import DemoPatient, demo_patients

    rows = demo_patients(dataset=BREAST_CANCER_DATASET, count=10_000)
    return [
        DemoPatient(dataset=BREAST_CANCER_DATASET, row=row, features=rows[row % len(rows)].features)
        for row in range(first, first + count)
    ]


def _write_ndjson(folder: Path, patients: list[Any]) -> list[str]:
    from records.demo import demo_patient_resources

    paths = [folder / "Patient.ndjson", folder / "Observation.ndjson"]
    with paths[0].open("w") as patient_file, paths[1].open("w") as observation_file:
        for patient in patients:
            resource, *observations = demo_patient_resources(patient)
            patient_file.write(json.dumps(resource) + "\n")
            observation_file.writelines(json.dumps(observation) + "\n" for observation in observations)
    return [str(path) for path in paths]


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=10_000, help="breast-cancer patients in the NDJSON files")
    parser.add_argument("--bundle-patients", type=int, default=1_000, help="patients posted as bundles (baseline)")
    return parser.parse_args()


def main() -> None:
    arguments = _arguments()
    with tempfile.TemporaryDirectory() as directory:
        setup_django(directory)
        from django.conf import settings
        from django.contrib.auth.models import User

        from health_platform import bootstrap
        from records.demo import demo_bundles
        from records.management.commands.ingest_ndjson import ndjson_ingest_command
        from records.models import RecordVersion

        rows: list[dict[str, Any]] = []
        custodian = User.objects.create(username="bench-custodian")

        bundles = [
            json.dumps(bundle).encode()
            for bundle in demo_bundles(
                patients=_demo_patients(arguments.patients, arguments.bundle_patients),
                max_entries=settings.INGEST_MAX_ENTRIES,
            )
        ]
        before = RecordVersion.objects.count()
        seconds, _ = timed(partial(ingest_bundles, bundles, custodian))
        records = RecordVersion.objects.count() - before
        rows.append(_row(f"per-bundle API service ({len(bundles)} bundles)", records, seconds))

        paths = _write_ndjson(Path(directory), _demo_patients(0, arguments.patients))
        before = RecordVersion.objects.count()
        seconds, job = timed(partial(ndjson_ingest_command, paths=paths, slice_patients=None, out=lambda line: None))
        records = RecordVersion.objects.count() - before
        assert job.status == "done"
        assert records == job.records_new == arguments.patients
        rows.append(_row(f"ingest_ndjson ({job.slices_total} slices)", records, seconds))

        assert RecordVersion.objects.filter(anchor_state="pending").count() == 0
        assert bootstrap.ledger().verify().ok
    report("bulk_ingest_embedded", rows)


def _row(design: str, records: int, seconds: float) -> dict[str, Any]:
    load = os.getloadavg()
    return {
        "design": design,
        "records": records,
        "seconds": seconds,
        "records_per_s": records / seconds,
        "load_average_1_5_15": f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}",
    }


if __name__ == "__main__":
    main()
