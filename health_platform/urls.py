from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from analytics.api_urls import model_urlpatterns
from consent.api import GranteeListView
from health_platform import security, views

urlpatterns = [
    path("", views.home, name="home"),
    path("accounts/", include("accounts.urls")),
    path("records/", include("records.portal_urls")),
    path("consent/", include("consent.portal_urls")),
    path("analytics/", include("analytics.portal_urls")),
    path("audit/", include("audit.portal_urls")),
    path("directory/", include("directory.portal_urls")),
    path("enrol/", include("directory.enrol_urls")),
    path("api/auth/token/", security.obtain_auth_token, name="api-token"),
    path("api/records/", include("records.api_urls")),
    path("api/consents/", include("consent.api_urls")),
    path("api/grantees/", GranteeListView.as_view(), name="api-grantees"),
    path("api/analyses/", include("analytics.api_urls")),
    path("api/models/", include(model_urlpatterns)),
    path("api/audit/", include("audit.api_urls")),
    path("api/directory/", include("directory.api_urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    # GET only: its renderer has no page for OPTIONS' metadata (it answered 500).
    path(
        "api/docs/",
        SpectacularSwaggerSplitView.as_view(url_name="api-schema", http_method_names=["get", "head"]),
        name="api-docs",
    ),
    path("admin/", admin.site.urls),
]

handler403 = "health_platform.views.forbidden"
handler404 = "health_platform.views.not_found"
handler500 = "health_platform.views.server_error"
