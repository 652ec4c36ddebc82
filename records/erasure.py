"""A patient's erasure: the ledger marks their anchors erased, then the platform destroys their key and ciphertexts,
and the patient keeps a receipt they can check against the ledger.

The order makes it crash-safe and idempotent (`patient_erase`, called again, finishes what a run left):
1. REQUESTED: the erasure row names the patient's anchored records (sorted ids). Nothing is destroyed yet; if the
   ledger does not answer the call ends here with ledger_unavailable, and the data is intact.
2. ON_LEDGER: ONE ledger transaction (anchors.EraseRecords) marks each anchor erased and stores the erasure entry:
   pseudonym, record ids, count, SHA-256 of the sorted ids. Nothing new about the patient goes on the chain. From
   here the gate refuses the records (reason erased), whatever the database still holds.
3. DONE: in one database transaction the data key row is deleted (what it sealed no longer opens; this process's
   cache drops it), every version's ciphertext and sealed features are emptied (key id "erased"), pending versions
   (never on the ledger) are deleted, other apps destroy what they hold (`patient_erasure_destroy`: the analyses'
   ciphertext blobs), and the patient is marked erased.

What stays, pseudonymous: the Patient row (so the account can read its receipt and its access log), the Record
rows and their versions' hashes and anchor references (tombstones: the access log's record ids still resolve;
analyses list them and the gate refuses them as erased), the identifiers' keyed hashes (so a new bundle naming
the patient is refused, patient_erased). Consents are left as they are on the ledger: an erased record is refused
before any consent is read, so they admit nothing, and their history stays audit evidence.

Models whose training lineage holds erased records count them, as "records since erased", beside the consents since
revoked (training follows `patient_erasure_destroy` and counts again once the erasure has committed).

On SQLite the database runs with secure_delete (deleted bytes are zeroed) and the write-ahead log is truncated
after the erasure; on PostgreSQL dead rows stay on disk until the next VACUUM (run it after erasures).
"""

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import structlog
from django.db import OperationalError, connection, transaction
from django.dispatch import Signal
from django.utils import timezone

from chaincode.contracts.anchors import records_digest
from health_platform import bootstrap
from health_platform.errors import ApplicationError, ValidationFailed
from ledger import ContractRejected, LedgerUnavailable
from records.models import AnchorState, ErasureState, Patient, PatientErasure, Record, RecordVersion
from records.patient_keys import ERASED_KEY_ID, patient_data_key_destroy

log = structlog.get_logger(__name__)

RECEIPT_TYPE = "health_platform/erasure-receipt/v1"
MAX_RECEIPT_BYTES = 4 * 1024 * 1024

patient_erasure_check = Signal()
"""Sent with `patient` and `record_ids` before an erasure is begun: a receiver that cannot let it happen now raises
ErasureRefused (the analyses: one holding the patient's records is running)."""

patient_erasure_destroy = Signal()
"""Sent with `patient` and `record_ids` once the ledger holds the erasure, inside the transaction that destroys the
patient's data: a receiver destroys what it holds of theirs. Must be idempotent (a retry sends it again)."""


class ErasureRefused(ApplicationError):
    code = "erasure_refused"
    status = 409
    message = "The erasure cannot be done now."


class ErasureLedgerUnavailable(ApplicationError):
    code = "ledger_unavailable"
    status = 503
    message = "The ledger did not answer: nothing was erased. Try again later."
    retry_after = 30


class ReceiptInvalid(ValidationFailed):
    code = "receipt_invalid"
    message = "The file is not an erasure receipt."


def patient_erase(*, actor: Any, patient: Patient) -> PatientErasure:
    """Erase the patient's data (see the module docstring for the order); return the finished erasure.

    Raises ErasureRefused (code from the refusing app, e.g. analysis_in_progress) before anything is written, and
    ErasureLedgerUnavailable while the ledger does not answer (nothing destroyed). Called again, it finishes an
    erasure a crash left half done, or answers a finished one unchanged."""
    with transaction.atomic():
        patient = Patient.objects.select_for_update().get(pk=patient.pk)
        erasure = PatientErasure.objects.filter(patient=patient).first()
        if erasure is None:
            record_ids = sorted(
                str(pk)
                for pk in Record.objects.filter(patient=patient, versions__anchor_state=AnchorState.ANCHORED)
                .distinct()
                .values_list("pk", flat=True)
            )
            patient_erasure_check.send(sender=PatientErasure, patient=patient, record_ids=record_ids)
            erasure = PatientErasure.objects.create(
                patient=patient, actor=actor if getattr(actor, "pk", None) else None, record_ids=record_ids
            )
            log.info("patient_erasure_requested", erasure_id=str(erasure.pk), patient_id=str(patient.pk))
    if erasure.state == ErasureState.DONE:
        return erasure
    if erasure.state == ErasureState.REQUESTED:
        erasure = _erasure_on_ledger(erasure, patient)
    return _erasure_destroy(erasure, patient)


def _erasure_on_ledger(erasure: PatientErasure, patient: Patient) -> PatientErasure:
    try:
        entry = bootstrap.contracts().erase_records(
            erasure_id=str(erasure.pk), patient_pseudonym=patient.pseudonym, record_ids=erasure.record_ids
        )
    except LedgerUnavailable as error:
        log.warning("patient_erasure_deferred", erasure_id=str(erasure.pk), error=type(error).__name__)
        raise ErasureLedgerUnavailable() from error
    PatientErasure.objects.filter(pk=erasure.pk, state=ErasureState.REQUESTED).update(
        state=ErasureState.ON_LEDGER, tx_id=entry.tx_id, block_number=entry.block_number, erased_at=entry.erased_at
    )
    log.info("patient_erasure_on_ledger", erasure_id=str(erasure.pk), tx_id=entry.tx_id, block=entry.block_number)
    return PatientErasure.objects.get(pk=erasure.pk)


def _erasure_destroy(erasure: PatientErasure, patient: Patient) -> PatientErasure:
    with transaction.atomic():
        erasure = PatientErasure.objects.select_for_update().get(pk=erasure.pk)
        if erasure.state == ErasureState.DONE:
            return erasure
        patient_data_key_destroy(patient=patient)
        versions = RecordVersion.objects.filter(record__patient=patient)
        versions.filter(anchor_state=AnchorState.PENDING).delete()
        versions.update(ciphertext=b"", features=b"", key_id=ERASED_KEY_ID)
        patient_erasure_destroy.send(sender=PatientErasure, patient=patient, record_ids=erasure.record_ids)
        Patient.objects.filter(pk=patient.pk).update(erased_at=timezone.now())
        erasure.state, erasure.finished_at = ErasureState.DONE, timezone.now()
        erasure.save(update_fields=["state", "finished_at"])
    _sqlite_log_truncate()
    log.info("patient_erased", erasure_id=str(erasure.pk), patient_id=str(patient.pk), records=len(erasure.record_ids))
    return erasure


def _sqlite_log_truncate() -> None:
    """SQLite: fold the write-ahead log into the database file and empty it, so that the page images it held
    (with the ciphertexts as they were) are gone too; best effort (a reader elsewhere can hold it a while)."""
    if connection.vendor != "sqlite" or connection.in_atomic_block:
        return
    try:
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    except OperationalError as error:
        log.warning("erasure_log_truncate_failed", error=type(error).__name__)


# --- the receipt --------------------------------------------------------------------------------------------


def erasure_receipt(*, erasure: PatientErasure) -> dict[str, Any]:
    """The receipt of a finished (or ledger-recorded) erasure: what the ledger's entry says, and where it is."""
    return {
        "type": RECEIPT_TYPE,
        "erasure_id": str(erasure.pk),
        "patient_pseudonym": erasure.patient.pseudonym,
        "record_ids": list(erasure.record_ids),
        "count": len(erasure.record_ids),
        "records_sha256": records_digest(list(erasure.record_ids)),
        "tx_id": erasure.tx_id,
        "block_number": erasure.block_number,
        "erased_at": erasure.erased_at,
    }


def erasure_receipt_bytes(*, erasure: PatientErasure) -> bytes:
    return json.dumps(erasure_receipt(erasure=erasure), indent=2, sort_keys=True).encode() + b"\n"


@dataclass(frozen=True)
class ReceiptVerification:
    """What checking a receipt against the ledger found: ok, or the differences, by field (and record id)."""

    ok: bool
    erasure_id: str
    differences: tuple[str, ...]
    receipt_sha256: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "erasure_id": self.erasure_id,
            "differences": list(self.differences),
            "receipt_sha256": self.receipt_sha256,
        }


_RECEIPT_FIELDS = {
    "type": str,
    "erasure_id": str,
    "patient_pseudonym": str,
    "record_ids": list,
    "count": int,
    "records_sha256": str,
    "tx_id": str,
    "block_number": int,
    "erased_at": str,
}


def erasure_receipt_parse(raw: bytes) -> dict[str, Any]:
    """The receipt in `raw`, its fields checked for presence and type; ReceiptInvalid (naming the field, never a
    value) otherwise."""
    if len(raw) > MAX_RECEIPT_BYTES:
        raise ReceiptInvalid(detail={"reason": "too_large"})
    try:
        receipt = json.loads(raw)
    except (ValueError, RecursionError):
        raise ReceiptInvalid(detail={"reason": "not_json"}) from None
    if not isinstance(receipt, dict):
        raise ReceiptInvalid(detail={"reason": "not_an_object"})
    for name, kind in _RECEIPT_FIELDS.items():
        value = receipt.get(name)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise ReceiptInvalid(detail={"reason": "field_missing_or_wrong_type", "field": name})
    if receipt["type"] != RECEIPT_TYPE:
        raise ReceiptInvalid(detail={"reason": "unknown_type", "field": "type"})
    if not all(isinstance(record_id, str) for record_id in receipt["record_ids"]):
        raise ReceiptInvalid(detail={"reason": "field_missing_or_wrong_type", "field": "record_ids"})
    return receipt


def erasure_receipt_verify(*, raw: bytes) -> ReceiptVerification:
    """Check a receipt against the ledger: its own digest and count, the ledger's erasure entry (every field, and
    the block that holds its transaction), and each record's anchor (erased by this erasure, this patient's).

    Raises ReceiptInvalid for a file that is not a receipt, and the ledger's errors when it does not answer."""
    receipt = erasure_receipt_parse(raw)
    record_ids = list(receipt["record_ids"])
    differences = []
    if receipt["records_sha256"] != records_digest(record_ids):
        differences.append("records_sha256: not the SHA-256 of the receipt's record ids")
    if receipt["count"] != len(record_ids):
        differences.append("count: not the number of the receipt's record ids")
    contracts = bootstrap.contracts()
    try:
        entry = contracts.read_erasure(receipt["erasure_id"])
    except ContractRejected:  # an erasure id the ledger cannot even read (malformed)
        entry = None
    if entry is None:
        differences.append("erasure_id: the ledger holds no erasure of this id")
    else:
        on_ledger = {
            "patient_pseudonym": entry.patient_pseudonym,
            "record_ids": list(entry.record_ids),
            "count": entry.count,
            "records_sha256": entry.records_sha256,
            "tx_id": entry.tx_id,
            "block_number": entry.block_number,
            "erased_at": entry.erased_at,
        }
        differences += [
            f"{name}: the ledger's erasure entry holds another value"
            for name, value in on_ledger.items()
            if receipt[name] != value
        ]
        for record_id in record_ids if receipt["record_ids"] == on_ledger["record_ids"] else ():
            anchor = contracts.read_anchor(record_id)
            if anchor is None or not anchor.erased or anchor.erasure_id != entry.erasure_id:
                differences.append(f"record {record_id}: its anchor on the ledger is not erased by this erasure")
            elif anchor.patient_pseudonym != entry.patient_pseudonym:
                differences.append(f"record {record_id}: its anchor names another patient")
    return ReceiptVerification(
        ok=not differences,
        erasure_id=receipt["erasure_id"],
        differences=tuple(differences),
        receipt_sha256=hashlib.sha256(raw).hexdigest(),
    )
