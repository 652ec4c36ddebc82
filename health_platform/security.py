"""Web security: the headers every response carries, and sign-in throttling against password guessing.

Headers. Django's SecurityMiddleware and XFrameOptionsMiddleware set HSTS, nosniff, Referrer-Policy,
Cross-Origin-Opener-Policy and X-Frame-Options (settings.py); `SecurityHeadersMiddleware` adds the
Content-Security-Policy and a Permissions-Policy to every response, static files included. The policy
allows scripts and styles from the site itself only: no page may carry inline script or style.

Throttling. Failed sign-ins are counted in the cache per (username, client address) and per client
address, by `ThrottledModelBackend`, so every door counts (the portal's form, the API token endpoint,
the admin's form). Past the limit, the portal's form and the token endpoint refuse with 429 and say when
to try again, without checking the password; the admin's form refuses with its usual message. Nothing
tells whether the username exists: unknown usernames are counted, refused and answered exactly as known
ones. A successful sign-in clears its (username, address) counter. Usernames are keyed by an HMAC, so
the cache never holds them.
"""

import hashlib
import hmac
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog
from allauth.account import views as account_views
from django.conf import settings
from django.contrib.auth.backends import ModelBackend
from django.core.cache import caches
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.authentication import SessionAuthentication
from rest_framework.authtoken.models import Token
from rest_framework.authtoken.serializers import AuthTokenSerializer
from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.exceptions import Throttled
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response

from health_platform.errors import SecondFactorRequired
from health_platform.fhir_outcomes import FHIR_PATH_PREFIX
from health_platform.parsers import LimitedJSONParser
from health_platform.second_factor import second_factor_required, session_passed_second_factor

log = structlog.get_logger(__name__)

THROTTLED_MESSAGE = "Too many failed sign-in attempts. Signing in is paused; try again in {minutes} minute{s}."


# --- headers -------------------------------------------------------------------------------------


def content_security_policy() -> str:
    """settings.CONTENT_SECURITY_POLICY as a header value."""
    directives = settings.CONTENT_SECURITY_POLICY
    return "; ".join(" ".join([name, *sources]) for name, sources in directives.items())


class SecurityHeadersMiddleware:
    """Adds the Content-Security-Policy (or its report-only form), the Permissions-Policy and X-Frame-Options
    to every response, static files included.

    A view that sets its own policy keeps it.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self.header = (
            "Content-Security-Policy-Report-Only"
            if settings.CONTENT_SECURITY_POLICY_REPORT_ONLY
            else "Content-Security-Policy"
        )
        self.policy = content_security_policy()

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if self.header not in response:
            response[self.header] = self.policy
        if "Permissions-Policy" not in response:
            response["Permissions-Policy"] = settings.PERMISSIONS_POLICY
        # XFrameOptionsMiddleware sits below whitenoise, which answers static files itself.
        if "X-Frame-Options" not in response and not getattr(response, "xframe_options_exempt", False):
            response["X-Frame-Options"] = settings.X_FRAME_OPTIONS
        return response


# --- methods -------------------------------------------------------------------------------------

PAGE_METHODS = ("GET", "HEAD", "POST")


class PageMethodsMiddleware:
    """Outside the API, pages are read and forms are posted: any other method is answered 405 before a view
    runs. Django's admin and sign-in views answer PUT, DELETE or OPTIONS as if they were a GET (or, for a
    form, a POST); the permission matrix requires a method a route does not handle to be refused."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.method not in PAGE_METHODS and not request.path.startswith(("/api/", FHIR_PATH_PREFIX)):
            return HttpResponseNotAllowed(PAGE_METHODS)
        return self.get_response(request)


# --- sign-in throttling --------------------------------------------------------------------------


@dataclass(frozen=True)
class Counter:
    key: str
    limit: int


def client_address(request: Any) -> str:
    """The client's address: the peer, or with NUM_PROXIES trusted proxies the address they forwarded.

    As DRF's throttles read it: the NUM_PROXIES-th entry from the right of X-Forwarded-For, which the
    client cannot forge when exactly that many proxies append to it.
    """
    meta = request.META
    remote = meta.get("REMOTE_ADDR") or ""
    proxies = settings.NUM_PROXIES
    forwarded = meta.get("HTTP_X_FORWARDED_FOR")
    if proxies and forwarded:
        addresses = [address.strip() for address in forwarded.split(",") if address.strip()]
        if addresses:
            return addresses[-min(proxies, len(addresses))]
    return remote


def _digest(text: str) -> str:
    return hmac.new(settings.SECRET_KEY.encode(), text.encode(), hashlib.sha256).hexdigest()[:32]


def _counters(request: Any, username: str) -> list[Counter]:
    address = client_address(request)
    name = (username or "").strip().casefold()
    return [
        Counter(f"login-failures:user:{_digest(f'{name}|{address}')}", settings.LOGIN_THROTTLE_FAILURES),
        Counter(f"login-failures:address:{_digest(address)}", settings.LOGIN_THROTTLE_ADDRESS_FAILURES),
    ]


def _cache() -> Any:
    return caches[settings.LOGIN_THROTTLE_CACHE]


def login_refused_for(request: Any, username: str) -> int | None:
    """Seconds until sign-in as `username` from this client is allowed again; None if it is allowed now."""
    cache = _cache()
    now = time.time()
    waits = []
    for counter in _counters(request, username):
        if counter.limit <= 0:
            continue
        failures = cache.get(counter.key)
        if failures is not None and int(failures) >= counter.limit:
            since = cache.get(f"{counter.key}:since") or now
            waits.append(max(1, int(since + settings.LOGIN_THROTTLE_WINDOW_SECONDS - now)))
    return max(waits) if waits else None


def login_failed(request: Any, username: str) -> None:
    """Count a failed sign-in; the window starts at the first failure it holds."""
    cache = _cache()
    window = settings.LOGIN_THROTTLE_WINDOW_SECONDS
    for counter in _counters(request, username):
        now = time.time()
        cache.add(f"{counter.key}:since", now, timeout=window)
        cache.add(counter.key, 0, timeout=window)
        try:
            cache.incr(counter.key)  # atomic on Redis
        except ValueError:  # expired between add and incr
            cache.set(counter.key, 1, timeout=window)
        # Some backends' incr() rewrites the entry with the default timeout: end it with the window again.
        since = cache.get(f"{counter.key}:since") or now
        cache.touch(counter.key, timeout=max(1, int(since + window - now + 0.999)))
    log.info("login_failed")


def login_succeeded(request: Any, username: str) -> None:
    """Clear the (username, address) counter; the address's own counter keeps running."""
    key = _counters(request, username)[0].key
    _cache().delete_many([key, f"{key}:since"])


def throttled_message(seconds: int) -> str:
    minutes = max(1, -(-seconds // 60))
    return THROTTLED_MESSAGE.format(minutes=minutes, s="" if minutes == 1 else "s")


class ThrottledModelBackend(ModelBackend):
    """Django's ModelBackend, counting failures and refusing sign-in past the throttle's limits.

    Without a request (e.g. the test client's login()) there is no client to count and nothing is throttled.
    """

    def authenticate(
        self, request: Any, username: str | None = None, password: str | None = None, **kwargs: Any
    ) -> Any:
        if request is None:
            return super().authenticate(request, username=username, password=password, **kwargs)
        if username is None:
            username = kwargs.get(self._username_field(), "")
        name = str(username or "")
        if login_refused_for(request, name) is not None:
            # Stops every backend; django.contrib.auth.authenticate() answers None (a failed sign-in).
            raise PermissionDenied
        user = super().authenticate(request, username=username, password=password, **kwargs)
        if user is None:
            if name and password:
                login_failed(request, name)
        else:
            login_succeeded(request, name)
        return user

    @staticmethod
    def _username_field() -> str:
        from django.contrib.auth import get_user_model

        return get_user_model().USERNAME_FIELD


# --- the two sign-in doors -----------------------------------------------------------------------


class LoginView(account_views.LoginView):
    """allauth's sign-in (username and password, then the second factor of those who enrolled one); past the
    throttle's limit, 429 with the form and when to try again."""

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        username = request.POST.get("login") or request.POST.get("username", "")
        wait = login_refused_for(request, username)
        if wait is None:
            return super().post(request, *args, **kwargs)
        log.info("login_throttled", door="portal")
        form = self.get_form_class()(request=request, initial={"login": username})
        context = self.get_context_data(form=form, throttled=throttled_message(wait))
        response = self.render_to_response(context, status=429)
        response["Retry-After"] = str(wait)
        return response


class ObtainAuthTokenView(ObtainAuthToken):
    """POST username and password, get the user's API token; past the throttle's limit, 429 throttled.

    A clinician's, auditor's or custodian's password alone yields no token (403 second_factor_required): they
    POST here with no credentials from a session that passed the second factor (CSRF token included), or
    create a personal token in the portal (/accounts/tokens/).
    """

    # ObtainAuthToken names DRF's JSONParser itself: the limited one refuses oversized, deep or non-Unicode JSON.
    parser_classes = (FormParser, MultiPartParser, LimitedJSONParser)
    authentication_classes = (SessionAuthentication,)

    @extend_schema(
        summary="Get your API token (username and password, or a session that passed the second factor)",
        description="Failed attempts are counted per username and client address: past the limit, 429 "
        "throttled with Retry-After, whether or not the username exists. Staff (clinicians, auditors, custodians, "
        "model stewards) get no token for a password alone: 403 second_factor_required.",
        request=AuthTokenSerializer,
        responses={
            200: inline_serializer("AuthTokenResponse", {"token": serializers.CharField()}),
            400: OpenApiResponse(description='validation_failed: {"code", "message", "detail"}'),
            403: OpenApiResponse(description='second_factor_required or mfa_required: {"code", "message", "detail"}'),
            429: OpenApiResponse(description='throttled: {"code", "message", "detail"}, with Retry-After'),
        },
    )
    def post(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        username = request.data.get("username", "") if hasattr(request.data, "get") else ""
        if not username and request.user.is_authenticated:
            return self._token_for_session(request)
        wait = login_refused_for(request, str(username or ""))
        if wait is not None:
            log.info("login_throttled", door="api-token")
            raise Throttled(wait=wait, detail=throttled_message(wait))
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        user = serializer.validated_data["user"]
        if second_factor_required(user):
            log.info("token_refused_without_second_factor", user_id=user.pk)
            raise SecondFactorRequired()
        token, _ = Token.objects.get_or_create(user=user)
        return Response({"token": token.key})

    @staticmethod
    def _token_for_session(request: Request) -> Response:
        user = request.user
        if second_factor_required(user) and not session_passed_second_factor(request._request):
            raise SecondFactorRequired()
        token, _ = Token.objects.get_or_create(user=user)
        return Response({"token": token.key})


obtain_auth_token = ObtainAuthTokenView.as_view()
