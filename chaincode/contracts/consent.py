"""Consent: grants and revocations, and the access gate that reads them.

A consent lets one grantee (a clinician or an organisation) use one patient's records of the
listed data categories for the listed purposes between valid_from (inclusive) and valid_until
(exclusive). Revocation is final and idempotent. CheckAccessBatch answers, for thousands of
records in one read-only call, whether a consent covers each and whether its hash matches its
anchor: the analytics gate asks it once per batch, at the moment the batch runs.

Only the patient can change their consents: a grant or revocation is a document the patient signed with one
of their passkeys (chaincode.contracts.patient_keys, chaincode.webauthn), verified here before anything is
written. The platform that submits it cannot make one. Consents written before signatures were required carry
no grant_signature: they stay valid, and the portal and exports mark them "not patient-signed".

Layout: a patient's consents are kept whole in the patient's entry (chaincode.contracts.patients), beside the
passkeys that sign their changes, so a grant or a revocation reads one entry and writes it back, and the gate reads
a patient's consents with one read. A consent's identity is (patient, consent_id); its history is the history of
the entry's versions that changed it. The signed documents a transaction applied are kept once for the transaction,
under its id: a consent names the transaction (granted_tx_id, revoked_tx_id) and the document's hash
(grant_signature, revoke_signature), which ReadConsentSignature takes. A replayed grant document shows in the
patient's consents: a consent with its id names the document's hash (`replayed`); an applied revocation answers
as it stands. Earlier layouts are still read (chaincode.contracts.patients).
"""

from typing import Any

from chaincode import state, validation
from chaincode.contracts.anchors import anchor_key
from chaincode.contracts.directory import grantee_status
from chaincode.contracts.oversight import emergency_decision, emergency_of, refused_categories
from chaincode.contracts.patient_keys import check_patient_signature, signature_record, signed_document
from chaincode.contracts.patients import (
    consents_of_many,
    earlier_consent_history,
    entry_history,
    entry_of,
    keep_signed,
    put_entry,
    signed_document_of,
)
from chaincode.errors import AlreadyExists, ContractError, InvalidArgument, NotFound
from chaincode.library import Contract, TransactionContext
from chaincode.vocabulary import CATEGORIES, EMERGENCY, EMERGENCY_PURPOSES, PURPOSES

MAX_GRANT_BATCH = 64  # signed grant documents in one GrantConsents transaction
_GRANT_FIELDS = {"consent_id", "grantee", "purposes", "categories", "valid_from", "valid_until"}
_GRANT_DOCUMENT_FIELDS = {"action", "patient_pseudonym", "issued_at", "grants"}
_REVOKE_DOCUMENT_FIELDS = {"action", "patient_pseudonym", "consent_id", "issued_at"}
_CHECK_FIELDS = {"grantee", "organisation", "purpose", "at", "items", "declaration_id"}
_ITEM_FIELDS = {"record_id", "category", "sha256"}
_ITEM_OPTIONAL = {"features_sha256"}


class ConsentContract(Contract):
    Name = "consent"

    def get_evaluate_transactions(self) -> list[str]:
        return ["ReadConsent", "ConsentHistory", "ListConsentsForPatient", "CheckAccessBatch", "ReadConsentSignature"]

    async def GrantConsent(self, ctx: TransactionContext, document_json: str, signature_json: str) -> str:
        """Record the consents of a document the patient signed with one of their passkeys: all or none.

        document = {action: "grant_consent", patient_pseudonym, issued_at, grants: [{consent_id, grantee, purposes,
        categories, valid_from, valid_until}, ...]}. Refused (nothing written) if the signature does not verify
        (chaincode.webauthn's codes), the same signed document comes again (replayed), an id exists, or a period
        is empty or over. Each consent keeps the hash of the document that granted it; the document and its
        signature are kept with the transaction (ReadConsentSignature), for anyone to verify again.
        """
        stub = ctx.get_stub()
        document = signed_document(document_json, "document", _GRANT_DOCUMENT_FIELDS, "grant_consent")
        signed: list[dict[str, Any]] = []
        consents = await _grant(stub, document, signature_json, signed)
        await keep_signed(stub, signed)
        return state.dumps(consents).decode()

    async def GrantConsents(self, ctx: TransactionContext, requests_json: str) -> str:
        """GrantConsent for several patients' signed documents in ONE transaction (the platform gathers the grants
        its patients sign at the same moment): requests = [{document, signature}, ...] (JSON strings, as
        GrantConsent takes them), 1 to MAX_GRANT_BATCH, each of a different patient. Each document stands alone:
        checked in full before anything of it is written, and refused alone, with its own code, without failing the
        others. Answers, in order, {"consents": [...]} or {"error": {"code", "message"}} per request."""
        stub = ctx.get_stub()
        requests = validation.object_list(
            validation.json_argument(requests_json, "requests", list), "requests", MAX_GRANT_BATCH
        )
        patients: set[str] = set()
        signed: list[dict[str, Any]] = []
        results: list[dict[str, Any]] = []
        for index, request in enumerate(requests):
            field = f"requests[{index}]"
            validation.only_fields(request, field, {"document", "signature"}, {"document", "signature"})
            staged = state.StagedWrites(stub)
            try:
                document = signed_document(
                    request["document"], f"{field}.document", _GRANT_DOCUMENT_FIELDS, "grant_consent"
                )
                if document["patient_pseudonym"] in patients:
                    raise InvalidArgument(f"{field}.document's patient has another document in this batch")
                consents = await _grant(staged, document, request["signature"], signed)
            except ContractError as error:
                results.append({"error": {"code": error.code, "message": error.message}})
                continue
            patients.add(document["patient_pseudonym"])
            await staged.commit()
            results.append({"consents": consents})
        await keep_signed(stub, signed)
        return state.dumps(results).decode()

    async def RevokeConsent(self, ctx: TransactionContext, document_json: str, signature_json: str) -> str:
        """Revoke a consent, as its patient signed: document = {action: "revoke_consent", patient_pseudonym,
        consent_id, issued_at}. Revoking a revoked consent changes nothing and answers the same."""
        stub = ctx.get_stub()
        document = signed_document(document_json, "document", _REVOKE_DOCUMENT_FIELDS, "revoke_consent")
        consent_id = validation.identifier(document["consent_id"], "document.consent_id")
        entry = await entry_of(stub, document["patient_pseudonym"])
        consent = _find(entry["consents"], consent_id)
        if consent is None:
            raise NotFound("no consent with this consent_id")
        if consent["status"] == "revoked":  # this document again, or another: nothing changes, nothing is checked
            return state.dumps(consent).decode()
        record = signature_record(signature_json, document)
        await check_patient_signature(stub, entry, document, signature_json)
        consent.update(
            status="revoked",
            revoked_at=state.tx_time_text(stub),
            revoked_tx_id=stub.get_txid(),
            revoke_signature=record["document_sha256"],
        )
        await put_entry(stub, entry)
        await keep_signed(stub, [{**record, "document": document}])
        return state.dumps(consent).decode()

    async def ReadConsentSignature(self, ctx: TransactionContext, tx_id: str, document_sha256: str) -> str:
        """A signed document (grant or revocation) and the patient's assertion over it, as transaction `tx_id`
        applied it: a consent names both (granted_tx_id and grant_signature, revoked_tx_id and revoke_signature)."""
        stub = ctx.get_stub()
        found = await signed_document_of(
            stub, validation.identifier(tx_id, "tx_id"), validation.sha256(document_sha256, "document_sha256")
        )
        if found is None:
            raise NotFound("no signed document with this hash in this transaction")
        return state.dumps(found).decode()

    async def ReadConsent(self, ctx: TransactionContext, patient_pseudonym: str, consent_id: str) -> str:
        stub = ctx.get_stub()
        pseudonym = validation.pseudonym(patient_pseudonym)
        consent = _find(await _consents_of(stub, pseudonym), validation.identifier(consent_id, "consent_id"))
        if consent is None:
            raise NotFound("the patient has no consent with this consent_id")
        return state.dumps(consent).decode()

    async def ConsentHistory(self, ctx: TransactionContext, patient_pseudonym: str, consent_id: str) -> str:
        """Every committed change of a patient's consent (grant, revocation), oldest first: {tx_id, timestamp,
        is_delete, value (the consent)}. The versions of the patient's entry that changed it, after the changes it
        had in the first layout if it was written then."""
        stub = ctx.get_stub()
        pseudonym = validation.pseudonym(patient_pseudonym)
        validation.identifier(consent_id, "consent_id")
        earlier = await earlier_consent_history(stub, pseudonym, consent_id)
        changes = await entry_history(
            stub, pseudonym, lambda entry: _find(entry.get("consents", []), consent_id), earlier
        )
        return state.dumps(changes).decode()

    async def ListConsentsForPatient(self, ctx: TransactionContext, patient_pseudonym: str) -> str:
        validation.pseudonym(patient_pseudonym)
        return state.dumps(await _consents_of(ctx.get_stub(), patient_pseudonym)).decode()

    async def CheckAccessBatch(self, ctx: TransactionContext, request_json: str) -> str:
        """Admit or refuse each record for (grantee, purpose) at time `at`.

        Per record, in this order: no_anchor, erased (the patient's data was erased: EraseRecords), hash_mismatch
        (the caller's recomputed hash differs
        from the anchored latest version; or the item names the hash of the features it will use, and the
        anchor holds another, or none), then the patient's consents naming this grantee (or its
        organisation) and purpose: admit if one is unrevoked, in its period and covers the
        category; otherwise category_not_covered, consent_revoked, consent_expired or no_consent,
        the first that applies. A consent whose period has not begun counts as no consent.

        The directory's status of the grantee and its organisation is read once per batch (two reads at
        most): a consent naming an inactive grantee admits nothing, and a record only such a consent
        would have admitted is refused grantee_inactive; a requester who is inactive is refused
        grantee_inactive for every record whose anchor checks out, whatever its organisation's consents.

        Purpose emergency (break-the-glass) reads no consent: the request names its declaration_id, which admits
        the records of its patient to the clinician who declared it while it lasts, except the categories the
        patient forbids emergency access to; otherwise no_emergency, emergency_expired or emergency_refused.
        """
        stub = ctx.get_stub()
        request = validation.json_argument(request_json, "request", dict)
        validation.only_fields(request, "request", _CHECK_FIELDS, _CHECK_FIELDS - {"organisation", "declaration_id"})
        requester = validation.grantee(request["grantee"], "request.grantee")
        grantees = {requester}
        if request.get("organisation"):
            grantees.add(validation.grantee(request["organisation"], "request.organisation"))
        inactive = frozenset(
            [grantee for grantee in sorted(grantees) if await grantee_status(stub, grantee) != "active"]
        )
        purpose = validation.purpose(request["purpose"], "request.purpose", EMERGENCY_PURPOSES)
        if (purpose == EMERGENCY) != bool(request.get("declaration_id")):
            raise InvalidArgument(f"request.declaration_id is required for purpose {EMERGENCY}, and only for it")
        declaration = None
        if purpose == EMERGENCY:
            declaration_id = validation.identifier(request["declaration_id"], "request.declaration_id")
            declaration = await emergency_of(stub, declaration_id)
        at = validation.timestamp(request["at"], "request.at")
        moment = validation.format_timestamp(at)
        items = validation.object_list(request["items"], "request.items")

        asked = [_checked_item(item, f"request.items[{index}]") for index, item in enumerate(items)]
        seen: set[str] = set()
        for index, (record_id, _, _, _) in enumerate(asked):
            if record_id in seen:
                raise InvalidArgument(f"request.items[{index}].record_id repeats an earlier record in the batch")
            seen.add(record_id)
        # The state the batch needs, read in as few calls as the peer allows: every anchor, then the consents of
        # every patient whose anchor checks out (not for break-the-glass, which reads the patient's refusals).
        anchors = await state.read_many(stub, [anchor_key(stub, record_id) for record_id, _, _, _ in asked])
        intact = [
            anchor is not None and _anchor_holds(anchor, digest, features)
            for anchor, (_, _, digest, features) in zip(anchors, asked, strict=True)
        ]
        consents_by_patient: dict[str, list[dict[str, Any]]] = {}
        if purpose != EMERGENCY and requester not in inactive:
            patients = list(dict.fromkeys(a["patient_pseudonym"] for a, ok in zip(anchors, intact, strict=True) if ok))
            consents_by_patient = await consents_of_many(stub, patients)
        refusals: dict[str, frozenset[str]] = {}
        results = []
        for (record_id, category, _, _), anchor, holds in zip(asked, anchors, intact, strict=True):
            result: dict[str, Any] = {
                "record_id": record_id,
                "decision": "refuse",
                "reason": None,
                "consent_id": None,
                "patient_pseudonym": None,
            }
            if anchor is None:
                result["reason"] = "no_anchor"
            else:
                pseudonym = result["patient_pseudonym"] = anchor["patient_pseudonym"]
                if anchor.get("erased"):
                    result["reason"] = "erased"
                elif not holds:
                    result["reason"] = "hash_mismatch"
                else:
                    reason: str | None = "grantee_inactive"
                    consent_id: str | None = None
                    if purpose == EMERGENCY:
                        if pseudonym not in refusals:
                            refusals[pseudonym] = await refused_categories(stub, pseudonym)
                        reason = emergency_decision(
                            declaration, requester, pseudonym, moment, category, refusals[pseudonym]
                        )
                        if reason is None and requester in inactive:
                            reason = "grantee_inactive"
                    elif requester not in inactive:
                        reason, consent_id = _decide(
                            consents_by_patient[pseudonym], grantees, purpose, category, moment, inactive
                        )
                    result.update(reason=reason, consent_id=consent_id)
                    if reason is None:
                        result["decision"] = "admit"
            results.append(result)
        return state.dumps(
            {
                "at": moment,
                "grantee": request["grantee"],
                "purpose": purpose,
                "results": results,
            }
        ).decode()


def _checked_item(item: Any, field: str) -> tuple[str, str, str, str | None]:
    """(record id, category, sha256, features_sha256 or None) of one item of CheckAccessBatch, validated."""
    validation.only_fields(item, field, _ITEM_FIELDS | _ITEM_OPTIONAL, _ITEM_FIELDS)
    features = item.get("features_sha256")
    return (
        validation.identifier(item["record_id"], f"{field}.record_id"),
        validation.code(item["category"], f"{field}.category", CATEGORIES),
        validation.sha256(item["sha256"], f"{field}.sha256"),
        None if features is None else validation.sha256(features, f"{field}.features_sha256"),
    )


def _anchor_holds(anchor: dict[str, Any], digest: str, features: str | None) -> bool:
    """The record's hash is its anchor's; and the features' too, when the caller uses the features kept at ingest.
    An erased record's anchor holds nothing."""
    if anchor.get("erased"):
        return False
    return anchor["sha256"] == digest and (features is None or anchor.get("features_sha256") == features)


async def _consents_of(stub: Any, pseudonym: str) -> list[dict[str, Any]]:
    """A patient's consents, ordered by consent_id."""
    return list((await entry_of(stub, pseudonym))["consents"])


def _find(consents: list[dict[str, Any]], consent_id: str) -> dict[str, Any] | None:
    return next((consent for consent in consents if consent["consent_id"] == consent_id), None)


def _new_consent(
    stub: Any, grant: dict[str, Any], field: str, held: dict[str, dict[str, Any]], pseudonym: str, digest: str
) -> dict[str, Any]:
    """A consent as GrantConsent stores it, from one of the document's grants (signed document `digest`),
    checked against the patient's consents `held`; not yet written. Its id taken by this very document means the
    document came again: replayed."""
    validation.only_fields(grant, field, _GRANT_FIELDS, _GRANT_FIELDS)
    consent_id = validation.identifier(grant["consent_id"], f"{field}.consent_id")
    valid_from = validation.timestamp(grant["valid_from"], f"{field}.valid_from")
    valid_until = validation.timestamp(grant["valid_until"], f"{field}.valid_until")
    if valid_until <= valid_from:
        raise InvalidArgument(f"{field}.valid_until must be later than {field}.valid_from")
    if valid_until <= state.tx_time(stub):
        raise InvalidArgument(f"{field}.valid_until is in the past")
    existing = held.get(consent_id)
    if existing is not None:
        if existing.get("grant_signature") == digest:
            raise AlreadyExists("this signed document was submitted before", code="replayed")
        raise AlreadyExists("the patient has a consent with this consent_id")
    return {
        "consent_id": consent_id,
        "patient_pseudonym": pseudonym,
        "grantee": validation.grantee(grant["grantee"], f"{field}.grantee"),
        "purposes": validation.code_list(grant["purposes"], f"{field}.purposes", PURPOSES, validation.purpose),
        "categories": validation.code_list(grant["categories"], f"{field}.categories", CATEGORIES),
        "valid_from": validation.format_timestamp(valid_from),
        "valid_until": validation.format_timestamp(valid_until),
        "status": "active",
        "granted_at": state.tx_time_text(stub),
        "granted_tx_id": stub.get_txid(),
        "revoked_at": None,
        "revoked_tx_id": None,
        "grant_signature": digest,
    }


async def _grant(
    stub: Any, document: dict[str, Any], signature_json: Any, signed: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The consents of a grant document, its signature checked; written through `stub` into the patient's entry.
    The signed document is added to `signed`, for the caller to keep once for the transaction (keep_signed)."""
    grants = validation.object_list(document["grants"], "document.grants", validation.MAX_CODES)
    pseudonym = document["patient_pseudonym"]
    entry = await entry_of(stub, pseudonym)
    record = signature_record(signature_json, document)
    held = {consent["consent_id"]: consent for consent in entry["consents"]}
    consents = [
        _new_consent(stub, grant, f"document.grants[{i}]", held, pseudonym, record["document_sha256"])
        for i, grant in enumerate(grants)
    ]
    if len({c["consent_id"] for c in consents}) != len(consents):
        raise InvalidArgument("document.grants repeat a consent_id")
    await check_patient_signature(stub, entry, document, signature_json)
    held.update({consent["consent_id"]: consent for consent in consents})
    entry["consents"] = [held[consent_id] for consent_id in sorted(held)]
    await put_entry(stub, entry)
    signed.append({**record, "document": document})
    return consents


def _decide(
    consents: list[dict[str, Any]],
    grantees: set[str],
    purpose: str,
    category: str,
    moment: str,
    inactive: frozenset[str] = frozenset(),
) -> tuple[str | None, str | None]:
    """(None, consent_id) to admit, or (reason, None) to refuse, at `moment` (format_timestamp's text).

    Consents naming a grantee in `inactive` admit nothing: when one of them is all that would have
    admitted the record, the reason is grantee_inactive.

    Stored periods are written by GrantConsent in one fixed-width UTC format, so they compare as text in
    time order: no parsing per record.
    """
    if inactive:
        reason, consent_id = _decide(consents, grantees - inactive, purpose, category, moment)
        if reason is None:
            return reason, consent_id
        all_reason, _ = _decide(consents, grantees, purpose, category, moment)
        return ("grantee_inactive" if all_reason is None else all_reason), None
    relevant = [c for c in consents if c["grantee"] in grantees and purpose in c["purposes"]]
    in_period = [c for c in relevant if c["status"] == "active" and c["valid_from"] <= moment < c["valid_until"]]
    covering = sorted(c["consent_id"] for c in in_period if category in c["categories"])
    if covering:
        return None, covering[0]
    if in_period:
        return "category_not_covered", None
    if any(c["status"] == "revoked" for c in relevant):
        return "consent_revoked", None
    if any(c["valid_until"] <= moment for c in relevant):
        return "consent_expired", None
    return "no_consent", None
