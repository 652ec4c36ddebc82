"""The platform's URL map: every page, in one place, under its app's namespace (`analytics:detail`), and where
each API router is mounted.

One map rather than a `urls.py` an app: a reviewer (and tests/test_permission_matrix.py, which walks it) reads
the whole surface here, and the apps' views stay free of routing. The accounts' URLs keep a module of their own
(accounts/urls.py): they name allauth's views one by one, with the reasons.
"""

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from analytics import views as analytics_views
from analytics.api_urls import model_urlpatterns
from audit import overview_views
from audit import views as audit_views
from care import views as care_views
from consent import views as consent_views
from consent.api import GranteeListView
from directory import views as directory_views
from fhir_api import views as fhir_views
from health_platform import security, views
from oversight import views as oversight_views
from records import erasure_views, ingest_views
from records import views as records_views
from training import views as training_views

# The patient's records; the custodian's upload with its report, and the ingest history.
records_pages = [
    path("", records_views.my_records, name="my-records"),
    path("<uuid:record_id>/", records_views.my_record_detail, name="record-detail"),
    path("erasure/", erasure_views.my_erasure, name="erasure"),
    path("erasure/receipt.json", erasure_views.my_erasure_receipt, name="erasure-receipt"),
    path("ingest/", ingest_views.ingest, name="ingest"),
    path("ingest/history/", ingest_views.ingest_history, name="ingest-history"),
]

# The patient's consents; the clinician's "granted to me".
consent_pages = [
    path("", consent_views.dashboard, name="dashboard"),
    path("grant/", consent_views.grant, name="grant"),
    path("granted-to-me/", consent_views.granted_to_me, name="granted-to-me"),
    path("passkeys/", consent_views.passkeys, name="passkeys"),
    path("passkeys/signed/", consent_views.passkey_signed, name="passkey-signed"),
    path("passkeys/reset/", consent_views.passkey_reset, name="passkey-reset"),
    path("passkeys/<int:authenticator_id>/enrol/", consent_views.passkey_enrol, name="passkey-enrol"),
    path("<str:consent_id>/", consent_views.detail, name="detail"),
    path("<str:consent_id>/revoke/", consent_views.revoke, name="revoke"),
]

# The clinician's analyses (new/ and models/ before the analysis id they would otherwise match).
analytics_pages = [
    path("", analytics_views.analysis_list, name="list"),
    path("new/", analytics_views.analysis_new, name="new"),
    path("models/<str:name>/", analytics_views.model_card, name="model-card"),
    path("<str:analysis_id>/", analytics_views.analysis_detail, name="detail"),
    path("<str:analysis_id>/progress/", analytics_views.analysis_progress_panel, name="progress"),
    path("<str:analysis_id>/results/", analytics_views.analysis_results_panel, name="results"),
    path("<str:analysis_id>/cancel/", analytics_views.analysis_cancel, name="cancel"),
]

# The model steward's training runs (new/ and the patient's my-models/ before the run id), and the patient's
# "Models my records trained" with the inclusion proof of each of their records (issue 18).
training_pages = [
    path("my-models/", training_views.my_models, name="my-models"),
    path("my-models/<uuid:run_id>/<uuid:record_id>/proof.json", training_views.my_model_proof, name="my-model-proof"),
    path("", training_views.training_run_list, name="list"),
    path("new/", training_views.training_run_new, name="new"),
    path("<str:run_id>/", training_views.training_run_detail, name="detail"),
    path("<str:run_id>/progress/", training_views.training_run_progress_panel, name="progress"),
]

# The auditor's search, exports, ledger, overview and verify-a-copy; the patient's "who used my data" and their
# "download my data" (fhir_api: the FHIR Bundle of Patient/$everything, as one file).
audit_pages = [
    path("", audit_views.search, name="search"),
    path("exports/", audit_views.exports, name="exports"),
    path("exports/<str:export_id>/row/", audit_views.export_row, name="export-row"),
    path("exports/<str:export_id>/download/", audit_views.export_download, name="export-download"),
    path("exports/<str:export_id>/manifest/", audit_views.export_manifest, name="export-manifest"),
    path("ledger/", audit_views.ledger, name="ledger"),
    path("my-data/", audit_views.my_data, name="my-data"),
    path("my-data/download/", fhir_views.my_data_download, name="my-data-download"),
    path("overview/", overview_views.overview, name="overview"),
    path("verify/", overview_views.verify_copy, name="verify"),
]

# The clinician's reads for treatment (from "Consents granted to me") and emergency declarations; the auditors'
# review queue; the patient's emergency-access page.
care_pages = [
    path("patients/<str:pseudonym>/<str:category>/", care_views.patient_records, name="patient-records"),
    path("emergencies/", care_views.emergencies_page, name="emergencies"),
    path("emergencies/review/", care_views.review_queue, name="review-queue"),
    path("emergencies/<str:declaration_id>/", care_views.emergency_detail, name="emergency"),
    path("emergencies/<str:declaration_id>/review/", care_views.emergency_review, name="emergency-review"),
    path("emergencies/<str:declaration_id>/<str:category>/", care_views.emergency_records, name="emergency-records"),
    path("my-emergency-access/", care_views.my_emergency_access, name="my-emergency-access"),
]

# The auditors' misuse alerts.
oversight_pages = [
    path("alerts/", oversight_views.alerts, name="alerts"),
    path("alerts/score/", oversight_views.score_now, name="score-now"),
    path("alerts/<str:alert_id>/", oversight_views.alert_detail, name="alert"),
    path("alerts/<str:alert_id>/triage/", oversight_views.alert_triage, name="alert-triage"),
]

# The custodian's grantee directory and patient invitations.
directory_pages = [
    path("", directory_views.home, name="home"),
    path("organisations/", directory_views.organisation_add, name="organisation-add"),
    path("clinicians/", directory_views.clinician_add, name="clinician-add"),
    path("model-stewards/", directory_views.model_steward_add, name="model-steward-add"),
    path("grantees/<str:grantee_id>/deactivate/", directory_views.deactivate, name="deactivate"),
    path("grantees/<str:grantee_id>/reactivate/", directory_views.reactivate, name="reactivate"),
    path(
        "grantees/<str:grantee_id>/second-factor-reset/",
        directory_views.second_factor_reset,
        name="second-factor-reset",
    ),
    path("invitations/", directory_views.invitations, name="invitations"),
    path("invitations/<str:invitation_id>/revoke/", directory_views.invitation_revoke, name="invitation-revoke"),
    path("invitations/<str:invitation_id>/reissue/", directory_views.invitation_reissue, name="invitation-reissue"),
]

# Enrolment: a patient's invitation (by link or desk code), a new member of staff's first password.
enrol_pages = [
    path("", directory_views.enrol_start, name="start"),
    path("link/<str:token>/", directory_views.enrol_link, name="link"),
    path("staff/<str:uidb64>/<str:token>/", directory_views.enrol_staff, name="staff"),
]

urlpatterns = [
    path("", views.home, name="home"),
    path("accounts/", include("accounts.urls")),
    path("records/", include((records_pages, "records"))),
    path("consent/", include((consent_pages, "consent"))),
    path("analytics/", include((analytics_pages, "analytics"))),
    path("training/", include((training_pages, "training"))),
    path("audit/", include((audit_pages, "audit"))),
    path("care/", include((care_pages, "care"))),
    path("oversight/", include((oversight_pages, "oversight"))),
    path("directory/", include((directory_pages, "directory"))),
    path("enrol/", include((enrol_pages, "enrol"))),
    path("api/auth/token/", security.obtain_auth_token, name="api-token"),
    path("api/records/", include("records.api_urls")),
    path("api/consents/", include("consent.api_urls")),
    path("api/grantees/", GranteeListView.as_view(), name="api-grantees"),
    path("api/analyses/", include("analytics.api_urls")),
    path("api/models/", include(model_urlpatterns)),
    path("api/training/", include("training.api_urls")),
    path("api/audit/", include("audit.api_urls")),
    path("api/care/", include("care.api_urls")),
    path("api/oversight/", include("oversight.api_urls")),
    path("api/directory/", include("directory.api_urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    # GET only: its renderer has no page for OPTIONS' metadata (it answered 500).
    path(
        "api/docs/",
        SpectacularSwaggerSplitView.as_view(url_name="api-schema", http_method_names=["get", "head"]),
        name="api-docs",
    ),
    # The FHIR R4 read API (fhir_api): errors as OperationOutcome, described by its CapabilityStatement.
    path("fhir/", include(("fhir_api.api_urls", "fhir"))),
    path("admin/", admin.site.urls),
]

handler403 = "health_platform.views.forbidden"
handler404 = "health_platform.views.not_found"
handler500 = "health_platform.views.server_error"
