from django.urls import path

from oversight import api

app_name = "oversight-api"

urlpatterns = [
    path("alerts/", api.AlertListView.as_view(), name="alerts"),
    path("alerts/<str:alert_id>/", api.AlertDetailView.as_view(), name="alert"),
    path("alerts/<str:alert_id>/triage/", api.AlertTriageView.as_view(), name="alert-triage"),
    path("scoring-runs/", api.ScoringRunView.as_view(), name="scoring-runs"),
]
