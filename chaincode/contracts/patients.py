"""Each patient's entry on the ledger: their passkeys and their consents, in one state entry.

`patient_keys/<pseudonym>` = {patient_pseudonym, keys, recoveries, custodian_msp, consents}: the keys and
recoveries are chaincode.contracts.patient_keys', the consents chaincode.contracts.consent's (whole, in consent_id
order). A signed consent change needs the keys that check the signature and the consents it changes; on Fabric v2.5
every state call is a round trip on the chaincode stream, answered by each endorsing peer, so keeping both in one
entry makes a grant or a revocation one read and one write of that entry. The signed documents of a transaction
are written once for the whole transaction (signed_documents/<tx id>: keep_signed), and the gate reads a
patient's consents with the same one read.

A consent is therefore the patient's: its identity on the ledger is (patient, consent_id).

Earlier layouts are still read, so nothing written before is lost. Consents were first kept as `consent/<id>`,
found through the index `consent_by_patient/<patient>/<id>`; then whole in `patient_consents/<patient>`; their
signed documents under `consent_signature/<document hash>`. An entry without a `consents` field (keys enrolled
before) or no entry at all is completed from them when read, and the entry's next write holds the list; from then
on the entry alone counts. On a ledger that holds no consent of the earlier layouts at all (every ledger started
with this one), two range reads tell so, and a patient without an entry has no consents: nothing more is read.
"""

from collections.abc import Callable
from typing import Any

from chaincode import state

PATIENT_KEYS = "patient_keys"
SIGNED_DOCUMENTS = "signed_documents"
# Earlier layouts, read only.
CONSENT = "consent"
CONSENT_BY_PATIENT = "consent_by_patient"
PATIENT_CONSENTS = "patient_consents"
CONSENT_SIGNATURE = "consent_signature"


def entry_key(stub: Any, pseudonym: str) -> str:
    return stub.create_composite_key(PATIENT_KEYS, [pseudonym])


async def entry_of(stub: Any, pseudonym: str) -> dict[str, Any]:
    """The patient's entry, completed from the earlier layouts if it holds no consents yet; a new one (no keys, no
    recoveries) for a patient the ledger has no entry for."""
    entry = await state.get_json(stub, entry_key(stub, pseudonym))
    entry = entry or {"patient_pseudonym": pseudonym, "keys": [], "recoveries": []}
    if "consents" not in entry:
        entry["consents"] = await _earlier_consents(stub, pseudonym) if await _earlier_layouts_hold(stub) else []
    return entry


async def put_entry(stub: Any, entry: dict[str, Any]) -> None:
    await state.put_json(stub, entry_key(stub, entry["patient_pseudonym"]), entry)


async def entry_history(
    stub: Any,
    pseudonym: str,
    view: Callable[[dict[str, Any]], Any],
    earlier: list[dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """The committed changes of one part of the patient's entry, oldest first, after `earlier`: each version of the
    entry seen through `view` (None: the part is not there), kept when it differs from the change before. The
    entry is written by every change of its keys and of each consent: this is the history of one of them."""
    changes = list(earlier or [])
    for change in await state.history(stub, entry_key(stub, pseudonym)):
        seen = None if change["value"] is None else view(change["value"])
        if seen is not None and (not changes or seen != changes[-1]["value"]):
            changes.append({**change, "value": seen})
    return changes


async def consents_of_many(stub: Any, pseudonyms: list[str]) -> dict[str, list[dict[str, Any]]]:
    """Each patient's consents, for a READ-ONLY call (state.read_many): the entries read together, then the earlier
    layouts of the patients whose entry holds no consents, each swept together (most such patients have none)."""
    entries = await state.read_many(stub, [entry_key(stub, pseudonym) for pseudonym in pseudonyms])
    consents = {
        pseudonym: list(entry["consents"])
        for pseudonym, entry in zip(pseudonyms, entries, strict=True)
        if entry and "consents" in entry
    }
    unkept = [pseudonym for pseudonym in pseudonyms if pseudonym not in consents]
    if unkept and not await _earlier_layouts_hold(stub):
        return {**consents, **{pseudonym: [] for pseudonym in unkept}}
    listed = await state.read_many(stub, [stub.create_composite_key(PATIENT_CONSENTS, [p]) for p in unkept])
    consents.update(
        {pseudonym: list(entry["consents"]) for pseudonym, entry in zip(unkept, listed, strict=True) if entry}
    )
    unlisted = [pseudonym for pseudonym in unkept if pseudonym not in consents]
    indexed = await state.scan_many(stub, CONSENT_BY_PATIENT, unlisted)
    named = [[stub.split_composite_key(key)[1][1] for key, _ in entries] for entries in indexed]
    values = iter(await state.read_many(stub, [_consent_key(stub, consent_id) for ids in named for consent_id in ids]))
    for pseudonym, ids in zip(unlisted, named, strict=True):
        consents[pseudonym] = [consent for consent in (next(values) for _ in ids) if consent is not None]
    return consents


async def keep_signed(stub: Any, documents: list[dict[str, Any]]) -> None:
    """Keep the signed documents a transaction applied (signature_record's, each with its document), under the
    transaction's id: one write, however many patients signed. Nothing to keep writes nothing."""
    if documents:
        key = stub.create_composite_key(SIGNED_DOCUMENTS, [stub.get_txid()])
        await state.put_json(stub, key, {"documents": {d["document_sha256"]: d for d in documents}})


async def signed_document_of(stub: Any, tx_id: str, document_sha256: str) -> dict[str, Any] | None:
    """The signed document with this hash that transaction `tx_id` applied; or, signed before documents were kept
    by transaction, the one kept under its hash."""
    kept = await state.get_json(stub, stub.create_composite_key(SIGNED_DOCUMENTS, [tx_id]))
    if kept is not None and document_sha256 in kept["documents"]:
        return dict(kept["documents"][document_sha256])
    earlier = await state.get_json(stub, stub.create_composite_key(CONSENT_SIGNATURE, [document_sha256]))
    return None if earlier is None else dict(earlier)


async def earlier_consent_history(stub: Any, pseudonym: str, consent_id: str) -> list[dict[str, Any]]:
    """The changes of a consent written as `consent/<id>` (the first layout), if it was this patient's."""
    changes = await state.history(stub, _consent_key(stub, consent_id))
    return [change for change in changes if (change["value"] or {}).get("patient_pseudonym") == pseudonym]


async def _earlier_layouts_hold(stub: Any) -> bool:
    """Whether the ledger holds any consent of the earlier layouts (the whole lists, or the first layout's index):
    one range read each, of their first key only."""
    for object_type in (PATIENT_CONSENTS, CONSENT_BY_PATIENT):
        prefix = stub.create_composite_key(object_type, [])
        async for _ in state.scan(stub, prefix, prefix + state.MAX_RUNE):
            return True
    return False


async def _earlier_consents(stub: Any, pseudonym: str) -> list[dict[str, Any]]:
    listed = await state.get_json(stub, stub.create_composite_key(PATIENT_CONSENTS, [pseudonym]))
    if listed is not None:
        return list(listed["consents"])
    consents = []
    async for key, _ in state.scan_prefix(stub, CONSENT_BY_PATIENT, [pseudonym]):
        consent = await state.get_json(stub, _consent_key(stub, stub.split_composite_key(key)[1][1]))
        if consent is not None:
            consents.append(consent)
    return sorted(consents, key=lambda consent: str(consent["consent_id"]))


def _consent_key(stub: Any, consent_id: str) -> str:
    return stub.create_composite_key(CONSENT, [consent_id])
