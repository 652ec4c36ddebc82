"""Tampering, each detected where it matters: the gate refuses, the integrity view and the
verification name it. (tests/audit/test_services.py covers the mirror, export files, a block's
data_hash and the ledger state; tests/records/test_integrity.py the integrity check alone.)"""

import json
import sqlite3

import pytest
from rest_framework.test import APIClient

from analytics.selectors import analysis_results
from analytics.services import analysis_request_create
from audit.verification import mirror_verify
from records.canonical import canonical_json, canonical_sha256
from records.crypto import record_cipher, record_seal
from records.features import features_open, features_seal
from records.models import RecordVersion
from records.patient_keys import patient_keyrings
from records.selectors import record_version_document
from tests.conftest import explicit_analysis, grant, plain_scores
from tests.reliability.conftest import ledger_access_events

pytestmark = [pytest.mark.he, pytest.mark.django_db(transaction=True)]


def _rewrite(version: RecordVersion, **columns) -> None:
    RecordVersion.objects.filter(pk=version.pk).update(**columns)


def _gate_answers(ledger, request) -> dict[str, tuple[str, str | None]]:
    """Record id -> (decision, reason) of each access the request's gate logged on the ledger."""
    return {e["record_id"]: (e["decision"], e.get("reason")) for e in ledger_access_events(ledger, request.id)}


def _integrity(user, record) -> dict:
    client = APIClient()
    client.force_login(user)
    response = client.get(f"/api/records/{record.id}/integrity/")
    assert response.status_code == 200
    return response.json()


def test_tampered_records_are_refused_by_the_gate_and_named_by_the_integrity_view_and_a_row_hash_edit_changes_nothing(
    cohort, clinician, models_registered, ledger, blob_dir, eager
):
    people = cohort(4)
    (u_intact, _p_intact, intact), (u_hash, _p_hash, row_hash), (u_flip, _p_flip, flipped), (u_rw, _p_rw, rewritten) = (
        people
    )
    for user, patient, _ in people:
        grant(user, patient, clinician)

    # The row's hash column edited, content untouched: the gate hashes the content itself.
    _rewrite(RecordVersion.objects.get(record=row_hash), sha256="0" * 64)
    # One byte of the stored ciphertext flipped: it no longer opens.
    version = RecordVersion.objects.get(record=flipped)
    damaged = bytearray(version.ciphertext)
    damaged[20] ^= 0x01
    _rewrite(version, ciphertext=bytes(damaged))
    # Someone with the record key changes a value and rewrites the row's hash to match: only the ledger knows.
    version = RecordVersion.objects.get(record=rewritten)
    document = record_version_document(record_version=version)
    for entry in document["entry"]:
        quantity = entry["resource"].get("valueQuantity")
        if quantity:
            quantity["value"] = 0.0001
    key_id, ciphertext, encoding = record_seal(
        record_cipher(), canonical=canonical_json(document), record_id=version.record_id, version=version.version
    )
    _rewrite(
        version, key_id=key_id, ciphertext=ciphertext, content_encoding=encoding, sha256=canonical_sha256(document)
    )

    request = explicit_analysis(clinician, people)

    events = _gate_answers(ledger, request)
    assert events == {
        str(intact.id): ("admit", None),
        str(row_hash.id): ("admit", None),
        str(flipped.id): ("refuse", "hash_mismatch"),
        str(rewritten.id): ("refuse", "hash_mismatch"),
    }
    rows = {row.record_id: row for row in analysis_results(request=request, viewer=clinician).rows}
    assert set(rows) == {str(intact.id), str(row_hash.id)}
    # The admitted record is scored from its true content: the edited column let nothing change.
    expected = plain_scores(2)
    assert abs(rows[str(row_hash.id)].score - expected[1]["score"]) < 1e-3

    assert _integrity(u_intact, intact)["reason"] == "ok"
    assert _integrity(u_hash, row_hash)["reason"] == "hash_mismatch_local"
    assert _integrity(u_flip, flipped)["reason"] == "ciphertext_invalid"
    rewritten_check = _integrity(u_rw, rewritten)
    assert (rewritten_check["ok"], rewritten_check["reason"]) == (False, "hash_mismatch")


def test_tampered_features_are_refused_by_the_gate_as_a_tampered_record_is_and_a_missing_blob_opens_the_record(
    cohort, clinician, models_registered, ledger, blob_dir, eager
):
    """An analysis uses the features kept at ingest (records.features), not the record: those are checked at the
    gate as the record's content was, against the hash their version anchored."""
    people = cohort(5)
    for user, patient, _ in people:
        grant(user, patient, clinician)
    (_, _, intact), (_, _, flipped), (_, _, rewritten), (_, _, digest_column), (_, _, legacy) = people
    versions = {record.id: RecordVersion.objects.get(record=record) for _, _, record in people}

    # One byte of the sealed features flipped: they no longer open.
    damaged = bytearray(versions[flipped.id].features)
    damaged[20] ^= 0x01
    _rewrite(versions[flipped.id], features=bytes(damaged))
    # Someone with the record key seals other values, correctly bound to the record and its hash: only the
    # ledger, which holds the hash of the features written at ingest, can tell.
    version = versions[rewritten.id]
    cipher = patient_keyrings(patients=[version.record.patient])[version.record.patient_id]  # the patient's key
    opened = features_open(
        cipher,
        sealed=bytes(version.features),
        record_id=version.record_id,
        version=version.version,
        key_id=version.key_id,
        record_ciphertext=bytes(version.ciphertext),
    )
    forged = features_seal(
        cipher,
        features={code: value * 2 for code, value in opened.features.items()},
        record_sha256=opened.record_sha256,
        record_id=version.record_id,
        version=version.version,
        key_id=version.key_id,
        record_ciphertext=bytes(version.ciphertext),
    )
    _rewrite(version, features=forged.sealed, features_sha256=forged.digest)
    # The row's copy of the features hash edited: the gate hashes what opens, not the column.
    _rewrite(versions[digest_column.id], features_sha256="0" * 64)
    # The features removed, as a version ingested before they were kept: the record itself is opened and hashed.
    _rewrite(versions[legacy.id], features=b"")

    request = explicit_analysis(clinician, people)

    events = _gate_answers(ledger, request)
    assert events == {
        str(intact.id): ("admit", None),
        str(flipped.id): ("refuse", "hash_mismatch"),
        str(rewritten.id): ("refuse", "hash_mismatch"),
        str(digest_column.id): ("admit", None),
        str(legacy.id): ("admit", None),
    }
    rows = {row.record_id: row for row in analysis_results(request=request, viewer=clinician).rows}
    expected = plain_scores(5)
    assert {record_id: round(row.score, 3) for record_id, row in rows.items()} == {
        str(intact.id): round(expected[0]["score"], 3),
        str(digest_column.id): round(expected[3]["score"], 3),
        str(legacy.id): round(expected[4]["score"], 3),
    }


def test_an_access_log_transaction_edited_in_the_ledger_file_is_named_by_tx_id(
    cohort, clinician, models_registered, ledger, blob_dir, eager
):
    ((user, patient, record),) = cohort(1)
    grant(user, patient, clinician)
    request = analysis_request_create(
        requester=clinician, model_name="breast-cancer", cohort_kind="explicit", pseudonyms=[patient.pseudonym]
    )
    batch = request.batches.get()
    assert mirror_verify().ok

    # Rewrite the logged decision inside the transaction itself (not its block header, not the state).
    with sqlite3.connect(ledger.path) as connection:
        (args,) = connection.execute(
            "SELECT args FROM transactions WHERE tx_id = ?", (batch.access_log_tx_id,)
        ).fetchone()
        connection.execute(
            "UPDATE transactions SET args = ? WHERE tx_id = ?",
            (args.replace('\\"admit\\"', '\\"refuse\\"'), batch.access_log_tx_id),
        )
        assert json.loads(args) != json.loads(
            connection.execute("SELECT args FROM transactions WHERE tx_id = ?", (batch.access_log_tx_id,)).fetchone()[0]
        )
    result = mirror_verify()

    assert not result.ok
    assert {
        "kind": "transaction",
        "ref": batch.access_log_tx_id,
        "detail": "hash does not match the transaction's contents",
    } in result.chain["problems"]
    assert str(record.id) in {e["record_id"] for e in ledger_access_events(ledger, request.id)}
