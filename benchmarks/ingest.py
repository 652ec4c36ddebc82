"""Ingest throughput on the embedded defaults (SQLite, embedded ledger), against per-record ingest.

    python -m benchmarks.ingest [--patients 400] [--naive-sample 50]

Batched (the design): bundles of as many patients as INGEST_MAX_ENTRIES allows, each bundle stored
in one database transaction and anchored in ONE ledger transaction. Naive: one bundle and one ledger
transaction per patient. Both use the demo datasets' patients (breast-cancer: 30 observations per
record; diabetes: 10), in the same run, on fresh databases.
"""

import argparse
import os
import tempfile
from functools import partial
from typing import Any


def _setup(directory: str) -> None:
    os.environ["HEALTH_PLATFORM_VAR_DIR"] = directory
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "health_platform.settings")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def _ingest_all(bodies: list[bytes], custodian: Any) -> None:
    from records.services import record_ingest

    for body in bodies:
        record_ingest(raw_body=body, actor=custodian)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=400, help="per dataset")
    parser.add_argument("--naive-sample", type=int, default=50, help="per dataset")
    arguments = parser.parse_args()

    with tempfile.TemporaryDirectory() as directory:
        _setup(directory)
        import json

        from django.conf import settings
        from django.contrib.auth.models import User

        from benchmarks.common import report, timed
        from health_platform import bootstrap
        from health_platform.roles import Role, role_group
        from records.codes import BREAST_CANCER_DATASET, DIABETES_DATASET
        from records.demo import demo_bundles, demo_patients
        from records.models import RecordVersion

        custodian = User.objects.create(username="bench-custodian")
        custodian.groups.add(role_group(Role.CUSTODIAN))
        rows = []
        for dataset in (BREAST_CANCER_DATASET, DIABETES_DATASET):
            patients = demo_patients(dataset=dataset, count=arguments.patients)
            bundles = [
                json.dumps(b).encode() for b in demo_bundles(patients=patients, max_entries=settings.INGEST_MAX_ENTRIES)
            ]
            before = RecordVersion.objects.count()
            seconds, _ = timed(partial(_ingest_all, bundles, custodian))
            records = RecordVersion.objects.count() - before
            rows.append(
                {
                    "dataset": dataset,
                    "design": f"batched ({len(bundles)} bundles)",
                    "records": records,
                    "seconds": seconds,
                    "records_per_s": records / seconds,
                }
            )

            # The naive design on patients not ingested yet: one bundle, one ledger transaction each.
            sample = demo_patients(dataset=dataset, count=arguments.patients + arguments.naive_sample)[
                arguments.patients :
            ]
            singles = [json.dumps(b).encode() for p in sample for b in demo_bundles(patients=[p], max_entries=10_000)]
            before = RecordVersion.objects.count()
            seconds, _ = timed(partial(_ingest_all, singles, custodian))
            records = RecordVersion.objects.count() - before
            rows.append(
                {
                    "dataset": dataset,
                    "design": "naive: 1 bundle + 1 tx per record",
                    "records": records,
                    "seconds": seconds,
                    "records_per_s": records / seconds,
                }
            )
        assert RecordVersion.objects.filter(anchor_state="pending").count() == 0
        assert bootstrap.ledger().verify().ok
    report("ingest_embedded", rows)


if __name__ == "__main__":
    main()
