from rest_framework.routers import SimpleRouter

from training.api import TrainingRunViewSet

runs = SimpleRouter()
runs.register("runs", TrainingRunViewSet, basename="api-training-run")

urlpatterns = runs.urls
