from django.urls import path

from care.api import TreatmentRecordsView

app_name = "care-api"

urlpatterns = [
    path("patients/<str:pseudonym>/records/", TreatmentRecordsView.as_view(), name="patient-records"),
]
