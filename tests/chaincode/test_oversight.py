"""Emergency access (declaration, gate, patient's refusal, review) and misuse alerts (raise, triage) on the ledger,
through the typed door, on every backend."""

from datetime import timedelta

import pytest

from chaincode.validation import format_timestamp, timestamp
from ledger import ContractRejected
from ledger.contracts import AccessItem, AlertRequest, Contracts
from tests.chaincode.conftest import digest, ident, now, pseudonym, rfc3339

DOCTOR, OTHER = "clinician:er-doc", "clinician:other"
AUDITOR = "auditor:u7"


def declare(contracts, declaration_id, patient=1, grantee=DOCTOR, **overrides):
    values = {
        "declaration_id": declaration_id,
        "grantee": grantee,
        "organisation": None,
        "patient_pseudonym": pseudonym(patient),
        "reason": "unconscious",
        "justification_sha256": digest(90),
        "duration_seconds": 4 * 3600,
        **overrides,
    }
    return contracts.declare_emergency(**values)


def gate(contracts, declaration_id, records, *, grantee=DOCTOR, at=None):
    return contracts.check_access_batch(
        grantee=grantee,
        organisation=None,
        purpose="emergency",
        at=at or rfc3339(now() + timedelta(seconds=1)),
        items=[AccessItem(record_id, category, digest(n)) for record_id, category, n in records],
        declaration_id=declaration_id,
    )


def shifted(text, **delta):
    return format_timestamp(timestamp(text, "t") + timedelta(**delta))


@pytest.fixture
def contracts(chain):
    return Contracts(chain)


@pytest.fixture
def records(anchor):
    """Patient 1's imaging and laboratory records, patient 2's imaging record."""
    listed = [
        (ident("img-1"), "imaging", 1, 1),
        (ident("lab-1"), "laboratory", 2, 1),
        (ident("img-2"), "imaging", 3, 2),
    ]
    for record_id, _, n, patient in listed:
        anchor(record_id, patient, digest(n))
    return [(record_id, category, n) for record_id, category, n, _ in listed]


def test_a_declaration_opens_its_patients_records_to_its_clinician_for_its_period_only(contracts, records):
    declared = declare(contracts, ident("em-1")).entry
    assert declared.expires_at == shifted(declared.declared_at, hours=4)
    mine, other_patient = records[:2], records[2:]

    during = gate(contracts, ident("em-1"), mine, at=shifted(declared.declared_at, hours=3, minutes=59))
    assert [(d.decision, d.reason, d.consent_id) for d in during] == [("admit", None, None)] * 2
    assert [d.reason for d in gate(contracts, ident("em-1"), other_patient)] == ["no_emergency"]
    assert [d.reason for d in gate(contracts, ident("em-1"), mine[:1], grantee=OTHER)] == ["no_emergency"]
    after = gate(contracts, ident("em-1"), mine, at=declared.expires_at)
    assert [d.reason for d in after] == ["emergency_expired"] * 2
    before = gate(contracts, ident("em-1"), mine, at=shifted(declared.declared_at, seconds=-1))
    assert [d.reason for d in before] == ["emergency_expired"] * 2
    assert [d.reason for d in gate(contracts, ident("em-unknown"), mine[:1])] == ["no_emergency"]


def test_a_tampered_record_is_refused_in_an_emergency_too(contracts, records):
    declare(contracts, ident("em-1"))
    record_id, category, _ = records[0]
    answer = gate(contracts, ident("em-1"), [(record_id, category, 99)])
    assert [(d.decision, d.reason) for d in answer] == [("refuse", "hash_mismatch")]


def test_the_patients_refusal_of_emergency_access_is_honoured_and_can_be_withdrawn(contracts, records):
    declare(contracts, ident("em-1"))
    refused = contracts.set_emergency_refusals(pseudonym(1), ["laboratory"])
    assert refused.categories == ["laboratory"]
    assert refused.block_number is not None
    assert [d.reason for d in gate(contracts, ident("em-1"), records[:2])] == [None, "emergency_refused"]
    assert contracts.set_emergency_refusals(pseudonym(1), ["laboratory"]).tx_id == refused.tx_id  # nothing written
    withdrawn = contracts.set_emergency_refusals(pseudonym(1), [])
    assert withdrawn.categories == []
    assert withdrawn.tx_id != refused.tx_id
    assert [d.decision for d in gate(contracts, ident("em-1"), records[:2])] == ["admit", "admit"]
    assert contracts.emergency_refusals(pseudonym(2)).tx_id is None
    history = contracts.client.evaluate("emergency", "EmergencyRefusalHistory", pseudonym(1)).json()
    assert [entry["value"]["categories"] for entry in history] == [["laboratory"], []]


def test_a_declaration_is_logged_in_its_own_transaction_and_a_retry_answers_it(contracts, records):
    first = declare(contracts, ident("em-1"))
    batch = contracts.read_access_batch(f"emergency:{ident('em-1')}")
    assert batch.tx_id == first.entry.tx_id == first.logged.tx_id
    [event] = batch.events
    assert (event["kind"], event["decision"], event["reason"], event["request_id"], event["grantee"]) == (
        "emergency_declared",
        "declared",
        "unconscious",
        ident("em-1"),
        DOCTOR,
    )
    again = declare(contracts, ident("em-1"))
    assert again.logged.tx_id == first.logged.tx_id
    assert not again.logged.appended
    assert again.entry.declared_at == first.entry.declared_at
    with pytest.raises(ContractRejected) as refused:
        declare(contracts, ident("em-1"), reason="life_threatening")
    assert refused.value.code == "already_exists"


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"reason": "curiosity"}, "declaration.reason must be one of"),
        ({"duration_seconds": 59}, "at least 60"),
        ({"duration_seconds": 24 * 3600 + 1}, "declaration.duration_seconds"),
        ({"grantee": "org:hospital"}, "must be a clinician"),
        ({"justification_sha256": "plain words"}, "declaration.justification_sha256"),
    ],
)
def test_a_malformed_declaration_is_refused_and_writes_nothing(contracts, overrides, fragment):
    height = contracts.height()
    with pytest.raises(ContractRejected) as refused:
        declare(contracts, ident("em-bad"), **overrides)
    assert fragment in refused.value.message
    assert contracts.height() == height


def test_an_inactive_clinician_cannot_declare(contracts):
    contracts.set_grantee_status("clinician:gone", active=False)
    with pytest.raises(ContractRejected) as refused:
        declare(contracts, ident("em-1"), grantee="clinician:gone")
    assert refused.value.code == "grantee_inactive"


def test_emergency_gate_needs_its_declaration_and_only_it(contracts, records):
    with pytest.raises(ContractRejected, match="declaration_id is required"):
        gate(contracts, "", records[:1])
    with pytest.raises(ContractRejected, match="declaration_id is required"):
        contracts.check_access_batch(
            grantee=DOCTOR,
            organisation=None,
            purpose="treatment",
            at=rfc3339(now()),
            items=[AccessItem(records[0][0], "imaging", digest(1))],
            declaration_id=ident("em-1"),
        )


def test_a_review_is_written_once_with_the_note_hash_and_logged(contracts, records):
    declare(contracts, ident("em-1"))
    reviewed = contracts.review_emergency(
        declaration_id=ident("em-1"), reviewer=AUDITOR, verdict="justified", note_sha256=digest(91)
    )
    assert reviewed.entry.judgement.verdict == "justified"
    assert reviewed.entry.judgement.note_sha256 == digest(91)
    assert contracts.read_emergency(ident("em-1")).judgement.tx_id == reviewed.logged.tx_id
    [event] = contracts.read_access_batch(f"emergency-review:{ident('em-1')}").events
    assert (event["kind"], event["grantee"], event["decision"], event["patient_pseudonym"]) == (
        "emergency_review",
        AUDITOR,
        "justified",
        pseudonym(1),
    )
    same = contracts.review_emergency(
        declaration_id=ident("em-1"), reviewer=AUDITOR, verdict="justified", note_sha256=digest(91)
    )
    assert same.logged.tx_id == reviewed.logged.tx_id
    with pytest.raises(ContractRejected) as refused:
        contracts.review_emergency(
            declaration_id=ident("em-1"), reviewer=AUDITOR, verdict="unjustified", note_sha256=digest(91)
        )
    assert refused.value.code == "already_exists"
    with pytest.raises(ContractRejected, match="reviewer must be 'auditor:<id>'"):
        contracts.review_emergency(
            declaration_id=ident("em-1"), reviewer=DOCTOR, verdict="justified", note_sha256=digest(91)
        )
    with pytest.raises(ContractRejected) as missing:
        contracts.review_emergency(
            declaration_id=ident("em-none"), reviewer=AUDITOR, verdict="justified", note_sha256=digest(91)
        )
    assert missing.value.code == "not_found"


@pytest.mark.parametrize("kind", ["emergency_declared", "emergency_review", "alert", "alert_triage"])
def test_oversight_events_cannot_be_appended_on_their_own(contracts, kind):
    event = {
        "event_id": ident("e1"),
        "kind": kind,
        "grantee": DOCTOR,
        "purpose": "audit",
        "request_id": ident("em-1"),
        "decision": "declared",
    }
    with pytest.raises(ContractRejected, match="is written by its own transaction only"):
        contracts.append_access_events(batch_id=ident("b1"), events=[event])


def test_an_emergency_read_names_its_declaration(contracts):
    read = {
        "event_id": ident("r1"),
        "kind": "record_read",
        "record_id": ident("img-1"),
        "patient_pseudonym": pseudonym(1),
        "grantee": DOCTOR,
        "purpose": "emergency",
        "request_id": ident("em-1"),
        "category": "imaging",
        "decision": "admit",
    }
    contracts.append_access_events(batch_id=ident("read"), events=[read])
    with pytest.raises(ContractRejected, match="names its declaration as request_id only"):
        contracts.append_access_events(batch_id=ident("read-2"), events=[{**read, "request_id": None}])


def alert(alert_id, grantee=DOCTOR, reasons=("night_emergency_reads",)):
    return AlertRequest(alert_id=alert_id, grantee=grantee, day="2026-11-14", score="0.731", reasons=list(reasons))


def test_alerts_cite_an_anchored_detector_are_logged_and_triaged_once(contracts):
    run = {"run_id": ident("run-1"), "detector_name": "misuse-detector", "detector_version": ident("v1")}
    with pytest.raises(ContractRejected) as unanchored:
        contracts.raise_alerts(**run, detector_sha256=digest(50), alerts=[alert(ident("a1"))])
    assert unanchored.value.code == "detector_not_anchored"
    contracts.anchor_model(name="misuse-detector", version=ident("v1"), sha256=digest(50))
    with pytest.raises(ContractRejected, match="not anchored with this hash"):
        contracts.raise_alerts(**run, detector_sha256=digest(51), alerts=[alert(ident("a1"))])

    logged = contracts.raise_alerts(**run, detector_sha256=digest(50), alerts=[alert(ident("a1")), alert(ident("a2"))])
    events = contracts.read_access_batch(f"alerts:{ident('run-1')}").events
    assert [(e["kind"], e["request_id"], e["model_hash"], e["decision"]) for e in events] == [
        ("alert", ident("a1"), digest(50), "flagged"),
        ("alert", ident("a2"), digest(50), "flagged"),
    ]
    stored = contracts.read_alert(ident("a1"))
    assert (stored.detector_version, stored.detector_sha256, stored.reasons, stored.tx_id) == (
        ident("v1"),
        digest(50),
        ["night_emergency_reads"],
        logged.tx_id,
    )
    again = contracts.raise_alerts(**run, detector_sha256=digest(50), alerts=[alert(ident("a1")), alert(ident("a2"))])
    assert again.tx_id == logged.tx_id
    assert not again.appended

    triaged = contracts.triage_alert(
        alert_id=ident("a1"), reviewer=AUDITOR, verdict="confirmed", note_sha256=digest(92)
    )
    assert triaged.entry.judgement.verdict == "confirmed"
    [event] = contracts.read_access_batch(f"alert-triage:{ident('a1')}").events
    assert (event["kind"], event["decision"], event["model_hash"]) == ("alert_triage", "confirmed", digest(50))
    with pytest.raises(ContractRejected) as twice:
        contracts.triage_alert(alert_id=ident("a1"), reviewer=AUDITOR, verdict="dismissed", note_sha256=digest(92))
    assert twice.value.code == "already_exists"


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"reasons": ["gut_feeling"]}, "reasons[0] must be one of"),
        ({"day": "2026-13-01"}, "must be a date"),
        ({"score": "high"}, "decimal number"),
        ({"grantee": "patient:me"}, "grantee must be"),
    ],
)
def test_a_malformed_alert_is_refused_and_writes_nothing(contracts, overrides, fragment):
    contracts.anchor_model(name="misuse-detector", version=ident("v1"), sha256=digest(50))
    height = contracts.height()
    request = AlertRequest(**{**alert(ident("a1")).__dict__, **overrides})
    with pytest.raises(ContractRejected) as refused:
        contracts.raise_alerts(
            run_id=ident("run-1"),
            detector_name="misuse-detector",
            detector_version=ident("v1"),
            detector_sha256=digest(50),
            alerts=[request],
        )
    assert fragment in refused.value.message
    assert contracts.height() == height
