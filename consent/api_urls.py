from rest_framework.routers import SimpleRouter

from consent.api import ConsentViewSet

router = SimpleRouter()
router.register("", ConsentViewSet, basename="consent")
urlpatterns = router.urls
