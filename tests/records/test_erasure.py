"""A patient's erasure (records.erasure): the ledger first, then their key and ciphertexts; a receipt that verifies."""

import io
import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test import Client

from analytics.models import AnalysisBatch, AnalysisStatus
from chaincode.validation import format_timestamp
from health_platform import bootstrap
from ledger.contracts import AccessItem
from records import patient_keys
from records.erasure import ErasureLedgerUnavailable, erasure_receipt_bytes, patient_erasure_destroy
from records.errors import BundleRejected
from records.models import ErasureState, Patient, PatientDataKey, PatientErasure, Record, RecordVersion
from records.patient_keys import cached_data_key_ids
from records.selectors import record_version_plaintext, record_versions_features
from records.services import ErasureRefused, patient_erase, record_ingest
from tests.conftest import dr_carol, explicit_analysis
from tests.records.factories import encode

WINDOW, STRIDE = 24, 48
WORD = 8  # bytes: the windows are looked for a word at a time (_SecretWindows)
FILTER_BITS = 24
LOW_BITS = np.uint64((1 << FILTER_BITS) - 1)


@pytest.fixture
def clinician(db):
    """Dr Carol, registered in the directory: the records tests' own clinician fixture is not."""
    return dr_carol()


def _secrets_of(patient: Patient) -> dict[str, bytes]:
    """Every secret byte string of `patient` the platform holds: their versions' ciphertexts and sealed features,
    their wrapped data key and the data key itself."""
    found = {}
    for version in RecordVersion.objects.filter(record__patient=patient):
        found[f"ciphertext {version.pk}"] = bytes(version.ciphertext)
        found[f"features {version.pk}"] = bytes(version.features)
    data_key = PatientDataKey.objects.get(patient=patient)
    found["wrapped key"] = bytes(data_key.wrapped_key)
    found["data key"] = patient_keys._unwrap(
        patient_id=patient.pk, data_key_pk=data_key.pk, wrap_key_id=data_key.wrap_key_id, wrapped=found["wrapped key"]
    )
    return found


def _windows(secret: bytes) -> list[bytes]:
    """Slices of `secret` short enough to survive SQLite splitting a value over overflow pages."""
    if len(secret) <= WINDOW:
        return [secret]
    return [secret[start : start + WINDOW] for start in range(0, len(secret) - WINDOW + 1, STRIDE)]


class _SecretWindows:
    """The windows of some secrets, each with the names of the secrets it is a slice of, to look for in contents.

    `names_in` is exactly `window in content` for every window, in time linear in the content rather than in
    windows x content (the blobs' windows number in the tens of thousands, the var folder's files in the hundreds
    of MB): a full-size window is WINDOW // WORD words of WORD bytes, so at each of the WORD alignments the content
    is read as words; the positions whose words are each some window's word at that place (sieved first by a
    table of the first words' low bits) are candidates, and only those are compared in full. Windows of another
    size (a secret shorter than WINDOW) are looked for as they are.
    """

    def __init__(self, secrets: dict[str, bytes]) -> None:
        self.names: dict[bytes, set[str]] = {}
        for name, secret in secrets.items():
            for window in _windows(secret):
                self.names.setdefault(window, set()).add(name)
        self.short = [window for window in self.names if len(window) != WINDOW]
        full = [window for window in self.names if len(window) == WINDOW]
        self.words_per_window = WINDOW // WORD
        words = np.frombuffer(b"".join(full), dtype="<u8").reshape(-1, self.words_per_window)
        self.known_words = [np.unique(words[:, place]) for place in range(self.words_per_window)]  # sorted
        # A first sieve, one look-up a word: whether some window's first word has the same low FILTER_BITS bits.
        self.first_word_low_bits = np.zeros(1 << FILTER_BITS, dtype=bool)
        self.first_word_low_bits[self.known_words[0] & LOW_BITS] = True

    def names_in(self, content: bytes) -> set[str]:
        """The names of the secrets one of whose windows occurs anywhere in `content`."""
        found: set[str] = set()
        for window in self.short:
            if window in content:
                found |= self.names[window]
        if not len(self.known_words[0]):
            return found
        for alignment in range(WORD):
            count = (len(content) - alignment) // WORD
            if count < self.words_per_window:
                break
            words = np.frombuffer(content, dtype="<u8", offset=alignment, count=count)
            starts = np.flatnonzero(self.first_word_low_bits[words[: count - self.words_per_window + 1] & LOW_BITS])
            for place in range(self.words_per_window):
                starts = starts[_known(words[starts + place], self.known_words[place])]
            for start in (alignment + WORD * int(i) for i in starts):
                found |= self.names.get(content[start : start + WINDOW], set())
        return found


def _known(words: np.ndarray, known_sorted: np.ndarray) -> np.ndarray:
    """For each of `words`, whether it is one of `known_sorted` (np.isin, without sorting `known_sorted` again)."""
    at = np.minimum(np.searchsorted(known_sorted, words), len(known_sorted) - 1)
    return known_sorted[at] == words


def _files_holding(secrets: dict[str, bytes], *folders: Path) -> list[tuple[str, str]]:
    """(file, secret name) for every file under `folders` holding a slice of a secret."""
    windows = _SecretWindows(secrets)
    hits = []
    for folder in folders:
        for path in (p for p in Path(folder).rglob("*") if p.is_file()):
            found = windows.names_in(path.read_bytes())
            hits += [(str(path), name) for name in secrets if name in found]
    return hits


def _columns_holding(secrets: dict[str, bytes]) -> list[tuple[str, str]]:
    """(table.column, secret name) for every binary or text column of every table holding a secret."""
    windows = _SecretWindows(secrets)
    hits = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names(cursor):
            for column in connection.introspection.get_table_description(cursor, table):
                cursor.execute(f'SELECT "{column.name}" FROM "{table}"')
                for (value,) in cursor.fetchall():
                    raw = bytes(value) if isinstance(value, bytes | memoryview) else str(value or "").encode()
                    hex_text = raw.lower()
                    found = windows.names_in(raw)
                    for name, secret in secrets.items():
                        if name in found or secret.hex().encode() in hex_text:
                            hits.append((f"{table}.{column.name}", name))
    return hits


def _gate(versions):
    """The ledger's answers for `versions` as an analysis would ask (the features kept at ingest, or nothing)."""
    found, _without = record_versions_features(version_ids=[v.pk for v in versions])
    items = [
        AccessItem(
            str(f.record_id),
            f.category,
            f.opened.record_sha256 if f.opened else "0" * 64,
            f.opened.digest if f.opened else "",
        )
        for f in found
    ]
    return items


@pytest.mark.he
@pytest.mark.django_db(transaction=True)
def test_after_erasure_no_ciphertext_or_key_of_the_patient_remains_in_the_database_or_the_var_folder(
    consented, clinician, models_registered, ledger, ledger_url, blob_dir, eager, tmp_path
):
    people = consented(3)
    (user, patient, record), (_, _, other_record) = people[0], people[1]
    first = explicit_analysis(clinician, people)
    assert first.status == AnalysisStatus.COMPLETED
    blob_keys = {k for b in AnalysisBatch.objects.all() for c in b.column_keys for k in [*c["columns"], c.get("score")]}
    blob_keys |= {k for b in AnalysisBatch.objects.all() for k in b.score_keys}
    blob_keys.discard(None)
    assert blob_keys
    assert all((blob_dir / k[:2] / k).exists() for k in blob_keys)
    secrets = _secrets_of(patient)
    blob_secrets = {f"blob {k}": (blob_dir / k[:2] / k).read_bytes() for k in blob_keys}
    key_id = RecordVersion.objects.filter(record__patient=patient).first().key_id
    assert key_id in cached_data_key_ids()
    # The scan finds them before the erasure (it is not blind).
    assert _columns_holding(secrets)
    if connection.vendor == "sqlite":  # the database is a file in the var folder (PostgreSQL's is not)
        assert _files_holding(secrets, Path(settings.VAR_DIR))

    erasure = patient_erase(actor=user, patient=patient)

    assert erasure.state == ErasureState.DONE
    assert _columns_holding(secrets) == []
    assert _files_holding({**secrets, **blob_secrets}, Path(settings.VAR_DIR), tmp_path) == []
    assert not any((blob_dir / k[:2] / k).exists() for k in blob_keys)
    assert key_id not in cached_data_key_ids()
    assert not PatientDataKey.objects.filter(patient=patient).exists()
    # Tombstones: the record and its version's hash stay, pseudonymous; the other patients' records still open.
    assert Record.objects.filter(pk=record.pk).exists()
    assert RecordVersion.objects.filter(record=record).values_list("key_id", flat=True)[0] == "erased"
    other_version = RecordVersion.objects.get(record=other_record)
    assert record_version_plaintext(record_version=other_version)
    # The chunk that held the record is gone from the first analysis's results, its records marked.
    skipped = [reason for batch in AnalysisBatch.objects.all() for reason in batch.skipped.values()]
    assert sorted(skipped) == ["erased", "erased_with_chunk", "erased_with_chunk"]

    # An analysis afterwards lists the record and the gate refuses it: erased.
    second = explicit_analysis(clinician, people)
    assert second.failure_code == ""
    assert second.status == AnalysisStatus.COMPLETED
    assert _logged(ledger, second)[str(record.pk)] == ("refuse", "erased")
    assert _logged(ledger, second)[str(other_record.pk)] == ("admit", None)
    # The access log keeps the first analysis's pseudonymous event about the erased record.
    assert _logged(ledger, first)[str(record.pk)] == ("admit", None)


def _logged(ledger, request) -> dict[str, tuple]:
    query = json.dumps({"request_id": str(request.pk)})
    events = ledger.evaluate("accesslog", "QueryAccessEvents", query).json()["events"]
    return {e["record_id"]: (e["decision"], e["reason"]) for e in events if e["kind"] == "record_access"}


@pytest.mark.django_db(transaction=True)  # the consents reach the ledger at commit
def test_the_gate_refuses_the_erased_records_with_erased_and_the_receipt_verifies(
    consented, clinician, ledger, tmp_path
):
    people = consented(2)
    (user, patient, record), (_, _, other_record) = people
    versions = list(RecordVersion.objects.all())
    contracts = bootstrap.contracts()
    terms = {"grantee": clinician.clinician_profile.grantee_id, "organisation": None, "at": _now()}
    purpose = "diagnostic-model:breast-cancer"
    before = contracts.check_access_batch(purpose=purpose, items=_gate(versions), **terms)
    assert [(d.decision, d.reason) for d in before] == [("admit", None), ("admit", None)]

    erasure = patient_erase(actor=user, patient=patient)

    after = {
        d.record_id: d.reason for d in contracts.check_access_batch(purpose=purpose, items=_gate(versions), **terms)
    }
    assert after == {str(record.pk): "erased", str(other_record.pk): None}
    receipt = tmp_path / "receipt.json"
    receipt.write_bytes(erasure_receipt_bytes(erasure=erasure))
    body = json.loads(receipt.read_bytes())
    assert (body["record_ids"], body["count"], body["patient_pseudonym"]) == ([str(record.pk)], 1, patient.pseudonym)
    assert body["block_number"] == contracts.block_of(body["tx_id"])

    assert _verify(receipt)["ok"] is True

    for change, field in (
        ({"count": 2}, "count"),
        ({"record_ids": [str(other_record.pk)]}, "record_ids"),
        ({"block_number": body["block_number"] + 1}, "block_number"),
        ({"erasure_id": "no-such-erasure"}, "erasure_id"),
    ):
        receipt.write_text(json.dumps({**body, **change}))
        out = io.StringIO()
        with pytest.raises(CommandError) as refused:
            call_command("verify_erasure_receipt", str(receipt), stdout=out)
        assert refused.value.returncode == 1
        differences = json.loads(out.getvalue())["differences"]
        assert any(d.startswith(field) for d in differences), differences
    for unreadable in (tmp_path / "missing.json", tmp_path):
        with pytest.raises(CommandError) as refused:
            call_command("verify_erasure_receipt", str(unreadable))
        assert (refused.value.returncode, str(refused.value).split(":")[0]) == (4, "receipt_unreadable")
    for hostile in (
        b"not json",
        b"[]",
        b'{"type": "x"}',
        json.dumps({**body, "count": "1"}).encode(),
        b"{" * 5000,
        b" " * (4 * 1024 * 1024 + 1),
    ):
        receipt.write_bytes(hostile)
        with pytest.raises(CommandError) as refused:
            call_command("verify_erasure_receipt", str(receipt))
        assert refused.value.returncode == 4
        assert str(refused.value).startswith("receipt_invalid")


@pytest.mark.django_db
def test_with_the_ledger_down_nothing_is_destroyed_and_a_retry_finishes(consented, ledger_switch):
    ((user, patient, record),) = consented(1)
    secrets = _secrets_of(patient)
    ledger_switch.down()

    with pytest.raises(ErasureLedgerUnavailable) as refused:
        patient_erase(actor=user, patient=patient)

    assert (refused.value.code, refused.value.status) == ("ledger_unavailable", 503)
    assert _secrets_of(patient) == secrets
    assert record_version_plaintext(record_version=RecordVersion.objects.get(record=record))
    ledger_switch.up()
    assert patient_erase(actor=user, patient=patient).state == ErasureState.DONE
    assert not PatientDataKey.objects.filter(patient=patient).exists()


@pytest.mark.django_db
def test_a_crash_after_the_ledger_leaves_the_records_refused_and_a_retry_destroys_them(consented, monkeypatch):
    ((user, patient, record),) = consented(1)

    def crash(**_):
        raise RuntimeError("the process died here")

    patient_erasure_destroy.connect(crash, dispatch_uid="test_crash")
    try:
        with pytest.raises(RuntimeError):
            patient_erase(actor=user, patient=patient)
    finally:
        patient_erasure_destroy.disconnect(dispatch_uid="test_crash")

    erasure = PatientErasure.objects.get(patient=patient)
    assert erasure.state == ErasureState.ON_LEDGER  # the ledger holds it; the database kept everything
    assert PatientDataKey.objects.filter(patient=patient).exists()
    assert bootstrap.contracts().read_anchor(str(record.pk)).erased

    finished = patient_erase(actor=user, patient=patient)
    assert (finished.pk, finished.state, finished.tx_id) == (erasure.pk, ErasureState.DONE, erasure.tx_id)
    assert not PatientDataKey.objects.filter(patient=patient).exists()
    assert patient_erase(actor=user, patient=patient).finished_at == finished.finished_at  # done: unchanged


@pytest.mark.django_db
def test_erasure_waits_while_an_analysis_using_the_records_runs(consented, clinician, models_registered, ledger):
    ((user, patient, record),) = consented(1)
    from analytics.models import AnalysisRequest

    request = AnalysisRequest.objects.create(
        requester=clinician,
        model=models_registered["breast-cancer"],
        grantee_id=clinician.clinician_profile.grantee_id,
        purpose="diagnostic-model:breast-cancer",
        status=AnalysisStatus.RUNNING,
        cohort_kind="explicit",
        key_mode="portal",
        public_context_key="0" * 64,
        compute_context_key="0" * 64,
        batch_size=10,
    )
    version = RecordVersion.objects.get(record=record)
    AnalysisBatch.objects.create(request=request, index=0, record_version_ids=[version.pk])
    height = ledger.height()

    with pytest.raises(ErasureRefused) as refused:
        patient_erase(actor=user, patient=patient)

    assert (refused.value.code, refused.value.status) == ("analysis_in_progress", 409)
    assert ledger.height() == height
    assert not PatientErasure.objects.exists()


@pytest.mark.django_db
def test_an_erased_patients_bundles_are_refused(consented, custodian):
    ((user, patient, _record),) = consented(1)
    patient_erase(actor=user, patient=patient)
    from records.codes import BREAST_CANCER_DATASET
    from records.demo import demo_bundles, demo_patients

    (document,) = demo_bundles(patients=demo_patients(dataset=BREAST_CANCER_DATASET, count=1), max_entries=1000)
    with pytest.raises(BundleRejected) as refused:
        record_ingest(raw_body=encode(document), actor=custodian)
    assert refused.value.code == "patient_erased"


@pytest.mark.django_db
def test_the_patient_erases_in_the_portal_after_confirming_and_checks_the_receipt(consented, custodian, clinician):
    ((user, patient, record),) = consented(1)
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    page = client.get("/records/erasure/")
    assert page.status_code == 200
    assert b"Erase my data" in page.content
    token = page.cookies["csrftoken"].value

    assert client.post("/records/erasure/", {"confirm": "yes"}).status_code == 403  # no CSRF token
    unconfirmed = client.post("/records/erasure/", {"csrfmiddlewaretoken": token})
    assert unconfirmed.status_code == 400
    assert PatientDataKey.objects.filter(patient=patient).exists()

    done = client.post("/records/erasure/", {"confirm": "yes", "csrfmiddlewaretoken": token})
    assert (done.status_code, done["Location"]) == (302, "/records/erasure/")
    receipt_page = client.get("/records/erasure/")
    assert b"every record's anchor match this receipt" in receipt_page.content
    download = client.get("/records/erasure/receipt.json")
    assert json.loads(download.content)["record_ids"] == [str(record.pk)]

    # Every other role is refused: tests/test_permission_matrix.py.


@pytest.mark.django_db
def test_the_api_erases_only_with_the_confirmation_and_answers_the_receipt(consented, clinician):
    ((user, _patient, record),) = consented(1)
    from rest_framework.test import APIClient

    api = APIClient()
    api.force_authenticate(user)
    assert api.get("/api/records/erasure/").status_code == 404
    for body in ({}, {"confirm": "yes"}, [], "erase"):
        refused = api.post("/api/records/erasure/", body, format="json")
        assert (refused.status_code, refused.json()["code"]) == (400, "confirmation_required")
    created = api.post("/api/records/erasure/", {"confirm": "erase"}, format="json")
    assert created.status_code == 201
    assert created.json()["record_ids"] == [str(record.pk)]
    assert api.post("/api/records/erasure/", {"confirm": "erase"}, format="json").status_code == 200
    assert api.get("/api/records/erasure/verify/").json()["ok"] is True

    other = APIClient()
    other.force_authenticate(clinician)
    assert other.post("/api/records/erasure/", {"confirm": "erase"}, format="json").status_code == 403


def _verify(receipt: Path) -> dict:
    out = io.StringIO()
    call_command("verify_erasure_receipt", str(receipt), stdout=out)
    return json.loads(out.getvalue())


def _now() -> str:
    return format_timestamp(datetime.now(UTC))


@pytest.mark.he
@pytest.mark.django_db(transaction=True)  # the consents reach the ledger at commit
def test_after_erasure_the_patients_pages_still_answer_and_audit_exports_keep_the_pseudonymous_events(
    consented, clinician, auditor, models_registered, ledger, eager, blob_dir, export_dir
):
    """The records are tombstones: every page of the patient's answers (no record to show, nothing that fails to
    open), their download holds no record, and the access events of their records stay in the log and its exports."""
    from audit.exports import export_path
    from audit.selectors import AccessEventFilters
    from audit.services import audit_export_create

    people = consented(1)
    ((user, patient, record),) = people
    assert explicit_analysis(clinician, people).status == AnalysisStatus.COMPLETED
    patient_erase(actor=user, patient=patient)
    client = Client()
    client.force_login(user)
    for page in ("/records/", f"/records/{record.pk}/", "/consent/", "/audit/my-data/", "/records/erasure/"):
        response = client.get(page)
        assert response.status_code in (200, 404), (page, response.status_code)
    download = client.post("/audit/my-data/download/")
    assert download.status_code == 200
    kinds = [entry["resource"]["resourceType"] for entry in json.loads(download.content)["entry"]]
    assert "Observation" not in kinds
    assert "AuditEvent" in kinds

    export = audit_export_create(requester=auditor, format="json", filters=AccessEventFilters())
    export.refresh_from_db()
    assert export.status == "completed", export.failure_code
    exported = export_path(export).read_text()
    assert str(record.pk) in exported
    assert patient.pseudonym in exported
