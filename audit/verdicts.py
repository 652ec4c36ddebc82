"""An auditor's verdict on something they judge once (an emergency declaration, a misuse alert): on the ledger first,
with the salted hash of their note, then here with the note sealed. Care and oversight reach it through
audit.services."""

from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

import structlog
from django.db import transaction

from audit.access import auditor_actor_id, auditor_required
from audit.log import logged_batch_mirror
from health_platform.errors import ValidationFailed
from health_platform.models import Judged
from health_platform.sealed_text import text_open, text_seal
from ledger.contracts import Recorded

log = structlog.get_logger(__name__)

NOTE_MAX = 2000
J = TypeVar("J", bound=Judged)


def verdict_record(
    row: J,
    *,
    auditor: Any,
    verdict: str,
    note: str,
    verdicts: dict[str, str],
    purpose: str,
    already: str,
    submit: Callable[[str, str], Recorded],
) -> J:
    """Judge `row` once: `submit(reviewer id, note digest)` writes the verdict on the ledger (whose answer's entry
    carries the judgement); `already` is the code of the refusal of a second verdict."""
    auditor_required(auditor, "Only auditors give this verdict.")
    if verdict not in verdicts:
        choices = ", ".join(verdicts)
        raise ValidationFailed(f"Choose a verdict: {choices}.", code="invalid_verdict", detail={"field": "verdict"})
    text = note.strip() if isinstance(note, str) else ""
    if not 1 <= len(text) <= NOTE_MAX or "\x00" in text:
        raise ValidationFailed(
            f"Write a note of 1 to {NOTE_MAX} characters.", code="invalid_note", detail={"field": "note"}
        )
    if row.judged:
        raise ValidationFailed("A verdict is already recorded.", code=already)
    key_id, sealed, digest = text_seal(text, purpose=purpose, row=row.pk)
    recorded = submit(auditor_actor_id(auditor), digest)
    judgement = recorded.entry.judgement
    with transaction.atomic():
        logged_batch_mirror(recorded.logged)
        updated = (
            type(row)
            ._default_manager.filter(pk=row.pk, verdict="")
            .update(
                verdict=judgement.verdict,
                judged_by=auditor,
                judged_at=datetime.fromisoformat(judgement.at.replace("Z", "+00:00")),
                note_key_id=key_id,
                note_sealed=sealed,
                note_sha256=judgement.note_sha256,
                verdict_tx_id=recorded.logged.tx_id,
                verdict_block_number=recorded.logged.block_number,
            )
        )
    if not updated or judgement.note_sha256 != digest:  # another auditor's verdict reached the ledger first
        raise ValidationFailed("A verdict is already recorded.", code=already)
    log.info("verdict_recorded", purpose=purpose, row=str(row.pk), verdict=verdict, tx_id=recorded.logged.tx_id)
    row.refresh_from_db()
    return row


def verdict_note_open(row: Judged, *, purpose: str) -> str:
    """The auditor's note ("" before the verdict), checked against the hash on the ledger's copy."""
    if not row.note_sealed:
        return ""
    return text_open(row.note_sealed, key_id=row.note_key_id, purpose=purpose, row=row.pk, digest=row.note_sha256)
