from django.urls import path
from rest_framework.routers import SimpleRouter

from training.api import MyTrainedModelProofView, MyTrainedModelsView, TrainingRunViewSet
from training.federation_api import FederationInvitationsView, FederationInvitationView

app_name = "training-api"

runs = SimpleRouter()
runs.register("runs", TrainingRunViewSet, basename="run")

urlpatterns = [
    path("my-models/", MyTrainedModelsView.as_view(), name="my-models"),
    path("my-models/<uuid:run_id>/<uuid:record_id>/proof/", MyTrainedModelProofView.as_view(), name="my-model-proof"),
    path("federation/invitations/", FederationInvitationsView.as_view(), name="federation-invitations"),
    path(
        "federation/invitations/<uuid:run_id>/<int:attempt>/",
        FederationInvitationView.as_view(),
        name="federation-invitation",
    ),
    *runs.urls,
]
