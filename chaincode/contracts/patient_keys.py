"""Patients' passkeys on the ledger: the public keys whose signatures alone can change a patient's consents.

Each patient's keys are in the patient's entry (chaincode.contracts.patients), `patient_keys/<pseudonym>`:
{patient_pseudonym, keys: [key, ...], recoveries: [recovery, ...], consents (the consent contract's)},
key = {credential_id, public_key (COSE, base64url), rp_id_hash, origin, status (active | revoked), sign_count,
added_at, added_tx_id, added_by (enrolment | patient | recovery... see below), revoked_at, revoked_tx_id,
revoked_by}. `patient_key_credential/<credential_id>` names the patient a credential
belongs to: a credential is one patient's only, and a signature with another patient's passkey is foreign_key.

Who may write what:
- EnrolPatientKey: the platform, for a patient with no active key: the first passkey at enrolment, or the
  first after a recovery. Trust on first use, and on the ledger for the patient to see.
- AddPatientKey / RevokePatientKey: only with a signature by one of the patient's active keys over the exact
  document (chaincode.webauthn). A second device, or a rotation (add the new, revoke the old). The last active
  key cannot be revoked: a patient without a passkey could not change a consent.
- RecoverPatientKeys: the custodian, for a patient who lost every passkey; only a client of the organisation (MSP)
  that enrolled the patient's first key, so no other organisation on the channel can reset them. Every active key
  is revoked and the recovery (who, why, when) is kept in the entry forever; the portal shows every recovery to the
  patient. The patient then enrols a new passkey. Never silent: the recovery is the ledger's, not the database's.
"""

import re
from typing import Any

from chaincode import state, validation, webauthn
from chaincode.contracts.directory import creator_msp
from chaincode.contracts.patients import entry_history, entry_of, put_entry
from chaincode.errors import AlreadyExists, ContractError, InvalidArgument, NotFound
from chaincode.library import Contract, TransactionContext

PATIENT_KEY_CREDENTIAL = "patient_key_credential"
RECOVERY_REASONS = ("lost_all_passkeys", "device_stolen", "identity_reverified")
_KEY_FIELDS = {"patient_pseudonym", "credential_id", "public_key", "rp_id_hash", "origin"}
_SIGNED_KEY_FIELDS = _KEY_FIELDS | {"action", "issued_at"}
_REVOCATION_FIELDS = {"action", "patient_pseudonym", "credential_id", "issued_at"}
_RECOVERY_FIELDS = {"recovery_id", "patient_pseudonym", "custodian", "reason"}
# How far a signed document's issued_at may lie from the transaction's time: long enough for a patient to find
# their passkey, short enough that a signed document kept aside cannot be played much later.
SIGNATURE_WINDOW_SECONDS = 15 * 60
MAX_ENROL_BATCH = 64  # keys in one EnrolPatientKeys transaction
_CUSTODIAN = re.compile(r"custodian:[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def credential_key(stub: Any, credential_id: str) -> str:
    return stub.create_composite_key(PATIENT_KEY_CREDENTIAL, [credential_id])


def signed_document(document_json: str, field: str, fields: set[str], action: str) -> dict[str, Any]:
    """A document to be signed: JSON with exactly `fields`, its action `action`."""
    document = validation.json_argument(document_json, field, dict)
    validation.only_fields(document, field, fields, fields)
    if document["action"] != action:
        raise InvalidArgument(f"{field}.action must be {action}")
    validation.pseudonym(document["patient_pseudonym"], f"{field}.patient_pseudonym")
    validation.timestamp(document["issued_at"], f"{field}.issued_at")
    return document


async def check_patient_signature(
    stub: Any, entry: dict[str, Any], document: dict[str, Any], signature_json: str
) -> dict[str, Any]:
    """Verify that one of the patient's active keys signed `document` (which names the patient) within the
    signature window; move that key's counter forward in `entry` (the caller writes the entry). Returns the key."""
    assertion = webauthn.assertion_fields(_signature_argument(signature_json))
    issued = validation.timestamp(document["issued_at"], "issued_at")
    if abs((state.tx_time(stub) - issued).total_seconds()) > SIGNATURE_WINDOW_SECONDS:
        raise webauthn.SignatureRefused("the document was signed too long ago (or ahead)", code="signature_stale")
    key = next((k for k in entry["keys"] if k["credential_id"] == assertion["credential_id"]), None)
    if key is None:
        owner = await stub.get_state(credential_key(stub, assertion["credential_id"]))
        code = "foreign_key" if owner else "unknown_key"
        raise webauthn.SignatureRefused("the signing passkey is not one of the patient's keys", code=code)
    if key["status"] != "active":
        raise webauthn.SignatureRefused("the signing passkey was revoked", code="key_revoked")
    key["sign_count"] = webauthn.verify_assertion(assertion, document=document, key=key)
    return key


def signature_record(assertion_json: str, document: dict[str, Any]) -> dict[str, Any]:
    """What the ledger keeps of a verified signature: the assertion as given and the document's hash."""
    return {
        **webauthn.assertion_fields(_signature_argument(assertion_json)),
        "document_sha256": webauthn.document_digest(document).hex(),
    }


def _signature_argument(signature_json: str) -> Any:
    if signature_json in (None, ""):
        return None
    try:
        return validation.json_argument(signature_json, "signature", dict)
    except InvalidArgument as malformed:
        raise webauthn.SignatureRefused(malformed.message, code="signature_malformed") from None


class PatientKeyContract(Contract):
    Name = "patient_keys"

    def get_evaluate_transactions(self) -> list[str]:
        return ["ReadPatientKeys", "PatientKeysHistory"]

    async def EnrolPatientKey(self, ctx: TransactionContext, key_json: str) -> str:
        """The platform enrols a patient's passkey: only while the patient has no active key."""
        stub = ctx.get_stub()
        entry = await _enrol(stub, validation.json_argument(key_json, "key", dict), "key")
        return state.dumps(_keys_only(entry)).decode()

    async def EnrolPatientKeys(self, ctx: TransactionContext, keys_json: str) -> str:
        """EnrolPatientKey for several patients in ONE transaction (a hospital enrolling the patients it invites
        together): keys = [key, ...], 1 to MAX_ENROL_BATCH, each of a different patient and credential. Each key
        stands alone: checked in full before anything of it is written, and refused alone, with its own code,
        without failing the others. Answers, in order, {"entry": ...} or {"error": {"code", "message"}} per key."""
        stub = ctx.get_stub()
        keys = validation.object_list(validation.json_argument(keys_json, "keys", list), "keys", MAX_ENROL_BATCH)
        patients: set[str] = set()
        credentials: set[str] = set()
        results: list[dict[str, Any]] = []
        for index, document in enumerate(keys):
            field = f"keys[{index}]"
            staged = state.StagedWrites(stub)
            try:
                # Another key of this batch is not visible to the checks below (staged writes): refuse a second
                # key of the same patient, or of the same credential, as the ledger would once the first is written.
                if document.get("patient_pseudonym") in patients:
                    raise InvalidArgument(f"{field}'s patient has another key in this batch")
                if document.get("credential_id") in credentials:
                    raise AlreadyExists("this passkey belongs to another patient", code="credential_taken")
                entry = await _enrol(staged, document, field)
            except ContractError as error:
                results.append({"error": {"code": error.code, "message": error.message}})
                continue
            patients.add(entry["patient_pseudonym"])
            credentials.add(document["credential_id"])
            await staged.commit()
            results.append({"entry": _keys_only(entry)})
        return state.dumps(results).decode()

    async def AddPatientKey(self, ctx: TransactionContext, key_json: str, signature_json: str) -> str:
        """Add a passkey (a second device, or a rotation's new key), signed by one of the patient's active keys."""
        stub = ctx.get_stub()
        document = signed_document(key_json, "key", _SIGNED_KEY_FIELDS, "add_patient_key")
        entry = await entry_of(stub, document["patient_pseudonym"])
        await check_patient_signature(stub, entry, document, signature_json)
        await _add_key(stub, entry, document, added_by="patient")
        return state.dumps(_keys_only(entry)).decode()

    async def RevokePatientKey(self, ctx: TransactionContext, revocation_json: str, signature_json: str) -> str:
        """Revoke one of the patient's passkeys, signed by one of their active keys (it may be the same one)."""
        stub = ctx.get_stub()
        document = signed_document(revocation_json, "revocation", _REVOCATION_FIELDS, "revoke_patient_key")
        credential = webauthn.credential_id(document["credential_id"], "revocation.credential_id")
        entry = await entry_of(stub, document["patient_pseudonym"])
        target = next((k for k in entry["keys"] if k["credential_id"] == credential), None)
        if target is None:
            raise NotFound("the patient has no passkey with this credential_id")
        await check_patient_signature(stub, entry, document, signature_json)
        if target["status"] == "active":
            if sum(key["status"] == "active" for key in entry["keys"]) == 1:
                raise ContractError("the last passkey cannot be revoked: add another first", code="last_key")
            _revoke(stub, target, by="patient")
        await put_entry(stub, entry)
        return state.dumps(_keys_only(entry)).decode()

    async def RecoverPatientKeys(self, ctx: TransactionContext, recovery_json: str) -> str:
        """The custodian revokes every passkey of a patient who lost them all; kept in the entry for good."""
        stub = ctx.get_stub()
        document = validation.json_argument(recovery_json, "recovery", dict)
        validation.only_fields(document, "recovery", _RECOVERY_FIELDS, _RECOVERY_FIELDS)
        recovery_id = validation.identifier(document["recovery_id"], "recovery.recovery_id")
        custodian = validation.matching(_CUSTODIAN, document["custodian"], "recovery.custodian", "'custodian:<id>'")
        reason = validation.code(document["reason"], "recovery.reason", RECOVERY_REASONS)
        entry = await entry_of(stub, validation.pseudonym(document["patient_pseudonym"], "recovery.patient_pseudonym"))
        if entry.get("custodian_msp") not in (None, creator_msp(stub)):
            raise ContractError(
                "only the organisation that enrolled the patient may reset their passkeys", code="forbidden"
            )
        if any(r["recovery_id"] == recovery_id for r in entry["recoveries"]):
            raise AlreadyExists("a recovery with this recovery_id exists")
        revoked = [key["credential_id"] for key in entry["keys"] if key["status"] == "active"]
        for key in entry["keys"]:
            if key["status"] == "active":
                _revoke(stub, key, by="recovery")
        entry["recoveries"].append(
            {
                "recovery_id": recovery_id,
                "custodian": custodian,
                "reason": reason,
                "revoked": revoked,
                "at": state.tx_time_text(stub),
                "tx_id": stub.get_txid(),
            }
        )
        await put_entry(stub, entry)
        return state.dumps(_keys_only(entry)).decode()

    async def ReadPatientKeys(self, ctx: TransactionContext, patient_pseudonym: str) -> str:
        stub = ctx.get_stub()
        return state.dumps(_keys_only(await entry_of(stub, validation.pseudonym(patient_pseudonym)))).decode()

    async def PatientKeysHistory(self, ctx: TransactionContext, patient_pseudonym: str) -> str:
        """Every committed change of the patient's keys and recoveries, oldest first: the versions of the entry
        that changed them (a consent change writes the entry too, and is the consent's history)."""
        changes = await entry_history(ctx.get_stub(), validation.pseudonym(patient_pseudonym), _keys_only)
        return state.dumps(changes).decode()


async def _enrol(stub: Any, document: dict[str, Any], field: str) -> dict[str, Any]:
    """Enrol the key `document` for its patient, who must hold no active key. Returns the patient's entry."""
    validation.only_fields(document, field, _KEY_FIELDS, _KEY_FIELDS)
    entry = await entry_of(stub, validation.pseudonym(document["patient_pseudonym"], f"{field}.patient_pseudonym"))
    if any(key["status"] == "active" for key in entry["keys"]):
        raise ContractError(
            "the patient holds an active passkey: a new one is added with its signature", code="keys_exist"
        )
    entry.setdefault("custodian_msp", creator_msp(stub))
    await _add_key(stub, entry, document, added_by="enrolment")
    return entry


def _keys_only(entry: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in entry.items() if name != "consents"}


async def _add_key(stub: Any, entry: dict[str, Any], document: dict[str, Any], *, added_by: str) -> None:
    credential = webauthn.credential_id(document["credential_id"], "key.credential_id")
    if any(key["credential_id"] == credential for key in entry["keys"]):
        raise AlreadyExists("this passkey is on the ledger already", code="replayed")
    if await stub.get_state(credential_key(stub, credential)):
        raise AlreadyExists("this passkey belongs to another patient", code="credential_taken")
    rp_id_hash = validation.sha256(document["rp_id_hash"], "key.rp_id_hash")
    entry["keys"].append(
        {
            "credential_id": credential,
            "public_key": webauthn.public_key(document["public_key"], "key.public_key"),
            "rp_id_hash": rp_id_hash,
            "origin": webauthn.origin(document["origin"], "key.origin"),
            "status": "active",
            "sign_count": 0,
            "added_at": state.tx_time_text(stub),
            "added_tx_id": stub.get_txid(),
            "added_by": added_by,
            "revoked_at": None,
            "revoked_tx_id": None,
            "revoked_by": None,
        }
    )
    await put_entry(stub, entry)
    await stub.put_state(credential_key(stub, credential), entry["patient_pseudonym"].encode())


def _revoke(stub: Any, key: dict[str, Any], *, by: str) -> None:
    key.update(status="revoked", revoked_at=state.tx_time_text(stub), revoked_tx_id=stub.get_txid(), revoked_by=by)
