"""The test provider's pages: its own sign-in form, and django-oauth-toolkit's endpoints under o/ (so the
issuer, and the platform's OIDC_SERVER_URL, is http://<host>:<port>/o)."""

from django.contrib.auth import views as auth_views
from django.urls import include, path

urlpatterns = [
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("o/", include("oauth2_provider.urls", namespace="oauth2_provider")),
]
