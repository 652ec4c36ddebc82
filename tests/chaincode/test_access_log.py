import json
import sqlite3
from datetime import timedelta

import pytest

from ledger import ContractRejected
from tests.chaincode.conftest import digest, now, pseudonym, rfc3339

BREAST_CANCER = "diagnostic-model:breast-cancer"


def event(event_id, patient=1, request="req-1", **overrides):
    return {
        "event_id": event_id,
        "kind": "record_access",
        "record_id": f"rec-{event_id}",
        "patient_pseudonym": pseudonym(patient),
        "grantee": "clinician:alice",
        "purpose": BREAST_CANCER,
        "request_id": request,
        "model_hash": digest(0),
        "category": "imaging",
        "decision": "admit",
        **overrides,
    }


def append(chain, batch_id, events):
    return chain.submit("accesslog", "AppendAccessEvents", json.dumps({"batch_id": batch_id, "events": events}))


def query(chain, **filters):
    return chain.evaluate("accesslog", "QueryAccessEvents", json.dumps(filters)).json()


def test_a_batch_is_appended_in_one_transaction_and_read_back_whole(chain, namespace):
    receipt = append(chain, f"{namespace}-b1", [event("e1"), event("e2", decision="refuse", reason="consent_revoked")])
    answer = receipt.json()
    assert answer == {
        "batch_id": f"{namespace}-b1",
        "count": 2,
        "recorded_at": answer["recorded_at"],
        "tx_id": receipt.tx_id,
        "appended": True,
    }
    stored = chain.evaluate("accesslog", "ReadAccessBatch", f"{namespace}-b1").json()
    assert stored["tx_id"] == receipt.tx_id
    assert stored["recorded_at"] == answer["recorded_at"]
    assert [e["event_id"] for e in stored["events"]] == ["e1", "e2"]
    assert stored["events"][1]["reason"] == "consent_revoked"
    assert stored["events"][0]["reason"] is None


def test_a_training_rounds_access_events_carry_the_training_purpose(chain, namespace):
    events = [
        event("e1", purpose="training:breast-cancer", grantee="org:st-mary", request="run-1"),
        event("e2", purpose="training:breast-cancer", grantee="org:st-mary", decision="refuse", reason="no_consent"),
    ]
    append(chain, f"{namespace}-b1", events)
    stored = chain.evaluate("accesslog", "ReadAccessBatch", f"{namespace}-b1").json()
    assert [e["purpose"] for e in stored["events"]] == ["training:breast-cancer"] * 2
    with pytest.raises(ContractRejected) as refused:
        append(chain, f"{namespace}-b2", [event("e3", purpose="training:")])
    assert "batch.events[0].purpose must be one of" in refused.value.message


def test_appending_the_same_batch_twice_logs_it_once_and_answers_with_the_first_transaction(chain, namespace):
    first = append(chain, f"{namespace}-b1", [event("e1", request=namespace), event("e2", request=namespace)])
    second = append(chain, f"{namespace}-b1", [event("e1", request=namespace), event("e2", request=namespace)])
    assert second.json()["appended"] is False
    assert second.json()["tx_id"] == first.tx_id
    assert second.json()["recorded_at"] == first.json()["recorded_at"]
    assert [e["event_id"] for e in query(chain, request_id=namespace)["events"]] == ["e1", "e2"]


def test_a_batch_id_cannot_be_reused_for_other_events(chain, namespace):
    append(chain, f"{namespace}-b1", [event("e1")])
    with pytest.raises(ContractRejected) as refused:
        append(chain, f"{namespace}-b1", [event("e1", decision="refuse", reason="no_consent")])
    assert refused.value.code == "already_exists"


def test_an_event_id_may_not_repeat_within_a_batch(chain, namespace):
    with pytest.raises(ContractRejected) as refused:
        append(chain, f"{namespace}-b1", [event("e1"), event("e1")])
    assert "batch.events[1].event_id repeats" in refused.value.message


def test_query_by_request_patient_grantee_and_time_range(chain, namespace):
    before = now() - timedelta(seconds=1)
    first = append(
        chain,
        f"{namespace}-b1",
        [
            event("e1", patient=1, request=namespace),
            event("e2", patient=2, grantee="clinician:bob", request=f"{namespace}-2"),
        ],
    )
    middle = now()
    append(chain, f"{namespace}-b2", [event("e3", patient=1, request=namespace)])
    after = now() + timedelta(seconds=1)

    def ids(**filters):
        return [e["event_id"] for e in query(chain, **filters)["events"]]

    assert ids(request_id=namespace) == ["e1", "e3"]
    assert ids(request_id=f"{namespace}-2") == ["e2"]
    assert ids(request_id=namespace, patient_pseudonym=pseudonym(1)) == ["e1", "e3"]
    assert ids(request_id=f"{namespace}-2", grantee="clinician:bob") == ["e2"]
    assert ids(request_id=namespace, grantee="clinician:bob") == []
    assert ids(request_id=namespace, since=middle.isoformat().replace("+00:00", "Z")) == ["e3"]
    in_range = query(chain, since=rfc3339(before), until=rfc3339(after), limit=10_000)["events"]
    assert {"e1", "e2", "e3"} <= {e["event_id"] for e in in_range if e["batch_id"].startswith(namespace)}
    assert ids(request_id=namespace, since=rfc3339(after)) == []
    stamped = query(chain, request_id=f"{namespace}-2")["events"][0]
    assert stamped["batch_id"] == f"{namespace}-b1"
    assert stamped["tx_id"] == first.tx_id
    assert stamped["recorded_at"] == first.json()["recorded_at"]


def test_query_pages_with_a_bookmark_inside_and_across_batches(chain, namespace):
    append(chain, f"{namespace}-b1", [event(f"e{i:02d}", request=namespace) for i in range(15)])
    append(chain, f"{namespace}-b2", [event(f"e{i:02d}", request=namespace) for i in range(15, 25)])
    seen, bookmark, pages = [], "", 0
    while True:
        page = query(chain, request_id=namespace, limit=10, bookmark=bookmark)
        seen += [e["event_id"] for e in page["events"]]
        pages += 1
        bookmark = page["bookmark"]
        if not bookmark:
            break
    assert seen == [f"e{i:02d}" for i in range(25)]
    assert pages == 3


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"decision": "maybe"}, "batch.events[0].decision must be one of"),
        ({"decision": "refuse"}, "batch.events[0].reason is required"),
        ({"decision": "refuse", "reason": "because"}, "batch.events[0].reason must be one of"),
        ({"reason": "no_consent"}, "reason must be empty when the decision is admit"),
        ({"purpose": "marketing"}, "batch.events[0].purpose must be one of"),
        ({"grantee": "Dr Alice Smith"}, "batch.events[0].grantee must be"),
        ({"patient_pseudonym": "Jane Doe"}, "batch.events[0].patient_pseudonym must be 64"),
        ({"model_hash": "x"}, "batch.events[0].model_hash must be 64"),
        ({"kind": "gossip"}, "batch.events[0].kind must be one of"),
        ({"record_id": None}, "a record_access event needs record_id"),
        ({"diagnosis": "malignant"}, "unknown fields: diagnosis"),
    ],
)
def test_append_refuses_invalid_events_and_writes_nothing(chain, namespace, overrides, fragment):
    height = chain.height()
    with pytest.raises(ContractRejected) as refused:
        append(chain, f"{namespace}-b1", [event("e1", **overrides)])
    assert fragment in refused.value.message
    assert "malignant" not in refused.value.message
    assert chain.height() == height


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"events": []}, "batch is missing required fields: batch_id"),
        ({"batch_id": "b", "events": []}, "batch.events must not be empty"),
        ({"batch_id": "has space", "events": [{}]}, "batch.batch_id"),
        ({"batch_id": "b", "events": "all"}, "batch.events must be a JSON array"),
    ],
)
def test_append_refuses_a_malformed_batch(chain, body, fragment):
    with pytest.raises(ContractRejected) as refused:
        chain.submit("accesslog", "AppendAccessEvents", json.dumps(body))
    assert fragment in refused.value.message


def test_append_is_all_or_nothing(chain, namespace):
    with pytest.raises(ContractRejected):
        append(chain, f"{namespace}-b1", [event("good"), event("bad", decision="maybe")])
    with pytest.raises(ContractRejected) as missing:
        chain.evaluate("accesslog", "ReadAccessBatch", f"{namespace}-b1")
    assert missing.value.code == "not_found"


@pytest.mark.parametrize(
    ("filters", "fragment"),
    [
        ({"since": "last week"}, "query.since must be an RFC 3339"),
        ({"limit": 0}, "query.limit must be an integer"),
        ({"limit": 100_000}, "query.limit must be an integer from 1 to 10000"),
        ({"grantee": "nobody"}, "query.grantee must be"),
        ({"sort": "desc"}, "unknown fields: sort"),
        ({"request_id": "r", "bookmark": "forged"}, "bookmark does not belong"),
        ({"request_id": "r", "bookmark": json.dumps(["\x00access_by_time\x00", 0])}, "bookmark does not belong"),
    ],
)
def test_query_refuses_invalid_filters(chain, filters, fragment):
    with pytest.raises(ContractRejected) as refused:
        chain.evaluate("accesslog", "QueryAccessEvents", json.dumps(filters))
    assert fragment in refused.value.message


def test_an_export_event_carries_the_file_hash_and_only_an_export_may(chain, namespace):
    export = {
        "event_id": f"{namespace}-x",
        "kind": "export",
        "grantee": "auditor:u1",
        "purpose": "audit",
        "request_id": namespace,
        "decision": "admit",
        "export_sha256": digest(5),
    }
    append(chain, f"{namespace}-x", [export])
    assert query(chain, request_id=namespace)["events"][0]["export_sha256"] == digest(5)
    with pytest.raises(ContractRejected) as refused:
        append(chain, f"{namespace}-b1", [event("e1", export_sha256=digest(5))])
    assert "export_sha256 belongs to export events only" in refused.value.message


def read(event_id):
    """A read for treatment of imaging records, admitted by consent c-1."""
    return event(event_id, kind="record_read", purpose="treatment", request=None, model_hash=None, consent_id="c-1")


def test_a_treatment_read_is_logged_with_the_consent_that_allowed_it_or_the_refusal(chain, namespace):
    refused = {**read("r2"), "decision": "refuse", "reason": "no_consent", "consent_id": None}
    append(chain, f"{namespace}-read", [read("r1"), refused])
    stored = chain.evaluate("accesslog", "ReadAccessBatch", f"{namespace}-read").json()["events"]
    assert [(e["kind"], e["decision"], e["consent_id"], e["reason"]) for e in stored] == [
        ("record_read", "admit", "c-1", None),
        ("record_read", "refuse", None, "no_consent"),
    ]


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"consent_id": None}, "an admitted record_read event names the consent that allowed it"),
        ({"purpose": BREAST_CANCER}, "purpose of a record_read event must be treatment"),
        ({"record_id": None}, "a record_read event needs record_id"),
        ({"consent_id": "has space"}, "batch.events[0].consent_id"),
    ],
)
def test_a_treatment_read_without_its_explanation_is_refused(chain, namespace, overrides, fragment):
    height = chain.height()
    with pytest.raises(ContractRejected) as refused:
        append(chain, f"{namespace}-read", [{**read("r1"), **overrides}])
    assert fragment in refused.value.message
    assert chain.height() == height


# --- the compact form: the fields every event of a batch shares, written once -------------------------------------


def append_compact(chain, batch_id, events):
    from chaincode.contracts.access_log import compact

    common, own = compact(events)
    body = {"batch_id": batch_id, "common": common, "events": own}
    return chain.submit("accesslog", "AppendAccessEvents", json.dumps(body))


def analysis_events(count, **overrides):
    return [event(f"e{i}", patient=i, consent_id=f"c{i}", **overrides) for i in range(count)]


def test_a_batch_sent_compact_reads_back_as_the_same_whole_events(chain, namespace):
    events = [*analysis_events(3), event("e9", patient=9, decision="refuse", reason="no_consent")]
    append(chain, f"{namespace}-whole", events)
    append_compact(chain, f"{namespace}-compact", events)

    whole = chain.evaluate("accesslog", "ReadAccessBatch", f"{namespace}-whole").json()["events"]
    compact = chain.evaluate("accesslog", "ReadAccessBatch", f"{namespace}-compact").json()
    assert compact["events"] == whole
    assert "common" not in compact
    by_patient = query(chain, request_id="req-1", patient_pseudonym=pseudonym(9))["events"]
    assert [(e["batch_id"], e["reason"]) for e in by_patient] == [
        (f"{namespace}-whole", "no_consent"),
        (f"{namespace}-compact", "no_consent"),
    ]


def test_the_same_events_in_either_form_are_one_batch(chain, namespace):
    events = analysis_events(3)
    first = append(chain, f"{namespace}-b1", events)
    again = append_compact(chain, f"{namespace}-b1", events)
    assert (again.json()["appended"], again.json()["tx_id"]) == (False, first.tx_id)

    append_compact(chain, f"{namespace}-b2", events)
    with pytest.raises(ContractRejected, match="already logged with other events"):
        append(chain, f"{namespace}-b2", [*events[:2], {**events[2], "decision": "refuse", "reason": "no_consent"}])


@pytest.mark.parametrize(
    ("common", "events", "fragment"),
    [
        ({"decision": "admit"}, [{"event_id": "e1", "decision": "admit"}], "repeats a field of batch.common"),
        ({"event_id": "e1"}, [{"kind": "record_access"}], "batch.common has unknown fields: event_id"),
        ({"colour": "red"}, [{"event_id": "e1"}], "batch.common has unknown fields: colour"),
        (["decision"], [{"event_id": "e1"}], "batch.common must be a JSON object"),
    ],
)
def test_a_malformed_common_part_is_refused_and_nothing_is_written(chain, namespace, common, events, fragment):
    body = {"batch_id": f"{namespace}-b1", "common": common, "events": events}
    with pytest.raises(ContractRejected, match=fragment):
        chain.submit("accesslog", "AppendAccessEvents", json.dumps(body))
    with pytest.raises(ContractRejected):
        chain.evaluate("accesslog", "ReadAccessBatch", f"{namespace}-b1")


def _stored_value(ledger, key):
    with sqlite3.connect(ledger.path) as connection:
        (value,) = connection.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
    return bytes(value)


def test_a_batch_keeps_its_shared_fields_once_and_an_entry_of_the_older_form_still_reads_whole(tmp_path):
    from ledger.embedded import EmbeddedLedger

    ledger = EmbeddedLedger(tmp_path / "ledger.sqlite3")
    events = analysis_events(500)
    append(ledger, "b1", events)
    key = b"\x00access_batch\x00b1\x00"
    stored = json.loads(_stored_value(ledger, key))
    read = ledger.evaluate("accesslog", "ReadAccessBatch", "b1").json()

    assert set(stored["common"]) >= {"grantee", "purpose", "request_id", "model_hash", "kind", "decision"}
    assert len(_stored_value(ledger, key)) < 0.5 * len(json.dumps(read["events"], separators=(",", ":")))
    with sqlite3.connect(ledger.path) as connection:  # the entry as written before: whole events, no common
        connection.execute("UPDATE state SET value = ? WHERE key = ?", (json.dumps(read).encode(), key))
    assert ledger.evaluate("accesslog", "ReadAccessBatch", "b1").json() == read
    assert append(ledger, "b1", events).json()["appended"] is False


def test_the_platform_sends_a_batch_compact(tmp_path):
    from ledger.contracts import Contracts
    from ledger.embedded import EmbeddedLedger

    ledger = EmbeddedLedger(tmp_path / "ledger.sqlite3")
    events = analysis_events(500)
    logged = Contracts(ledger).append_access_events(batch_id="b1", events=events)
    with sqlite3.connect(ledger.path) as connection:
        (args,) = connection.execute("SELECT args FROM transactions WHERE tx_id = ?", (logged.tx_id,)).fetchone()

    assert "common" in json.loads(json.loads(args)[0])
    assert len(args) < 0.5 * len(json.dumps(events))
    assert ledger.evaluate("accesslog", "ReadAccessBatch", "b1").json()["events"] == [
        {**dict.fromkeys(["consent_id", "export_sha256", "reason"]), **e} for e in events
    ]
