"""record_ingest: what is stored, encrypted and anchored, and versioning."""

import json
import zlib
from pathlib import Path

import pytest
from django.db import connection

from records.canonical import canonical_json, canonical_sha256
from records.crypto import DEFLATE_LEVEL, patient_pseudonym, record_cipher
from records.models import AnchorState, Patient, PatientDataKey, Record, RecordVersion
from records.selectors import record_integrity_check, record_version_document
from records.services import record_ingest
from tests.records.factories import (
    MRN_SYSTEM,
    ObservationResourceFactory,
    PatientResourceFactory,
    bundle,
    encode,
    patient_with_observations,
)

DISTINCTIVE_MRN = "MRN-ZEBRA-4711-QUOKKA"
DISTINCTIVE_VALUE = 123.456789
DISTINCTIVE_DISPLAY = "Plaintext-Marker-Glucose-Display"


def _database_bytes() -> bytes:
    """The bytes the database stores. SQLite: the file (and its WAL), or the in-memory image.
    PostgreSQL: every value of every table as stored, raw (binary COPY: text as UTF-8, bytea as its
    bytes), before TOAST compression, which could otherwise hide a plaintext from this search.

    pytest-django runs SQLite test databases in memory unless TEST NAME is set; `serialize()`
    returns exactly the bytes SQLite would write to disk for it.
    """
    connection.ensure_connection()
    if connection.vendor == "postgresql":
        chunks = []
        with connection.cursor() as cursor:
            for table in connection.introspection.table_names(cursor):
                statement = f"COPY {connection.ops.quote_name(table)} TO STDOUT (FORMAT binary)"
                with cursor.cursor.copy(statement) as copy:
                    chunks.extend(bytes(block) for block in copy)
        return b"".join(chunks)
    if connection.is_in_memory_db():
        return connection.connection.serialize()
    path = Path(connection.settings_dict["NAME"])
    wal = path.with_name(f"{path.name}-wal")
    return path.read_bytes() + (wal.read_bytes() if wal.exists() else b"")


@pytest.mark.django_db(transaction=True)
def test_ingest_stores_record_encrypted_and_anchors_its_hash(custodian, ledger):
    resources = patient_with_observations(mrn=DISTINCTIVE_MRN, values=(DISTINCTIVE_VALUE,), display=DISTINCTIVE_DISPLAY)

    result = record_ingest(raw_body=encode(bundle(*resources)), actor=custodian)

    [ingested] = result.records
    version = RecordVersion.objects.get()
    stored = _database_bytes()
    # Positive control: what is meant to be stored in the clear is found in these bytes...
    assert version.sha256.encode() in stored
    assert patient_pseudonym(f"{MRN_SYSTEM}|{DISTINCTIVE_MRN}").encode() in stored
    # ...and no identifier, value or text of the record is.
    for plaintext in (
        DISTINCTIVE_MRN,
        str(DISTINCTIVE_VALUE),
        DISTINCTIVE_DISPLAY,
        resources[0]["id"],
        "valueQuantity",
    ):
        assert plaintext.encode() not in stored, plaintext
    # The ledger holds the row's hash for this record and version, in the transaction the row names.
    anchor = ledger.evaluate("anchors", "ReadAnchor", str(version.record_id)).json()
    assert anchor["sha256"] == version.sha256 == ingested.sha256
    assert anchor["version"] == 1
    assert anchor["patient_pseudonym"] == Patient.objects.get().pseudonym == ingested.patient_pseudonym
    assert anchor["tx_id"] == version.anchor_tx_id == ingested.tx_id
    assert version.anchor_state == AnchorState.ANCHORED
    assert version.anchor_block == ingested.block_number == ledger.transaction(version.anchor_tx_id)["block_number"]
    assert ingested.anchored
    assert not ingested.unchanged
    check = record_integrity_check(record_version=version)
    assert (check.ok, check.reason, check.ledger_sha256) == (True, "ok", version.sha256)


@pytest.mark.django_db
def test_stored_version_decrypts_to_canonical_bundle_of_patient_and_sorted_observations(custodian):
    patient = PatientResourceFactory(mrn="MRN-1")
    later = ObservationResourceFactory(patient=patient, id="obs-b", value=2.0)
    earlier = ObservationResourceFactory(patient=patient, id="obs-a", value=1.0)

    record_ingest(raw_body=encode(bundle(patient, later, earlier)), actor=custodian)

    version = RecordVersion.objects.get()
    document = record_version_document(record_version=version)
    assert document == {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": patient}, {"resource": earlier}, {"resource": later}],
    }
    assert version.sha256 == canonical_sha256(document)
    # Sealed under the patient's own data key, not the master key.
    assert version.key_id == f"dk:{PatientDataKey.objects.get(patient=version.record.patient).pk.hex}"
    assert version.key_id != record_cipher().active_key_id
    assert version.content_encoding == "deflate"
    assert len(version.ciphertext) == 12 + len(zlib.compress(canonical_json(document), DEFLATE_LEVEL)) + 16


@pytest.mark.django_db
def test_ingest_makes_one_record_per_patient_and_category(custodian, ledger):
    first = patient_with_observations(mrn="MRN-A", values=(1.0, 2.0), category_code="laboratory")
    first_imaging = ObservationResourceFactory(patient=first[0], category_code="imaging", value=3.0)
    second = patient_with_observations(mrn="MRN-B", values=(4.0,), category_code="laboratory")

    result = record_ingest(raw_body=encode(bundle(*first, first_imaging, *second)), actor=custodian)

    assert sorted((r.patient_pseudonym, r.category) for r in result.records) == sorted(
        [
            (patient_pseudonym(f"{MRN_SYSTEM}|MRN-A"), "laboratory"),
            (patient_pseudonym(f"{MRN_SYSTEM}|MRN-A"), "imaging"),
            (patient_pseudonym(f"{MRN_SYSTEM}|MRN-B"), "laboratory"),
        ]
    )
    assert Patient.objects.count() == 2
    assert Record.objects.count() == 3
    # All three anchors went to the ledger in one transaction.
    assert len({r.tx_id for r in result.records}) == 1
    assert all(r.anchored for r in result.records)


@pytest.mark.django_db
def test_second_ingest_with_changed_content_adds_version_two_and_a_second_anchor(custodian, ledger):
    patient = PatientResourceFactory(mrn="MRN-V")
    record_ingest(
        raw_body=encode(bundle(patient, ObservationResourceFactory(patient=patient, value=1.0))), actor=custodian
    )

    result = record_ingest(
        raw_body=encode(bundle(patient, ObservationResourceFactory(patient=patient, value=2.0))), actor=custodian
    )

    [ingested] = result.records
    assert (ingested.version, ingested.unchanged, ingested.anchored) == (2, False, True)
    record = Record.objects.get()
    assert list(record.versions.values_list("version", flat=True)) == [1, 2]
    history = ledger.evaluate("anchors", "AnchorHistory", str(record.pk)).json()
    assert [entry["value"]["version"] for entry in history] == [1, 2]
    assert [entry["value"]["sha256"] for entry in history] == list(record.versions.values_list("sha256", flat=True))
    assert ledger.evaluate("anchors", "ReadAnchor", str(record.pk)).json()["version"] == 2
    # The older version still checks out, against its own anchor in the history.
    older = record.versions.get(version=1)
    assert record_integrity_check(record_version=older).ok


@pytest.mark.django_db
def test_reingesting_identical_content_writes_nothing_and_reports_unchanged(custodian, ledger):
    resources = patient_with_observations(mrn="MRN-U", values=(5.0, 6.0))
    first = record_ingest(raw_body=encode(bundle(*resources)), actor=custodian)
    height = ledger.height()

    # Same content, other entry order and whitespace: same canonical form.
    reordered = json.dumps(bundle(*reversed(resources)), indent=3).encode()
    second = record_ingest(raw_body=reordered, actor=custodian)

    [before], [after] = first.records, second.records
    assert after.unchanged is True
    assert (after.record_id, after.version, after.sha256, after.tx_id) == (
        before.record_id,
        before.version,
        before.sha256,
        before.tx_id,
    )
    assert RecordVersion.objects.count() == 1
    assert ledger.height() == height


@pytest.mark.django_db
def test_ingest_accepts_batch_and_transaction_bundles_with_urn_references(custodian):
    patient = PatientResourceFactory(mrn="MRN-T")
    observation = ObservationResourceFactory(patient=patient)
    observation["subject"] = {"reference": "urn:uuid:0d8a4a8e-2d1c-4a3e-9d1b-6f0e7f9a1b2c"}
    document = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:0d8a4a8e-2d1c-4a3e-9d1b-6f0e7f9a1b2c",
                "resource": patient,
                "request": {"method": "POST", "url": "Patient"},
            },
            {"resource": observation, "request": {"method": "POST", "url": "Observation"}},
        ],
    }

    [ingested] = record_ingest(raw_body=encode(document), actor=custodian).records

    assert ingested.patient_pseudonym == patient_pseudonym(f"{MRN_SYSTEM}|MRN-T")
    assert ingested.version == 1


@pytest.mark.django_db
def test_ingest_stores_nothing_when_a_later_record_fails_to_store(custodian, ledger, monkeypatch):
    from records import services

    real = services.record_seal
    calls = []

    def failing_second_time(cipher, **arguments):
        calls.append(1)
        if len(calls) == 2:
            raise OSError("disk full")
        return real(cipher, **arguments)

    monkeypatch.setattr(services, "record_seal", failing_second_time)
    height = ledger.height()
    two_records = [*patient_with_observations(mrn="MRN-X"), *patient_with_observations(mrn="MRN-Y")]

    with pytest.raises(OSError, match="disk full"):
        record_ingest(raw_body=encode(bundle(*two_records)), actor=custodian)

    assert (Patient.objects.count(), Record.objects.count(), RecordVersion.objects.count()) == (0, 0, 0)
    assert ledger.height() == height
