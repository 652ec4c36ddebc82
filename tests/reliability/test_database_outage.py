"""The database is unavailable during an ingest: another connection holds the lock on the records'
tables past the timeout (as a long migration, a backup or a stuck process would): SQLite's write lock
past the busy timeout, or on PostgreSQL an ACCESS EXCLUSIVE lock on the records' tables past
lock_timeout. The ingest fails with a clear error and leaves no half-stored record; once the lock is
gone, a retry stores it exactly once."""

import json
import sqlite3
from typing import Any

import pytest
from django.db import connection

from ledger.contracts import Contracts
from records.models import AnchorState, Patient, Record, RecordVersion
from tests.records.factories import bundle, encode, patient_with_observations
from tests.reliability.conftest import ledger_transactions

pytestmark = pytest.mark.django_db(transaction=True)

INGEST_URL = "/api/records/"


@pytest.fixture
def short_database_timeout():
    """Make this process give up on a locked database after 0.5 s instead of 30 s (the fault is the same)."""
    connection.close()
    options = connection.settings_dict.setdefault("OPTIONS", {})
    saved = dict(options)
    if connection.vendor == "postgresql":
        options["options"] = "-c lock_timeout=500"
    else:
        options["timeout"] = 0.5
    yield
    connection.close()
    options.clear()
    options.update(saved)


class DatabaseLock:
    """Another connection to the same database holding the lock: SQLite's write lock on the file, or on
    PostgreSQL an ACCESS EXCLUSIVE lock on the records' tables (no one reads or writes them)."""

    TABLES = (Patient._meta.db_table, Record._meta.db_table, RecordVersion._meta.db_table)

    def __init__(self):
        self.holder: Any = None

    def take(self) -> None:
        if connection.vendor == "postgresql":
            import psycopg

            settings_dict = connection.settings_dict
            self.holder = psycopg.connect(
                dbname=settings_dict["NAME"],
                user=settings_dict["USER"] or None,
                password=settings_dict["PASSWORD"] or None,
                host=settings_dict["HOST"] or None,
                port=settings_dict["PORT"] or None,
                autocommit=True,
                options="-c lock_timeout=5000",  # never waits forever on the test's own connection
            )
            self.holder.execute("BEGIN")
            self.holder.execute(f"LOCK TABLE {', '.join(self.TABLES)} IN ACCESS EXCLUSIVE MODE")
            return
        self.holder = sqlite3.connect(connection.settings_dict["NAME"], isolation_level=None)
        self.holder.execute("BEGIN EXCLUSIVE")

    def release(self) -> None:
        if self.holder is not None:
            self.holder.execute("ROLLBACK")
            self.holder.close()
            self.holder = None


@pytest.fixture
def database_lock():
    lock = DatabaseLock()
    yield lock
    lock.release()


def _two_patient_bundle() -> bytes:
    return encode(
        bundle(
            *patient_with_observations(mrn="MRN-LOCK-1", values=(81.0,)),
            *patient_with_observations(mrn="MRN-LOCK-2", values=(64.0,)),
        )
    )


def _client_for(custodian):
    from rest_framework.test import APIClient

    client = APIClient(raise_request_exception=False)
    client.force_login(custodian)
    return client


def _anchored_records(ledger) -> list[str]:
    return [
        anchor["record_id"]
        for tx in ledger_transactions(ledger, "AnchorRecords")
        if tx["status"] == "VALID"
        for anchor in json.loads(tx["args"][0])
    ]


def test_an_ingest_against_a_locked_database_fails_clearly_and_stores_nothing(
    custodian, ledger, short_database_timeout, database_lock
):
    client = _client_for(custodian)
    body = _two_patient_bundle()
    height = ledger.height()
    database_lock.take()

    response = client.post(INGEST_URL, body, content_type="application/fhir+json")

    assert response.status_code == 503
    assert response.json()["code"] == "database_unavailable"
    database_lock.release()
    assert (Patient.objects.count(), Record.objects.count(), RecordVersion.objects.count()) == (0, 0, 0)
    assert ledger.height() == height  # nothing anchored for rows that were never stored

    retried = client.post(INGEST_URL, body, content_type="application/fhir+json")

    assert retried.status_code == 201
    assert RecordVersion.objects.count() == 2
    assert set(RecordVersion.objects.values_list("version", "anchor_state")) == {(1, AnchorState.ANCHORED)}
    assert sorted(_anchored_records(ledger)) == sorted(str(r) for r in Record.objects.values_list("id", flat=True))


def test_a_lock_taken_after_the_ledger_anchored_leaves_whole_records_and_a_retry_anchors_them_once(
    custodian, ledger, short_database_timeout, database_lock, monkeypatch
):
    client = _client_for(custodian)
    body = _two_patient_bundle()
    real_anchor_records = Contracts.anchor_records

    def anchor_then_lose_the_database(self, anchors):
        committed = real_anchor_records(self, anchors)
        database_lock.take()  # the anchors are on the ledger; the database goes away before they are marked
        return committed

    monkeypatch.setattr(Contracts, "anchor_records", anchor_then_lose_the_database)

    response = client.post(INGEST_URL, body, content_type="application/fhir+json")

    assert response.status_code == 503
    assert response.json()["code"] == "database_unavailable"
    database_lock.release()
    monkeypatch.setattr(Contracts, "anchor_records", real_anchor_records)
    # Whole records: each with its version, each version pending (never analysed) and decryptable.
    versions = list(RecordVersion.objects.select_related("record"))
    assert len(versions) == Record.objects.count() == Patient.objects.count() == 2
    assert {(v.version, v.anchor_state) for v in versions} == {(1, AnchorState.PENDING)}
    assert sorted(_anchored_records(ledger)) == sorted(str(v.record_id) for v in versions)

    retried = client.post(INGEST_URL, body, content_type="application/fhir+json")

    assert retried.status_code == 201
    assert [r["unchanged"] for r in retried.json()["records"]] == [True, True]
    assert RecordVersion.objects.count() == 2  # stored once
    assert {(v.version, v.anchor_state) for v in RecordVersion.objects.all()} == {(1, AnchorState.ANCHORED)}
    # Anchored once each: the ledger answers the retry with the first anchor, written before the outage.
    first_anchoring = ledger_transactions(ledger, "AnchorRecords")[0]["tx_id"]
    for version in RecordVersion.objects.all():
        anchor = ledger.evaluate("anchors", "ReadAnchor", str(version.record_id)).json()
        assert (anchor["version"], anchor["sha256"], anchor["tx_id"]) == (1, version.sha256, first_anchoring)
        assert version.anchor_tx_id == first_anchoring
        assert len(ledger.evaluate("anchors", "AnchorHistory", str(version.record_id)).json()) == 1
