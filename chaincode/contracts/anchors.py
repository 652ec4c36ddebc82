"""Record anchors: the SHA-256 of each record version's canonical form, per record id.

A record's versions are anchored in order (1, 2, 3...); anchoring the same version with the same
hash again is a no-op, so a client may retry safely. The patient pseudonym of a record never
changes. No health data: ids, a pseudonym, a hash and a version number.

A version may also anchor `features_sha256`: the salted SHA-256 of the model features kept from it at
ingest (records.features), so that an analysis can use those features without reopening the record and
the gate still compares what it uses with the ledger. The salt is sealed with the features: the hash of a
few measurements cannot be guessed from the ledger.

Erasure (EraseRecords): when a patient's data is erased, one transaction marks every anchor of theirs erased (the
anchor keeps its pseudonym and hashes, and gains the erasure id and time) and stores the erasure entry: the
pseudonym, the record ids, their count and `records_sha256`, the SHA-256 of the sorted record ids joined by
newlines, which the patient's receipt carries. Nothing new about the patient is written. An erased anchor takes
no further version, and the gate refuses its record (reason erased).
"""

import hashlib
from typing import Any

from chaincode import state, validation
from chaincode.errors import AlreadyExists, ContractError, InvalidArgument, NotFound, VersionOutOfOrder
from chaincode.library import Contract, TransactionContext

ANCHOR = "anchor"
MODEL = "model"
ERASURE = "erasure"
_ANCHOR_FIELDS = {"record_id", "patient_pseudonym", "sha256", "version"}
_ANCHOR_OPTIONAL = {"features_sha256"}
_ERASURE_FIELDS = {"erasure_id", "patient_pseudonym", "record_ids"}


def anchor_key(stub: Any, record_id: str) -> str:
    return stub.create_composite_key(ANCHOR, [record_id])


class AnchorContract(Contract):
    Name = "anchors"

    def get_evaluate_transactions(self) -> list[str]:
        return ["ReadAnchor", "AnchorHistory", "ReadModelAnchor", "ReadErasure"]

    async def AnchorRecord(
        self, ctx: TransactionContext, record_id: str, patient_pseudonym: str, sha256: str, version: str
    ) -> str:
        """Anchor one record version."""
        anchor = await _anchor(
            ctx.get_stub(),
            {"record_id": record_id, "patient_pseudonym": patient_pseudonym, "sha256": sha256, "version": version},
            "anchor",
        )
        return state.dumps(anchor).decode()

    async def AnchorRecords(self, ctx: TransactionContext, anchors_json: str) -> str:
        """Anchor many record versions in one transaction (at most one version per record)."""
        items = validation.batch(anchors_json, "anchors")
        seen: set[str] = set()
        anchored = [await _anchor(ctx.get_stub(), item, f"anchors[{index}]", seen) for index, item in enumerate(items)]
        return state.dumps(anchored).decode()

    async def ReadAnchor(self, ctx: TransactionContext, record_id: str) -> str:
        """The latest anchored version of a record."""
        validation.identifier(record_id, "record_id")
        anchor = await state.get_json(ctx.get_stub(), anchor_key(ctx.get_stub(), record_id))
        if anchor is None:
            raise NotFound("no anchor for this record_id")
        return state.dumps(anchor).decode()

    async def AnchorHistory(self, ctx: TransactionContext, record_id: str) -> str:
        """Every anchored version of a record, oldest first, with its transaction."""
        validation.identifier(record_id, "record_id")
        return state.dumps(await state.history(ctx.get_stub(), anchor_key(ctx.get_stub(), record_id))).decode()

    async def EraseRecords(self, ctx: TransactionContext, erasure_json: str) -> str:
        """Mark every named anchor of one patient erased and store the erasure entry, in one transaction.

        erasure_json: {erasure_id, patient_pseudonym, record_ids: [record id, ...]} (the list may be empty: a
        patient none of whose records was anchored). Each record must be anchored for this patient. The same
        erasure again answers its entry unchanged (a client may retry); an erasure id reused for another
        patient or other records is refused (already_exists)."""
        stub = ctx.get_stub()
        erasure = validation.json_argument(erasure_json, "erasure", dict)
        validation.only_fields(erasure, "erasure", _ERASURE_FIELDS, _ERASURE_FIELDS)
        erasure_id = validation.identifier(erasure["erasure_id"], "erasure.erasure_id")
        pseudonym = validation.pseudonym(erasure["patient_pseudonym"], "erasure.patient_pseudonym")
        record_ids = erasure["record_ids"]
        if not isinstance(record_ids, list) or len(record_ids) > validation.MAX_BATCH_ITEMS:
            raise InvalidArgument(f"erasure.record_ids must be a JSON array of at most {validation.MAX_BATCH_ITEMS}")
        record_ids = [validation.identifier(r, f"erasure.record_ids[{i}]") for i, r in enumerate(record_ids)]
        if len(set(record_ids)) != len(record_ids):
            raise InvalidArgument("erasure.record_ids must not repeat a record")
        record_ids.sort()
        key = stub.create_composite_key(ERASURE, [erasure_id])
        current = await state.get_json(stub, key)
        if current is not None:
            if current["patient_pseudonym"] != pseudonym or current["record_ids"] != record_ids:
                raise AlreadyExists("this erasure_id names another erasure")
            return state.dumps(current).decode()
        moment = state.tx_time_text(stub)
        anchors = await state.get_json_many(stub, [anchor_key(stub, record_id) for record_id in record_ids])
        for index, (record_id, anchor) in enumerate(zip(record_ids, anchors, strict=True)):
            if anchor is None or anchor["patient_pseudonym"] != pseudonym:
                raise InvalidArgument(f"erasure.record_ids[{index}] is not anchored for this patient")
            if not anchor.get("erased"):
                anchor.update(erased=True, erasure_id=erasure_id, erased_at=moment)
                await state.put_json(stub, anchor_key(stub, record_id), anchor)
        entry = {
            "erasure_id": erasure_id,
            "patient_pseudonym": pseudonym,
            "record_ids": record_ids,
            "count": len(record_ids),
            "records_sha256": records_digest(record_ids),
            "erased_at": moment,
            "tx_id": stub.get_txid(),
        }
        await state.put_json(stub, key, entry)
        return state.dumps(entry).decode()

    async def ReadErasure(self, ctx: TransactionContext, erasure_id: str) -> str:
        """An erasure entry, as EraseRecords stored it."""
        stub = ctx.get_stub()
        validation.identifier(erasure_id, "erasure_id")
        entry = await state.get_json(stub, stub.create_composite_key(ERASURE, [erasure_id]))
        if entry is None:
            raise NotFound("no erasure with this erasure_id")
        return state.dumps(entry).decode()

    async def AnchorModel(self, ctx: TransactionContext, model_name: str, model_version: str, sha256: str) -> str:
        """Anchor the SHA-256 of a diagnostic model's weights. A model version's hash never changes:
        anchoring the same hash again is a no-op, another hash is refused."""
        stub = ctx.get_stub()
        validation.identifier(model_name, "model_name")
        validation.identifier(model_version, "model_version")
        validation.sha256(sha256)
        key = stub.create_composite_key(MODEL, [model_name, model_version])
        current = await state.get_json(stub, key)
        if current is not None:
            if current["sha256"] != sha256:
                raise ContractError("this model version is anchored with another hash", code="version_exists")
            return state.dumps(current).decode()
        anchor = {
            "model_name": model_name,
            "model_version": model_version,
            "sha256": sha256,
            "anchored_at": state.tx_time_text(stub),
            "tx_id": stub.get_txid(),
        }
        await state.put_json(stub, key, anchor)
        return state.dumps(anchor).decode()

    async def ReadModelAnchor(self, ctx: TransactionContext, model_name: str, model_version: str) -> str:
        stub = ctx.get_stub()
        validation.identifier(model_name, "model_name")
        validation.identifier(model_version, "model_version")
        anchor = await state.get_json(stub, stub.create_composite_key(MODEL, [model_name, model_version]))
        if anchor is None:
            raise NotFound("no anchor for this model version")
        return state.dumps(anchor).decode()


async def _anchor(stub: Any, item: dict[str, Any], field: str, seen: set[str] | None = None) -> dict[str, Any]:
    validation.only_fields(item, field, _ANCHOR_FIELDS | _ANCHOR_OPTIONAL, _ANCHOR_FIELDS)
    record_id = validation.identifier(item["record_id"], f"{field}.record_id")
    if seen is not None:
        if record_id in seen:
            raise InvalidArgument(f"{field}.record_id repeats an earlier record in the batch")
        seen.add(record_id)
    pseudonym = validation.pseudonym(item["patient_pseudonym"], f"{field}.patient_pseudonym")
    digest = validation.sha256(item["sha256"], f"{field}.sha256")
    version = validation.positive_int(item["version"], f"{field}.version")
    features = item.get("features_sha256")
    if features is not None:
        features = validation.sha256(features, f"{field}.features_sha256")

    key = anchor_key(stub, record_id)
    current = await state.get_json(stub, key)
    if current is not None:
        if current.get("erased"):
            raise ContractError(f"{field}.record_id names an erased record", code="erased")
        if current["patient_pseudonym"] != pseudonym:
            raise InvalidArgument(f"{field}.patient_pseudonym differs from the record's anchored patient")
        if current["version"] == version:
            if current["sha256"] == digest and current.get("features_sha256") == features:
                return current  # a retry of a committed anchor: nothing to write
            raise ContractError(
                f"{field}: version {version} is already anchored with another hash", code="version_exists"
            )
    expected = 1 if current is None else current["version"] + 1
    if version != expected:
        raise VersionOutOfOrder(f"{field}.version must be {expected}")

    anchor = {
        "record_id": record_id,
        "patient_pseudonym": pseudonym,
        "sha256": digest,
        "version": version,
        **({"features_sha256": features} if features is not None else {}),
        "anchored_at": state.tx_time_text(stub),
        "tx_id": stub.get_txid(),
    }
    await state.put_json(stub, key, anchor)
    return anchor


def records_digest(record_ids: list[str]) -> str:
    """The SHA-256 (hex) of the sorted record ids joined by newlines: what an erasure entry and its receipt carry."""
    return hashlib.sha256("\n".join(sorted(record_ids)).encode()).hexdigest()
