"""The chaos run's counts of what must never happen (benchmarks.chaos): each finds its fault, on crafted events
and batches and on a real ledger and database, and counts nothing in a clean run; and its stall clock."""

import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from analytics.blobs import FileSystemBlobStore
from analytics.models import AnalysisBatch, AnalysisRequest, BatchStatus, DiagnosticModel
from analytics.pipeline import access_batch_id, outcome_batch_id
from benchmarks.chaos import (
    ScoredBatch,
    ScoredChunk,
    StallWatch,
    admitted_under_revoked_consent,
    computed_without_admitting_gate,
    consents_revoked_at,
    duplicate_events,
    ledger_events,
    records_scored_twice,
    scored_batches,
)
from health_platform import bootstrap
from health_platform.software_passkey import SoftwareSigner
from ledger.contracts import ConsentGrant
from tests.conftest import BREAST_CANCER

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
REQUEST = "11111111-1111-1111-1111-111111111111"


def at(seconds: float) -> str:
    return (T0 + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


def access(record_id, *, index=0, decision="admit", seconds=1.0, request=REQUEST):
    """A record_access event as the ledger answers it (with its batch and time)."""
    return {
        "event_id": f"acc:{request}:{record_id}",
        "kind": "record_access",
        "record_id": record_id,
        "request_id": request,
        "decision": decision,
        "batch_id": access_batch_id(request, index),
        "recorded_at": at(seconds),
    }


def outcome(*, index=0, seconds=5.0, decision="computed", request=REQUEST):
    return {
        "event_id": f"out:{request}:{index}",
        "kind": "outcome",
        "record_id": None,
        "request_id": request,
        "decision": decision,
        "batch_id": outcome_batch_id(request, index),
        "recorded_at": at(seconds),
    }


def scored(*chunks, index=0, request=REQUEST, gate_at=None, consents=None):
    """A scored batch; each chunk is (record ids, seconds after T0 its features were encrypted)."""
    return ScoredBatch(
        request,
        index,
        gate_at,
        tuple(ScoredChunk(tuple(ids), T0 + timedelta(seconds=seconds)) for ids, seconds in chunks),
        consents or {},
    )


CLEAN_EVENTS = [access("a"), access("b", decision="refuse"), access("c"), outcome()]
CLEAN_BATCHES = [scored((["a", "c"], 2.0))]


def test_a_clean_run_counts_nothing():
    assert duplicate_events(CLEAN_EVENTS) == 0
    assert records_scored_twice(CLEAN_BATCHES) == 0
    assert computed_without_admitting_gate(CLEAN_BATCHES, CLEAN_EVENTS) == 0
    assert admitted_under_revoked_consent(CLEAN_BATCHES, {}) == 0


@pytest.mark.parametrize(
    ("extra", "found"),
    [
        ([access("a", index=1)], 1),  # the same record's access again, in another batch of the request
        ([access("a")], 1),  # in the same batch
        ([access("a", index=1), access("a", index=2)], 2),
        ([outcome(seconds=6)], 1),  # a batch's outcome twice
        ([{**access("x", request="other"), "record_id": "a"}], 0),  # the same record in another request
        (
            [
                {**outcome(), "kind": "export", "event_id": "exp:1"},
                {**outcome(), "kind": "export", "event_id": "exp:1"},
            ],
            1,
        ),
    ],
)
def test_duplicate_events_are_the_events_about_something_already_on_the_ledger(extra, found):
    assert duplicate_events(CLEAN_EVENTS + extra) == found


def test_records_scored_twice_counts_each_result_beyond_the_first_in_one_request():
    assert records_scored_twice([scored((["a", "c"], 2.0), (["a"], 2.0))]) == 1  # two chunks of one batch
    assert records_scored_twice([*CLEAN_BATCHES, scored((["c", "d"], 2.0), index=1)]) == 1  # two batches
    assert records_scored_twice([*CLEAN_BATCHES, scored((["a", "c"], 2.0), request="other")]) == 0


@pytest.mark.parametrize(
    ("batches", "events", "found"),
    [
        ([scored((["a", "b"], 2.0))], CLEAN_EVENTS, 1),  # b was refused
        ([scored((["a", "z"], 2.0))], CLEAN_EVENTS, 1),  # z has no event at all
        ([scored((["a"], 2.0), index=1)], [*CLEAN_EVENTS, access("x", index=1)], 1),  # a admitted in batch 0 only
        ([scored((["a", "c"], 0.5))], CLEAN_EVENTS, 2),  # encrypted before the admits were recorded
        (CLEAN_BATCHES, [*CLEAN_EVENTS, outcome(index=3)], 1),  # "computed" for a batch whose access is not logged
        (CLEAN_BATCHES, [access("a", seconds=6), access("c"), outcome(seconds=5)], 1 + 1),  # outcome before access
    ],
)
def test_computed_without_admitting_gate_finds_a_result_without_an_admit_before_it(batches, events, found):
    assert computed_without_admitting_gate(batches, events) == found


A, C = ("p-1", "cns-a"), ("p-1", "cns-c")  # consents as the ledger names them: (patient, consent id)


def test_admitted_under_revoked_consent_leaves_a_revocation_racing_the_gate_alone():
    batch = scored((["a", "c"], 2.0), gate_at=T0 + timedelta(seconds=10), consents={"a": A, "c": C})
    assert admitted_under_revoked_consent([batch], {A: T0 + timedelta(seconds=8.5)}) == 1
    assert admitted_under_revoked_consent([batch], {A: T0 + timedelta(seconds=9.5)}) == 0
    assert admitted_under_revoked_consent([batch], {A: T0 + timedelta(seconds=11), C: None}) == 0
    # Another patient's consent of the same id is another consent.
    assert admitted_under_revoked_consent([batch], {("p-2", "cns-a"): T0}) == 0


def test_a_stall_is_the_time_work_waits_with_no_progress():
    watch = StallWatch(started=0.0)
    for second, marks, pending in [
        (0.0, (0, 0), False),
        (1.0, (0, 0), False),  # nothing asked: not a stall
        (2.0, (0, 0), True),  # asked: the clock starts
        (3.0, (1, 0), True),  # progress: it starts again
        (4.0, (1, 0), True),
        (7.5, (1, 0), True),
        (8.0, (1, 1), True),  # progress, 5 s after the last
        (9.0, (1, 1), True),
        (9.5, (1, 1), False),  # all done
        (20.0, (1, 1), False),
    ]:
        watch.observe(second, marks, pending)
    assert (watch.longest, watch.longest_from) == (5.0, 3.0)


@pytest.mark.django_db
def test_the_counts_read_a_real_ledger_and_database_and_find_each_fault(clinician, tmp_path):
    """Crafted on the embedded ledger and in the database, as a faulty platform would leave them: record c encrypted
    before its admit was logged, b scored though refused, a scored in two batches and its access logged twice, a
    batch "computed" whose access was never logged, d admitted two seconds after its consent was revoked."""
    contracts = bootstrap.contracts()
    blobs = FileSystemBlobStore(tmp_path / "blobs")
    grantee = clinician.clinician_profile.grantee_id
    model = DiagnosticModel.objects.create(name="breast-cancer", version="1", sha256="0" * 64, anchor_tx_id="tx")
    request = AnalysisRequest.objects.create(
        requester=clinician,
        grantee_id=grantee,
        model=model,
        purpose=BREAST_CANCER,
        cohort_kind="explicit",
        key_mode="portal",
        public_context_key="0" * 64,
        compute_context_key="0" * 64,
        batch_size=4,
    )
    a, b, c, d = (str(uuid.uuid4()) for _ in range(4))
    pseudonym = "a" * 64
    signer = SoftwareSigner(contracts)
    (consent,) = signer.grant(
        pseudonym,
        ConsentGrant(
            consent_id="cns-d",
            grantee=grantee,
            purposes=[BREAST_CANCER],
            categories=["imaging"],
            valid_from=at(0),
            valid_until="2099-01-01T00:00:00Z",
        ),
    )
    revoked = signer.revoke(pseudonym, consent.consent_id)

    def log(index, decisions, *, suffix=""):
        events = [
            {
                "event_id": f"acc:{request.id}:{record}{suffix}",
                "kind": "record_access",
                "record_id": record,
                "patient_pseudonym": pseudonym,
                "grantee": grantee,
                "purpose": BREAST_CANCER,
                "request_id": str(request.id),
                "category": "imaging",
                "decision": decision,
                "reason": None if decision == "admit" else "no_consent",
            }
            for record, decision in decisions
        ]
        contracts.append_access_events(batch_id=access_batch_id(request.id, index), events=events)

    def batch(index, chunks, *, gate_at=None, consents=None):
        AnalysisBatch.objects.create(
            request=request,
            index=index,
            record_version_ids=[],
            status=BatchStatus.SCORED,
            gate_at=gate_at,
            decisions=[
                {"record_id": r, "decision": "admit", "consent_id": c, "patient_pseudonym": pseudonym}
                for r, c in (consents or {}).items()
            ],
            column_keys=[{"record_ids": ids, "columns": [key]} for ids, key in chunks],
        )

    early = blobs.put(uuid.uuid4().bytes)  # c's features, encrypted before its admit is on the ledger
    time.sleep(0.01)
    log(0, [(a, "admit"), (b, "refuse"), (c, "admit")])
    log(1, [(a, "admit"), (d, "admit")], suffix=":again")
    time.sleep(0.01)
    late = blobs.put(uuid.uuid4().bytes)
    batch(0, [([a, b], late), ([c], early)])
    revoked_at = datetime.fromisoformat(revoked.revoked_at.replace("Z", "+00:00"))
    batch(1, [([a, d], late)], gate_at=revoked_at + timedelta(seconds=2), consents={d: "cns-d"})
    contracts.append_access_events(
        batch_id=outcome_batch_id(request.id, 2),
        events=[
            {
                "event_id": f"out:{request.id}:2",
                "kind": "outcome",
                "grantee": grantee,
                "purpose": BREAST_CANCER,
                "request_id": str(request.id),
                "decision": "computed",
            }
        ],
    )

    events = ledger_events(contracts)
    batches = scored_batches(tmp_path / "blobs")

    assert duplicate_events(events) == 1  # a's access, in batches 0 and 1
    assert records_scored_twice(batches) == 1  # a, in batches 0 and 1
    assert computed_without_admitting_gate(batches, events) == 3  # b refused, c encrypted first, batch 2's outcome
    assert [b.consents for b in batches if b.index == 1] == [{d: (pseudonym, "cns-d")}]
    assert admitted_under_revoked_consent(batches, consents_revoked_at(contracts, [(pseudonym, "cns-d")])) == 1
