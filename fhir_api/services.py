"""Writes of the FHIR API: logging a patient's download of their own data on the ledger."""

import uuid

import structlog

from audit.services import access_batch_log
from chaincode.vocabulary import PATIENT_REQUEST
from ledger.contracts import LoggedBatch
from records.models import Patient

log = structlog.get_logger(__name__)


def patient_download_id() -> str:
    """A new download's id: the Bundle's identifier and the ledger event's request id, which tie the file to it."""
    return f"download:{uuid.uuid4()}"


def patient_download_log(*, patient: Patient, download_id: str, sha256: str) -> LoggedBatch:
    """Log the patient's download of their own data on the ledger (then the mirror): an export event, the patient
    its actor (by pseudonym), for the patient-request purpose, carrying the file's SHA-256.

    Must be called before a byte of the file is sent (every access logged, ledger first). Raises
    ledger.LedgerUnavailable when the ledger does not answer and ledger.ContractRejected when it refuses: then the
    download must not be sent.
    """
    logged = access_batch_log(
        batch_id=download_id,
        events=[
            {
                "event_id": f"{download_id}:export",
                "kind": "export",
                "patient_pseudonym": patient.pseudonym,
                "grantee": f"patient:{patient.pseudonym}",
                "purpose": PATIENT_REQUEST,
                "request_id": download_id,
                "decision": "admit",
                "export_sha256": sha256,
            }
        ],
    )
    log.info("patient_download_logged", patient_id=str(patient.pk), download_id=download_id, tx_id=logged.tx_id)
    return logged
