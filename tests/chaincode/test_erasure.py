"""EraseRecords: one transaction marks a patient's anchors erased and stores the erasure entry; the gate refuses
an erased record (reason erased, before hash_mismatch); an erased anchor takes no further version."""

import hashlib
import json

import pytest

from ledger import ContractRejected
from tests.chaincode.conftest import digest, ident, pseudonym
from tests.chaincode.test_consent import check, item


def erase(chain, erasure_id: str, patient: int, record_ids: list[str]):
    body = {"erasure_id": erasure_id, "patient_pseudonym": pseudonym(patient), "record_ids": record_ids}
    return chain.submit("anchors", "EraseRecords", json.dumps(body))


def test_erase_records_marks_every_anchor_erased_and_stores_the_entry_in_one_transaction(chain, anchor):
    anchor(ident("rec-a"), 1, digest(1))
    anchor(ident("rec-b"), 1, digest(2))
    anchor(ident("rec-b"), 1, digest(3), 2)
    height = chain.height()

    receipt = erase(chain, ident("erasure-1"), 1, [ident("rec-b"), ident("rec-a")])
    entry = receipt.json()

    assert chain.height() == height + 1
    ids = sorted([ident("rec-a"), ident("rec-b")])
    assert entry == {
        "erasure_id": ident("erasure-1"),
        "patient_pseudonym": pseudonym(1),
        "record_ids": ids,
        "count": 2,
        "records_sha256": hashlib.sha256("\n".join(ids).encode()).hexdigest(),
        "erased_at": entry["erased_at"],
        "tx_id": receipt.tx_id,
    }
    assert chain.evaluate("anchors", "ReadErasure", ident("erasure-1")).json() == entry
    for record_id, sha in ((ident("rec-a"), digest(1)), (ident("rec-b"), digest(3))):
        read = chain.evaluate("anchors", "ReadAnchor", record_id).json()
        assert (read["erased"], read["erasure_id"], read["sha256"]) == (True, ident("erasure-1"), sha)
        assert read["patient_pseudonym"] == pseudonym(1)


def test_the_gate_refuses_an_erased_record_as_erased_whatever_hash_it_is_sent(chain, anchor, grant):
    grant(ident("consent-1"), 1)
    anchor(ident("rec-a"), 1, digest(1))
    anchor(ident("rec-kept"), 2, digest(2))
    grant(ident("consent-2"), 2)
    assert [r["decision"] for r in check(chain, [item(ident("rec-a"), digest(1))])["results"]] == ["admit"]

    erase(chain, ident("erasure-1"), 1, [ident("rec-a")])
    results = check(
        chain,
        [item(ident("rec-a"), digest(1)), item(ident("rec-a-wrong"), digest(9)), item(ident("rec-kept"), digest(2))],
    )["results"]
    results += check(chain, [item(ident("rec-a"), "0" * 64)])["results"]

    assert [(r["decision"], r["reason"]) for r in results] == [
        ("refuse", "erased"),
        ("refuse", "no_anchor"),
        ("admit", None),
        ("refuse", "erased"),
    ]


def test_an_erasure_again_answers_its_entry_and_another_under_its_id_is_refused(chain, anchor):
    anchor(ident("rec-a"), 1, digest(1))
    anchor(ident("rec-b"), 1, digest(2))
    first = erase(chain, ident("erasure-1"), 1, [ident("rec-a")]).json()

    assert erase(chain, ident("erasure-1"), 1, [ident("rec-a")]).json() == first
    with pytest.raises(ContractRejected) as refused:
        erase(chain, ident("erasure-1"), 1, [ident("rec-a"), ident("rec-b")])
    assert refused.value.code == "already_exists"


def test_an_erased_record_takes_no_further_version(chain, anchor):
    anchor(ident("rec-a"), 1, digest(1))
    erase(chain, ident("erasure-1"), 1, [ident("rec-a")])

    with pytest.raises(ContractRejected) as refused:
        anchor(ident("rec-a"), 1, digest(2), 2)
    assert refused.value.code == "erased"


def test_an_erasure_of_a_patient_without_anchored_records_is_stored_empty(chain):
    entry = erase(chain, ident("erasure-1"), 1, []).json()
    assert (entry["count"], entry["record_ids"]) == (0, [])
    assert entry["records_sha256"] == hashlib.sha256(b"").hexdigest()


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"record_ids": "rec"}, "record_ids must be a JSON array"),
        ({"record_ids": ["bad id"]}, "record_ids[0] must be"),
        ({"record_ids": ["REC", "REC"]}, "must not repeat"),
        ({"patient_pseudonym": "Jane Doe"}, "patient_pseudonym must be 64"),
        ({"erasure_id": ""}, "erasure_id is required"),
        ({"extra": 1}, "unknown fields: extra"),
        ({"record_ids": ["OTHER"]}, "record_ids[0] is not anchored for this patient"),
        ({"record_ids": ["NONE"]}, "record_ids[0] is not anchored for this patient"),
    ],
)
def test_a_malformed_or_foreign_erasure_is_refused_writing_nothing(chain, anchor, change, fragment):
    anchor(ident("rec-a"), 1, digest(1))
    anchor(ident("rec-other"), 2, digest(2))
    names = {"REC": ident("rec-a"), "OTHER": ident("rec-other"), "NONE": ident("rec-none")}
    if isinstance(change.get("record_ids"), list):
        change = {"record_ids": [names.get(r, r) for r in change["record_ids"]]}
    body = {"erasure_id": ident("erasure-1"), "patient_pseudonym": pseudonym(1), "record_ids": [], **change}

    with pytest.raises(ContractRejected) as refused:
        chain.submit("anchors", "EraseRecords", json.dumps(body))

    assert refused.value.code == "invalid_argument"
    assert fragment in refused.value.message
    assert "erased" not in chain.evaluate("anchors", "ReadAnchor", ident("rec-other")).json()
    with pytest.raises(ContractRejected) as absent:
        chain.evaluate("anchors", "ReadErasure", ident("erasure-1"))
    assert absent.value.code == "not_found"
