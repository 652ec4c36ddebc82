"""Per-patient data keys (records.patient_keys) and the move of versions written under the master keys to them
(manage.py records_per_patient_keys), interrupted with SIGKILL and run again."""

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from chaincode.validation import format_timestamp
from health_platform import bootstrap
from ledger.contracts import AccessItem
from records import patient_keys
from records.crypto import record_cipher
from records.models import ErasureState, PatientDataKey, PatientErasure, RecordVersion
from records.patient_keys import cached_data_key_ids, data_key_cache_clear, record_keys
from records.selectors import record_integrity_check, record_versions_contents, record_versions_features
from records.services import _version_resealed
from tests.conftest import REPO, dr_carol, worker_database_url


def _as_before_per_patient_keys() -> None:
    """Every version moved back under the master key and every data key deleted: the platform as it was before."""
    versions = [_version_resealed(v, record_keys(), record_cipher()) for v in RecordVersion.objects.all()]
    RecordVersion.objects.bulk_update(versions, ["key_id", "content_encoding", "ciphertext", "features"])
    PatientDataKey.objects.all().delete()
    data_key_cache_clear()


def _gate_answers(clinician) -> list[tuple[str, str | None]]:
    found, _ = record_versions_features(version_ids=list(RecordVersion.objects.values_list("pk", flat=True)))
    items = [AccessItem(str(f.record_id), f.category, f.opened.record_sha256, f.opened.digest) for f in found]
    answers = bootstrap.contracts().check_access_batch(
        grantee=clinician.clinician_profile.grantee_id,
        organisation=None,
        purpose="diagnostic-model:breast-cancer",
        at=format_timestamp(datetime.now(UTC)),
        items=items,
    )
    return [(a.decision, a.reason) for a in answers]


@pytest.fixture
def clinician(db):
    """Dr Carol, registered in the directory: the records tests' own clinician fixture is not."""
    return dr_carol()


@pytest.mark.django_db(transaction=True)
def test_the_move_to_per_patient_keys_resumes_after_sigkill_and_every_record_still_opens_and_matches_its_anchor(
    consented, clinician, ledger_url
):
    consented(8)
    _as_before_per_patient_keys()
    master = record_cipher().active_key_id
    assert set(RecordVersion.objects.values_list("key_id", flat=True)) == {master}
    assert _gate_answers(clinician) == [("admit", None)] * 8  # features moved back as they were: still admitted
    # The real command in a process of its own, stopped in the middle of its third batch (after two committed),
    # inside the transaction, and killed there.
    script = (
        "import sys, time, django; django.setup()\n"
        "from records import services\n"
        "sealed = []\n"
        "real = services.record_seal\n"
        "def seal(cipher, **arguments):\n"
        "    sealed.append(1)\n"
        "    if len(sealed) == 5:\n"
        "        print('stopped', flush=True); time.sleep(600)\n"
        "    return real(cipher, **arguments)\n"
        "services.record_seal = seal\n"
        "from django.core.management import call_command\n"
        "call_command('records_per_patient_keys', '--batch-patients', '2')\n"
    )
    environment = {**os.environ, "LEDGER_URL": ledger_url, "DATABASE_URL": worker_database_url(connection)}
    process = subprocess.Popen(
        [sys.executable, "-c", script], cwd=REPO, env=environment, stdout=subprocess.PIPE, text=True
    )
    try:
        lines = []
        deadline = time.monotonic() + 120
        while "stopped" not in lines:
            assert process.poll() is None
            assert time.monotonic() < deadline
            lines.append(process.stdout.readline().strip())
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert [line for line in lines if line.startswith("batch")] == [
        "batch 1: 2 versions moved, 6 left",
        "batch 2: 4 versions moved, 4 left",
    ]
    keys = list(RecordVersion.objects.values_list("key_id", flat=True))
    assert (sum(k.startswith("dk:") for k in keys), keys.count(master)) == (4, 4)  # the third batch rolled back
    assert PatientDataKey.objects.count() == 4
    data_key_cache_clear()  # as another process: every version opens, under either key
    assert all(c.plaintext is not None for c in record_versions_contents(version_ids=_all_version_ids()))

    call_command("records_per_patient_keys", "--batch-patients", "2")

    assert all(key.startswith("dk:") for key in RecordVersion.objects.values_list("key_id", flat=True))
    assert PatientDataKey.objects.count() == 8
    data_key_cache_clear()
    for version in RecordVersion.objects.all():
        assert record_integrity_check(record_version=version).ok
    assert _gate_answers(clinician) == [("admit", None)] * 8
    call_command("records_per_patient_keys")  # nothing left: a no-op
    assert PatientDataKey.objects.count() == 8


def _all_version_ids() -> list[int]:
    return list(RecordVersion.objects.values_list("pk", flat=True))


@pytest.mark.django_db
def test_a_batch_of_versions_unwraps_each_patients_key_once(cohort, monkeypatch):
    cohort(6)
    data_key_cache_clear()
    unwraps = []
    real = patient_keys._unwrap
    monkeypatch.setattr(patient_keys, "_unwrap", lambda **kw: unwraps.append(1) or real(**kw))

    for _ in range(3):
        found, _without = record_versions_features(version_ids=_all_version_ids())
        assert all(f.opened is not None for f in found)

    assert len(unwraps) == 6  # once per patient, the first time only


@pytest.mark.django_db
def test_the_gates_read_takes_each_patients_wrapped_key_from_the_versions_own_query(cohort, django_assert_num_queries):
    cohort(6)
    data_key_cache_clear()
    version_ids = _all_version_ids()

    with django_assert_num_queries(2):  # the completed erasures (to drop stale keys), then versions joined to keys
        found, _ = record_versions_features(version_ids=version_ids)

    assert len(found) == 6
    assert all(f.opened is not None for f in found)
    assert len(cached_data_key_ids()) == 6


@pytest.mark.django_db
def test_the_cache_keeps_at_most_its_size_least_recently_used_out(cohort, settings):
    cohort(5)
    settings.RECORD_DATA_KEY_CACHE_SIZE = 3
    data_key_cache_clear()

    found, _ = record_versions_features(version_ids=_all_version_ids())

    assert all(f.opened is not None for f in found)  # every version opened though only 3 keys stay
    assert len(cached_data_key_ids()) == 3


@pytest.mark.django_db
def test_a_full_cache_keeps_the_keys_a_chunk_needs_while_it_loads_the_others(cohort, settings, monkeypatch):
    """Steady state: the cache is full of an earlier request's keys, some of which this one needs too. Loading the
    missing keys must not push out the cached ones the same chunk is about to use (each would then be unwrapped
    again, one query per version: that made every analysis after the first two to three times slower)."""
    people = cohort(6)
    settings.RECORD_DATA_KEY_CACHE_SIZE = 4
    data_key_cache_clear()
    ids = {patient.pk: RecordVersion.objects.get(record__patient=patient).pk for _, patient, _ in people}
    patients = [patient.pk for _, patient, _ in people]
    record_versions_features(version_ids=[ids[p] for p in patients[:4]])  # the cache now holds patients 0-3
    unwraps = []
    real = patient_keys._unwrap
    monkeypatch.setattr(patient_keys, "_unwrap", lambda **kw: unwraps.append(kw["patient_id"]) or real(**kw))

    found, _ = record_versions_features(version_ids=[ids[p] for p in (patients[0], patients[1], *patients[4:])])

    assert all(f.opened is not None for f in found)
    assert sorted(unwraps) == sorted(patients[4:])  # only the two it did not hold, once each


@pytest.mark.django_db
def test_a_wrapped_key_is_bound_to_its_patient(cohort):
    (_, first, _), (_, second, _) = cohort(2)
    mine, theirs = PatientDataKey.objects.get(patient=first), PatientDataKey.objects.get(patient=second)
    PatientDataKey.objects.filter(pk=mine.pk).update(wrapped_key=bytes(theirs.wrapped_key))
    data_key_cache_clear()

    version = RecordVersion.objects.get(record__patient=first)
    assert record_integrity_check(record_version=version).reason == "ciphertext_invalid"
    assert not any(key.endswith(mine.pk.hex) for key in cached_data_key_ids())


@pytest.mark.django_db
def test_without_a_cache_ingest_still_seals_and_every_version_still_opens(cohort, settings):
    settings.RECORD_DATA_KEY_CACHE_SIZE = 0
    cohort(3)

    found, _ = record_versions_features(version_ids=_all_version_ids())

    assert len(found) == 3
    assert all(f.opened is not None for f in found)
    assert all(record_integrity_check(record_version=v).ok for v in RecordVersion.objects.all())
    assert cached_data_key_ids() == []


@pytest.mark.django_db
def test_a_process_drops_its_cached_keys_once_an_erasure_elsewhere_is_done(cohort):
    (_, first, _), (_, second, _) = cohort(2)
    record_versions_features(version_ids=_all_version_ids())
    assert len(cached_data_key_ids()) == 2
    # Another process finishes an erasure: this one learns it at its next load, and forgets every key it holds.
    PatientErasure.objects.create(patient=first, state=ErasureState.DONE)
    PatientDataKey.objects.filter(patient=first).delete()

    found, _ = record_versions_features(version_ids=[RecordVersion.objects.get(record__patient=second).pk])

    assert found[0].opened is not None
    assert cached_data_key_ids() == [f"dk:{PatientDataKey.objects.get(patient=second).pk.hex}"]


@pytest.mark.django_db
def test_the_move_refuses_a_batch_size_below_one():
    with pytest.raises(CommandError, match="invalid_argument"):
        call_command("records_per_patient_keys", "--batch-patients", "0")
