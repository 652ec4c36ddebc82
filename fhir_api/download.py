"""The patient's "download my data": Patient/$everything (fhir_api.api.everything_sections: the same resources,
built by the same code) as one searchset Bundle in one file, logged on the ledger before it is sent.

The file is built whole in memory, bounded by PATIENT_DOWNLOAD_MAX_ENTRIES, because its SHA-256 goes on the ledger
with the download's event before a byte of it leaves (every access logged, ledger first; no ledger, no file). A
patient with more than that is refused `download_too_large` and reads $everything page by page instead. The
Bundle's identifier is the download's id, which is also the ledger event's request id: a copy can be matched to
its event, and its hash checked against it.
"""

import base64
import hashlib
import json
from dataclasses import dataclass

from django.conf import settings
from django.http import HttpResponse
from django.utils import timezone
from rest_framework.request import Request

from audit.selectors import AccessEventFilters, access_events_search
from consent.selectors import consents_of_patient
from fhir_api.api import AnyRequest, FhirView, everything_sections, own_patient, searchset_bundle
from fhir_api.services import patient_download_id, patient_download_log
from health_platform.errors import ApplicationError
from health_platform.fhir_codes import PLATFORM
from health_platform.fhir_outcomes import FHIR_MEDIA_TYPE
from records.models import Patient
from records.selectors import patient_records

DOWNLOAD_SYSTEM = f"{PLATFORM}/NamingSystem/patient-download"


class DownloadTooLarge(ApplicationError):
    code = "download_too_large"
    status = 422
    message = (
        "Your data is too large for one file. Read it page by page with the FHIR API's Patient/$everything instead."
    )


@dataclass(frozen=True)
class PatientDownload:
    content: bytes
    sha256: str
    download_id: str
    tx_id: str


def patient_download(request: AnyRequest, patient: Patient) -> PatientDownload:
    """Build the patient's Bundle, log its download on the ledger, and return it to be sent.

    `patient` must be the signed-in user's own (fhir_api.api.own_patient, records.selectors.patient_of): this
    decrypts their records. Raises DownloadTooLarge past the limit (before decrypting anything when the counts
    alone exceed it), and the ledger's errors (LedgerUnavailable: 503 ledger_unavailable) when the download could
    not be logged: then nothing is sent.
    """
    limit = settings.PATIENT_DOWNLOAD_MAX_ENTRIES
    # A record holds one Observation at least: the counts bound the Bundle from below without opening a record.
    at_least = (
        1
        + patient_records(patient=patient).count()
        + consents_of_patient(patient=patient).count()
        + access_events_search(viewer=request.user, filters=AccessEventFilters()).count()
    )
    if at_least > limit:
        raise DownloadTooLarge(detail={"limit": limit})
    sections = everything_sections(request, patient)
    total = sum(section.total for section in sections)
    if total > limit:
        raise DownloadTooLarge(detail={"limit": limit})
    download_id = patient_download_id()
    bundle = {
        "resourceType": "Bundle",
        "identifier": {"system": DOWNLOAD_SYSTEM, "value": download_id},
        "timestamp": timezone.now().isoformat(timespec="seconds"),
    } | searchset_bundle(sections, count=total, offset=0)
    content = json.dumps(bundle, separators=(",", ":"), ensure_ascii=False).encode()
    sha256 = hashlib.sha256(content).hexdigest()
    logged = patient_download_log(patient=patient, download_id=download_id, sha256=sha256)
    return PatientDownload(content=content, sha256=sha256, download_id=download_id, tx_id=logged.tx_id)


def download_response(download: PatientDownload) -> HttpResponse:
    """The download as an application/fhir+json attachment, with its SHA-256 (RFC 9530, as the audit exports)."""
    response = HttpResponse(download.content, content_type=f"{FHIR_MEDIA_TYPE}; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="my-health-data-{timezone.localdate().isoformat()}.json"'
    response["Repr-Digest"] = f"sha-256=:{base64.b64encode(bytes.fromhex(download.sha256)).decode()}:"
    response["Cache-Control"] = "no-store"
    return response


class PatientDownloadView(FhirView):
    """GET /fhir/Patient/<pseudonym>/$download: the patient's own data as one file (own_patient: 403 to a user who
    is not a patient, 404 to a patient naming another pseudonym), logged on the ledger first. GET only: a HEAD
    would log a download that sends nothing."""

    http_method_names = ["get"]

    def get(self, request: Request, pseudonym: str) -> HttpResponse:
        return download_response(patient_download(request, own_patient(request, pseudonym)))
