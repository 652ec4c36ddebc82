"""Group commit: calls made at the same moment by many threads, sent to the ledger as one transaction.

Every ledger transaction costs the network far more than the work in it (on Fabric: endorsement by a peer of
each organisation, ordering, validation and commit on every peer, whatever the transaction holds), so a
platform process that many patients use at once writes their signed grants together: while a batch is on its
way, the grants that arrive wait and leave together in the next one. A caller alone is sent at once (no window,
no added latency); with many, each transaction carries many.

GroupCommit.call(item) blocks until the item's own result: the batch runner answers one result per item (a
value, or the exception for that item alone, say the contract's refusal of one patient's document); an
exception raised by the runner itself (the ledger unreachable, a conflict after the backend's retries) is every
item's of that batch. Items with the same key (the same patient) never travel in the same batch, nor in two
batches at the same time: they could only conflict.

No thread of its own: the callers send (see call). Up to `senders` batches are in flight at once. A
GroupCommit belongs to one ledger client, so to one process (a forked worker opens its own client).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Future
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


class GroupCommit(Generic[Item, Result]):
    def __init__(
        self,
        run_batch: Callable[[list[Item]], Sequence[Result | BaseException]],
        *,
        key: Callable[[Item], Hashable],
        max_items: int,
        senders: int = 4,
    ):
        if max_items < 1 or senders < 1:
            raise ValueError("max_items and senders must be at least 1")
        self._run_batch, self._key, self._max_items, self._senders = run_batch, key, max_items, senders
        self._pending: list[tuple[Hashable, Item, Future[Result]]] = []
        self._in_flight: set[Hashable] = set()
        self._sending = 0
        self._changed = threading.Condition()

    def call(self, item: Item) -> Result:
        """The item's result, once the batch it travelled in is committed; raises its exception.

        The callers themselves send (flat combining): a caller finding fewer than `senders` batches in flight
        takes every waiting item it may (its own among them, unless its patient is in flight) and sends them in
        its own thread; the others wait for their result. A caller alone sends its item at once, in its thread."""
        key = self._key(item)  # a malformed item fails its own caller here, never another's batch
        future: Future[Result] = Future()
        with self._changed:
            self._pending.append((key, item, future))
        while True:
            with self._changed:
                batch: list[tuple[Hashable, Item, Future[Result]]] = []
                while not future.done():
                    if self._sending < self._senders:
                        batch = self._take()
                        if batch:
                            self._sending += 1
                            break
                    self._changed.wait()
                if future.done() and not batch:
                    return future.result()
            try:
                self._send(batch)
            finally:
                with self._changed:
                    self._sending -= 1
                    self._in_flight -= {key for key, _, _ in batch}
                    self._changed.notify_all()

    def _take(self) -> list[tuple[Hashable, Item, Future[Result]]]:
        """Under the lock: the next batch, first come first served, one item per key, none of a key in flight."""
        batch: list[tuple[Hashable, Item, Future[Result]]] = []
        kept: list[tuple[Hashable, Item, Future[Result]]] = []
        for entry in self._pending:
            key = entry[0]
            if len(batch) < self._max_items and key not in self._in_flight:
                batch.append(entry)
                self._in_flight.add(key)  # from now on, no second item of this key goes anywhere
            else:
                kept.append(entry)
        self._pending = kept
        return batch

    def _send(self, batch: list[tuple[Hashable, Item, Future[Result]]]) -> None:
        try:
            results = self._run_batch([item for _, item, _ in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"the batch runner answered {len(results)} results for {len(batch)} items")
        except BaseException as error:  # every item of the batch shares the batch's fault, whatever it is
            for _, _, future in batch:
                future.set_exception(error)
            return
        for (_, _, future), result in zip(batch, results, strict=True):
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)
