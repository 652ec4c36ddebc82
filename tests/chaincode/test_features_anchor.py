"""A version's features hash, anchored with it (records.features), and the gate that compares it."""

import json

import pytest

from ledger import ContractRejected
from tests.chaincode.conftest import digest, ident, pseudonym
from tests.chaincode.test_consent import check, item


def _anchor(chain, record: str, sha: str, version: int = 1, features: str | None = None) -> dict:
    anchor = {"record_id": record, "patient_pseudonym": pseudonym(1), "sha256": sha, "version": version}
    if features is not None:
        anchor["features_sha256"] = features
    (answer,) = chain.submit("anchors", "AnchorRecords", json.dumps([anchor])).json()
    return answer


def test_a_version_anchors_its_features_hash_and_a_retry_must_name_the_same(chain):
    anchored = _anchor(chain, ident("rec-1"), digest(1), features=digest(101))
    assert chain.evaluate("anchors", "ReadAnchor", ident("rec-1")).json()["features_sha256"] == digest(101)
    assert _anchor(chain, ident("rec-1"), digest(1), features=digest(101)) == anchored  # a retry: nothing written

    for other in (digest(102), None):  # other features, or none, for the version anchored: refused
        with pytest.raises(ContractRejected) as refused:
            _anchor(chain, ident("rec-1"), digest(1), features=other)
        assert refused.value.code == "version_exists"
    # A version anchored without features holds none.
    assert "features_sha256" not in _anchor(chain, ident("rec-2"), digest(2))


@pytest.mark.parametrize("features", ["", "ABC", digest(1).upper(), 7])
def test_a_malformed_features_hash_is_refused_writing_nothing(chain, features):
    with pytest.raises(ContractRejected) as refused:
        _anchor(chain, ident("rec-1"), digest(1), features=features)
    assert (refused.value.code, "features_sha256" in refused.value.message) == ("invalid_argument", True)
    with pytest.raises(ContractRejected):
        chain.evaluate("anchors", "ReadAnchor", ident("rec-1"))
    with pytest.raises(ContractRejected) as refused:
        check(chain, [{**item(ident("rec-1"), digest(1)), "features_sha256": features}])
    assert refused.value.code == "invalid_argument"


def test_the_gate_admits_features_only_under_the_hash_their_version_anchored(chain, grant):
    grant(ident("consent-1"), 1)
    _anchor(chain, ident("with"), digest(1), features=digest(101))
    _anchor(chain, ident("without"), digest(2))

    def answer(record: str, sha: str, features: str | None) -> tuple:
        asked = item(record, sha) if features is None else {**item(record, sha), "features_sha256": features}
        (result,) = check(chain, [asked])["results"]
        return result["decision"], result["reason"]

    assert answer(ident("with"), digest(1), digest(101)) == ("admit", None)
    assert answer(ident("with"), digest(1), digest(102)) == ("refuse", "hash_mismatch")  # features rewritten
    assert answer(ident("with"), digest(9), digest(101)) == ("refuse", "hash_mismatch")  # record hash wrong
    assert answer(ident("with"), digest(1), None) == ("admit", None)  # the record itself, opened and hashed
    # A version anchored before features were kept has no hash to compare: features are never admitted for it.
    assert answer(ident("without"), digest(2), digest(101)) == ("refuse", "hash_mismatch")
    assert answer(ident("without"), digest(2), None) == ("admit", None)
