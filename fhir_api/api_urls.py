"""The FHIR API's routes, mounted at /fhir/ (health_platform.urls) under the namespace `fhir`. FHIR's addresses have
no trailing slash; anything else under /fhir/ is a 404 OperationOutcome, never the portal's page."""

from django.urls import path, re_path

from fhir_api.api import (
    AuditEventSearchView,
    ConsentReadView,
    ConsentSearchView,
    MetadataView,
    PatientEverythingView,
    UnknownView,
)
from fhir_api.download import PatientDownloadView

urlpatterns = [
    path("metadata", MetadataView.as_view(), name="metadata"),
    path("Consent", ConsentSearchView.as_view(), name="consent-search"),
    path("Consent/<str:consent_id>", ConsentReadView.as_view(), name="consent-read"),
    path("AuditEvent", AuditEventSearchView.as_view(), name="auditevent-search"),
    path("Patient/<str:pseudonym>/$everything", PatientEverythingView.as_view(), name="patient-everything"),
    path("Patient/<str:pseudonym>/$download", PatientDownloadView.as_view(), name="patient-download"),
    re_path(r"^.*$", UnknownView.as_view(), name="unknown"),
]
