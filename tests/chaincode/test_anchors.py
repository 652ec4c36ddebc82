import json

import pytest

from ledger import ContractRejected
from tests.chaincode.conftest import digest, ident, pseudonym

RECORD = object()  # stands for ident("rec-1"), which only exists once the test runs


def test_anchor_record_then_read_returns_the_anchor_with_its_transaction(chain):
    receipt = chain.submit("anchors", "AnchorRecord", ident("rec-1"), pseudonym(1), digest(1), "1")
    anchor = chain.evaluate("anchors", "ReadAnchor", ident("rec-1")).json()
    assert receipt.status == "VALID"
    assert receipt.block_number >= 1
    assert anchor["record_id"] == ident("rec-1")
    assert anchor["sha256"] == digest(1)
    assert anchor["version"] == 1
    assert anchor["patient_pseudonym"] == pseudonym(1)
    assert anchor["tx_id"] == receipt.tx_id


def test_new_version_is_a_new_anchor_and_history_keeps_both(chain, anchor):
    first = anchor(ident("rec-1"), 1, digest(1), 1)
    second = anchor(ident("rec-1"), 1, digest(2), 2)
    history = chain.evaluate("anchors", "AnchorHistory", ident("rec-1")).json()
    assert [entry["value"]["version"] for entry in history] == [1, 2]
    assert [entry["tx_id"] for entry in history] == [first["tx_id"], second["tx_id"]]
    assert chain.evaluate("anchors", "ReadAnchor", ident("rec-1")).json()["sha256"] == digest(2)


def test_anchoring_the_same_version_and_hash_again_is_a_no_op(chain, anchor):
    first = anchor(ident("rec-1"), 1, digest(1), 1)
    again = anchor(ident("rec-1"), 1, digest(1), 1)
    assert again == first
    assert len(chain.evaluate("anchors", "AnchorHistory", ident("rec-1")).json()) == 1


def test_anchor_records_anchors_a_batch_in_one_transaction(chain):
    batch = [
        {"record_id": ident(f"rec-{i}"), "patient_pseudonym": pseudonym(i), "sha256": digest(i), "version": 1}
        for i in range(50)
    ]
    receipt = chain.submit("anchors", "AnchorRecords", json.dumps(batch))
    anchors = receipt.json()
    assert len(anchors) == 50
    assert {a["tx_id"] for a in anchors} == {receipt.tx_id}
    assert chain.evaluate("anchors", "ReadAnchor", ident("rec-49")).json()["sha256"] == digest(49)


@pytest.mark.parametrize(
    ("args", "code", "fragment"),
    [
        (("", pseudonym(1), digest(1), "1"), "invalid_argument", "record_id is required"),
        (("bad id with spaces", pseudonym(1), digest(1), "1"), "invalid_argument", "record_id must be"),
        (("r" * 129, pseudonym(1), digest(1), "1"), "invalid_argument", "record_id must be"),
        ((RECORD, "Jane Doe", digest(1), "1"), "invalid_argument", "patient_pseudonym must be 64"),
        ((RECORD, pseudonym(1), "ABC", "1"), "invalid_argument", "sha256 must be 64"),
        ((RECORD, pseudonym(1), digest(1).upper(), "1"), "invalid_argument", "sha256 must be 64"),
        ((RECORD, pseudonym(1), digest(1), "0"), "invalid_argument", "version must be an integer"),
        ((RECORD, pseudonym(1), digest(1), "one"), "invalid_argument", "version must be an integer"),
        ((RECORD, pseudonym(1), digest(1), "2"), "version_out_of_order", "version must be 1"),
    ],
)
def test_anchor_record_refuses_invalid_input_with_a_clear_message(chain, args, code, fragment):
    args = tuple(ident("rec-1") if arg is RECORD else arg for arg in args)
    with pytest.raises(ContractRejected) as refused:
        chain.submit("anchors", "AnchorRecord", *args)
    assert refused.value.code == code
    assert fragment in refused.value.message
    with pytest.raises(ContractRejected):
        chain.evaluate("anchors", "ReadAnchor", ident("rec-1"))


def test_anchor_refuses_another_hash_for_an_anchored_version(chain, anchor):
    anchor(ident("rec-1"), 1, digest(1), 1)
    with pytest.raises(ContractRejected) as refused:
        anchor(ident("rec-1"), 1, digest(2), 1)
    assert refused.value.code == "version_exists"


def test_anchor_refuses_moving_a_record_to_another_patient(chain, anchor):
    anchor(ident("rec-1"), 1, digest(1), 1)
    with pytest.raises(ContractRejected) as refused:
        anchor(ident("rec-1"), 2, digest(2), 2)
    assert "differs from the record's anchored patient" in refused.value.message


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        ("not json", "anchors is not valid JSON"),
        ("{}", "anchors must be a JSON array"),
        ("[]", "anchors must not be empty"),
        ("[1]", "anchors[0] must be a JSON object"),
        (json.dumps([{"record_id": "r"}]), "missing required fields"),
        (
            json.dumps(
                [{"record_id": "r", "patient_pseudonym": pseudonym(1), "sha256": digest(1), "version": 1, "name": "x"}]
            ),
            "unknown fields: name",
        ),
        (
            json.dumps([{"record_id": "r", "patient_pseudonym": pseudonym(1), "sha256": digest(1), "version": 1}] * 2),
            "repeats an earlier record",
        ),
        ("[" * 100_000 + "]" * 100_000, "anchors is not valid JSON"),
    ],
)
def test_anchor_records_refuses_malformed_batches_and_writes_nothing(chain, payload, fragment):
    height = chain.height()
    with pytest.raises(ContractRejected) as refused:
        chain.submit("anchors", "AnchorRecords", payload)
    assert fragment in refused.value.message
    assert chain.height() == height


def test_anchor_records_is_all_or_nothing(chain):
    batch = [
        {"record_id": ident("rec-ok"), "patient_pseudonym": pseudonym(1), "sha256": digest(1), "version": 1},
        {"record_id": ident("rec-bad"), "patient_pseudonym": pseudonym(1), "sha256": "nope", "version": 1},
    ]
    with pytest.raises(ContractRejected):
        chain.submit("anchors", "AnchorRecords", json.dumps(batch))
    with pytest.raises(ContractRejected) as missing:
        chain.evaluate("anchors", "ReadAnchor", ident("rec-ok"))
    assert missing.value.code == "not_found"


def test_read_anchor_of_unknown_record_is_not_found(chain):
    with pytest.raises(ContractRejected) as refused:
        chain.evaluate("anchors", "ReadAnchor", ident("rec-unknown"))
    assert refused.value.code == "not_found"


def test_anchor_history_of_unknown_record_is_empty(chain):
    assert chain.evaluate("anchors", "AnchorHistory", ident("rec-unknown")).json() == []


def test_a_model_hash_is_anchored_once_and_never_changes(chain):
    first = chain.submit("anchors", "AnchorModel", ident("breast-cancer"), "1", digest(1)).json()
    again = chain.submit("anchors", "AnchorModel", ident("breast-cancer"), "1", digest(1)).json()
    assert again == first
    assert chain.evaluate("anchors", "ReadModelAnchor", ident("breast-cancer"), "1").json()["sha256"] == digest(1)
    with pytest.raises(ContractRejected) as refused:
        chain.submit("anchors", "AnchorModel", ident("breast-cancer"), "1", digest(2))
    assert refused.value.code == "version_exists"


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("", "1", digest(1)), "model_name is required"),
        (("breast cancer", "1", digest(1)), "model_name must be"),
        (("breast-cancer", "", digest(1)), "model_version is required"),
        (("breast-cancer", "1", "nope"), "sha256 must be 64"),
    ],
)
def test_anchor_model_refuses_invalid_input(chain, args, fragment):
    with pytest.raises(ContractRejected) as refused:
        chain.submit("anchors", "AnchorModel", *args)
    assert fragment in refused.value.message


def test_read_model_anchor_of_unknown_model_is_not_found(chain):
    with pytest.raises(ContractRejected) as refused:
        chain.evaluate("anchors", "ReadModelAnchor", ident("unknown"), "1")
    assert refused.value.code == "not_found"
