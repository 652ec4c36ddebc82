"""The features kept at ingest (records.features): what is sealed, what is anchored, what the seal is bound to."""

import pytest

from health_platform import bootstrap
from records.errors import CiphertextInvalid
from records.features import bundle_features, features_open
from records.models import RecordVersion
from records.patient_keys import record_keys
from records.selectors import record_version_plaintext

pytestmark = pytest.mark.django_db


def _open(stored: RecordVersion, **change):
    arguments = {
        "sealed": bytes(stored.features),
        "record_id": stored.record_id,
        "version": stored.version,
        "key_id": stored.key_id,
        "record_ciphertext": bytes(stored.ciphertext),
    }
    return features_open(record_keys(), **{**arguments, **change})


def test_ingest_keeps_each_versions_features_sealed_and_anchors_their_salted_hash(cohort):
    people = cohort(3)
    digests = set()
    for _, _, record in people:
        version = RecordVersion.objects.get(record=record)
        opened = _open(version)
        assert opened.features == bundle_features(record_version_plaintext(record_version=version))
        assert len(opened.features) == 30
        assert opened.record_sha256 == version.sha256
        assert opened.digest == version.features_sha256
        anchor = bootstrap.contracts().read_anchor(str(record.id))
        assert (anchor.sha256, anchor.features_sha256) == (version.sha256, version.features_sha256)
        # Sealed: no value in the clear, and the digest is salted (two records never share one by their values).
        assert repr(next(iter(opened.features.values()))).encode() not in bytes(version.features)
        digests.add(version.features_sha256)
    assert len(digests) == 3


def test_sealed_features_open_only_beside_the_record_ciphertext_row_and_key_they_were_written_with(cohort):
    ((_, _, record),) = cohort(1)
    version = RecordVersion.objects.get(record=record)
    other_ciphertext = bytearray(version.ciphertext)
    other_ciphertext[-1] ^= 1
    for change in (
        {"record_ciphertext": bytes(other_ciphertext)},
        {"version": version.version + 1},
        {"record_id": "another-record"},
        {"key_id": "unknown"},
        {"sealed": bytes(version.features)[:-1]},
    ):
        with pytest.raises(CiphertextInvalid):
            _open(version, **change)


def test_a_bundle_keeps_the_features_of_known_codings_only_and_damaged_content_none():
    from tests.analytics.test_features import _bundle_with

    assert bundle_features(_bundle_with({"radius-mean": 1.5, "unknown-but-ours": 2})) == {
        "radius-mean": 1.5,
        "unknown-but-ours": 2.0,
    }
    assert bundle_features(_bundle_with({"radius-mean": 1.5}, system="http://example.org/other")) == {}
    assert bundle_features(b"not json") is None
