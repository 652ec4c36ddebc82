from django.urls import path
from rest_framework.routers import SimpleRouter

from training.api import MyTrainedModelProofView, MyTrainedModelsView, TrainingRunViewSet

app_name = "training-api"

runs = SimpleRouter()
runs.register("runs", TrainingRunViewSet, basename="run")

urlpatterns = [
    path("my-models/", MyTrainedModelsView.as_view(), name="my-models"),
    path("my-models/<uuid:run_id>/<uuid:record_id>/proof/", MyTrainedModelProofView.as_view(), name="my-model-proof"),
    *runs.urls,
]
