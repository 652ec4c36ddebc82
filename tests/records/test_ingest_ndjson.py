"""The bulk ingest of FHIR NDJSON (records.services.record_ingest_ndjson, manage.py ingest_ndjson): the same
records as the bundle ingest, anchored, refusals by file, line and code, and resuming after a kill -9."""

import gc
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db import connection
from structlog.testing import capture_logs

from records import ndjson
from records.codes import BREAST_CANCER_DATASET
from records.demo import demo_bundles, demo_patient_resources, demo_patients
from records.errors import BundleRejected, BundleTooLarge, IngestInterrupted
from records.management.commands.ingest_ndjson import ndjson_ingest_command
from records.models import AnchorState, BulkIngestJob, Record, RecordVersion
from records.services import record_ingest, record_ingest_ndjson
from tests.conftest import REPO, worker_database_url
from tests.processes import child_processes, process_alive


def _write(folder: Path, patients, *, observations_first: bool = False) -> list[str]:
    patient_lines, observation_lines = [], []
    for patient in patients:
        resource, *observations = demo_patient_resources(patient)
        patient_lines.append(json.dumps(resource))
        observation_lines += [json.dumps(observation) for observation in observations]
    # An export lists resources by type, not by patient: shuffle the Observations' order between patients.
    observation_lines = observation_lines[1::2] + observation_lines[::2]
    (folder / "Patient.ndjson").write_text("\n".join(patient_lines) + "\n")
    (folder / "Observation.ndjson").write_text("\n".join(observation_lines) + "\n")
    names = ["Observation.ndjson", "Patient.ndjson"] if observations_first else ["Patient.ndjson", "Observation.ndjson"]
    return [str(folder / name) for name in names]


def _versions() -> dict[tuple[str, str], tuple[str, str, int]]:
    return {
        (version.record.patient.pseudonym, version.record.category): (
            str(version.record_id),
            version.sha256,
            version.version,
        )
        for version in RecordVersion.objects.select_related("record__patient")
    }


@pytest.mark.django_db
@pytest.mark.parametrize("processes", [0, 2], ids=["read-by-the-command", "read-by-2-processes"])
def test_ndjson_stores_what_the_bundle_ingest_stores_for_the_same_patients(
    tmp_path, custodian, ledger, settings, processes
):
    settings.INGEST_NDJSON_PROCESSES = processes
    patients = demo_patients(dataset=BREAST_CANCER_DATASET, count=5)
    paths = _write(tmp_path, patients, observations_first=True)

    result = record_ingest_ndjson(paths=paths, slice_patients=2)

    assert (result.job.status, result.job.slices_total, result.job.records_new) == ("done", 3, 5)
    stored = _versions()
    assert RecordVersion.objects.filter(anchor_state=AnchorState.ANCHORED).count() == 5
    for record_id, sha256, _version in stored.values():
        assert ledger.evaluate("anchors", "ReadAnchor", record_id).json()["sha256"] == sha256
    # The same patients as bundles: every record is found, with the same content (unchanged), nothing new.
    for bundle in demo_bundles(patients=patients, max_entries=1000):
        for record in record_ingest(raw_body=json.dumps(bundle).encode(), actor=custodian).records:
            assert record.unchanged
            assert (str(record.record_id), record.sha256, 1) == stored[(record.patient_pseudonym, record.category)]
    assert _versions() == stored


@pytest.mark.django_db
@pytest.mark.parametrize("processes", [0, 2], ids=["read-by-the-command", "read-by-2-processes"])
def test_a_bad_line_refuses_its_patient_only_naming_file_line_and_code(tmp_path, ledger, settings, processes):
    settings.INGEST_NDJSON_PROCESSES = processes
    patients = demo_patients(dataset=BREAST_CANCER_DATASET, count=3)
    paths = _write(tmp_path, patients)
    lines = Path(paths[1]).read_text().splitlines()
    bad = json.loads(lines[4])
    bad["category"][0]["coding"][0]["code"] = "no-such-category"
    lines[4] = json.dumps(bad)
    Path(paths[1]).write_text("\n".join(lines) + "\n")
    refused_patient = bad["subject"]["reference"].removeprefix("Patient/")

    job = record_ingest_ndjson(paths=paths, slice_patients=1).job

    assert (job.status, job.slices_total, job.records_new, job.patients_refused) == ("done", 3, 2, 1)
    assert job.refusals == [{"code": "observation_category_unknown", "file": 1, "line": 5, "path": "resource.category"}]
    assert Record.objects.count() == 2
    assert refused_patient not in json.dumps(job.refusals)


@pytest.mark.django_db
def test_a_refused_file_stores_nothing_and_loses_nothing_stored(tmp_path, ledger):
    first = tmp_path / "first"
    first.mkdir()
    record_ingest_ndjson(paths=_write(first, demo_patients(dataset=BREAST_CANCER_DATASET, count=2)))
    before = _versions()
    paths = _write(tmp_path, demo_patients(dataset=BREAST_CANCER_DATASET, count=4))
    with Path(paths[1]).open("a") as observations:
        observations.write('{"resourceType": "Observation",\n')

    with pytest.raises(BundleRejected) as refused:
        record_ingest_ndjson(paths=paths)

    assert refused.value.code == "malformed_json"
    assert (refused.value.detail["file"], refused.value.detail["line"]) == (paths[1], 121)
    assert _versions() == before
    assert BulkIngestJob.objects.get(status="refused").refusal_code == "malformed_json"


@pytest.mark.django_db
def test_the_command_freezes_what_lives_at_its_start_out_of_the_collector_for_the_run_only(tmp_path, ledger):
    paths = _write(tmp_path, demo_patients(dataset=BREAST_CANCER_DATASET, count=3))
    frozen_after_slices = []

    def out(line: str) -> None:
        if line.startswith("slice "):
            frozen_after_slices.append(gc.get_freeze_count())

    job = ndjson_ingest_command(paths=paths, slice_patients=1, out=out)

    assert job.status == "done"
    assert len(frozen_after_slices) == 3
    assert min(frozen_after_slices) > 100_000  # Django and the FHIR models, at least
    assert gc.get_freeze_count() == 0  # handed back to the collector


READER_FAILURES = {
    "a file that no longer reads": ("OSError", lambda: (_ for _ in ()).throw(OSError("gone"))),
    "a reader process killed": ("BrokenProcessPool", lambda: os.kill(os.getpid(), signal.SIGKILL)),
}


@pytest.mark.django_db
@pytest.mark.parametrize("failure", list(READER_FAILURES))
def test_a_reader_that_fails_stops_the_run_with_a_stable_code_keeping_what_was_stored_and_a_run_again_resumes(
    tmp_path, ledger, settings, monkeypatch, failure
):
    settings.INGEST_NDJSON_PROCESSES = 2
    paths = _write(tmp_path, demo_patients(dataset=BREAST_CANCER_DATASET, count=8))
    cause, fail = READER_FAILURES[failure]
    read = ndjson._patient_records
    parent = os.getpid()

    def failing(streams, number, index):
        assert os.getpid() != parent  # read by a worker process, which inherits this patch
        if number == 4:
            fail()
        return read(streams, number, index)

    monkeypatch.setattr(ndjson, "_patient_records", failing)

    with pytest.raises(IngestInterrupted) as interrupted, capture_logs() as logs:
        record_ingest_ndjson(paths=paths, slice_patients=2)

    assert (interrupted.value.code, interrupted.value.detail) == ("ingest_interrupted", {"error": cause})
    job = BulkIngestJob.objects.get()
    assert [log for log in logs if log["event"] == "bulk_ingest_interrupted"] == [
        {
            "event": "bulk_ingest_interrupted",
            "log_level": "warning",
            "job_id": str(job.pk),
            "slices_done": job.slices_done,
            "cause": cause,
        }
    ]
    assert job.status == "running"
    assert job.slices_done <= 2  # slice 2 (patients 4 and 5) failed; a dead process may take another down
    assert RecordVersion.objects.count() == 2 * job.slices_done
    stored = _versions()
    monkeypatch.undo()

    result = record_ingest_ndjson(paths=paths, slice_patients=2)

    assert result.resumed_at == job.slices_done
    assert (result.job.status, result.job.slices_done, result.job.records_new) == ("done", 4, 8)
    assert RecordVersion.objects.count() == 8 == RecordVersion.objects.filter(anchor_state=AnchorState.ANCHORED).count()
    assert {key: _versions()[key] for key in stored} == stored


def _refusal_of(paths: list[str]) -> tuple[str, object]:
    with pytest.raises((BundleRejected, BundleTooLarge)) as refused:
        record_ingest_ndjson(paths=paths)
    return refused.value.code, refused.value.detail


def _patient_line(patient_id: str, identifier: str | None) -> str:
    resource: dict = {"resourceType": "Patient", "id": patient_id}
    if identifier is not None:
        resource["identifier"] = [{"system": "https://hospital.example/mrn", "value": identifier}]
    return json.dumps(resource)


# Files with two faults each, the first in the files' order to be named whichever process reads which part: a
# repeat spans parts (checked by the command), a line's own fault is found in its part.
TWO_FAULTS = {
    "a repeated id before a broken line": (
        [_patient_line("p-1", "m-1"), _patient_line("p-2", "m-2"), _patient_line("p-1", "m-3"), "{broken"],
        "duplicate_resource_id",
    ),
    "a broken line before a repeated id": (
        [_patient_line("p-1", "m-1"), "{broken", _patient_line("p-1", "m-3")],
        "malformed_json",
    ),
    "a repeated id on a Patient without identifier": (
        [_patient_line("p-1", "m-1"), _patient_line("p-2", "m-2"), _patient_line("p-1", None)],
        "duplicate_resource_id",
    ),
    "a Patient without identifier before a repeated identifier": (
        [_patient_line("p-1", "m-1"), _patient_line("p-2", None), _patient_line("p-3", "m-1")],
        "patient_identifier_missing",
    ),
    "a repeated identifier before a line too long": (
        [_patient_line("p-1", "m-1"), _patient_line("p-2", "m-1"), _patient_line("p-3", "x" * 3000)],
        "duplicate_patient",
    ),
}


@pytest.mark.django_db
@pytest.mark.parametrize("faults", list(TWO_FAULTS))
def test_the_files_checked_in_parts_by_processes_are_refused_for_the_first_fault_a_single_pass_finds(
    tmp_path, ledger, settings, monkeypatch, faults
):
    settings.INGEST_MAX_BYTES = 2048
    lines, code = TWO_FAULTS[faults]
    paths = _write(tmp_path, demo_patients(dataset=BREAST_CANCER_DATASET, count=2))
    with Path(paths[0]).open("a") as patients:
        patients.write("\n".join(lines) + "\n")

    settings.INGEST_NDJSON_PROCESSES = 0
    in_one_pass = _refusal_of(paths)
    BulkIngestJob.objects.all().delete()  # a job refused is not tried again on the same files
    settings.INGEST_NDJSON_PROCESSES = 2
    monkeypatch.setattr(ndjson, "INDEX_PART_BYTES", 1)  # a part per line (at least), three processes
    assert len(ndjson.ndjson_files(paths)[0].parts) == 2 + len(lines)
    in_parts = _refusal_of(paths)

    assert in_parts == in_one_pass
    assert in_parts[0] == code


HOSTILE_LINES = [
    (b'{"resourceType": "Patient", "id": "' + b"x" * 3000 + b'"}', "payload_too_large"),
    (b'{"resourceType": "Patient", "id": "\xff\xfe"}', "malformed_json"),
    (b"[" * 200 + b"]" * 200, "json_too_deep"),
    (b'["resourceType", "Patient"]', "fhir_invalid"),
    (b'{"resourceType": "Encounter", "id": "e1"}', "unsupported_resource_type"),
    (
        b'{"resourceType": "Observation", "id": "o1", "subject": {"reference": "Patient/nobody"}}',
        "observation_subject_unknown",
    ),
    (b'{"resourceType": "Patient", "id": "p", "id": "q"}', "malformed_json"),
]


@pytest.mark.django_db
@pytest.mark.parametrize(("line", "code"), HOSTILE_LINES, ids=[code for _line, code in HOSTILE_LINES])
def test_hostile_lines_are_refused_with_stable_codes_before_anything_is_stored(tmp_path, settings, ledger, line, code):
    settings.INGEST_MAX_BYTES = 2048
    paths = _write(tmp_path, demo_patients(dataset=BREAST_CANCER_DATASET, count=2))
    with Path(paths[0]).open("ab") as patients:
        patients.write(line + b"\n")

    with pytest.raises((BundleRejected, BundleTooLarge)) as refused:
        record_ingest_ndjson(paths=paths)

    assert refused.value.code == code
    detail = refused.value.detail
    where = detail["errors"][0] if "errors" in detail else detail
    assert (where["file"], where["line"]) == (paths[0], 3)
    assert RecordVersion.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_a_run_killed_after_a_slice_resumes_without_duplicates(tmp_path, ledger_url, ledger):
    patients = demo_patients(dataset=BREAST_CANCER_DATASET, count=6)
    paths = _write(tmp_path, patients)
    # The real command in a process of its own, which waits after its first slice until it is killed.
    script = (
        "import sys, time, django; django.setup()\n"
        "from records import services\n"
        "ingest = services.record_ingest_ndjson\n"
        "services.record_ingest_ndjson = lambda **kw: ingest(**{**kw, 'after_slice': lambda job: time.sleep(600)})\n"
        "from records.management.commands import ingest_ndjson\n"
        "ingest_ndjson.record_ingest_ndjson = services.record_ingest_ndjson\n"
        "from django.core.management import call_command\n"
        "call_command('ingest_ndjson', *sys.argv[1:], '--slice-patients', '2')\n"
    )
    environment = {
        **os.environ,
        "LEDGER_URL": ledger_url,
        "DATABASE_URL": worker_database_url(connection),
        "INGEST_NDJSON_PROCESSES": "2",
    }
    process = subprocess.Popen([sys.executable, "-c", script, *paths], cwd=REPO, env=environment)
    try:
        deadline = time.monotonic() + 120
        while not BulkIngestJob.objects.filter(slices_done=1).exists():
            assert process.poll() is None
            assert time.monotonic() < deadline
            time.sleep(0.1)
        readers = child_processes(process.pid)
        assert len(readers) == 2
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert RecordVersion.objects.count() == 2
    # Its reader processes, left with no one to shut them down, end by themselves.
    deadline = time.monotonic() + 10
    while any(map(process_alive, readers)):
        assert time.monotonic() < deadline, "a reader process outlived its killed command"
        time.sleep(0.1)

    call_command("ingest_ndjson", *paths)

    job = BulkIngestJob.objects.get()
    assert (job.status, job.slices_done, job.slices_total, job.records_new, job.records_unchanged) == (
        "done",
        3,
        3,
        6,
        0,
    )
    assert RecordVersion.objects.count() == 6 == RecordVersion.objects.filter(version=1).count()
    assert RecordVersion.objects.filter(anchor_state=AnchorState.ANCHORED).count() == 6
    for version in RecordVersion.objects.all():
        assert ledger.evaluate("anchors", "ReadAnchor", str(version.record_id)).json()["version"] == 1
