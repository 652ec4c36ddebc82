from django.urls import path
from rest_framework.routers import SimpleRouter

from audit.api import AccessEventViewSet, AuditExportViewSet, LedgerBlocksView, VerifyCopyView

router = SimpleRouter()
router.register("events", AccessEventViewSet, basename="api-audit-event")
router.register("exports", AuditExportViewSet, basename="api-audit-export")

urlpatterns = [
    *router.urls,
    path("verify/", VerifyCopyView.as_view(), name="api-audit-verify"),
    path("ledger/blocks/", LedgerBlocksView.as_view(), name="api-audit-ledger-blocks"),
]
