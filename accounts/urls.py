"""The accounts' URLs: allauth's (sign-in first, with the platform's throttle), then the personal token."""

from allauth.account import views as account_views
from django.urls import include, path

from accounts import views
from health_platform import security

urlpatterns = [
    # The sign-in keeps the name (and the throttle) it had before allauth: tests, scripts and the load test use it.
    path("login/", security.LoginView.as_view(), name="login"),
    path("logout/", account_views.logout, name="logout"),
    path("tokens/", views.personal_token, name="account_personal_token"),
    path("", include("allauth.urls")),
]
