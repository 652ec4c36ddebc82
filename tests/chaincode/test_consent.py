import json
from datetime import timedelta

import pytest

from ledger import ContractRejected
from tests.chaincode.conftest import Passkeys, digest, grant_terms, ident, now, pseudonym, rfc3339

BREAST_CANCER = "diagnostic-model:breast-cancer"
TRAIN_BREAST_CANCER = "training:breast-cancer"


def check(chain, items, *, grantee="clinician:alice", purpose=BREAST_CANCER, at=None, organisation=None):
    request = {"grantee": grantee, "purpose": purpose, "at": rfc3339(at or now()), "items": items}
    if organisation:
        request["organisation"] = organisation
    return chain.evaluate("consent", "CheckAccessBatch", json.dumps(request)).json()


def item(record_id, sha, category="imaging"):
    return {"record_id": record_id, "category": category, "sha256": sha}


def test_grant_then_read_list_and_history(chain, grant):
    granted = grant(ident("consent-1"), 1)
    assert granted["status"] == "active"
    assert chain.evaluate("consent", "ReadConsent", pseudonym(1), ident("consent-1")).json() == granted
    assert [c["consent_id"] for c in chain.evaluate("consent", "ListConsentsForPatient", pseudonym(1)).json()] == [
        ident("consent-1")
    ]
    assert chain.evaluate("consent", "ListConsentsForPatient", pseudonym(2)).json() == []
    history = chain.evaluate("consent", "ConsentHistory", pseudonym(1), ident("consent-1")).json()
    assert [h["value"]["status"] for h in history] == ["active"]


def test_revoke_is_recorded_in_history_and_is_idempotent(chain, grant, revoke):
    grant(ident("consent-1"), 1)
    revoked = revoke(ident("consent-1"), 1)
    again = revoke(ident("consent-1"), 1)
    history = chain.evaluate("consent", "ConsentHistory", pseudonym(1), ident("consent-1")).json()
    assert revoked["status"] == "revoked"
    assert revoked["revoked_at"] is not None
    assert again == revoked
    assert [h["value"]["status"] for h in history] == ["active", "revoked"]


def test_revoke_unknown_consent_is_not_found(chain, revoke):
    with pytest.raises(ContractRejected) as refused:
        revoke(ident("nope"), 1)
    assert refused.value.code == "not_found"


def test_grant_refuses_an_existing_consent_id_of_the_patient(chain, grant):
    first = grant(ident("consent-1"), 1)
    with pytest.raises(ContractRejected) as refused:
        grant(ident("consent-1"), 1, categories=["laboratory"])
    assert refused.value.code == "already_exists"
    assert chain.evaluate("consent", "ListConsentsForPatient", pseudonym(1)).json() == [first]
    # A consent is its patient's: another patient's consent of the same id is theirs, and changes nothing of the first.
    other = grant(ident("consent-1"), 2)
    assert other["patient_pseudonym"] == pseudonym(2)
    assert chain.evaluate("consent", "ReadConsent", pseudonym(1), ident("consent-1")).json() == first
    with pytest.raises(ContractRejected) as unknown:
        chain.evaluate("consent", "ReadConsent", pseudonym(3), ident("consent-1"))
    assert unknown.value.code == "not_found"


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"consent_id": ""}, "document.grants[0].consent_id is required"),
        ({"patient_pseudonym": "Jane Doe"}, "document.patient_pseudonym must be 64"),
        ({"grantee": "alice"}, "document.grants[0].grantee must be"),
        ({"purposes": []}, "document.grants[0].purposes must be a non-empty list"),
        ({"purposes": ["marketing"]}, "document.grants[0].purposes[0] must be one of"),
        ({"purposes": [BREAST_CANCER, BREAST_CANCER]}, "must not repeat"),
        ({"purposes": ["training:"]}, "document.grants[0].purposes[0] must be one of"),
        ({"purposes": ["training:Breast-Cancer"]}, "or training:<model family>"),
        ({"purposes": ["training:-x"]}, "document.grants[0].purposes[0] must be one of"),
        ({"categories": ["genome"]}, "document.grants[0].categories[0] must be one of"),
        ({"categories": "imaging"}, "document.grants[0].categories must be a non-empty list"),
        ({"valid_from": "yesterday"}, "document.grants[0].valid_from must be an RFC 3339"),
        ({"valid_until": "2026-02-30T00:00:00Z"}, "document.grants[0].valid_until is not a valid date"),
        (
            {"valid_from": rfc3339(now() + timedelta(days=2)), "valid_until": rfc3339(now() + timedelta(days=1))},
            "valid_until must be later than",
        ),
        (
            {"valid_from": rfc3339(now() - timedelta(days=9)), "valid_until": rfc3339(now() - timedelta(days=1))},
            "valid_until is in the past",
        ),
        ({"extra": 1}, "unknown fields: extra"),
    ],
)
def test_grant_refuses_invalid_input_and_writes_nothing(chain, grant, passkeys, overrides, fragment):
    passkeys.of(pseudonym(1))
    height = chain.height()
    with pytest.raises(ContractRejected) as refused:
        grant(ident("consent-1"), 1, **overrides)
    assert refused.value.code == "invalid_argument"
    assert fragment in refused.value.message
    assert chain.height() == height


def test_grant_refuses_a_missing_field(chain, passkeys):
    with pytest.raises(ContractRejected) as refused:
        passkeys.grant(pseudonym(1), {"consent_id": ident("c")})
    assert "missing required fields" in refused.value.message


def test_check_access_batch_returns_every_reason(chain, grant, revoke, anchor):
    anchor(ident("rec-admit"), 1, digest(1))
    grant(ident("c-ok"), 1)
    anchor(ident("rec-none"), 2, digest(2))
    anchor(ident("rec-expired"), 3, digest(3))
    grant(ident("c-expiring"), 3, valid_until=rfc3339(now() + timedelta(seconds=30)))
    anchor(ident("rec-revoked"), 4, digest(4))
    grant(ident("c-revoked"), 4)
    revoke(ident("c-revoked"), 4)
    anchor(ident("rec-category"), 5, digest(5))
    grant(ident("c-labs-only"), 5, categories=["laboratory"])
    anchor(ident("rec-tampered"), 6, digest(6))
    grant(ident("c-6"), 6)

    answer = check(
        chain,
        [
            item(ident("rec-admit"), digest(1)),
            item(ident("rec-none"), digest(2)),
            item(ident("rec-expired"), digest(3)),
            item(ident("rec-revoked"), digest(4)),
            item(ident("rec-category"), digest(5)),
            item(ident("rec-unanchored"), digest(7)),
            item(ident("rec-tampered"), digest(99)),
        ],
        at=now() + timedelta(minutes=5),
    )
    outcome = {r["record_id"]: (r["decision"], r["reason"]) for r in answer["results"]}
    assert outcome == {
        ident("rec-admit"): ("admit", None),
        ident("rec-none"): ("refuse", "no_consent"),
        ident("rec-expired"): ("refuse", "consent_expired"),
        ident("rec-revoked"): ("refuse", "consent_revoked"),
        ident("rec-category"): ("refuse", "category_not_covered"),
        ident("rec-unanchored"): ("refuse", "no_anchor"),
        ident("rec-tampered"): ("refuse", "hash_mismatch"),
    }
    assert answer["results"][0]["consent_id"] == ident("c-ok")
    assert [r["record_id"] for r in answer["results"]][:2] == [ident("rec-admit"), ident("rec-none")]


def test_check_access_batch_honours_grantee_purpose_and_period(chain, grant, anchor):
    anchor(ident("rec-1"), 1, digest(1))
    grant(
        ident("c-1"), 1, valid_from=rfc3339(now() + timedelta(days=1)), valid_until=rfc3339(now() + timedelta(days=3))
    )
    items = [item(ident("rec-1"), digest(1))]
    assert check(chain, items)["results"][0]["reason"] == "no_consent"  # not yet begun
    assert check(chain, items, at=now() + timedelta(days=2))["results"][0]["decision"] == "admit"
    assert (
        check(chain, items, at=now() + timedelta(days=2), grantee="clinician:bob")["results"][0]["reason"]
        == "no_consent"
    )
    assert check(chain, items, at=now() + timedelta(days=2), purpose="research")["results"][0]["reason"] == "no_consent"


def test_a_training_consent_is_granted_and_revoked_like_any_other_purpose(chain, grant, revoke, anchor):
    anchor(ident("rec-1"), 1, digest(1))
    granted = grant(ident("c-train"), 1, purposes=[TRAIN_BREAST_CANCER])
    assert (granted["purposes"], granted["status"]) == ([TRAIN_BREAST_CANCER], "active")
    items = [item(ident("rec-1"), digest(1))]

    admitted = check(chain, items, purpose=TRAIN_BREAST_CANCER)["results"][0]
    assert (admitted["decision"], admitted["consent_id"]) == ("admit", ident("c-train"))
    assert revoke(ident("c-train"), 1)["status"] == "revoked"
    assert check(chain, items, purpose=TRAIN_BREAST_CANCER)["results"][0]["reason"] == "consent_revoked"


def test_a_training_consent_and_a_diagnostic_model_consent_never_stand_for_each_other(chain, grant, anchor):
    """Training a family's model and running it on the patient's records are two purposes, matched exactly both
    ways; nor does training one family's model cover another's."""
    anchor(ident("rec-train"), 1, digest(1))
    grant(ident("c-train"), 1, purposes=[TRAIN_BREAST_CANCER])
    anchor(ident("rec-run"), 2, digest(2))
    grant(ident("c-run"), 2, purposes=[BREAST_CANCER])
    items = [item(ident("rec-train"), digest(1)), item(ident("rec-run"), digest(2))]

    def outcome(purpose):
        return [(r["decision"], r["reason"]) for r in check(chain, items, purpose=purpose)["results"]]

    assert outcome(TRAIN_BREAST_CANCER) == [("admit", None), ("refuse", "no_consent")]
    assert outcome(BREAST_CANCER) == [("refuse", "no_consent"), ("admit", None)]
    assert outcome("training:diabetes-progression") == [("refuse", "no_consent")] * 2
    assert outcome("research") == [("refuse", "no_consent")] * 2


def test_check_access_batch_admits_through_an_organisation_grant(chain, grant, anchor):
    anchor(ident("rec-1"), 1, digest(1))
    grant(ident("c-org"), 1, grantee="org:st-mary")
    items = [item(ident("rec-1"), digest(1))]
    assert check(chain, items)["results"][0]["reason"] == "no_consent"
    assert check(chain, items, organisation="org:st-mary")["results"][0]["decision"] == "admit"


def test_check_access_batch_uses_the_latest_anchored_version(chain, grant, anchor):
    anchor(ident("rec-1"), 1, digest(1), 1)
    anchor(ident("rec-1"), 1, digest(2), 2)
    grant(ident("c-1"), 1)
    assert check(chain, [item(ident("rec-1"), digest(1))])["results"][0]["reason"] == "hash_mismatch"
    assert check(chain, [item(ident("rec-1"), digest(2))])["results"][0]["decision"] == "admit"


def test_check_access_batch_handles_thousands_of_records_in_one_call(chain, grant):
    batch = [
        {"record_id": ident(f"rec-{i}"), "patient_pseudonym": pseudonym(i % 100), "sha256": digest(i), "version": 1}
        for i in range(3000)
    ]
    chain.submit("anchors", "AnchorRecords", json.dumps(batch))
    for patient in range(0, 100, 2):
        grant(ident(f"c-{patient}"), patient)
    answer = check(chain, [item(ident(f"rec-{i}"), digest(i)) for i in range(3000)])
    admitted = [r["record_id"] for r in answer["results"] if r["decision"] == "admit"]
    assert len(answer["results"]) == 3000
    assert admitted == [ident(f"rec-{i}") for i in range(3000) if (i % 100) % 2 == 0]


@pytest.mark.parametrize(
    ("request_body", "fragment"),
    [
        (
            {"grantee": "clinician:alice", "purpose": BREAST_CANCER, "at": "2026-01-01T00:00:00Z", "items": []},
            "request.items must not be empty",
        ),
        (
            {
                "grantee": "clinician:alice",
                "purpose": "x",
                "at": "2026-01-01T00:00:00Z",
                "items": [item("r", digest(1))],
            },
            "request.purpose must be one of",
        ),
        (
            {"grantee": "clinician:alice", "purpose": BREAST_CANCER, "at": "now", "items": [item("r", digest(1))]},
            "request.at must be an RFC 3339",
        ),
        (
            {
                "grantee": "clinician:alice",
                "purpose": BREAST_CANCER,
                "at": "2026-01-01T00:00:00Z",
                "items": [item("r", digest(1), category="dna")],
            },
            "request.items[0].category must be one of",
        ),
        (
            {
                "grantee": "clinician:alice",
                "purpose": BREAST_CANCER,
                "at": "2026-01-01T00:00:00Z",
                "items": [item("r", digest(1)), item("r", digest(1))],
            },
            "repeats an earlier record",
        ),
        (
            {
                "grantee": "clinician:alice",
                "purpose": BREAST_CANCER,
                "at": "2026-01-01T00:00:00Z",
                "items": [item("r", digest(1))] * 1 + [{"record_id": "s"}],
            },
            "missing required fields",
        ),
        (
            {"purpose": BREAST_CANCER, "at": "2026-01-01T00:00:00Z", "items": [item("r", digest(1))]},
            "missing required fields: grantee",
        ),
    ],
)
def test_check_access_batch_refuses_invalid_requests(chain, request_body, fragment):
    with pytest.raises(ContractRejected) as refused:
        chain.evaluate("consent", "CheckAccessBatch", json.dumps(request_body))
    assert refused.value.code == "invalid_argument"
    assert fragment in refused.value.message


def test_check_access_batch_refuses_more_than_the_batch_limit(chain):
    items = [item(ident(f"r{i}"), digest(i)) for i in range(10_001)]
    with pytest.raises(ContractRejected) as refused:
        check(chain, items)
    assert "at most 10000 are accepted" in refused.value.message


def test_check_access_batch_writes_nothing(chain, grant, anchor):
    anchor(ident("rec-1"), 1, digest(1))
    grant(ident("c-1"), 1)
    height = chain.height()
    check(chain, [item(ident("rec-1"), digest(1))])
    assert chain.height() == height


def test_the_patients_consent_entry_follows_every_grant_and_revocation(chain, grant, revoke, anchor):
    """The gate reads a patient's consents from one entry: it must hold exactly what each consent
    holds, after grants and revocations, in consent_id order."""
    anchor(ident("rec-1"), 1, digest(1))
    for name in ("c-b", "c-a", "c-c"):
        grant(ident(name), 1, categories=["imaging"] if name != "c-c" else ["laboratory"])
    revoke(ident("c-a"), 1)
    revoke(ident("c-b"), 1)
    listed = chain.evaluate("consent", "ListConsentsForPatient", pseudonym(1)).json()
    read = [chain.evaluate("consent", "ReadConsent", pseudonym(1), ident(n)).json() for n in ("c-a", "c-b", "c-c")]
    assert listed == read
    assert [c["status"] for c in listed] == ["revoked", "revoked", "active"]
    # Imaging was covered by c-a and c-b only, both revoked; c-c covers another category.
    assert check(chain, [item(ident("rec-1"), digest(1))])["results"][0]["reason"] == "category_not_covered"
    revoke(ident("c-c"), 1)
    assert check(chain, [item(ident("rec-1"), digest(1))])["results"][0]["reason"] == "consent_revoked"


class EarlierLayouts:
    """A ledger holding what earlier versions of the contracts wrote: a contract that writes any key, as they did."""

    def __init__(self, tmp_path):
        from chaincode import state
        from chaincode.contracts.access_log import AccessLogContract
        from chaincode.contracts.anchors import AnchorContract
        from chaincode.contracts.consent import ConsentContract
        from chaincode.contracts.patient_keys import PatientKeyContract
        from chaincode.library import Contract, ContractChaincode, TransactionContext
        from ledger.embedded import EmbeddedLedger

        class Earlier(Contract):
            Name = "earlier"

            async def Put(self, ctx: TransactionContext, object_type: str, attributes: str, value_json: str) -> str:
                stub = ctx.get_stub()
                key = stub.create_composite_key(object_type, json.loads(attributes))
                value = json.loads(value_json)
                await stub.put_state(key, state.INDEX_MARKER if value is None else state.dumps(value))
                return "{}"

        self.ledger = EmbeddedLedger(
            tmp_path / "ledger.sqlite3",
            chaincode=ContractChaincode.new_chaincode(
                AnchorContract(), ConsentContract(), AccessLogContract(), PatientKeyContract(), Earlier()
            ),
        )

    def put(self, object_type: str, attributes: list[str], value) -> None:
        self.ledger.submit("earlier", "Put", object_type, json.dumps(attributes), json.dumps(value))


def earlier_consent(consent_id: str, patient: str, **fields) -> dict:
    start = now() - timedelta(days=1)
    return {
        "consent_id": consent_id,
        "patient_pseudonym": patient,
        "grantee": "clinician:alice",
        "purposes": [BREAST_CANCER],
        "categories": ["imaging"],
        "valid_from": start.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "valid_until": (start + timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "status": "active",
        "granted_at": start.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "granted_tx_id": "0" * 64,
        "revoked_at": None,
        "revoked_tx_id": None,
        **fields,
    }


def test_consents_written_in_the_first_layout_still_count(tmp_path):
    """Consents the contract once wrote as `consent/<id>` with an index entry, before the patient held a passkey:
    the gate reads them through the index; the patient's enrolment brings them into the patient's entry, and their
    history goes on there."""
    earlier = EarlierLayouts(tmp_path)
    ledger = earlier.ledger
    try:
        patient = pseudonym(1)
        old = earlier_consent("c-old", patient)
        earlier.put("consent", ["c-old"], old)
        earlier.put("consent_by_patient", [patient, "c-old"], None)
        ledger.submit("anchors", "AnchorRecord", "rec-1", patient, digest(1), "1")
        assert check(ledger, [item("rec-1", digest(1))])["results"][0]["decision"] == "admit"
        assert ledger.evaluate("consent", "ReadConsent", patient, "c-old").json() == old

        passkeys = Passkeys(ledger)
        passkeys.grant(patient, grant_terms("c-new", categories=["laboratory"]))
        assert [c["consent_id"] for c in ledger.evaluate("consent", "ListConsentsForPatient", patient).json()] == [
            "c-new",
            "c-old",
        ]
        assert "grant_signature" not in ledger.evaluate("consent", "ReadConsent", patient, "c-old").json()
        passkeys.revoke("c-old", patient)
        assert check(ledger, [item("rec-1", digest(1))])["results"][0]["reason"] == "category_not_covered"
        history = ledger.evaluate("consent", "ConsentHistory", patient, "c-old").json()
        assert [h["value"]["status"] for h in history] == ["active", "revoked"]
        # Another patient's consent of the same id in the first layout is not this patient's history.
        assert ledger.evaluate("consent", "ConsentHistory", pseudonym(2), "c-old").json() == []
        assert ledger.verify().ok
    finally:
        ledger.close()


def test_consents_and_signatures_written_in_the_second_layout_still_count(tmp_path):
    """A patient whose keys entry holds no consents (enrolled before the entry held them), whose consents are whole
    in `patient_consents/<patient>` and whose signed document is kept under its hash: all of it is read, and their
    next grant moves the consents into the entry."""
    earlier = EarlierLayouts(tmp_path)
    ledger = earlier.ledger
    try:
        patient = pseudonym(1)
        passkeys = Passkeys(ledger)
        passkeys.of(patient)
        keys_only = ledger.evaluate("patient_keys", "ReadPatientKeys", patient).json()
        earlier.put("patient_keys", [patient], keys_only)
        signed = earlier_consent("c-old", patient, grant_signature="d" * 64, granted_tx_id="e" * 64)
        earlier.put("patient_consents", [patient], {"patient_pseudonym": patient, "consents": [signed]})
        record = {"document_sha256": "d" * 64, "document": {"action": "grant_consent"}, "signature": "kept"}
        earlier.put("consent_signature", ["d" * 64], record)
        ledger.submit("anchors", "AnchorRecord", "rec-1", patient, digest(1), "1")

        assert check(ledger, [item("rec-1", digest(1))])["results"][0]["consent_id"] == "c-old"
        assert ledger.evaluate("consent", "ReadConsentSignature", "e" * 64, "d" * 64).json() == record
        passkeys.grant(patient, grant_terms("c-new"))
        assert [c["consent_id"] for c in ledger.evaluate("consent", "ListConsentsForPatient", patient).json()] == [
            "c-new",
            "c-old",
        ]
        earlier.put("patient_consents", [patient], {"patient_pseudonym": patient, "consents": []})
        assert len(ledger.evaluate("consent", "ListConsentsForPatient", patient).json()) == 2  # the entry counts now
        passkeys.revoke("c-old", patient)
        assert ledger.evaluate("consent", "ReadConsent", patient, "c-old").json()["status"] == "revoked"
        assert check(ledger, [item("rec-1", digest(1))])["results"][0]["consent_id"] == "c-new"
    finally:
        ledger.close()
