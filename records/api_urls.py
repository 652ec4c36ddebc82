from django.urls import path
from rest_framework.routers import SimpleRouter

from records.api import PatientErasureVerifyView, PatientErasureView, RecordViewSet

app_name = "records-api"

router = SimpleRouter()
router.register("", RecordViewSet, basename="record")

urlpatterns = [
    path("erasure/", PatientErasureView.as_view(), name="erasure"),
    path("erasure/verify/", PatientErasureVerifyView.as_view(), name="erasure-verify"),
    *router.urls,
]
