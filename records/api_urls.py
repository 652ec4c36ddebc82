from rest_framework.routers import SimpleRouter

from records.api import RecordViewSet

app_name = "records-api"

router = SimpleRouter()
router.register("", RecordViewSet, basename="record")

urlpatterns = router.urls
