"""GrantConsents: several patients' signed grant documents in one transaction, each accepted or refused alone.

On both backends (Fabric skipped, with the reason, without FABRIC_BIN_DIR). A refused document writes nothing
(its consents absent, its patient's key counter unmoved, its signature not kept), and the others of the batch
are granted all the same, in the same transaction.
"""

import json

import pytest

from chaincode.webauthn import document_digest
from ledger import ContractRejected
from tests.chaincode.conftest import grant_document, grant_terms, ident, pseudonym
from tests.chaincode.test_consent import check, item


def request(document: dict, signature: dict) -> dict:
    return {"document": json.dumps(document), "signature": json.dumps(signature)}


def batch(chain, *requests: dict) -> tuple[list[dict], str]:
    receipt = chain.submit("consent", "GrantConsents", json.dumps(list(requests)))
    return receipt.json(), receipt.tx_id


def signed(passkeys, patient: int, consent: str, **overrides) -> tuple[dict, dict]:
    document = grant_document(pseudonym(patient), grant_terms(ident(consent), **overrides))
    return document, passkeys.of(pseudonym(patient)).sign(document)


def test_a_batch_grants_each_patients_document_in_one_transaction(chain, passkeys, anchor):
    documents = [signed(passkeys, n, f"c-{n}") for n in (1, 2, 3)]
    for n in (1, 2, 3):
        anchor(ident(f"rec-{n}"), n, f"{n:064x}")
    height = chain.height()

    answers, tx_id = batch(chain, *(request(*pair) for pair in documents))

    assert chain.height() == height + 1
    assert [[c["consent_id"] for c in a["consents"]] for a in answers] == [[ident(f"c-{n}")] for n in (1, 2, 3)]
    assert {c["granted_tx_id"] for a in answers for c in a["consents"]} == {tx_id}
    for document, _ in documents:  # kept once for the transaction, each under its hash
        kept = chain.evaluate("consent", "ReadConsentSignature", tx_id, document_digest(document).hex()).json()
        assert kept["document"] == document
    answer = check(chain, [item(ident(f"rec-{n}"), f"{n:064x}") for n in (1, 2, 3)])
    assert [r["decision"] for r in answer["results"]] == ["admit"] * 3


def test_a_refused_document_writes_nothing_and_the_others_are_granted(chain, passkeys):
    good_1, good_3 = signed(passkeys, 1, "c-1"), signed(passkeys, 3, "c-3")
    document, _ = signed(passkeys, 2, "c-2")
    forged = passkeys.of(pseudonym(9)).sign(document)  # another patient's passkey

    answers, tx_id = batch(chain, request(*good_1), request(document, forged), request(*good_3))

    assert "consents" in answers[0]
    assert answers[1] == {"error": {"code": "foreign_key", "message": answers[1]["error"]["message"]}}
    assert "consents" in answers[2]
    with pytest.raises(ContractRejected):
        chain.evaluate("consent", "ReadConsent", pseudonym(2), ident("c-2"))
    with pytest.raises(ContractRejected):
        chain.evaluate("consent", "ReadConsentSignature", tx_id, document_digest(document).hex())
    kept = chain.evaluate("consent", "ReadConsentSignature", tx_id, document_digest(good_3[0]).hex()).json()
    assert kept["document"] == good_3[0]
    key = chain.evaluate("patient_keys", "ReadPatientKeys", pseudonym(2)).json()["keys"][0]
    assert key["sign_count"] == 0  # its counter did not move
    # Signed properly afterwards, it is granted.
    answers, _ = batch(chain, request(document, passkeys.of(pseudonym(2)).sign(document)))
    assert [c["consent_id"] for c in answers[0]["consents"]] == [ident("c-2")]


def test_a_patient_appears_once_per_batch_and_a_document_cannot_be_granted_twice(chain, passkeys):
    first, second = signed(passkeys, 1, "c-1"), signed(passkeys, 1, "c-2")
    answers, _ = batch(chain, request(*first), request(*second))
    assert "consents" in answers[0]
    assert answers[1]["error"]["code"] == "invalid_argument"
    answers, _ = batch(chain, request(*first), request(*signed(passkeys, 2, "c-3")))
    assert answers[0]["error"]["code"] in {"replayed", "already_exists"}
    assert "consents" in answers[1]


@pytest.mark.parametrize(
    ("requests_json", "fragment"),
    [
        ("{}", "requests"),  # not a list
        ("[]", "requests"),  # empty
        (json.dumps([{"document": "{}"}]), "requests[0]"),  # no signature
        (json.dumps([{"document": "{}", "signature": "{}", "extra": 1}]), "requests[0]"),
        (json.dumps([{"document": "{}", "signature": "{}"}] * 65), "requests"),  # over the batch limit
    ],
)
def test_a_malformed_batch_is_refused_whole_and_writes_nothing(chain, requests_json, fragment):
    height = chain.height()
    with pytest.raises(ContractRejected) as refused:
        chain.submit("consent", "GrantConsents", requests_json)
    assert refused.value.code == "invalid_argument"
    assert fragment in refused.value.message
    assert chain.height() == height


def test_a_malformed_document_inside_a_batch_is_that_documents_refusal(chain, passkeys):
    answers, _ = batch(chain, {"document": "not json", "signature": "{}"}, request(*signed(passkeys, 1, "c-1")))
    assert answers[0]["error"]["code"] == "invalid_argument"
    assert "consents" in answers[1]


def test_two_patients_consents_of_the_same_id_in_one_batch_stay_each_their_own(chain, passkeys):
    """A consent is its patient's: (patient, consent_id). Two documents of a batch naming the same id grant each
    patient their own consent; neither overwrites the other (as it once could, when consents were kept by id)."""
    first = grant_document(pseudonym(1), grant_terms(ident("c-same")))
    second = grant_document(pseudonym(2), grant_terms(ident("c-same"), grantee="clinician:mallory"))
    answers, _ = batch(
        chain,
        request(first, passkeys.of(pseudonym(1)).sign(first)),
        request(second, passkeys.of(pseudonym(2)).sign(second)),
        request(*signed(passkeys, 3, "c-3")),
    )

    assert all("consents" in answer for answer in answers)
    for patient, grantee in ((pseudonym(1), "clinician:alice"), (pseudonym(2), "clinician:mallory")):
        consent = chain.evaluate("consent", "ReadConsent", patient, ident("c-same")).json()
        assert (consent["patient_pseudonym"], consent["grantee"]) == (patient, grantee)
        assert chain.evaluate("consent", "ListConsentsForPatient", patient).json() == [consent]
