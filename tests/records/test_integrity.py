"""record_integrity_check: each way a stored version can stop matching its anchor."""

import pytest
from django.db import connection

from health_platform import bootstrap
from records.canonical import canonical_json, canonical_sha256
from records.crypto import record_seal
from records.models import RecordVersion
from records.patient_keys import patient_keyrings
from records.selectors import record_integrity_check, record_version_document
from records.services import record_ingest
from tests.records.factories import bundle, encode, patient_with_observations


def _ingest(custodian, mrn="MRN-I", value=87.0) -> RecordVersion:
    [ingested] = record_ingest(
        raw_body=encode(bundle(*patient_with_observations(mrn=mrn, values=(value,)))), actor=custodian
    ).records
    return RecordVersion.objects.get(record_id=ingested.record_id, version=ingested.version)


def _raw_update(version: RecordVersion, column: str, value) -> RecordVersion:
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE records_recordversion SET {column} = %s WHERE id = %s", [value, version.pk])
    return RecordVersion.objects.get(pk=version.pk)


@pytest.mark.django_db
def test_integrity_check_passes_for_an_untouched_anchored_version(custodian):
    version = _ingest(custodian)

    result = record_integrity_check(record_version=version)

    assert result.ok is True
    assert result.reason == "ok"
    assert result.recomputed_sha256 == result.ledger_sha256 == version.sha256
    assert (result.tx_id, result.block_number) == (version.anchor_tx_id, version.anchor_block)


@pytest.mark.django_db
@pytest.mark.parametrize("position", [0, 12, -1], ids=["nonce", "ciphertext", "tag"])
def test_integrity_check_reports_ciphertext_invalid_after_a_flipped_byte(custodian, position):
    version = _ingest(custodian)
    tampered = bytearray(version.ciphertext)
    tampered[position] ^= 0x01

    result = record_integrity_check(record_version=_raw_update(version, "ciphertext", bytes(tampered)))

    assert (result.ok, result.reason) == (False, "ciphertext_invalid")


@pytest.mark.django_db
def test_integrity_check_reports_ciphertext_invalid_for_a_ciphertext_moved_from_another_record(custodian):
    version = _ingest(custodian, mrn="MRN-1")
    other = _ingest(custodian, mrn="MRN-2")

    moved = _raw_update(version, "ciphertext", bytes(other.ciphertext))

    assert record_integrity_check(record_version=moved).reason == "ciphertext_invalid"


@pytest.mark.django_db
def test_integrity_check_reports_hash_mismatch_local_when_the_row_hash_is_edited(custodian):
    version = _ingest(custodian)

    result = record_integrity_check(record_version=_raw_update(version, "sha256", "0" * 64))

    assert (result.ok, result.reason) == (False, "hash_mismatch_local")
    assert result.recomputed_sha256 == version.sha256


@pytest.mark.django_db
def test_integrity_check_reports_hash_mismatch_when_content_and_hash_are_rewritten_consistently(custodian):
    # Someone holding the record key rewrites a value and the row's hash to match: only the ledger can tell.
    version = _ingest(custodian, value=87.0)
    document = record_version_document(record_version=version)
    document["entry"][1]["resource"]["valueQuantity"]["value"] = 42.0
    cipher = patient_keyrings(patients=[version.record.patient])[version.record.patient_id]  # the patient's key
    _key_id, ciphertext, _encoding = record_seal(
        cipher, canonical=canonical_json(document), record_id=version.record_id, version=version.version
    )
    _raw_update(version, "ciphertext", ciphertext)
    rewritten = _raw_update(version, "sha256", canonical_sha256(document))

    result = record_integrity_check(record_version=rewritten)

    assert (result.ok, result.reason) == (False, "hash_mismatch")
    assert result.ledger_sha256 == version.sha256 != rewritten.sha256


@pytest.mark.django_db
def test_integrity_check_reports_no_anchor_when_the_ledger_has_none_for_the_record(custodian, settings, tmp_path):
    version = _ingest(custodian)
    settings.LEDGER_URL = f"embedded://{tmp_path / 'another-ledger.sqlite3'}"
    bootstrap.reset_ledger()

    result = record_integrity_check(record_version=version)

    assert (result.ok, result.reason) == (False, "no_anchor")


@pytest.mark.django_db
def test_integrity_check_fails_closed_when_the_ledger_is_unavailable(custodian, ledger_down):
    ledger_down.up()
    version = _ingest(custodian)
    ledger_down.down()

    result = record_integrity_check(record_version=version)

    assert (result.ok, result.reason) == (False, "ledger_unavailable")


@pytest.mark.django_db
def test_integrity_check_reports_not_anchored_for_a_pending_version(custodian, ledger_down, scheduled_anchoring):
    version = _ingest(custodian)

    result = record_integrity_check(record_version=version)

    assert version.anchor_state == "pending"
    assert (result.ok, result.reason) == (False, "not_anchored")
