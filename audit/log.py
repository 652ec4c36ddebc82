"""Writes of the access log: every event reaches the ledger first, then the audit mirror.

Every access event reaches the ledger through `access_batch_log`, ONE transaction per batch; the
mirror rows are written only after the ledger committed them, with the transaction id and block
that hold them. A batch logged again (a retried task) is a no-op on the ledger that answers with
the original transaction, so the mirror still names where the events really are. The mirror can be
rebuilt from the ledger alone (access_log_mirror_rebuild). Other apps reach these through audit.services.
"""

from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

import structlog
from django.db import connection, transaction

from audit.models import COLUMNS, EVENT_FIELDS, AccessEvent
from health_platform import bootstrap
from ledger.contracts import LoggedBatch

log = structlog.get_logger(__name__)

MIRROR_INSERT_CHUNK = 2000
REBUILD_PAGE = 10_000


def access_batch_log(*, batch_id: str, events: list[dict[str, Any]], mirror: bool = True) -> LoggedBatch:
    """Log `events` on the ledger as one batch, then mirror them. Idempotent per batch_id.

    `mirror=False`: the caller mirrors the batch later (access_batch_mirror) and keeps, durably, that it has to:
    an analysis batch does it once its request is done, off the analysis's critical path.
    Raises ledger.LedgerUnavailable (TransactionConflict included) when the ledger does not answer
    (nothing is mirrored then) and ledger.ContractRejected when the contract refuses the batch.
    """
    logged = bootstrap.contracts().append_access_events(batch_id=batch_id, events=events)
    if mirror:
        _mirror(
            [{**event, "position": position} for position, event in enumerate(events)],
            batch_id=batch_id,
            recorded_at=logged.recorded_at,
            tx_id=logged.tx_id,
            block_number=logged.block_number,
        )
    log.info(
        "access_batch_logged",
        batch_id=batch_id,
        events=len(events),
        tx_id=logged.tx_id,
        block=logged.block_number,
        appended=logged.appended,
    )
    return logged


def logged_batch_mirror(logged: LoggedBatch) -> None:
    """Mirror a batch that a transaction of another contract logged (an emergency declaration, a review, alerts, a
    triage write their event in their own transaction): read it back from the ledger, as it holds it."""
    access_batch_mirror(batch_id=logged.batch_id, block_number=logged.block_number)


def access_batch_mirror(*, batch_id: str, block_number: int | None) -> None:
    """Mirror the logged batch `batch_id` (in block `block_number`) as the ledger holds it, read back from it: for
    a batch logged by another contract's transaction, or logged earlier without its mirror. Rows already mirrored
    are left as they are. Raises ledger.LedgerUnavailable when the ledger does not answer, LookupError when it holds
    no such batch."""
    batch = bootstrap.contracts().read_access_batch(batch_id)
    if batch is None:  # it was logged: a ledger that lost it is not one to mirror
        raise LookupError(f"the ledger holds no batch {batch_id}")
    _mirror(
        [{**event, "position": position} for position, event in enumerate(batch.events)],
        batch_id=batch.batch_id,
        recorded_at=batch.recorded_at,
        tx_id=batch.tx_id,
        block_number=block_number,
    )


def access_log_mirror_rebuild() -> int:
    """Rebuild the mirror from the ledger alone (every batch, by time); return the events mirrored.

    Rows the ledger does not hold are removed; rows it holds are rewritten from it.
    """
    contracts = bootstrap.contracts()
    blocks: dict[str, int | None] = {}
    count, bookmark = 0, ""
    with transaction.atomic():
        AccessEvent.objects.all().delete()
        while True:
            page = contracts.query_access_events(limit=REBUILD_PAGE, bookmark=bookmark)
            for batch_id, events in _by_batch(page.events):
                tx_id = events[0]["tx_id"]
                if tx_id not in blocks:
                    blocks[tx_id] = contracts.block_of(tx_id)
                _mirror(
                    events,
                    batch_id=batch_id,
                    recorded_at=events[0]["recorded_at"],
                    tx_id=tx_id,
                    block_number=blocks[tx_id],
                )
                count += len(events)
            bookmark = page.bookmark
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
    """Insert mirror rows for one ledger batch; rows already there are left as they are.

    One multi-row INSERT ... ON CONFLICT DO NOTHING (SQLite and PostgreSQL alike) rather than
    bulk_create: building 5,000 model instances per batch cost three times the insert itself.
    """
    moment = connection.ops.adapt_datetimefield_value(datetime.fromisoformat(recorded_at.replace("Z", "+00:00")))
    table = connection.ops.quote_name(AccessEvent._meta.db_table)
    columns = ", ".join(connection.ops.quote_name(name) for name in COLUMNS)
    placeholders = ", ".join(["%s"] * len(COLUMNS))
    # Table and column names come from the model; every value is bound.
    statement = f"INSERT INTO {table} ({columns}) VALUES ({placeholders}) ON CONFLICT DO NOTHING"  # noqa: S608
    rows = [
        (
            *(event.get(name) or "" for name in EVENT_FIELDS),
            moment,
            batch_id,
            event["position"],
            tx_id,
            block_number,
        )
        for event in events
    ]
    with transaction.atomic():
        with connection.cursor() as cursor:
            for start in range(0, len(rows), MIRROR_INSERT_CHUNK):
                cursor.executemany(statement, rows[start : start + MIRROR_INSERT_CHUNK])
        _mirror_outcomes([event for event in events if event.get("kind") == "outcome"], batch_id=batch_id)


def _mirror_outcomes(outcomes: list[dict[str, Any]], *, batch_id: str) -> None:
    """Mark the admitted record accesses of the batch an outcome batch (`<batch_id>:outcome`) speaks of with
    their outcome: the batch's, then, for a record named on its own, that record's."""
    accesses = AccessEvent.objects.filter(
        batch_id=batch_id.removesuffix(":outcome"), kind="record_access", decision="admit"
    )
    for event in sorted(outcomes, key=lambda e: e.get("record_id") is not None):  # the batch's first
        outcome = {"outcome": event["decision"], "outcome_reason": event.get("reason") or ""}
        if event.get("record_id"):
            accesses.filter(record_id=event["record_id"]).update(**outcome)
        else:
            accesses.update(**outcome)
