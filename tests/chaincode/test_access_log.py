import json
from datetime import timedelta

import pytest

from ledger import ContractRejected
from tests.chaincode.conftest import digest, now, pseudonym, rfc3339

BREAST_CANCER = "diagnostic-model:breast-cancer"


def event(event_id, patient=1, **overrides):
    return {
        "event_id": event_id,
        "kind": "record_access",
        "record_id": f"rec-{event_id}",
        "patient_pseudonym": pseudonym(patient),
        "grantee": "clinician:alice",
        "purpose": BREAST_CANCER,
        "request_id": "req-1",
        "model_hash": digest(0),
        "category": "imaging",
        "decision": "admit",
        **overrides,
    }


def append(chain, events):
    return chain.submit("accesslog", "AppendAccessEvents", json.dumps(events))


def query(chain, **filters):
    return chain.evaluate("accesslog", "QueryAccessEvents", json.dumps(filters)).json()


def test_append_a_batch_in_one_transaction_then_read_each_event(chain):
    receipt = append(chain, [event("e1"), event("e2", decision="refuse", reason="consent_revoked")])
    assert receipt.json()["count"] == 2
    stored = chain.evaluate("accesslog", "ReadAccessEvent", "e2").json()
    assert stored["reason"] == "consent_revoked"
    assert stored["tx_id"] == receipt.tx_id
    assert stored["recorded_at"] == receipt.json()["recorded_at"]


def test_appending_the_same_batch_twice_logs_each_event_once(chain):
    append(chain, [event("e1"), event("e2")])
    append(chain, [event("e1"), event("e2")])
    assert [e["event_id"] for e in query(chain, request_id="req-1")["events"]] == ["e1", "e2"]


def test_an_event_id_cannot_be_reused_for_other_content(chain):
    append(chain, [event("e1")])
    with pytest.raises(ContractRejected) as refused:
        append(chain, [event("e1", decision="refuse", reason="no_consent")])
    assert refused.value.code == "already_exists"


def test_query_by_patient_grantee_request_and_time_range(chain):
    before = now() - timedelta(seconds=1)
    append(chain, [event("e1", patient=1), event("e2", patient=2, grantee="clinician:bob", request_id="req-2")])
    middle = now()
    append(chain, [event("e3", patient=1, request_id="req-3")])
    after = now() + timedelta(seconds=1)

    def ids(**filters):
        return [e["event_id"] for e in query(chain, **filters)["events"]]

    assert ids(patient_pseudonym=pseudonym(1)) == ["e1", "e3"]
    assert ids(grantee="clinician:bob") == ["e2"]
    assert ids(request_id="req-1") == ["e1"]
    assert ids(since=rfc3339(before), until=rfc3339(after)) == ["e1", "e2", "e3"]
    assert ids(patient_pseudonym=pseudonym(1), since=middle.isoformat().replace("+00:00", "Z")) == ["e3"]
    assert ids(patient_pseudonym=pseudonym(1), grantee="clinician:bob") == []
    assert ids(since=rfc3339(after)) == []


def test_query_pages_with_a_bookmark(chain):
    append(chain, [event(f"e{i:02d}") for i in range(25)])
    seen, bookmark = [], ""
    while True:
        page = query(chain, grantee="clinician:alice", limit=10, bookmark=bookmark)
        seen += [e["event_id"] for e in page["events"]]
        bookmark = page["bookmark"]
        if not bookmark:
            break
    assert seen == [f"e{i:02d}" for i in range(25)]


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"decision": "maybe"}, "events[0].decision must be one of"),
        ({"decision": "refuse"}, "events[0].reason is required"),
        ({"decision": "refuse", "reason": "because"}, "events[0].reason must be one of"),
        ({"reason": "no_consent"}, "reason must be empty when the decision is admit"),
        ({"purpose": "marketing"}, "events[0].purpose must be one of"),
        ({"grantee": "Dr Alice Smith"}, "events[0].grantee must be"),
        ({"patient_pseudonym": "Jane Doe"}, "events[0].patient_pseudonym must be 64"),
        ({"model_hash": "x"}, "events[0].model_hash must be 64"),
        ({"kind": "gossip"}, "events[0].kind must be one of"),
        ({"record_id": None}, "a record_access event needs record_id"),
        ({"diagnosis": "malignant"}, "unknown fields: diagnosis"),
    ],
)
def test_append_refuses_invalid_events_and_writes_nothing(chain, overrides, fragment):
    height = chain.height()
    with pytest.raises(ContractRejected) as refused:
        append(chain, [event("e1", **overrides)])
    assert fragment in refused.value.message
    assert chain.height() == height


def test_append_is_all_or_nothing(chain):
    with pytest.raises(ContractRejected):
        append(chain, [event("good"), event("bad", decision="maybe")])
    with pytest.raises(ContractRejected) as missing:
        chain.evaluate("accesslog", "ReadAccessEvent", "good")
    assert missing.value.code == "not_found"


@pytest.mark.parametrize(
    ("filters", "fragment"),
    [
        ({"since": "last week"}, "query.since must be an RFC 3339"),
        ({"limit": 0}, "query.limit must be an integer"),
        ({"limit": 100_000}, "query.limit must be an integer from 1 to 10000"),
        ({"grantee": "nobody"}, "query.grantee must be"),
        ({"sort": "desc"}, "unknown fields: sort"),
        ({"grantee": "clinician:alice", "bookmark": "forged"}, "bookmark does not belong"),
    ],
)
def test_query_refuses_invalid_filters(chain, filters, fragment):
    with pytest.raises(ContractRejected) as refused:
        chain.evaluate("accesslog", "QueryAccessEvents", json.dumps(filters))
    assert fragment in refused.value.message
