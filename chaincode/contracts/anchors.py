"""Record anchors: the SHA-256 of each record version's canonical form, per record id.

A record's versions are anchored in order (1, 2, 3...); anchoring the same version with the same
hash again is a no-op, so a client may retry safely. The patient pseudonym of a record never
changes. No health data: ids, a pseudonym, a hash and a version number.

A version may also anchor `features_sha256`: the salted SHA-256 of the model features kept from it at
ingest (records.features), so that an analysis can use those features without reopening the record and
the gate still compares what it uses with the ledger. The salt is sealed with the features: the hash of a
few measurements cannot be guessed from the ledger.
"""

from typing import Any

from chaincode import state, validation
from chaincode.errors import ContractError, InvalidArgument, NotFound, VersionOutOfOrder
from chaincode.library import Contract, TransactionContext

ANCHOR = "anchor"
MODEL = "model"
_ANCHOR_FIELDS = {"record_id", "patient_pseudonym", "sha256", "version"}
_ANCHOR_OPTIONAL = {"features_sha256"}


def anchor_key(stub: Any, record_id: str) -> str:
    return stub.create_composite_key(ANCHOR, [record_id])


class AnchorContract(Contract):
    Name = "anchors"

    def get_evaluate_transactions(self) -> list[str]:
        return ["ReadAnchor", "AnchorHistory", "ReadModelAnchor"]

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
