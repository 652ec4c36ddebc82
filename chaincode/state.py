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
# sweep(): how many wanted intervals one range read covers at most, and how many keys it may read per wanted
# interval (plus one page's worth) before the rest of its intervals are read one by one. With Fabric's shim
# answering 100 keys per message, a dense sweep costs one round trip per 100 keys instead of one per key; a
# sparse one costs at most a few pages more than point reads. One range read never reads more than
# SWEEP_SEGMENT * SWEEP_KEYS_PER_INTERVAL + SWEEP_GRACE keys (~4,200), far below the peer's totalQueryLimit
# (100,000 by default), so a range that ends has truly ended.
SWEEP_SEGMENT = 250
SWEEP_KEYS_PER_INTERVAL = 16
SWEEP_GRACE = 200

Interval = tuple[str, str]
Entries = list[tuple[str, bytes]]


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


async def read_many(stub: Any, keys: list[str]) -> list[Any]:
    """get_json_many for READ-ONLY calls (never in a transaction that writes): where the stub can read ranges page
    by page (Fabric's shim), the keys are read by sweep(), so a batch of keys that lie close together in the
    key space costs a few range reads instead of a read each. Its read set holds ranges, which a transaction
    that writes must not take on (another transaction's insert into a range would invalidate it)."""
    if not hasattr(stub, "range_first"):
        return await get_json_many(stub, keys)
    unique = list(dict.fromkeys(keys))
    found = dict(zip(unique, await sweep(stub, [(key, key + "\x00") for key in unique]), strict=True))
    return [orjson.loads(found[key][0][1]) if found[key] else None for key in keys]


async def scan_many(stub: Any, object_type: str, first_attributes: list[str]) -> list[Entries]:
    """scan_prefix for each of `first_attributes` (one attribute each), in order; READ-ONLY calls only, as
    read_many: swept where the stub can, one scan each otherwise."""
    prefixes = [stub.create_composite_key(object_type, [attribute]) for attribute in first_attributes]
    if not hasattr(stub, "range_first"):
        return [[item async for item in scan(stub, prefix, prefix + MAX_RUNE)] for prefix in prefixes]
    unique = list(dict.fromkeys(prefixes))
    found = dict(zip(unique, await sweep(stub, [(prefix, prefix + MAX_RUNE) for prefix in unique]), strict=True))
    return [list(found[prefix]) for prefix in prefixes]


async def sweep(stub: Any, intervals: list[Interval]) -> list[Entries]:
    """Every (key, value) in each half-open interval [start, end), per interval, in key order. The intervals
    must not overlap. They are visited in key order, SWEEP_SEGMENT at a time, each segment by ONE range read
    from its first start to its last end; when that range turns out sparse (more than SWEEP_KEYS_PER_INTERVAL
    keys read per interval passed), the read is closed and the segment's remaining intervals are read one by
    one. The stub provides range_first(start, end) -> (entries, has_more, query id), range_next(query id) ->
    (entries, has_more) and range_close(query id)."""
    found: list[Entries] = [[] for _ in intervals]
    order = sorted(range(len(intervals)), key=lambda index: intervals[index][0])
    for first in range(0, len(order), SWEEP_SEGMENT):
        segment = order[first : first + SWEEP_SEGMENT]
        done = await _sweep_segment(stub, [intervals[index] for index in segment], [found[index] for index in segment])
        for index in segment[done:]:
            found[index] = [item async for item in scan(stub, *intervals[index])]
    return found


async def _sweep_segment(stub: Any, intervals: list[Interval], found: list[Entries]) -> int:
    """Read `intervals` (sorted) with one range read into `found`; the number of intervals read in full (all of
    them, unless the range proved sparse and was closed early: then the rest are left empty)."""
    entries, more, query_id = await stub.range_first(intervals[0][0], intervals[-1][1])
    position = read = 0
    while True:
        for key, value in entries:
            read += 1
            while position < len(intervals) and key >= intervals[position][1]:
                position += 1
            if position < len(intervals) and key >= intervals[position][0]:
                found[position].append((key, value))
        if not more:
            return len(intervals)
        if read > SWEEP_KEYS_PER_INTERVAL * position + SWEEP_GRACE:
            await stub.range_close(query_id)
            found[position].clear()  # read in part: read again whole, with the rest
            return position
        entries, more = await stub.range_next(query_id)


async def put_json(stub: Any, key: str, value: Any) -> None:
    await stub.put_state(key, dumps(value))


async def scan(stub: Any, start_key: str, end_key: str) -> AsyncIterator[tuple[str, bytes]]:
    """Every (key, value) in [start_key, end_key), in key order. Where the stub reads ranges page by page
    (Fabric's shim), the range is never closed by a call of its own: the peer closes it when it answers the last
    page (has_more false), and closes whatever a transaction left open when the transaction completes. Closing it
    again, as the library's iterator does, would cost a round trip on the chaincode stream for nothing."""
    if not hasattr(stub, "range_first"):
        async for kv in await stub.get_state_by_range(start_key, end_key):
            yield kv.key, kv.value
        return
    entries, more, query_id = await stub.range_first(start_key, end_key)
    while True:
        for entry in entries:
            yield entry
        if not more:
            return
        entries, more = await stub.range_next(query_id)


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


class StagedWrites:
    """The stub for one item of a batch transaction (GrantConsents, EnrolPatientKeys), its writes held back until
    commit(): an item refused half way writes nothing. Reads see committed state, not the held writes, so a batch
    holds one item per patient (each reads and writes its own patient's entry only) and checks itself whatever else
    two of its items could both claim."""

    def __init__(self, stub: Any):
        self._stub = stub
        self._writes: dict[str, bytes] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stub, name)

    async def put_state(self, key: str, value: bytes | str) -> None:
        self._writes[key] = value.encode() if isinstance(value, str) else bytes(value)

    async def delete_state(self, key: str) -> None:
        raise NotImplementedError("a batch item deletes nothing")

    async def commit(self) -> None:
        for key, value in self._writes.items():
            await self._stub.put_state(key, value)
