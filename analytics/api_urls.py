from rest_framework.routers import SimpleRouter

from analytics.api import AnalysisViewSet, ModelCardViewSet

analyses = SimpleRouter()
analyses.register("", AnalysisViewSet, basename="api-analysis")
models = SimpleRouter()
models.register("", ModelCardViewSet, basename="api-model")

urlpatterns = analyses.urls
model_urlpatterns = models.urls
