"""World-state helpers shared by the contracts: JSON values, composite-key scans, transaction time.

Values are stored as canonical JSON (sorted keys, no spaces) so that every endorsing peer writes
byte-identical values. orjson writes it: for the values contracts store (strings, integers, booleans,
null, lists, objects) its bytes equal json.dumps(sort_keys=True, separators=(",", ":"),
ensure_ascii=False), which wrote the state before it (tests/chaincode/test_state.py holds it to that).

Reads see committed state only, as on Fabric: a contract must not expect to read its own writes
within a transaction.
"""

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import orjson

from chaincode.validation import format_timestamp

INDEX_MARKER = b"\x00"  # Fabric treats an empty value as a delete, so index entries hold one byte.
MAX_RUNE = "\U0010ffff"


def dumps(value: Any) -> bytes:
    """Raises orjson.JSONEncodeError (a TypeError) for what state must not hold: integers beyond 64 bits
    (orjson would read them back as floats), lone surrogates, keys that are not strings."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


async def get_json(stub: Any, key: str) -> Any | None:
    raw = await stub.get_state(key)
    return orjson.loads(raw) if raw else None


async def get_json_many(stub: Any, keys: list[str]) -> list[Any]:
    """get_json for each of `keys`, in order: in a few reads where the stub offers get_states (the embedded
    ledger), one read per key otherwise (Fabric's shim). The read set is the same either way."""
    if hasattr(stub, "get_states"):
        raws = await stub.get_states(keys)
    else:
        raws = [await stub.get_state(key) for key in keys]
    return [orjson.loads(raw) if raw else None for raw in raws]


async def put_json(stub: Any, key: str, value: Any) -> None:
    await stub.put_state(key, dumps(value))


async def scan(stub: Any, start_key: str, end_key: str) -> AsyncIterator[tuple[str, bytes]]:
    iterator = await stub.get_state_by_range(start_key, end_key)
    async for kv in iterator:
        yield kv.key, kv.value


async def scan_prefix(stub: Any, object_type: str, attributes: list[str]) -> AsyncIterator[tuple[str, bytes]]:
    prefix = stub.create_composite_key(object_type, attributes)
    async for item in scan(stub, prefix, prefix + MAX_RUNE):
        yield item


async def history(stub: Any, key: str) -> list[dict[str, Any]]:
    """Every committed modification of `key`, oldest first (Fabric's history iterator gives newest first)."""
    entries = []
    iterator = await stub.get_history_for_key(key)
    async for modification in iterator:
        entries.append(
            {
                "tx_id": modification.tx_id,
                "timestamp": format_timestamp(_from_proto(modification.timestamp)),
                "is_delete": bool(modification.is_delete),
                "value": None if modification.is_delete else orjson.loads(modification.value),
            }
        )
    entries.reverse()
    return entries


def tx_time(stub: Any) -> datetime:
    """The transaction's timestamp, set by the client and identical on every endorser."""
    return _from_proto(stub.get_tx_timestamp())


def tx_time_text(stub: Any) -> str:
    return format_timestamp(tx_time(stub))


def _from_proto(timestamp: Any) -> datetime:
    return datetime.fromtimestamp(timestamp.seconds + timestamp.nanos / 1e9, tz=UTC)
