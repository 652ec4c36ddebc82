"""The grantee directory's status: whether a clinician or an organisation may still use consents.

A grantee is known on the ledger by its opaque id only ("clinician:<id>", "org:<slug>"); names stay in
the platform's database. Each entry is `grantee/<grantee>`: {grantee, status, registered_by, registered_at,
changed_at, tx_id}. Entries are never deleted, so a grantee once deactivated stays known as inactive.

Who may write: the organisation (MSP) of the client that registered a grantee owns its entry, and only a
client of that MSP may change its status. On this platform that client is the custodian's ledger identity;
another organisation on the channel cannot deactivate (or reactivate) a hospital's clinicians.

A grantee the ledger does not know is treated as active by the gate (chaincode.contracts.consent): consents
written before the directory was on the ledger name grantees that were never registered, and refusing them
all at once would stop every running analysis on upgrade. This admits nothing the ledger ever said was
inactive: SetGranteeStatus on an unknown grantee registers it with the status given, and no entry is
ever removed.
"""

from typing import Any

import orjson

from chaincode import state, validation
from chaincode.errors import ContractError
from chaincode.library import Contract, TransactionContext

GRANTEE = "grantee"
GRANTEE_STATUSES = ("active", "inactive")


def grantee_key(stub: Any, grantee: str) -> str:
    return stub.create_composite_key(GRANTEE, [grantee])


async def grantee_status(stub: Any, grantee: str) -> str:
    """The grantee's status for the gate: its entry's, or "active" for a grantee never registered."""
    entry = await state.get_json(stub, grantee_key(stub, grantee))
    return "active" if entry is None else str(entry["status"])


def creator_msp(stub: Any) -> str:
    creator = stub.get_creator() or {}
    msp = creator.get("mspid") if isinstance(creator, dict) else None
    if not msp:
        raise ContractError("the caller's organisation is unknown", code="forbidden")
    return str(msp)


class DirectoryContract(Contract):
    Name = "directory"

    def get_evaluate_transactions(self) -> list[str]:
        return ["ReadGrantee", "GranteeHistory", "ListGrantees"]

    async def RegisterGrantee(self, ctx: TransactionContext, grantee: str) -> str:
        """Register a grantee as active. A grantee already registered is answered as it is (a retry, or a
        grantee reactivated or deactivated since, whose status registering again must not change)."""
        stub = ctx.get_stub()
        validation.grantee(grantee)
        current = await state.get_json(stub, grantee_key(stub, grantee))
        if current is not None:
            return state.dumps(current).decode()
        return state.dumps(await _write(stub, grantee, "active", registered=None)).decode()

    async def SetGranteeStatus(self, ctx: TransactionContext, grantee: str, status: str) -> str:
        """Activate or deactivate a grantee (registering it if unknown). The same status again writes
        nothing. Refused (forbidden) to a client of another organisation than the one that registered it."""
        stub = ctx.get_stub()
        validation.grantee(grantee)
        validation.code(status, "status", GRANTEE_STATUSES)
        current = await state.get_json(stub, grantee_key(stub, grantee))
        if current is not None:
            if current["registered_by"] != creator_msp(stub):
                raise ContractError("only the organisation that registered a grantee may change it", code="forbidden")
            if current["status"] == status:
                return state.dumps(current).decode()
        return state.dumps(await _write(stub, grantee, status, registered=current)).decode()

    async def ReadGrantee(self, ctx: TransactionContext, grantee: str) -> str:
        validation.grantee(grantee)
        entry = await state.get_json(ctx.get_stub(), grantee_key(ctx.get_stub(), grantee))
        if entry is None:
            raise ContractError("no such grantee on the ledger", code="not_found")
        return state.dumps(entry).decode()

    async def GranteeHistory(self, ctx: TransactionContext, grantee: str) -> str:
        """Every committed change of a grantee's entry (registration, deactivations...), oldest first."""
        validation.grantee(grantee)
        return state.dumps(await state.history(ctx.get_stub(), grantee_key(ctx.get_stub(), grantee))).decode()

    async def ListGrantees(self, ctx: TransactionContext) -> str:
        """Every registered grantee's entry, ordered by grantee id (for rebuilding the platform's mirror)."""
        stub = ctx.get_stub()
        entries = []
        async for _key, value in state.scan_prefix(stub, GRANTEE, []):
            entries.append(orjson.loads(value))
        return state.dumps(entries).decode()


async def _write(stub: Any, grantee: str, status: str, *, registered: dict[str, Any] | None) -> dict[str, Any]:
    now = state.tx_time_text(stub)
    entry = {
        "grantee": grantee,
        "status": status,
        "registered_by": registered["registered_by"] if registered else creator_msp(stub),
        "registered_at": registered["registered_at"] if registered else now,
        "changed_at": now,
        "tx_id": stub.get_txid(),
    }
    await state.put_json(stub, grantee_key(stub, grantee), entry)
    return entry
