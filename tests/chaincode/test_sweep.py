"""chaincode.state.sweep: many keys read by range reads page by page, as the Fabric shim allows, with the same
answers as reading each key, and the number of peer round trips it saves (or the few it wastes when sparse).

The stand-in stub holds a sorted key space and answers range reads in pages like Fabric's peer (100 keys per
message unless told otherwise), counting every message a real peer would answer.
"""

import asyncio
import bisect
import itertools
import random

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chaincode import state


class RangeStub:
    """A sorted world state read through range_first/range_next/range_close and get_state, like the shim."""

    def __init__(self, values: dict[str, bytes], page: int = 100):
        self.keys = sorted(values)
        self.values = values
        self.page = page
        self.round_trips = 0
        self.closed = 0
        self.open: dict[str, list[str]] = {}
        self._ids = itertools.count()

    def create_composite_key(self, object_type: str, attributes: list[str]) -> str:
        return "\x00" + object_type + "\x00" + "".join(attribute + "\x00" for attribute in attributes)

    async def get_state(self, key: str) -> bytes:
        self.round_trips += 1
        return self.values.get(key, b"")

    async def get_state_by_range(self, start: str, end: str):
        self.round_trips += 1  # the library's iterator: counted as one round trip per page below
        entries, more, query_id = await self._first(start, end)
        stub = self

        class Iterator:
            def __aiter__(self):
                return self._all()

            async def _all(self):
                nonlocal entries, more
                while True:
                    for key, value in entries:
                        yield type("KV", (), {"key": key, "value": value})
                    if not more:
                        return
                    entries, more = await stub.range_next(query_id)

        return Iterator()

    async def _first(self, start: str, end: str):
        low, high = bisect.bisect_left(self.keys, start), bisect.bisect_left(self.keys, end)
        query_id = str(next(self._ids))
        self.open[query_id] = self.keys[low:high]
        entries, more = self._page(query_id)
        return entries, more, query_id

    async def range_first(self, start: str, end: str):
        self.round_trips += 1
        return await self._first(start, end)

    async def range_next(self, query_id: str):
        self.round_trips += 1
        return self._page(query_id)

    async def range_close(self, query_id: str) -> None:
        self.round_trips += 1
        self.closed += 1
        del self.open[query_id]

    def _page(self, query_id: str):
        keys = self.open[query_id]
        taken, self.open[query_id] = keys[: self.page], keys[self.page :]
        more = bool(self.open[query_id])
        if not more:
            del self.open[query_id]  # the peer cleans up an exhausted iterator by itself
        return [(key, self.values[key]) for key in taken], more


def anchor(number: int) -> str:
    return f"\x00anchor\x00rec-{number:07d}\x00"


def world(count: int) -> dict[str, bytes]:
    return {anchor(number): orjson.dumps({"n": number}) for number in range(count)}


def read(stub, keys):
    return asyncio.run(state.read_many(stub, keys))


def test_a_dense_batch_costs_one_round_trip_per_page_not_per_key():
    stub = RangeStub(world(10_000))
    keys = [anchor(number) for number in range(10_000)]
    random.Random(1).shuffle(keys)
    values = read(stub, keys)
    assert values == [orjson.loads(stub.values[key]) for key in keys]
    assert stub.round_trips <= 10_000 // 100 + 10_000 // state.SWEEP_SEGMENT
    assert not stub.open  # every range read ended or was closed


def test_a_sparse_batch_costs_at_most_a_few_pages_more_than_point_reads():
    stub = RangeStub(world(100_000))
    keys = [anchor(number) for number in range(0, 100_000, 997)]  # one key in a thousand
    assert read(stub, keys) == [{"n": number} for number in range(0, 100_000, 997)]
    segments = -(-len(keys) // state.SWEEP_SEGMENT)
    assert stub.round_trips <= len(keys) + segments * (2 + state.SWEEP_GRACE // 100 + 1)
    assert not stub.open


def test_absent_keys_read_as_none_and_repeated_keys_each_get_their_value():
    stub = RangeStub(world(50))
    keys = [anchor(3), anchor(999), anchor(3), anchor(49), "\x00anchor\x00zzz\x00"]
    assert read(stub, keys) == [{"n": 3}, None, {"n": 3}, {"n": 49}, None]


def test_a_key_that_extends_a_wanted_key_is_not_taken_for_it():
    values = {"\x00a\x00x\x00": b'"x"', "\x00a\x00x\x00\x00": b'"longer"', "\x00a\x00xy\x00": b'"xy"'}
    assert read(RangeStub(values, page=1), ["\x00a\x00x\x00", "\x00a\x00xy\x00"]) == ["x", "xy"]


def test_scan_many_gives_each_prefix_its_own_entries():
    values = {
        "\x00idx\x00p1\x00c1\x00": b"\x00",
        "\x00idx\x00p1\x00c2\x00": b"\x00",
        "\x00idx\x00p10\x00c3\x00": b"\x00",  # p10 begins with p1: a different patient
        "\x00idx\x00p3\x00c4\x00": b"\x00",
    }
    stub = RangeStub(values, page=2)
    found = asyncio.run(state.scan_many(stub, "idx", ["p3", "p1", "p2", "p10"]))
    assert [[key for key, _ in entries] for entries in found] == [
        ["\x00idx\x00p3\x00c4\x00"],
        ["\x00idx\x00p1\x00c1\x00", "\x00idx\x00p1\x00c2\x00"],
        [],
        ["\x00idx\x00p10\x00c3\x00"],
    ]


@settings(max_examples=300, deadline=None)
@given(
    present=st.sets(st.integers(0, 3000), max_size=1500),
    wanted=st.lists(st.integers(0, 3000), max_size=700),
    page=st.sampled_from([1, 3, 100]),
)
def test_sweep_answers_what_reading_each_key_answers(present, wanted, page):
    values = {anchor(number): orjson.dumps(number) for number in present}
    keys = [anchor(number) for number in wanted]
    stub = RangeStub(values, page=page)
    assert read(stub, keys) == [number if number in present else None for number in wanted]
    assert not stub.open


@pytest.mark.parametrize("page", [1, 100])
def test_a_range_closed_early_loses_no_key_of_the_interval_it_was_inside(page):
    # Dense at first, then sparse: the range read is closed in the middle of the segment.
    values = {anchor(number): orjson.dumps(number) for number in range(400)}
    values |= {anchor(number): orjson.dumps(number) for number in range(10_000, 60_000)}
    keys = [anchor(number) for number in range(0, 400, 2)] + [anchor(number) for number in range(10_000, 60_000, 999)]
    stub = RangeStub(values, page=page)
    assert read(stub, keys) == [orjson.loads(values[key]) for key in keys]
    assert stub.closed >= 1  # the sparse part was read key by key
    assert not stub.open
