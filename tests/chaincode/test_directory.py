"""The grantee directory on the ledger, and the gate that reads it (both backends through `chain`)."""

import json

import pytest

from ledger import ContractRejected
from ledger.contracts import Contracts
from ledger.embedded import EmbeddedLedger
from tests.chaincode.conftest import digest, ident, pseudonym
from tests.chaincode.test_consent import check, item


def clinician(name: str = "alice") -> str:
    return f"clinician:{ident(name)}"


def organisation(name: str = "hospital") -> str:
    return f"org:{ident(name)}"


def test_register_then_deactivate_and_reactivate_are_recorded_in_history(chain):
    contracts = Contracts(chain)
    registered = contracts.register_grantee(clinician())
    assert registered.status == "active"
    assert registered.block_number is not None
    assert contracts.register_grantee(clinician()) == registered  # a retry: the original entry and its block

    deactivated = contracts.set_grantee_status(clinician(), active=False)
    assert deactivated.status == "inactive"
    assert deactivated.registered_at == registered.registered_at
    assert contracts.set_grantee_status(clinician(), active=False).tx_id == deactivated.tx_id  # nothing written
    # Registering again must not reactivate a deactivated grantee.
    assert contracts.register_grantee(clinician()).status == "inactive"
    assert contracts.set_grantee_status(clinician(), active=True).status == "active"

    history = contracts.grantee_history(clinician())
    assert [change.value["status"] for change in history if change.value] == ["active", "inactive", "active"]
    assert contracts.read_grantee(clinician()).status == "active"
    assert clinician() in {entry.grantee for entry in contracts.grantees()}


def test_an_unknown_grantee_reads_as_none_and_deactivating_it_registers_it_inactive(chain):
    contracts = Contracts(chain)
    assert contracts.read_grantee(clinician("bob")) is None
    assert contracts.set_grantee_status(clinician("bob"), active=False).status == "inactive"
    assert contracts.read_grantee(clinician("bob")).status == "inactive"


@pytest.mark.parametrize(
    ("function", "args"),
    [
        ("RegisterGrantee", ["alice"]),
        ("SetGranteeStatus", ["clinician:alice", "suspended"]),
        ("SetGranteeStatus", ["org:x y", "inactive"]),
    ],
)
def test_malformed_directory_arguments_are_refused(chain, function, args):
    with pytest.raises(ContractRejected) as refused:
        chain.submit("directory", function, *args)
    assert refused.value.code == "invalid_argument"


def test_only_the_registering_organisation_may_change_a_grantee(tmp_path):
    path = tmp_path / "chain.sqlite3"
    hospital, research = EmbeddedLedger(path, creator="HospitalMSP"), EmbeddedLedger(path, creator="ResearchMSP")
    try:
        Contracts(hospital).register_grantee("clinician:alice")
        with pytest.raises(ContractRejected) as refused:
            Contracts(research).set_grantee_status("clinician:alice", active=False)
        assert refused.value.code == "forbidden"
        assert Contracts(research).read_grantee("clinician:alice").status == "active"
    finally:
        hospital.close()
        research.close()


def test_gate_refuses_a_deactivated_grantees_consents_at_the_next_batch_and_admits_after_reactivation(
    chain, grant, anchor
):
    contracts = Contracts(chain)
    contracts.register_grantee(clinician())
    grant(ident("consent-1"), 1, grantee=clinician())
    anchor(ident("rec-1"), 1, digest(1))
    batch = [item(ident("rec-1"), digest(1))]

    assert check(chain, batch, grantee=clinician())["results"][0]["decision"] == "admit"
    contracts.set_grantee_status(clinician(), active=False)
    refused = check(chain, batch, grantee=clinician())["results"][0]
    assert (refused["decision"], refused["reason"], refused["consent_id"]) == ("refuse", "grantee_inactive", None)
    assert refused["patient_pseudonym"] == pseudonym(1)
    contracts.set_grantee_status(clinician(), active=True)
    assert check(chain, batch, grantee=clinician())["results"][0]["decision"] == "admit"


def test_gate_checks_integrity_before_the_grantees_status(chain, grant, anchor):
    Contracts(chain).set_grantee_status(clinician(), active=False)
    grant(ident("consent-1"), 1, grantee=clinician())
    anchor(ident("rec-1"), 1, digest(1))
    results = check(
        chain,
        [item(ident("rec-1"), digest(2)), item(ident("rec-2"), digest(3)), item(ident("rec-1x"), digest(1))],
        grantee=clinician(),
    )["results"]
    assert [r["reason"] for r in results] == ["hash_mismatch", "no_anchor", "no_anchor"]


def test_an_inactive_organisation_admits_nothing_through_its_consents_but_its_clinicians_own_consents_still_do(
    chain, grant, anchor
):
    contracts = Contracts(chain)
    contracts.set_grantee_status(organisation(), active=False)
    grant(ident("consent-org"), 1, grantee=organisation())
    grant(ident("consent-own"), 2, grantee=clinician())
    grant(ident("consent-none"), 3, grantee=organisation(), categories=["laboratory"])
    for n in (1, 2, 3):
        anchor(ident(f"rec-{n}"), n, digest(n))
    results = check(
        chain,
        [item(ident(f"rec-{n}"), digest(n)) for n in (1, 2, 3)],
        grantee=clinician(),
        organisation=organisation(),
    )["results"]
    assert [(r["decision"], r["reason"]) for r in results] == [
        ("refuse", "grantee_inactive"),
        ("admit", None),
        ("refuse", "category_not_covered"),  # its consent would not have admitted it anyway
    ]


def test_an_inactive_clinician_is_refused_even_where_its_organisations_consents_cover(chain, grant, anchor):
    Contracts(chain).set_grantee_status(clinician(), active=False)
    grant(ident("consent-org"), 1, grantee=organisation())
    anchor(ident("rec-1"), 1, digest(1))
    result = check(chain, [item(ident("rec-1"), digest(1))], grantee=clinician(), organisation=organisation())
    assert result["results"][0]["reason"] == "grantee_inactive"


def test_a_grantee_the_ledger_never_registered_is_admitted_as_before(chain, grant, anchor):
    grant(ident("consent-1"), 1, grantee=clinician("legacy"))
    anchor(ident("rec-1"), 1, digest(1))
    assert check(chain, [item(ident("rec-1"), digest(1))], grantee=clinician("legacy"))["results"][0]["decision"] == (
        "admit"
    )


def test_an_access_event_may_carry_grantee_inactive(chain):
    event = {
        "event_id": ident("evt-1"),
        "kind": "record_access",
        "record_id": ident("rec-1"),
        "patient_pseudonym": pseudonym(1),
        "grantee": clinician(),
        "purpose": "diagnostic-model:breast-cancer",
        "request_id": ident("req-1"),
        "model_hash": digest(9),
        "category": "imaging",
        "decision": "refuse",
        "reason": "grantee_inactive",
        "export_sha256": None,
    }
    answer = chain.submit("accesslog", "AppendAccessEvents", json.dumps({"batch_id": ident("b-1"), "events": [event]}))
    assert answer.json()["count"] == 1
