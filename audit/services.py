"""Writes: the access log (ledger first, then the mirror), the mirror's rebuild, and exports.

Every access event reaches the ledger through `access_batch_log`, ONE transaction per batch; the
mirror rows are written only after the ledger committed them, with the transaction id and block
that hold them. A batch logged again (a retried task) is a no-op on the ledger that answers with
the original transaction, so the mirror still names where the events really are.
"""

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog
from django.db import transaction

from audit.models import EVENT_FIELDS, AccessEvent
from health_platform import bootstrap
from ledger import LedgerClient

log = structlog.get_logger(__name__)

MIRROR_INSERT_CHUNK = 2000
REBUILD_PAGE = 10_000


@dataclass(frozen=True)
class LoggedBatch:
    batch_id: str
    tx_id: str
    block_number: int | None
    recorded_at: str
    appended: bool


def access_batch_log(*, batch_id: str, events: list[dict[str, Any]]) -> LoggedBatch:
    """Log `events` on the ledger as one batch, then mirror them. Idempotent per batch_id.

    Raises ledger.LedgerUnavailable / TransactionConflict when the ledger does not answer (nothing is
    mirrored then) and ledger.ContractRejected when the contract refuses the batch.
    """
    ledger = bootstrap.ledger()
    receipt = ledger.submit("accesslog", "AppendAccessEvents", json.dumps({"batch_id": batch_id, "events": events}))
    answer = receipt.json()
    block = receipt.block_number if answer["tx_id"] == receipt.tx_id else _block_of(ledger, answer["tx_id"])
    logged = LoggedBatch(batch_id, answer["tx_id"], block, answer["recorded_at"], answer["appended"])
    _mirror(
        [
            {**event, "position": position}
            for position, event in enumerate(events)
        ],
        batch_id=batch_id,
        recorded_at=answer["recorded_at"],
        tx_id=answer["tx_id"],
        block_number=block,
    )
    log.info(
        "access_batch_logged",
        batch_id=batch_id,
        events=len(events),
        tx_id=logged.tx_id,
        block=block,
        appended=logged.appended,
    )
    return logged


def access_log_mirror_rebuild() -> int:
    """Rebuild the mirror from the ledger alone (every batch, by time); return the events mirrored.

    Rows the ledger does not hold are removed; rows it holds are rewritten from it.
    """
    ledger = bootstrap.ledger()
    blocks: dict[str, int | None] = {}
    count, bookmark = 0, ""
    with transaction.atomic():
        AccessEvent.objects.all().delete()
        while True:
            page = ledger.evaluate(
                "accesslog", "QueryAccessEvents", json.dumps({"limit": REBUILD_PAGE, "bookmark": bookmark})
            ).json()
            for batch_id, events in _by_batch(page["events"]):
                tx_id = events[0]["tx_id"]
                if tx_id not in blocks:
                    blocks[tx_id] = _block_of(ledger, tx_id)
                _mirror(
                    events,
                    batch_id=batch_id,
                    recorded_at=events[0]["recorded_at"],
                    tx_id=tx_id,
                    block_number=blocks[tx_id],
                )
                count += len(events)
            bookmark = page["bookmark"]
            if not bookmark:
                break
    log.info("access_log_mirror_rebuilt", events=count)
    return count


def _by_batch(events: list[dict[str, Any]]) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    current: list[dict[str, Any]] = []
    for event in events:
        if current and current[0]["batch_id"] != event["batch_id"]:
            yield current[0]["batch_id"], current
            current = []
        current.append(event)
    if current:
        yield current[0]["batch_id"], current


def _mirror(
    events: Iterable[dict[str, Any]],
    *,
    batch_id: str,
    recorded_at: str,
    tx_id: str,
    block_number: int | None,
) -> None:
    """Insert mirror rows for one ledger batch; rows already there are left as they are."""
    moment = datetime.fromisoformat(recorded_at.replace("Z", "+00:00"))
    rows = []
    for event in events:
        rows.append(
            AccessEvent(
                **{name: event.get(name) or "" for name in EVENT_FIELDS},
                recorded_at=moment,
                batch_id=batch_id,
                position=event["position"],
                tx_id=tx_id,
                block_number=block_number,
            )
        )
    AccessEvent.objects.bulk_create(rows, batch_size=MIRROR_INSERT_CHUNK, ignore_conflicts=True)


def _block_of(ledger: LedgerClient, tx_id: str) -> int | None:
    location = ledger.locate(tx_id)
    return location.block_number if location is not None else None
