"""The portal's side of the FHIR API: the patient's "Download my data" button (on the "who used my data" page)."""

import structlog
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.views.decorators.http import require_POST

from fhir_api.download import DownloadTooLarge, download_response, patient_download
from health_platform.portal import refused
from records.selectors import patient_of

log = structlog.get_logger(__name__)


@login_required
@require_POST
def my_data_download(request: HttpRequest) -> HttpResponse:
    """POST (a form with its CSRF token: a download is logged on the ledger, so no other site may cause one): the
    signed-in patient's own data as a FHIR Bundle file, as /fhir/Patient/<pseudonym>/$download gives it. Anyone
    else is refused 403. A ledger that does not answer is the portal's 503 page (health_platform.portal's
    OutageMiddleware): nothing is sent unless the download was logged."""
    patient = patient_of(request.user)
    if patient is None:
        return refused(request, "Only a patient downloads their own data.", status=403, base="audit/base.html")
    try:
        download = patient_download(request, patient)
    except DownloadTooLarge as error:
        back = (reverse("audit:my-data"), "Back to your data")
        return refused(request, error.message, status=error.status, base="audit/base.html", back=back)
    log.info("patient_download_sent", download_id=download.download_id, tx_id=download.tx_id)
    return download_response(download)
