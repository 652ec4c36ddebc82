"""Record cipher (AES-256-GCM with key ids) and patient pseudonyms."""

import base64
import os

import pytest
from django.core.exceptions import ImproperlyConfigured

from records.crypto import AesGcmRecordCipher, parse_record_keys, patient_pseudonym, record_cipher
from records.errors import CiphertextInvalid
from records.models import RecordVersion
from records.selectors import record_integrity_check, record_version_plaintext
from records.services import record_ingest
from tests.records.factories import ObservationResourceFactory, PatientResourceFactory, bundle, encode


def _key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def test_ciphertext_opens_only_with_the_same_associated_data():
    cipher = AesGcmRecordCipher({"k1": os.urandom(32)}, "k1")

    key_id, sealed = cipher.encrypt(b"plaintext", associated_data=b"record-1|1|k1")

    assert key_id == "k1"
    assert cipher.decrypt(sealed, key_id="k1", associated_data=b"record-1|1|k1") == b"plaintext"
    with pytest.raises(CiphertextInvalid):
        cipher.decrypt(sealed, key_id="k1", associated_data=b"record-2|1|k1")
    with pytest.raises(CiphertextInvalid):
        cipher.decrypt(sealed, key_id="unknown", associated_data=b"record-1|1|k1")


def test_each_encryption_uses_a_fresh_nonce():
    cipher = AesGcmRecordCipher({"k1": os.urandom(32)}, "k1")

    first = cipher.encrypt(b"same", associated_data=b"a")[1]
    second = cipher.encrypt(b"same", associated_data=b"a")[1]

    assert first[:12] != second[:12]
    assert len(first) == 12 + len(b"same") + 16


@pytest.mark.parametrize(
    "value",
    ["", "k1", "k1:not-base64!", f"k1:{base64.b64encode(b'short').decode()}", f"k1:{_key()},k1:{_key()}"],
    ids=["empty", "no-key", "not-base64", "short-key", "repeated-id"],
)
def test_bad_record_key_settings_are_refused(value):
    with pytest.raises(ImproperlyConfigured):
        parse_record_keys(value)


def test_active_key_must_be_listed(settings):
    settings.RECORD_ENCRYPTION_KEYS = f"k1:{_key()}"
    settings.RECORD_ENCRYPTION_ACTIVE_KEY = "k2"

    with pytest.raises(ImproperlyConfigured):
        record_cipher()


@pytest.mark.django_db
def test_key_rotation_writes_new_versions_under_the_new_key_and_old_ones_stay_readable(settings, custodian):
    old, new = _key(), _key()
    settings.RECORD_ENCRYPTION_KEYS, settings.RECORD_ENCRYPTION_ACTIVE_KEY = f"old:{old}", "old"
    patient = PatientResourceFactory()
    record_ingest(
        raw_body=encode(bundle(patient, ObservationResourceFactory(patient=patient, value=1.0))), actor=custodian
    )

    settings.RECORD_ENCRYPTION_KEYS, settings.RECORD_ENCRYPTION_ACTIVE_KEY = f"old:{old},new:{new}", "new"
    record_ingest(
        raw_body=encode(bundle(patient, ObservationResourceFactory(patient=patient, value=2.0))), actor=custodian
    )

    first, second = RecordVersion.objects.order_by("version")
    assert (first.key_id, second.key_id) == ("old", "new")
    assert record_integrity_check(record_version=first).ok
    assert record_integrity_check(record_version=second).ok

    settings.RECORD_ENCRYPTION_KEYS = f"new:{new}"  # the old key withdrawn: its versions no longer open
    with pytest.raises(CiphertextInvalid):
        record_version_plaintext(record_version=first)
    assert record_integrity_check(record_version=first).reason == "ciphertext_invalid"


def test_pseudonym_is_a_keyed_hmac_stable_per_patient_key(settings):
    settings.PSEUDONYM_KEY = base64.b64encode(b"k" * 32).decode()

    first = patient_pseudonym("https://hospital.example/mrn|123")

    assert first == patient_pseudonym("https://hospital.example/mrn|123")
    assert len(first) == 64
    assert set(first) <= set("0123456789abcdef")
    assert first != patient_pseudonym("https://hospital.example/mrn|124")
    settings.PSEUDONYM_KEY = base64.b64encode(b"j" * 32).decode()
    assert patient_pseudonym("https://hospital.example/mrn|123") != first
