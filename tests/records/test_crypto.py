"""Record cipher (AES-256-GCM with key ids) and patient pseudonyms."""

import base64
import os
import zlib

import pytest
from django.core.exceptions import ImproperlyConfigured

from health_platform.keyring import AesGcmKeyring, parse_keys
from records.crypto import (
    patient_pseudonym,
    record_associated_data,
    record_cipher,
    record_open,
    record_seal,
)
from records.errors import CiphertextInvalid
from records.models import PatientDataKey, RecordVersion
from records.patient_keys import data_key_cache_clear, patient_data_keys_rewrap
from records.selectors import record_integrity_check, record_version_plaintext
from records.services import record_ingest
from tests.records.factories import ObservationResourceFactory, PatientResourceFactory, bundle, encode


def _key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def test_ciphertext_opens_only_with_the_same_associated_data():
    cipher = AesGcmKeyring({"k1": os.urandom(32)}, "k1", setting="RECORD_ENCRYPTION")

    key_id, sealed = cipher.encrypt(b"plaintext", associated_data=b"record-1|1|k1")

    assert key_id == "k1"
    assert cipher.decrypt(sealed, key_id="k1", associated_data=b"record-1|1|k1") == b"plaintext"
    with pytest.raises(CiphertextInvalid):
        cipher.decrypt(sealed, key_id="k1", associated_data=b"record-2|1|k1")
    with pytest.raises(CiphertextInvalid):
        cipher.decrypt(sealed, key_id="unknown", associated_data=b"record-1|1|k1")


def test_each_encryption_uses_a_fresh_nonce():
    cipher = AesGcmKeyring({"k1": os.urandom(32)}, "k1", setting="RECORD_ENCRYPTION")

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
        parse_keys(value, setting="RECORD_ENCRYPTION_KEYS")


def test_active_key_must_be_listed(settings):
    settings.RECORD_ENCRYPTION_KEYS = f"k1:{_key()}"
    settings.RECORD_ENCRYPTION_ACTIVE_KEY = "k2"

    with pytest.raises(ImproperlyConfigured):
        record_cipher()


def _a_version_under_an_old_master_key(settings, custodian):
    """A patient with one version, their data key wrapped under master key "old"; (old, a new key, the patient)."""
    old, new = _key(), _key()
    settings.RECORD_ENCRYPTION_KEYS, settings.RECORD_ENCRYPTION_ACTIVE_KEY = f"old:{old}", "old"
    patient = PatientResourceFactory()
    record_ingest(
        raw_body=encode(bundle(patient, ObservationResourceFactory(patient=patient, value=1.0))), actor=custodian
    )
    return old, new, patient


@pytest.mark.django_db
def test_master_key_rotation_rewraps_the_data_keys_and_every_version_stays_readable(settings, custodian):
    old, new, patient = _a_version_under_an_old_master_key(settings, custodian)

    settings.RECORD_ENCRYPTION_KEYS, settings.RECORD_ENCRYPTION_ACTIVE_KEY = f"old:{old},new:{new}", "new"
    record_ingest(
        raw_body=encode(bundle(patient, ObservationResourceFactory(patient=patient, value=2.0))), actor=custodian
    )

    first, second = RecordVersion.objects.order_by("version")
    data_key = PatientDataKey.objects.get()
    # Both versions under the patient's data key, which is still wrapped under the old master key.
    assert first.key_id == second.key_id == f"dk:{data_key.pk.hex}"
    assert data_key.wrap_key_id == "old"
    ciphertexts = (bytes(first.ciphertext), bytes(second.ciphertext))

    assert patient_data_keys_rewrap(limit=10) == 1
    settings.RECORD_ENCRYPTION_KEYS = f"new:{new}"  # the old master key withdrawn
    data_key_cache_clear()  # as a new process: the data key is unwrapped again, under the new master key

    assert PatientDataKey.objects.get().wrap_key_id == "new"
    first, second = RecordVersion.objects.order_by("version")
    assert (bytes(first.ciphertext), bytes(second.ciphertext)) == ciphertexts  # rewrapped, not re-encrypted
    assert record_integrity_check(record_version=first).ok
    assert record_integrity_check(record_version=second).ok


@pytest.mark.django_db
def test_a_data_key_whose_master_key_is_withdrawn_opens_nothing(settings, custodian):
    _old, new, _patient = _a_version_under_an_old_master_key(settings, custodian)
    settings.RECORD_ENCRYPTION_KEYS, settings.RECORD_ENCRYPTION_ACTIVE_KEY = f"new:{new}", "new"
    data_key_cache_clear()

    first = RecordVersion.objects.get()
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


def test_a_sealed_version_is_compressed_and_opens_to_the_same_bytes(settings):
    cipher = AesGcmKeyring({"k1": os.urandom(32)}, "k1", setting="RECORD_ENCRYPTION")
    canonical = b'{"entry":[' + b",".join(b'{"resource":{"resourceType":"Observation"}}' for _ in range(200)) + b"]}"

    key_id, sealed, encoding = record_seal(cipher, canonical=canonical, record_id="r1", version=1)

    assert (key_id, encoding) == ("k1", "deflate")
    assert len(sealed) < len(canonical) / 10
    assert record_open(cipher, ciphertext=sealed, record_id="r1", version=1, key_id="k1", encoding=encoding) == (
        canonical
    )


@pytest.mark.parametrize(
    "change",
    [{"record_id": "r2"}, {"version": 2}, {"encoding": "identity"}, {"encoding": "gzip"}],
)
def test_a_sealed_version_does_not_open_under_another_record_version_or_encoding(change):
    cipher = AesGcmKeyring({"k1": os.urandom(32)}, "k1", setting="RECORD_ENCRYPTION")
    _, sealed, encoding = record_seal(cipher, canonical=b'{"a":1}', record_id="r1", version=1)
    where = {"record_id": "r1", "version": 1, "key_id": "k1", "encoding": encoding, **change}

    with pytest.raises(CiphertextInvalid):
        record_open(cipher, ciphertext=sealed, **where)


def test_versions_stored_before_compression_still_open():
    cipher = AesGcmKeyring({"k1": os.urandom(32)}, "k1", setting="RECORD_ENCRYPTION")
    _, sealed = cipher.encrypt(
        b'{"a":1}', associated_data=record_associated_data(record_id="r1", version=1, key_id="k1")
    )

    opened = record_open(cipher, ciphertext=sealed, record_id="r1", version=1, key_id="k1", encoding="identity")

    assert opened == b'{"a":1}'


def test_inflating_stops_at_the_largest_possible_record(settings):
    settings.INGEST_MAX_BYTES = 10_000
    cipher = AesGcmKeyring({"k1": os.urandom(32)}, "k1", setting="RECORD_ENCRYPTION")
    bomb = zlib.compress(b"0" * 1_000_000, 9)
    aad = record_associated_data(record_id="r1", version=1, key_id="k1", encoding="deflate")
    _, sealed = cipher.encrypt(bomb, associated_data=aad)

    with pytest.raises(CiphertextInvalid):
        record_open(cipher, ciphertext=sealed, record_id="r1", version=1, key_id="k1", encoding="deflate")


@pytest.mark.django_db
def test_ingested_versions_are_stored_compressed(custodian):
    patient = PatientResourceFactory()
    record_ingest(raw_body=encode(bundle(patient, ObservationResourceFactory(patient=patient))), actor=custodian)

    version = RecordVersion.objects.get()

    assert version.content_encoding == "deflate"
    assert record_version_plaintext(record_version=version).startswith(b'{"entry":')
