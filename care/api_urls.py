from django.urls import path

from care import api

app_name = "care-api"

urlpatterns = [
    path("patients/<str:pseudonym>/records/", api.TreatmentRecordsView.as_view(), name="patient-records"),
    path("emergencies/", api.EmergencyListView.as_view(), name="emergencies"),
    path("emergencies/<str:declaration_id>/", api.EmergencyDetailView.as_view(), name="emergency"),
    path("emergencies/<str:declaration_id>/records/", api.EmergencyRecordsView.as_view(), name="emergency-records"),
    path("emergencies/<str:declaration_id>/review/", api.EmergencyReviewView.as_view(), name="emergency-review"),
    path("emergency-refusals/", api.EmergencyRefusalsView.as_view(), name="emergency-refusals"),
]
