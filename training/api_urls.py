from django.urls import path

from training.api import MyTrainedModelProofView, MyTrainedModelsView

app_name = "training-api"

urlpatterns = [
    path("my-models/", MyTrainedModelsView.as_view(), name="my-models"),
    path("my-models/<uuid:run_id>/<uuid:record_id>/proof/", MyTrainedModelProofView.as_view(), name="my-model-proof"),
]
