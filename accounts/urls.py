"""The accounts' URLs: the allauth views the platform uses, named one by one, and the personal token.

Not `include("allauth.urls")`: that mounts sign-up, sign-in by e-mailed code, account connections and legacy
redirects the platform does not offer (accounts are made by the hospital), and every URL mounted is one more
the permission matrix must answer for. A view allauth reverses in a flow the platform uses must be here: a
missing name is a 500 in that flow, not a 404.
"""

from allauth.account import views as account_views
from allauth.mfa.base import views as mfa_views
from allauth.mfa.recovery_codes import views as recovery_code_views
from allauth.mfa.totp import views as totp_views
from allauth.mfa.webauthn import views as webauthn_views
from allauth.socialaccount import views as social_views
from allauth.socialaccount.providers.openid_connect import views as oidc_views
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

second_factor_urlpatterns = [
    path("", mfa_views.index, name="mfa_index"),
    path("authenticate/", mfa_views.authenticate, name="mfa_authenticate"),
    path("reauthenticate/", mfa_views.reauthenticate, name="mfa_reauthenticate"),
    path("totp/activate/", totp_views.activate_totp, name="mfa_activate_totp"),
    path("totp/deactivate/", totp_views.deactivate_totp, name="mfa_deactivate_totp"),
    path("recovery-codes/", recovery_code_views.view_recovery_codes, name="mfa_view_recovery_codes"),
    path(
        "recovery-codes/generate/",
        recovery_code_views.generate_recovery_codes,
        name="mfa_generate_recovery_codes",
    ),
    path(
        "recovery-codes/download/",
        recovery_code_views.download_recovery_codes,
        name="mfa_download_recovery_codes",
    ),
    path("webauthn/", webauthn_views.list_webauthn, name="mfa_list_webauthn"),
    path("webauthn/add/", webauthn_views.add_webauthn, name="mfa_add_webauthn"),
    path("webauthn/reauthenticate/", webauthn_views.reauthenticate_webauthn, name="mfa_reauthenticate_webauthn"),
    path("webauthn/keys/<int:pk>/remove/", webauthn_views.remove_webauthn, name="mfa_remove_webauthn"),
    path("webauthn/keys/<int:pk>/edit/", webauthn_views.edit_webauthn, name="mfa_edit_webauthn"),
    # Passkey sign-in (MFA_PASSKEY_LOGIN_ENABLED); passkey sign-up is off: accounts are made by the hospital.
    path("webauthn/login/", webauthn_views.login_webauthn, name="mfa_login_webauthn"),
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
    path("2fa/", include(second_factor_urlpatterns)),
    path("sessions/", usersession_views.list_usersessions, name="usersessions_list"),
    # Single sign-on (OIDC_*): the provider's sign-in and callback, and where allauth sends a cancelled or failed one.
    path("oidc/<str:provider_id>/login/", oidc_views.login, name="openid_connect_login"),
    path("oidc/<str:provider_id>/login/callback/", oidc_views.callback, name="openid_connect_callback"),
    path("3rdparty/login/cancelled/", social_views.login_cancelled, name="socialaccount_login_cancelled"),
    path("3rdparty/login/error/", social_views.login_error, name="socialaccount_login_error"),
    path("tokens/", views.personal_token, name="account_personal_token"),
]
