"""The accounts' URLs: the allauth views the platform uses, named one by one, and the personal token.

Not `include("allauth.urls")`: that mounts sign-up, sign-in by e-mailed code, account connections and legacy
redirects the platform does not offer (accounts are made by the hospital), and every URL mounted is one more
the permission matrix must answer for. A view allauth reverses in a flow the platform uses must be here: a
missing name is a 500 in that flow, not a 404.
"""

from allauth.account import views as account_views
from allauth.socialaccount import views as social_views
from allauth.usersessions import views as usersession_views
from django.urls import include, path, re_path
from django.views.decorators.http import require_http_methods

from accounts import views
from health_platform import security

password_urlpatterns = [
    path("change/", account_views.password_change, name="account_change_password"),
    # password/change/ sends a user without a usable password here.
    path("set/", account_views.password_set, name="account_set_password"),
    path("reset/", account_views.password_reset, name="account_reset_password"),
    path("reset/done/", account_views.password_reset_done, name="account_reset_password_done"),
    re_path(
        r"^reset/key/(?P<uidb36>[0-9A-Za-z]+)-(?P<key>.+)/$",
        # GET and POST only: allauth answers a GET with a valid key by a redirect, but a HEAD by the form.
        require_http_methods(["GET", "POST"])(account_views.password_reset_from_key),
        name="account_reset_password_from_key",
    ),
    path("reset/key/done/", account_views.password_reset_from_key_done, name="account_reset_password_from_key_done"),
]

urlpatterns = [
    # The sign-in keeps the name (and the throttle) it had before allauth: tests, scripts and the load test use it.
    path("login/", security.LoginView.as_view(), name="login"),
    path("logout/", account_views.logout, name="logout"),
    # The same two URLs under allauth's names, which its views and templates reverse (the first match serves).
    path("login/", security.LoginView.as_view(), name="account_login"),
    path("logout/", account_views.logout, name="account_logout"),
    # allauth sends an inactive account here (a deactivated member of staff coming back by single sign-on).
    path("inactive/", account_views.account_inactive, name="account_inactive"),
    path("reauthenticate/", account_views.reauthenticate, name="account_reauthenticate"),
    path("email/", account_views.email, name="account_email"),
    path("confirm-email/", account_views.email_verification_sent, name="account_email_verification_sent"),
    re_path(r"^confirm-email/(?P<key>[-:\w]+)/$", account_views.confirm_email, name="account_confirm_email"),
    path("password/", include(password_urlpatterns)),
    # allauth's second-factor URLs as its settings shape them (health_platform/settings.py, MFA_*): TOTP, recovery
    # codes and passkeys, passkey sign-in, and no passkey sign-up (accounts are made by the hospital).
    path("2fa/", include("allauth.mfa.urls")),
    path("sessions/", usersession_views.list_usersessions, name="usersessions_list"),
    # Single sign-on (OIDC_*): the provider's sign-in and callback, and where allauth sends a cancelled or failed one.
    path("", include("allauth.socialaccount.providers.openid_connect.urls")),  # oidc/<provider>/login/ (+ callback/)
    path("3rdparty/login/cancelled/", social_views.login_cancelled, name="socialaccount_login_cancelled"),
    path("3rdparty/login/error/", social_views.login_error, name="socialaccount_login_error"),
    path("tokens/", views.personal_token, name="account_personal_token"),
]
