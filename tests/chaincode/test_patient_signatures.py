"""Patient signatures: every consent grant and revocation, and every change of a patient's passkeys, carries a
WebAuthn assertion by one of the patient's passkeys on the ledger (chaincode.webauthn,
chaincode.contracts.patient_keys, chaincode.contracts.consent).

Each refusal is checked for its stable code and for having written nothing: no block (chain.height()
unchanged) and the consent absent, or still active, or the patient's keys unchanged.
"""

import hashlib
import json
from datetime import timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from fido2 import cbor
from fido2.utils import websafe_decode
from fido2.webauthn import AuthenticatorData, CollectedClientData

from chaincode.webauthn import SignatureRefused, assertion_fields, b64url, document_digest, verify_assertion
from health_platform.software_passkey import SoftwarePasskey
from ledger import ContractRejected
from tests.chaincode.conftest import (
    digest,
    grant_document,
    grant_terms,
    ident,
    now,
    pseudonym,
    revoke_document,
    rfc3339,
)
from tests.chaincode.test_consent import check, item

UP, UV = AuthenticatorData.FLAG.UP, AuthenticatorData.FLAG.UV


def argument(value) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def submit(chain, contract: str, function: str, *arguments):
    return chain.submit(contract, function, *map(argument, arguments)).json()


def refused(chain, code: str, contract: str, function: str, *arguments) -> ContractRejected:
    """Submit; expect the contract to refuse with `code` and no block to be written."""
    height = chain.height()
    with pytest.raises(ContractRejected) as rejected:
        chain.submit(contract, function, *map(argument, arguments))
    assert rejected.value.code == code, rejected.value.message
    assert chain.height() == height
    return rejected.value


def absent(chain, patient: str, consent_id: str) -> None:
    with pytest.raises(ContractRejected) as missing:
        chain.evaluate("consent", "ReadConsent", patient, consent_id)
    assert missing.value.code == "not_found"


def status(chain, consent_id: str, patient: int = 1) -> str:
    return chain.evaluate("consent", "ReadConsent", pseudonym(patient), consent_id).json()["status"]


def keys(chain, patient: str) -> dict:
    return chain.evaluate("patient_keys", "ReadPatientKeys", patient).json()


def pack(passkey: SoftwarePasskey, auth_data: bytes, client_data: bytes) -> dict:
    """An assertion of `passkey`'s credential: the authenticator data and client data given, signed with its key."""
    return passkey.assertion(auth_data, client_data)


def forge(passkey, document, *, kind="webauthn.get", origin=None, rp_id="", flags=UP | UV, counter=None):
    """An assertion over `document` signed by `passkey`'s private key, with the parts an authenticator or a browser
    sets chosen here; the counter moves forward unless given."""
    if counter is None:
        passkey.counter += 1
        counter = passkey.counter
    client_data = bytes(CollectedClientData.create(kind, document_digest(document), origin or passkey.origin))
    rp_id_hash = hashlib.sha256((rp_id or passkey.rp_id).encode()).digest()
    return pack(passkey, bytes(AuthenticatorData.create(rp_id_hash, flags, counter)), client_data)


def tamper_auth_data(assertion: dict, change) -> dict:
    """The assertion with its authenticator data replaced by `change(bytes)`, its signature left as it was."""
    return {**assertion, "authenticator_data": b64url(change(websafe_decode(assertion["authenticator_data"])))}


def set_byte(index: int, value: int):
    """Authenticator data: rp_id_hash [0:32], flags [32], counter [33:37] (big-endian)."""
    return lambda data: data[:index] + bytes([value]) + data[index + 1 :]


def add_key_document(new: SoftwarePasskey, patient: str, **overrides) -> dict:
    return {**new.ledger_key(patient), "action": "add_patient_key", "issued_at": rfc3339(now()), **overrides}


def revoke_key_document(credential_id: str, patient: str) -> dict:
    return {
        "action": "revoke_patient_key",
        "patient_pseudonym": patient,
        "credential_id": credential_id,
        "issued_at": rfc3339(now()),
    }


def add_key(chain, patient: str, signer: SoftwarePasskey) -> SoftwarePasskey:
    """A new passkey for `patient`, added with `signer`'s signature."""
    new = SoftwarePasskey()
    document = add_key_document(new, patient)
    submit(chain, "patient_keys", "AddPatientKey", document, signer.sign(document))
    return new


def one_grant(patient: str, name: str = "c-1", **overrides) -> dict:
    return grant_document(patient, grant_terms(ident(name)), **overrides)


def grant_refused(chain, code: str, document: dict, signature) -> None:
    refused(chain, code, "consent", "GrantConsent", document, signature)
    for terms in document["grants"]:
        absent(chain, document["patient_pseudonym"], terms["consent_id"])


# --- a valid signed grant -----------------------------------------------------------------------------------------


def test_a_signed_grant_is_kept_with_its_signature_and_opens_the_gate(chain, passkeys, anchor):
    patient = pseudonym(1)
    anchor(ident("rec-1"), 1, digest(1))
    passkey = passkeys.of(patient)
    document = grant_document(patient, grant_terms(ident("c-1")), grant_terms(ident("c-2"), categories=["laboratory"]))
    signature = passkey.sign(document)

    granted = submit(chain, "consent", "GrantConsent", document, signature)

    document_sha256 = document_digest(document).hex()
    assert [c["consent_id"] for c in granted] == [ident("c-1"), ident("c-2")]
    assert {c["grant_signature"] for c in granted} == {document_sha256}
    assert chain.evaluate("consent", "ReadConsent", patient, ident("c-1")).json() == granted[0]
    kept = chain.evaluate("consent", "ReadConsentSignature", granted[0]["granted_tx_id"], document_sha256).json()
    assert kept == {**signature, "document": document, "document_sha256": document_sha256}
    # Anyone can verify the kept signature again, offline, with the key on the ledger (whose counter has moved on).
    (key,) = keys(chain, patient)["keys"]
    assert key["sign_count"] == passkey.counter == 1
    assertion = assertion_fields({name: kept[name] for name in signature})
    assert verify_assertion(assertion, document=kept["document"], key={**key, "sign_count": 0}) == 1
    with pytest.raises(SignatureRefused) as other:
        verify_assertion(assertion, document={**kept["document"], "grants": []}, key={**key, "sign_count": 0})
    assert other.value.code == "challenge_mismatch"

    answer = check(chain, [item(ident("rec-1"), digest(1))])
    assert (answer["results"][0]["decision"], answer["results"][0]["consent_id"]) == ("admit", ident("c-1"))


def test_read_consent_signature_of_an_unknown_hash_or_transaction_is_not_found(chain, grant):
    granted = grant(ident("c-1"), 1)
    for tx_id, document_sha256 in ((granted["granted_tx_id"], digest(1)), ("f" * 64, granted["grant_signature"])):
        with pytest.raises(ContractRejected) as missing:
            chain.evaluate("consent", "ReadConsentSignature", tx_id, document_sha256)
        assert missing.value.code == "not_found"


# --- grants refused -----------------------------------------------------------------------------------------------


def _without(name):
    return lambda passkey, document: {k: v for k, v in passkey.sign(document).items() if k != name}


def _with(name, value):
    return lambda passkey, document: {**passkey.sign(document), name: value}


@pytest.mark.parametrize(
    ("code", "make"),
    [
        pytest.param("signature_required", lambda passkey, document: "", id="empty-string"),
        pytest.param("signature_required", lambda passkey, document: {}, id="empty-object"),
        pytest.param(
            "signature_malformed",
            _with("credential_id", "not base64url!"),
            id="credential-id-not-base64url",
        ),
        pytest.param(
            "signature_malformed",
            _with("signature", "*** not base64url ***"),
            id="signature-not-base64url",
        ),
        pytest.param("signature_malformed", _without("client_data_json"), id="missing-client-data"),
        pytest.param("signature_malformed", _without("signature"), id="missing-signature"),
        pytest.param(
            "signature_malformed",
            _with("user_handle", "AAAA"),
            id="unknown-field",
        ),
        pytest.param(
            "signature_malformed",
            _with("client_data_json", b64url(b"not json")),
            id="client-data-not-json",
        ),
        pytest.param(
            "signature_malformed",
            lambda passkey, document: tamper_auth_data(passkey.sign(document), lambda data: data[:20]),
            id="authenticator-data-truncated",
        ),
        pytest.param(
            "challenge_mismatch",
            lambda passkey, document: passkey.sign({**document, "grants": []}),
            id="signed-another-document",
        ),
        pytest.param(
            "signature_invalid",
            lambda passkey, document: SoftwarePasskey(
                credential_id=passkey.credential_id, counter=passkey.counter
            ).sign(document),
            id="other-private-key-same-credential",
        ),
        pytest.param(
            "signature_invalid",
            lambda passkey, document: tamper_auth_data(passkey.sign(document), set_byte(36, 0x7F)),
            id="tampered-counter",
        ),
        pytest.param(
            "rp_mismatch",
            lambda passkey, document: tamper_auth_data(passkey.sign(document), set_byte(0, 0)),
            id="tampered-rp-id-hash",
        ),
        pytest.param(
            "user_not_verified",
            lambda passkey, document: tamper_auth_data(passkey.sign(document), set_byte(32, int(UP))),
            id="tampered-flags",
        ),
        pytest.param(
            "signature_invalid",
            lambda passkey, document: {
                **passkey.sign(document),
                "signature": passkey.sign({**document, "grants": []})["signature"],
            },
            id="signature-of-another-assertion",
        ),
        pytest.param(
            "not_an_assertion", lambda passkey, document: forge(passkey, document, kind="webauthn.create"), id="create"
        ),
        pytest.param(
            "origin_mismatch",
            lambda passkey, document: forge(passkey, document, origin="https://evil.example"),
            id="other-origin",
        ),
        pytest.param(
            "rp_mismatch", lambda passkey, document: forge(passkey, document, rp_id="evil.example"), id="other-rp-id"
        ),
        pytest.param("user_not_verified", lambda passkey, document: forge(passkey, document, flags=UP), id="not-uv"),
        pytest.param("user_not_verified", lambda passkey, document: forge(passkey, document, flags=UV), id="not-up"),
        pytest.param(
            "user_not_verified", lambda passkey, document: forge(passkey, document, flags=UP & UV), id="no-flags"
        ),
        pytest.param("unknown_key", lambda passkey, document: SoftwarePasskey().sign(document), id="never-enrolled"),
    ],
)
def test_a_grant_without_a_valid_signature_is_refused_and_writes_nothing(chain, passkeys, code, make):
    patient = pseudonym(1)
    passkey = passkeys.of(patient)
    document = one_grant(patient)
    grant_refused(chain, code, document, make(passkey, document))
    assert keys(chain, patient)["keys"][0]["sign_count"] == 0
    # The refusal cost the patient nothing: their passkey still signs.
    assert submit(chain, "consent", "GrantConsent", document, passkey.sign(document))[0]["status"] == "active"


@pytest.mark.parametrize("patient_has_a_key", [True, False], ids=["patient-enrolled", "patient-without-key"])
def test_the_platform_cannot_sign_with_a_passkey_it_enrolled_for_another_patient(chain, passkeys, patient_has_a_key):
    """The platform's ledger identity (the `chain` client) enrolled patient 2's passkey: a fresh, otherwise perfect
    assertion of it over patient 1's grant is another patient's signature."""
    if patient_has_a_key:
        passkeys.of(pseudonym(1))
    platform_held = passkeys.of(pseudonym(2))
    document = one_grant(pseudonym(1))
    grant_refused(chain, "foreign_key", document, platform_held.sign(document))


@pytest.mark.parametrize("minutes", [-20, 20], ids=["20-minutes-ago", "20-minutes-ahead"])
def test_a_grant_signed_outside_the_signature_window_is_stale(chain, passkeys, minutes):
    patient = pseudonym(1)
    document = one_grant(patient, issued_at=now() + timedelta(minutes=minutes))
    grant_refused(chain, "signature_stale", document, passkeys.of(patient).sign(document))


@pytest.mark.parametrize("again", ["same-signature", "re-signed"])
def test_a_signed_grant_is_accepted_once(chain, passkeys, again):
    patient = pseudonym(1)
    passkey = passkeys.of(patient)
    document = one_grant(patient)
    signature = passkey.sign(document)
    granted = submit(chain, "consent", "GrantConsent", document, signature)
    refused(
        chain,
        "replayed",
        "consent",
        "GrantConsent",
        document,
        signature if again == "same-signature" else passkey.sign(document),
    )
    assert chain.evaluate("consent", "ReadConsent", patient, ident("c-1")).json() == granted[0]
    assert keys(chain, patient)["keys"][0]["sign_count"] == 1


def test_an_assertion_whose_counter_does_not_move_forward_is_refused(chain, passkeys):
    patient = pseudonym(1)
    passkey = passkeys.of(patient)
    earlier, later = one_grant(patient, "c-earlier"), one_grant(patient, "c-later")
    earlier_signature, later_signature = passkey.sign(earlier), passkey.sign(later)  # counters 1, then 2
    submit(chain, "consent", "GrantConsent", later, later_signature)

    grant_refused(chain, "counter_regressed", earlier, earlier_signature)  # 1 after 2
    grant_refused(chain, "counter_regressed", earlier, forge(passkey, earlier, counter=2))  # 2 again
    grant_refused(chain, "counter_regressed", earlier, forge(passkey, earlier, counter=0))  # a counter gone to 0
    assert keys(chain, patient)["keys"][0]["sign_count"] == 2
    submit(chain, "consent", "GrantConsent", earlier, passkey.sign(earlier))  # counter 3: accepted
    assert keys(chain, patient)["keys"][0]["sign_count"] == 3


def test_an_authenticator_without_a_counter_signs_again_and_again(chain, passkeys):
    """Synced passkeys report counter 0 every time: nothing to compare, each document still signed once."""
    patient = pseudonym(1)
    passkey = passkeys.of(patient)
    for name in ("c-1", "c-2"):
        document = one_grant(patient, name)
        submit(chain, "consent", "GrantConsent", document, forge(passkey, document, counter=0))
    assert keys(chain, patient)["keys"][0]["sign_count"] == 0
    assert [status(chain, ident(name)) for name in ("c-1", "c-2")] == ["active", "active"]


# --- revocations --------------------------------------------------------------------------------------------------


@pytest.fixture
def granted(chain, passkeys) -> str:
    """Patient 1's consent c-1, granted with their signature; its id."""
    passkeys.grant(pseudonym(1), grant_terms(ident("c-1")))
    return ident("c-1")


@pytest.mark.parametrize(
    ("code", "signer"),
    [
        pytest.param("signature_required", None, id="unsigned"),
        pytest.param("foreign_key", 2, id="another-patients-passkey"),
    ],
)
def test_a_revocation_not_signed_by_the_patient_is_refused(chain, passkeys, granted, code, signer):
    document = revoke_document(granted, pseudonym(1))
    signature = "" if signer is None else passkeys.of(pseudonym(signer)).sign(document)
    refused(chain, code, "consent", "RevokeConsent", document, signature)
    assert status(chain, granted) == "active"


def test_a_revocation_naming_another_patient_is_not_found(chain, passkeys, granted):
    """Patient 2's own valid signature over a revocation of patient 1's consent revokes nothing."""
    document = revoke_document(granted, pseudonym(2))
    refused(chain, "not_found", "consent", "RevokeConsent", document, passkeys.of(pseudonym(2)).sign(document))
    assert status(chain, granted) == "active"


def test_a_signed_revocation_is_kept_with_its_signature(chain, passkeys, granted, anchor):
    anchor(ident("rec-1"), 1, digest(1))
    document = revoke_document(granted, pseudonym(1))
    signature = passkeys.of(pseudonym(1)).sign(document)
    revoked = submit(chain, "consent", "RevokeConsent", document, signature)
    document_sha256 = document_digest(document).hex()
    assert (revoked["status"], revoked["revoke_signature"]) == ("revoked", document_sha256)
    assert chain.evaluate("consent", "ReadConsent", pseudonym(1), granted).json() == revoked
    kept = chain.evaluate("consent", "ReadConsentSignature", revoked["revoked_tx_id"], document_sha256).json()
    assert kept == {**signature, "document": document, "document_sha256": document_sha256}
    assert check(chain, [item(ident("rec-1"), digest(1))])["results"][0]["reason"] == "consent_revoked"


# --- patients' keys -----------------------------------------------------------------------------------------------


def test_enrolment_is_refused_while_the_patient_holds_an_active_key(chain, passkeys):
    patient = pseudonym(1)
    passkeys.of(patient)
    before = keys(chain, patient)
    refused(chain, "keys_exist", "patient_keys", "EnrolPatientKey", SoftwarePasskey().ledger_key(patient))
    assert keys(chain, patient) == before


@pytest.mark.parametrize(
    ("code", "make"),
    [
        pytest.param("signature_required", lambda existing, new, document: "", id="unsigned"),
        pytest.param("unknown_key", lambda existing, new, document: new.sign(document), id="signed-by-the-new-key"),
        pytest.param(
            "challenge_mismatch",
            lambda existing, new, document: existing.sign({**document, "origin": "https://evil.example"}),
            id="signed-another-document",
        ),
        pytest.param(
            "signature_invalid",
            lambda existing, new, document: SoftwarePasskey(
                credential_id=existing.credential_id, counter=existing.counter
            ).sign(document),
            id="other-private-key-same-credential",
        ),
    ],
)
def test_adding_a_key_without_a_valid_signature_is_refused(chain, passkeys, code, make):
    patient = pseudonym(1)
    existing, new = passkeys.of(patient), SoftwarePasskey()
    before = keys(chain, patient)
    document = add_key_document(new, patient)
    refused(chain, code, "patient_keys", "AddPatientKey", document, make(existing, new, document))
    assert keys(chain, patient) == before


def test_a_key_added_with_the_patients_signature_signs_grants(chain, passkeys):
    patient = pseudonym(1)
    existing = passkeys.of(patient)
    new = add_key(chain, patient, existing)
    entry = keys(chain, patient)
    assert [(k["credential_id"], k["status"], k["added_by"]) for k in entry["keys"]] == [
        (existing.credential_id_text, "active", "enrolment"),
        (new.credential_id_text, "active", "patient"),
    ]
    assert entry["keys"][0]["sign_count"] == 1
    document = one_grant(patient)
    granted = submit(chain, "consent", "GrantConsent", document, new.sign(document))
    assert granted[0]["grant_signature"] == document_digest(document).hex()


def test_the_last_key_cannot_be_revoked(chain, passkeys):
    patient = pseudonym(1)
    passkey = passkeys.of(patient)
    before = keys(chain, patient)
    document = revoke_key_document(passkey.credential_id_text, patient)
    refused(chain, "last_key", "patient_keys", "RevokePatientKey", document, passkey.sign(document))
    assert keys(chain, patient) == before


def test_after_a_rotation_the_old_key_signs_nothing(chain, passkeys):
    patient = pseudonym(1)
    old = passkeys.of(patient)
    new = add_key(chain, patient, old)
    document = revoke_key_document(old.credential_id_text, patient)
    entry = submit(chain, "patient_keys", "RevokePatientKey", document, new.sign(document))
    assert [(k["status"], k["revoked_by"]) for k in entry["keys"]] == [("revoked", "patient"), ("active", None)]
    assert keys(chain, patient) == entry

    document = one_grant(patient, "c-old")
    grant_refused(chain, "key_revoked", document, old.sign(document))
    add = add_key_document(SoftwarePasskey(), patient)
    refused(chain, "key_revoked", "patient_keys", "AddPatientKey", add, old.sign(add))
    document = one_grant(patient, "c-new")
    submit(chain, "consent", "GrantConsent", document, new.sign(document))


def test_a_credential_belongs_to_one_patient(chain, passkeys):
    taken = passkeys.of(pseudonym(1))
    refused(chain, "credential_taken", "patient_keys", "EnrolPatientKey", taken.ledger_key(pseudonym(2)))
    assert keys(chain, pseudonym(2))["keys"] == []
    existing = passkeys.of(pseudonym(3))
    document = add_key_document(taken, pseudonym(3))
    refused(chain, "credential_taken", "patient_keys", "AddPatientKey", document, existing.sign(document))
    assert [k["credential_id"] for k in keys(chain, pseudonym(3))["keys"]] == [existing.credential_id_text]


def recovery(patient: str, **overrides) -> dict:
    return {
        "recovery_id": ident("recovery-1"),
        "patient_pseudonym": patient,
        "custodian": "custodian:dpo",
        "reason": "lost_all_passkeys",
        **overrides,
    }


def test_a_recovery_revokes_every_key_for_good_and_lets_a_new_one_be_enrolled(chain, passkeys):
    patient = pseudonym(1)
    first = passkeys.of(patient)
    second = add_key(chain, patient, first)

    entry = submit(chain, "patient_keys", "RecoverPatientKeys", recovery(patient, reason="device_stolen"))

    (kept,) = entry["recoveries"]
    assert {k: kept[k] for k in ("recovery_id", "custodian", "reason", "revoked")} == {
        "recovery_id": ident("recovery-1"),
        "custodian": "custodian:dpo",
        "reason": "device_stolen",
        "revoked": [first.credential_id_text, second.credential_id_text],
    }
    assert kept["tx_id"]
    assert kept["at"]
    assert [(k["status"], k["revoked_by"], k["revoked_tx_id"]) for k in entry["keys"]] == [
        ("revoked", "recovery", kept["tx_id"])
    ] * 2
    assert keys(chain, patient) == entry
    for number, old in enumerate((first, second)):
        document = one_grant(patient, f"c-old-{number}")
        grant_refused(chain, "key_revoked", document, old.sign(document))

    fresh = SoftwarePasskey()
    enrolled = submit(chain, "patient_keys", "EnrolPatientKey", fresh.ledger_key(patient))
    assert enrolled["recoveries"] == [kept]
    assert [k["status"] for k in enrolled["keys"]] == ["revoked", "revoked", "active"]
    document = one_grant(patient)
    submit(chain, "consent", "GrantConsent", document, fresh.sign(document))
    refused(chain, "already_exists", "patient_keys", "RecoverPatientKeys", recovery(patient))


@pytest.mark.parametrize(
    "overrides",
    [{"reason": "forgot_pin"}, {"custodian": "the-platform"}, {"recovery_id": ""}],
    ids=["unknown-reason", "not-a-custodian", "no-recovery-id"],
)
def test_a_malformed_recovery_is_refused(chain, passkeys, overrides):
    patient = pseudonym(1)
    passkeys.of(patient)
    before = keys(chain, patient)
    refused(chain, "invalid_argument", "patient_keys", "RecoverPatientKeys", recovery(patient, **overrides))
    assert keys(chain, patient) == before


def _es384_key() -> bytes:
    numbers = ec.generate_private_key(ec.SECP384R1()).public_key().public_numbers()
    return cbor.encode({1: 2, 3: -35, -1: 2, -2: numbers.x.to_bytes(48, "big"), -3: numbers.y.to_bytes(48, "big")})


@pytest.mark.parametrize(
    "public_key",
    [
        pytest.param(_es384_key(), id="es384"),
        pytest.param(cbor.encode({1: 2, 3: -999}), id="unknown-algorithm"),
        pytest.param(b"\xff\x00garbage", id="garbage-cbor"),
        pytest.param(cbor.encode([1, 2, 3]), id="cbor-not-a-map"),
        pytest.param(cbor.encode({1: 2}), id="no-algorithm"),
        pytest.param(cbor.encode({1: 2, 3: -7}), id="es256-without-coordinates"),
    ],
)
def test_an_unsupported_public_key_is_refused(chain, public_key):
    patient = pseudonym(1)
    key = {**SoftwarePasskey().ledger_key(patient), "public_key": b64url(public_key)}
    refused(chain, "unsupported_key", "patient_keys", "EnrolPatientKey", key)
    assert keys(chain, patient)["keys"] == []


def test_only_the_organisation_that_enrolled_a_patient_may_reset_their_passkeys(tmp_path):
    """Another organisation on the channel cannot revoke a hospital's patient's passkeys (and then enrol one it
    holds to sign for them): RecoverPatientKeys is the enrolling MSP's only."""
    from health_platform.software_passkey import SoftwarePasskey
    from ledger.contracts import Contracts
    from ledger.embedded import EmbeddedLedger

    path = tmp_path / "chain.sqlite3"
    hospital, research = EmbeddedLedger(path, creator="HospitalMSP"), EmbeddedLedger(path, creator="ResearchMSP")
    try:
        patient = pseudonym(1)
        Contracts(hospital).enrol_patient_key(SoftwarePasskey().ledger_key(patient))
        reset = {"recovery_id": "rcv-1", "pseudonym": patient, "custodian": "custodian:1", "reason": "device_stolen"}
        with pytest.raises(ContractRejected) as refused:
            Contracts(research).recover_patient_keys(**reset)
        assert refused.value.code == "forbidden"
        assert len(Contracts(research).patient_keys(patient).active) == 1
        assert Contracts(hospital).recover_patient_keys(**reset).active == []
    finally:
        hospital.close()
        research.close()


@pytest.mark.parametrize("signature", ["[]", "null", '"x"', "{not json"])
def test_a_signature_that_is_not_a_json_object_is_malformed(chain, passkeys, signature):
    document = grant_document(pseudonym(1), grant_terms(ident("c-1")))
    passkeys.of(pseudonym(1))
    height = chain.height()
    with pytest.raises(ContractRejected) as refused:
        chain.submit("consent", "GrantConsent", json.dumps(document), signature)
    assert refused.value.code == "signature_malformed"
    assert chain.height() == height
