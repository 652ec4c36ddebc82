"""EnrolPatientKeys: several patients' first passkeys in one transaction, each enrolled or refused alone.

On both backends (Fabric skipped, with the reason, without FABRIC_BIN_DIR). A refused key writes nothing (its
patient still without a key, its credential free), and the others of the batch are enrolled all the same, in the
same transaction, each signing its patient's consents afterwards.
"""

import json

import pytest

from health_platform.software_passkey import SoftwarePasskey, SoftwareSigner
from ledger import ContractRejected
from ledger.contracts import ConsentGrant, Contracts
from tests.chaincode.conftest import grant_document, grant_terms, ident, pseudonym


def enrol(chain, *keys: dict) -> tuple[list[dict], str]:
    receipt = chain.submit("patient_keys", "EnrolPatientKeys", json.dumps(list(keys)))
    return receipt.json(), receipt.tx_id


def keys_of(chain, patient: int) -> list[dict]:
    return chain.evaluate("patient_keys", "ReadPatientKeys", pseudonym(patient)).json()["keys"]


def test_a_batch_enrols_each_patients_key_in_one_transaction_and_each_then_signs(chain):
    passkeys = {n: SoftwarePasskey() for n in (1, 2, 3)}
    height = chain.height()

    answers, tx_id = enrol(chain, *(passkeys[n].ledger_key(pseudonym(n)) for n in (1, 2, 3)))

    assert chain.height() == height + 1
    for n, answer in zip((1, 2, 3), answers, strict=True):
        assert answer["entry"]["patient_pseudonym"] == pseudonym(n)
        (key,) = keys_of(chain, n)
        assert (key["credential_id"], key["status"], key["added_by"]) == (
            passkeys[n].credential_id_text,
            "active",
            "enrolment",
        )
        assert key["added_tx_id"] == tx_id
    document = grant_document(pseudonym(2), grant_terms(ident("c-2")))
    granted = chain.submit("consent", "GrantConsent", json.dumps(document), json.dumps(passkeys[2].sign(document)))
    assert [c["consent_id"] for c in granted.json()] == [ident("c-2")]


def test_a_refused_key_writes_nothing_and_the_others_are_enrolled(chain):
    first, taken, third = SoftwarePasskey(), SoftwarePasskey(), SoftwarePasskey()
    enrol(chain, taken.ledger_key(pseudonym(9)))  # this credential is patient 9's from now on
    already = SoftwarePasskey()
    enrol(chain, already.ledger_key(pseudonym(4)))  # patient 4 holds an active key
    stolen = {**taken.ledger_key(pseudonym(2))}

    answers, _ = enrol(
        chain,
        first.ledger_key(pseudonym(1)),
        stolen,
        third.ledger_key(pseudonym(3)),
        SoftwarePasskey().ledger_key(pseudonym(4)),
        {**SoftwarePasskey().ledger_key(pseudonym(5)), "origin": "not a url"},
    )

    assert "entry" in answers[0]
    assert "entry" in answers[2]
    assert [answer["error"]["code"] for answer in answers[1:2] + answers[3:]] == [
        "credential_taken",
        "keys_exist",
        "invalid_argument",
    ]
    assert keys_of(chain, 2) == []  # nothing written for the refused ones
    assert keys_of(chain, 5) == []
    assert [key["credential_id"] for key in keys_of(chain, 4)] == [already.credential_id_text]
    assert [key["credential_id"] for key in keys_of(chain, 3)] == [third.credential_id_text]


def test_a_patient_or_a_credential_appears_once_per_batch(chain):
    one, other = SoftwarePasskey(), SoftwarePasskey()
    answers, _ = enrol(
        chain,
        one.ledger_key(pseudonym(1)),
        other.ledger_key(pseudonym(1)),  # the same patient again
        one.ledger_key(pseudonym(2)),  # the same credential for another patient
    )
    assert "entry" in answers[0]
    assert [answer["error"]["code"] for answer in answers[1:]] == ["invalid_argument", "credential_taken"]
    assert [key["credential_id"] for key in keys_of(chain, 1)] == [one.credential_id_text]
    assert keys_of(chain, 2) == []


@pytest.mark.parametrize(
    "argument",
    ["[]", "{}", "not json", json.dumps([{"patient_pseudonym": "x"}] * 65), json.dumps(["a key"])],
    ids=["empty", "object", "malformed", "too_many", "not_objects"],
)
def test_a_malformed_batch_is_refused_whole(chain, argument):
    height = chain.height()
    with pytest.raises(ContractRejected) as refused:
        chain.submit("patient_keys", "EnrolPatientKeys", argument)
    assert refused.value.code == "invalid_argument"
    assert chain.height() == height


def test_the_software_signer_enrols_in_batches_and_signs_with_the_keys_it_enrolled(chain):
    contracts = Contracts(chain)
    signer = SoftwareSigner(contracts)
    patients = [pseudonym(n) for n in range(70)]  # two transactions: 64 and 6
    height = chain.height()

    signer.enrol(patients)

    assert chain.height() == height + 2
    assert all(
        keys_of(chain, n)[0]["credential_id"] == signer.passkeys[pseudonym(n)].credential_id_text for n in (0, 69)
    )
    granted = signer.grant(patients[5], ConsentGrant(**grant_terms(ident("c-1"))))
    assert [consent.consent_id for consent in granted] == [ident("c-1")]
    signer.enrol(patients)  # nothing new to enrol: no transaction
    assert chain.height() == height + 3
    signer.passkeys.pop(patients[0])  # here without a key, on the ledger with one: the ledger refuses it
    with pytest.raises(ContractRejected) as refused:
        signer.enrol([patients[0], pseudonym(80)])
    assert refused.value.code == "keys_exist"
    assert pseudonym(80) in signer.passkeys
    assert patients[0] not in signer.passkeys
