"""Web security: CSRF on every form, the production settings, the Content-Security-Policy and the other
headers, sign-in throttling, the password policy, and `manage.py check --deploy` with production settings.

The portal's pages are those of the permission matrix (tests/test_permission_matrix.py), fetched as each
user for whom the matrix expects a page, over the same world.
"""

# ruff: noqa: F811 (the `world` fixture is imported from the permission matrix and named as a parameter)

import os
import re
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.test import Client, override_settings
from rest_framework.test import APIClient

from health_platform.security import content_security_policy
from tests.records.factories import PASSWORD, UserFactory
from tests.test_permission_matrix import (  # noqa: F401  (fixtures shared with the permission matrix)
    ANONYMOUS,
    CASES,
    PATIENT,
    World,
    analysis_form,
    client_for,
    declare_body,
    enrol_body,
    grant_form,
    ingest_upload,
    invitation_body,
    ledger_url,
    no_failed_sign_ins_counted,
    nothing_is_queued,
    refusals_body,
    review_body,
    review_key,
    triage_body,
    verify_upload,
    world,
    world_folder,
)

REPO = Path(__file__).resolve().parents[2]
LOGIN = "/accounts/login/"
TOKEN = "/api/auth/token/"


# --- pages ---------------------------------------------------------------------------------------


def portal_pages() -> list[tuple[str, str, bool]]:
    """(case id, user, htmx) of every portal GET the matrix expects to answer 200 with a page."""
    pages = []
    for case in CASES:
        if case.method != "GET" or case.route.startswith(("api/", "admin/")):
            continue
        for who, expected in case.expect.items():
            if expected == 200:
                pages.append((case.id, who, case.htmx))
    return pages


PAGES = portal_pages()
CASES_BY_ID = {case.id: case for case in CASES}


class PageScan(HTMLParser):
    """Collects what a Content-Security-Policy of 'self' would block, and the page's POST forms."""

    def __init__(self) -> None:
        super().__init__()
        self.inline: list[str] = []
        self.forms: list[dict[str, str]] = []
        self._script_with_src = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        for name, value in values.items():
            if name == "style":
                self.inline.append(f"style attribute on <{tag}>")
            if name.startswith("on"):
                self.inline.append(f"{name} handler on <{tag}>")
            if name in ("href", "src", "action") and value.strip().lower().startswith("javascript:"):
                self.inline.append(f"javascript: URL on <{tag}>")
            if name in ("src", "href") and tag in ("script", "link") and re.match(r"^(https?:)?//", value):
                self.inline.append(f"<{tag}> from another origin: {value}")
        if tag == "style":
            self.inline.append("<style> element")
        if tag == "script":
            # A JSON data block (json_script, allauth's passkey settings) is data: no policy runs or blocks it.
            self._script_with_src = bool(values.get("src")) or values.get("type") == "application/json"
        if tag == "form" and values.get("method", "get").lower() == "post":
            self.forms.append(values)

    def handle_data(self, data: str) -> None:
        if self.lasttag == "script" and not self._script_with_src and data.strip():
            self.inline.append("inline <script>")


def scan(html: str) -> PageScan:
    parser = PageScan()
    parser.feed(html)
    return parser


def fetch(world: World, case_id: str, who: str):
    case = CASES_BY_ID[case_id]
    headers = {"HX-Request": "true"} if case.htmx else {}
    response = client_for(world, who).get(case.path(world), headers=headers)
    assert response.status_code == 200, (case_id, who)
    return response


# --- Content-Security-Policy and headers ---------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    "path",
    [
        LOGIN,
        "/",
        "/api/records/",
        "/api/schema/",
        "/api/docs/",
        "/fhir/metadata",
        "/fhir/Consent",
        "/static/health_platform/base.css",
        "/no-such-page/",
    ],
)
def test_every_response_carries_the_content_security_policy_and_the_security_headers(client, path):
    response = client.get(path)

    policy = response["Content-Security-Policy"]
    assert policy == content_security_policy()
    directives = dict(part.strip().split(" ", 1) for part in policy.split(";"))
    assert directives["default-src"] == directives["script-src"] == directives["style-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'"
    assert directives["object-src"] == "'none'"
    assert "unsafe-inline" not in policy
    assert "unsafe-eval" not in policy
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"
    assert response["Cross-Origin-Opener-Policy"] == "same-origin"
    assert "camera=()" in response["Permissions-Policy"]


@pytest.mark.django_db
@pytest.mark.parametrize(("case_id", "who", "htmx"), PAGES, ids=[f"{c} as {w}" for c, w, _ in PAGES])
def test_no_portal_page_carries_inline_script_or_style(world, case_id, who, htmx):
    response = fetch(world, case_id, who)
    if "html" not in response["Content-Type"]:
        return  # the export's file and manifest
    found = scan(response.content.decode())
    assert found.inline == [], f"{case_id} as {who}: {found.inline}"


@pytest.mark.django_db
def test_the_api_docs_page_loads_its_script_and_styles_from_files(client):
    found = scan(client.get("/api/docs/").content.decode())
    assert found.inline == []
    script = client.get("/api/docs/", {"script": ""})
    assert script.status_code == 200
    assert script["Content-Type"].startswith("application/javascript")


@pytest.mark.django_db
def test_the_policy_can_be_sent_report_only(client):
    with override_settings(CONTENT_SECURITY_POLICY_REPORT_ONLY=True):
        response = Client().get(LOGIN)
    assert "Content-Security-Policy" not in response
    assert response["Content-Security-Policy-Report-Only"] == content_security_policy()


# --- CSRF ----------------------------------------------------------------------------------------

# Every POST form of the portal: its action (ids replaced by <id>), who can post it, a valid body, and the
# answer to a valid post with a token. A form that appears on a page and is not here fails the test below.
FORMS = {
    "/accounts/login/": (ANONYMOUS, lambda world: {"username": "matrix-patient-alice", "password": PASSWORD}, 302),
    "/accounts/logout/": (PATIENT, lambda world: {}, 302),
    # The passkey sign-in (allauth.mfa): an empty credential is refused, back to the sign-in page with the error.
    "/accounts/2fa/webauthn/login/": (ANONYMOUS, lambda world: {"credential": "{}"}, 302),
    # The terms: the page to sign them on (200). A change without the passkey's signature: refused (400).
    "/consent/grant/": (PATIENT, grant_form, 200),
    "/consent/<id>/revoke/": (PATIENT, lambda world: {}, 400),
    "/consent/passkeys/reset/": ("custodian", lambda world: {}, 400),
    "/analytics/new/": ("clinician", analysis_form, 302),
    "/analytics/<id>/cancel/": ("clinician", lambda world: {}, 302),
    # A training run over what St Mary's offers (the matrix world's patient consented to it training the family).
    "/training/new/": ("model_steward", lambda world: {"family": "breast-cancer", "rounds": "1"}, 302),
    "/audit/exports/": ("auditor", lambda world: {"format": "csv"}, 302),
    "/records/ingest/": ("custodian", ingest_upload, 200),
    # Unconfirmed (400): an erasure would mark the patient's anchors erased on the world's shared ledger.
    "/records/erasure/": (PATIENT, lambda world: {}, 400),
    "/audit/verify/": ("auditor", verify_upload, 200),
    "/audit/my-data/download/": (PATIENT, lambda world: {}, 200),  # the file itself, logged on the ledger
    "/directory/clinicians/": (
        "custodian",
        lambda world: {"display_name": "Dr Csrf", "username": "csrf-dr", "email": "c@example.org", "organisation": ""},
        302,
    ),
    "/directory/organisations/": ("custodian", lambda world: {"slug": "csrf-org", "name": "Csrf"}, 302),
    "/directory/model-stewards/": (
        "custodian",
        lambda world: {"steward-username": "csrf-steward", "steward-email": "s@example.org"},
        302,
    ),
    "/directory/grantees/<id>/deactivate/": ("custodian", lambda world: {}, 302),
    "/directory/grantees/<id>/second-factor-reset/": ("custodian", lambda world: {}, 302),
    "/directory/invitations/": ("custodian", invitation_body, 201),
    "/directory/invitations/<id>/revoke/": ("custodian", lambda world: {}, 302),
    "/directory/invitations/<id>/reissue/": ("custodian", lambda world: {}, 201),
    "/enrol/": (ANONYMOUS, lambda world: {"code": world.directory["token"]}, 302),
    "/enrol/link/<token>/": (ANONYMOUS, enrol_body, 302),
    # The account pages (allauth's). Those that ask to confirm the password first send a session made by
    # force_login there (302): the token is checked before that.
    "/accounts/reauthenticate/": (PATIENT, lambda world: {"password": PASSWORD}, 302),
    "/accounts/email/": (PATIENT, lambda world: {"action_add": "", "email": "csrf-new@example.org"}, 302),
    "/accounts/confirm-email/<id>/": (ANONYMOUS, lambda world: {}, 302),
    "/accounts/password/change/": (
        PATIENT,
        lambda world: {"oldpassword": PASSWORD, "password1": "a-new-csrf-password", "password2": "a-new-csrf-password"},
        302,
    ),
    "/accounts/password/reset/": (ANONYMOUS, lambda world: {"email": "csrf-nobody@example.org"}, 302),
    "/accounts/2fa/reauthenticate/": ("clinician", lambda world: {"code": "000000"}, 200),  # a wrong code
    "/accounts/2fa/totp/activate/": (PATIENT, lambda world: {"code": "000000"}, 302),
    "/accounts/2fa/totp/deactivate/": ("clinician", lambda world: {}, 302),
    "/accounts/2fa/recovery-codes/generate/": ("clinician", lambda world: {}, 302),
    "/accounts/2fa/webauthn/add/": (PATIENT, lambda world: {"name": "a key", "credential": "{}"}, 302),
    "/accounts/2fa/webauthn/reauthenticate/": ("clinician", lambda world: {"credential": "{}"}, 302),
    "/accounts/2fa/webauthn/keys/<id>/remove/": ("clinician", lambda world: {}, 302),
    "/accounts/2fa/webauthn/keys/<id>/edit/": ("clinician", lambda world: {"name": "renamed"}, 302),
    "/accounts/tokens/": (PATIENT, lambda world: {"action": "create"}, 200),
    # Emergency access and misuse alerts.
    "/care/emergencies/": ("clinician", declare_body, 302),
    "/care/emergencies/<id>/review/": ("auditor", review_body, 302),
    "/care/my-emergency-access/": (PATIENT, refusals_body, 302),
    "/oversight/alerts/score/": ("auditor", lambda world: {}, 302),
    "/oversight/alerts/<id>/triage/": ("auditor", triage_body, 302),
}


def normalised(action: str) -> str:
    action = action.split("#")[0].split("?")[0]
    action = re.sub(r"^/enrol/link/[0-9A-Z]+/$", "/enrol/link/<token>/", action)
    action = re.sub(r"/grantees/(?:clinician|org):[^/]+/", "/grantees/<id>/", action)
    action = re.sub(r"/keys/[0-9]+/", "/keys/<id>/", action)
    return re.sub(r"/(?:[0-9a-f-]{32,36}|consent-[^/]+|[A-Za-z0-9][A-Za-z0-9._:-]{20,})/", "/<id>/", action)


@pytest.mark.django_db
def test_every_post_form_of_the_portal_carries_a_csrf_token_and_is_in_the_csrf_table(world):
    seen: set[str] = set()
    for case_id, who, _ in PAGES:
        response = fetch(world, case_id, who)
        if "html" not in response["Content-Type"]:
            continue
        html = response.content.decode()
        for form in scan(html).forms:
            # A form without an action posts to its own page (allauth's passkey rename).
            seen.add(normalised(form.get("action") or response.request["PATH_INFO"]))
        assert html.count('name="csrfmiddlewaretoken"') >= html.lower().count('method="post"'), (case_id, who)
    login_page = Client().get(LOGIN).content.decode()
    seen |= {normalised(form.get("action", "")) for form in scan(login_page).forms}
    assert seen == set(FORMS), f"POST forms not in the CSRF table: {seen - set(FORMS)}; gone: {set(FORMS) - seen}"


def form_path(world: World, action: str) -> str:
    if action.endswith("/second-factor-reset/"):
        return action.replace("<id>", world.directory["resettable"])
    if action.startswith("/directory/grantees/"):
        return action.replace("<id>", world.directory["organisation"])
    if action.startswith("/directory/invitations/"):
        return action.replace("<id>", world.directory["invitation"])
    if action.startswith("/enrol/link/"):
        return action.replace("<token>", world.directory["token"])
    if action.startswith("/accounts/2fa/webauthn/keys/"):
        return action.replace("<id>", world.passkey["clinician"])
    if action.startswith("/accounts/confirm-email/"):
        return action.replace("<id>", world.email_key)
    if action.startswith("/analytics/"):
        return action.replace("<id>", world.analysis["clinician"])
    if action.startswith("/care/emergencies/"):
        return action.replace("<id>", world.emergency[review_key("portal", "clinician")])
    if action.startswith("/oversight/alerts/"):
        return action.replace("<id>", world.alert["portal"])
    return action.replace("<id>", world.revocable["portal"])


@pytest.mark.django_db
@pytest.mark.parametrize("action", sorted(FORMS))
def test_each_portal_form_is_refused_without_a_csrf_token_and_accepted_with_one(world, action):
    who, body, accepted = FORMS[action]
    path = form_path(world, action)

    def client() -> Client:
        made = Client(enforce_csrf_checks=True)
        if who != ANONYMOUS:
            made.force_login(world.users[who])
        return made

    without = client().post(path, body(world))
    assert without.status_code == 403, action

    with_token = client()
    with_token.get(LOGIN)  # any page sets the CSRF cookie
    token = with_token.cookies[settings.CSRF_COOKIE_NAME].value
    response = with_token.post(path, {**body(world), "csrfmiddlewaretoken": token})
    assert response.status_code == accepted, (action, response.status_code)


@pytest.mark.django_db
def test_api_writes_with_a_session_need_the_csrf_token_and_with_a_token_do_not(world):
    patient = world.users[PATIENT]
    body = {"format": "json"}
    auditor = world.users["auditor"]
    session = APIClient(enforce_csrf_checks=True)
    session.force_login(auditor)
    refused = session.post("/api/audit/exports/", body, format="json")
    assert refused.status_code == 403
    assert "CSRF" in refused.json()["message"]

    from rest_framework.authtoken.models import Token

    token = Token.objects.get_or_create(user=auditor)[0].key
    by_token = APIClient(enforce_csrf_checks=True)
    by_token.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert by_token.post("/api/audit/exports/", body, format="json").status_code == 202
    assert patient.pk  # the world is in place


@pytest.mark.django_db
def test_the_admin_sign_in_needs_the_csrf_token():
    UserFactory(username="csrf-admin", is_staff=True, is_superuser=True)
    response = Client(enforce_csrf_checks=True).post("/admin/login/", {"username": "csrf-admin", "password": PASSWORD})
    assert response.status_code == 403


# --- production settings -------------------------------------------------------------------------

PRODUCTION = {
    "DJANGO_DEBUG": "false",
    "DJANGO_HTTPS": "true",
    "DJANGO_SECRET_KEY": "k3v9-Xq2rT8zLm4wYp7Bn1Hc6Fd0Gs5Ja2Ue9Ri4Oy8Wt3Qz7Nb1Mv6Cx5Lk0Pj",
    "DJANGO_ALLOWED_HOSTS": "health.example.org",
    "DJANGO_CSRF_TRUSTED_ORIGINS": "https://health.example.org",
    "DJANGO_SECURE_PROXY_SSL_HEADER": "X-Forwarded-Proto: https",
}
SHOWN = [
    "DEBUG",
    "SESSION_COOKIE_SECURE",
    "SESSION_COOKIE_HTTPONLY",
    "SESSION_COOKIE_SAMESITE",
    "CSRF_COOKIE_SECURE",
    "CSRF_COOKIE_HTTPONLY",
    "CSRF_COOKIE_SAMESITE",
    "SECURE_SSL_REDIRECT",
    "SECURE_HSTS_SECONDS",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS",
    "SECURE_HSTS_PRELOAD",
    "SECURE_PROXY_SSL_HEADER",
    "X_FRAME_OPTIONS",
    "SECURE_REFERRER_POLICY",
    "SECURE_CONTENT_TYPE_NOSNIFF",
    "SESSION_COOKIE_AGE",
]


def settings_with(environment: dict[str, str], tmp_path: Path) -> dict[str, object]:
    """The settings module loaded in a fresh process with `environment` (and nothing from the caller's)."""
    code = (
        "import django, json; django.setup(); from django.conf import settings; "
        f"print(json.dumps({{name: getattr(settings, name, None) for name in {SHOWN!r}}}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env=clean_environment(environment, tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    import json

    return json.loads(result.stdout.strip().splitlines()[-1])


def clean_environment(environment: dict[str, str], tmp_path: Path) -> dict[str, str]:
    kept = {name: os.environ[name] for name in ("PATH", "HOME", "LANG") if name in os.environ}
    return {
        **kept,
        "DJANGO_SETTINGS_MODULE": "health_platform.settings",
        "HEALTH_PLATFORM_VAR_DIR": str(tmp_path / "var"),
        **environment,
    }


def test_production_settings_secure_the_cookies_and_the_transport(tmp_path):
    shown = settings_with(PRODUCTION, tmp_path)

    assert shown["DEBUG"] is False
    assert shown["SESSION_COOKIE_SECURE"] is shown["CSRF_COOKIE_SECURE"] is True
    assert shown["SESSION_COOKIE_HTTPONLY"] is shown["CSRF_COOKIE_HTTPONLY"] is True
    assert shown["SESSION_COOKIE_SAMESITE"] == shown["CSRF_COOKIE_SAMESITE"] == "Lax"
    assert shown["SECURE_SSL_REDIRECT"] is True
    assert shown["SECURE_HSTS_SECONDS"] >= 365 * 24 * 60 * 60  # type: ignore[operator]
    assert shown["SECURE_HSTS_INCLUDE_SUBDOMAINS"] is True
    assert shown["SECURE_PROXY_SSL_HEADER"] == ["HTTP_X_FORWARDED_PROTO", "https"]
    assert shown["X_FRAME_OPTIONS"] == "DENY"
    assert shown["SECURE_REFERRER_POLICY"] == "same-origin"
    assert shown["SECURE_CONTENT_TYPE_NOSNIFF"] is True
    assert shown["SESSION_COOKIE_AGE"] <= 12 * 60 * 60  # type: ignore[operator]


def test_the_embedded_default_keeps_working_over_plain_http_on_one_machine(tmp_path):
    shown = settings_with({}, tmp_path)

    assert shown["SECURE_SSL_REDIRECT"] is False
    assert shown["SESSION_COOKIE_SECURE"] is False
    assert shown["SECURE_HSTS_SECONDS"] == 0
    assert shown["X_FRAME_OPTIONS"] == "DENY"
    assert shown["SESSION_COOKIE_HTTPONLY"] is True


def test_manage_py_check_deploy_is_clean_with_production_settings(tmp_path):
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "DEBUG"],
        cwd=REPO,
        env=clean_environment(PRODUCTION, tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "System check identified no issues" in output, output
    assert "WARNING" not in output


@pytest.mark.django_db
@override_settings(
    SECURE_SSL_REDIRECT=True,
    SECURE_HSTS_SECONDS=31536000,
    SECURE_PROXY_SSL_HEADER=("HTTP_X_FORWARDED_PROTO", "https"),
    SESSION_COOKIE_SECURE=True,
    CSRF_COOKIE_SECURE=True,
)
def test_under_https_settings_plain_http_is_redirected_and_cookies_are_secure_and_http_only():
    client = Client()
    plain = client.get(LOGIN)
    assert plain.status_code == 301
    assert plain["Location"].startswith("https://")

    user = UserFactory(username="cookie-carl")
    secure = client.get(LOGIN, headers={"X-Forwarded-Proto": "https"})
    assert secure["Strict-Transport-Security"].startswith("max-age=31536000")
    token = client.cookies[settings.CSRF_COOKIE_NAME]
    assert token["secure"]
    assert token["httponly"]
    assert token["samesite"] == "Lax"
    signed_in = client.post(
        LOGIN,
        {"username": user.username, "password": PASSWORD},
        headers={"X-Forwarded-Proto": "https"},
    )
    assert signed_in.status_code == 302
    session = signed_in.cookies[settings.SESSION_COOKIE_NAME]
    assert session["secure"]
    assert session["httponly"]
    assert session["samesite"] == "Lax"


# --- sign-in throttling --------------------------------------------------------------------------


def login(client: Client, username: str, password: str, address: str = "198.51.100.7"):
    return client.post(LOGIN, {"username": username, "password": password}, REMOTE_ADDR=address)


def token(username: str, password: str, address: str = "198.51.100.7", **headers: str):
    return APIClient().post(
        TOKEN, {"username": username, "password": password}, format="json", REMOTE_ADDR=address, **headers
    )


@pytest.mark.django_db
def test_portal_sign_in_is_refused_after_repeated_failures_even_with_the_right_password():
    UserFactory(username="nurse-nina")
    client = Client()
    for _ in range(settings.LOGIN_THROTTLE_FAILURES):
        assert login(client, "nurse-nina", "wrong-password").status_code == 200

    refused = login(client, "nurse-nina", PASSWORD)

    assert refused.status_code == 429
    assert int(refused["Retry-After"]) > 0
    assert b"Too many failed sign-in attempts" in refused.content
    assert "_auth_user_id" not in client.session
    # Another address is not held back by this one's failures.
    assert login(Client(), "nurse-nina", PASSWORD, address="203.0.113.9").status_code == 302


@pytest.mark.django_db
def test_throttling_does_not_reveal_whether_a_user_exists():
    UserFactory(username="nurse-nora")

    def attempts(username: str) -> list[tuple[int, str]]:
        client = Client()
        answers = []
        for _ in range(settings.LOGIN_THROTTLE_FAILURES + 2):
            response = login(client, username, "wrong-password")
            text = re.sub(r'value="[^"]*"', "", response.content.decode())  # tokens and the username typed
            text = re.sub(r"\d+ (second|minute)", r"N \1", text)  # the wait counts down between the two runs
            answers.append((response.status_code, text))
        return answers

    known, unknown = attempts("nurse-nora"), attempts("nobody-by-this-name")
    assert [status for status, _ in known] == [status for status, _ in unknown]
    assert [status for status, _ in known][-1] == 429
    assert [text for _, text in known] == [text for _, text in unknown]
    UserFactory(username="nurse-nell")

    def api_answers(username: str) -> list[str]:
        answers = [token(username, "wrong").content.decode() for _ in range(settings.LOGIN_THROTTLE_FAILURES + 1)]
        return [re.sub(r"\d+", "N", answer) for answer in answers]  # the Retry-After count ticks between runs

    assert api_answers("nurse-nell") == api_answers("nobody-either")


@pytest.mark.django_db
def test_the_api_token_endpoint_is_throttled_with_429_and_retry_after():
    UserFactory(username="api-anna")
    for _ in range(settings.LOGIN_THROTTLE_FAILURES):
        assert token("api-anna", "wrong").status_code == 400

    refused = token("api-anna", PASSWORD)

    assert refused.status_code == 429
    assert refused.json()["code"] == "throttled"
    assert set(refused.json()) == {"code", "message", "detail"}
    assert int(refused["Retry-After"]) > 0
    assert token("api-anna", PASSWORD, address="203.0.113.9").status_code == 200


@pytest.mark.django_db
def test_failures_are_counted_across_doors_and_the_admin_sign_in_refuses_too():
    UserFactory(username="admin-ada", is_staff=True, is_superuser=True)
    for _ in range(settings.LOGIN_THROTTLE_FAILURES):
        token("admin-ada", "wrong")

    assert login(Client(), "admin-ada", PASSWORD).status_code == 429
    admin = Client()
    response = admin.post("/admin/login/", {"username": "admin-ada", "password": PASSWORD}, REMOTE_ADDR="198.51.100.7")
    assert response.status_code == 200  # the admin's form, with its usual error
    assert "_auth_user_id" not in admin.session


@pytest.mark.django_db
def test_a_successful_sign_in_clears_the_count_and_the_window_expires():
    UserFactory(username="dr-eve")
    client = Client()
    for _ in range(settings.LOGIN_THROTTLE_FAILURES - 1):
        login(client, "dr-eve", "wrong")
    assert login(client, "dr-eve", PASSWORD).status_code == 302
    for _ in range(settings.LOGIN_THROTTLE_FAILURES - 1):
        assert login(Client(), "dr-eve", "wrong").status_code == 200  # counting starts again

    with override_settings(LOGIN_THROTTLE_WINDOW_SECONDS=1):
        UserFactory(username="dr-fay")
        for _ in range(settings.LOGIN_THROTTLE_FAILURES):
            login(Client(), "dr-fay", "wrong")
        assert login(Client(), "dr-fay", PASSWORD).status_code == 429
        time.sleep(1.5)
        assert login(Client(), "dr-fay", PASSWORD).status_code == 302


@pytest.mark.django_db
@override_settings(LOGIN_THROTTLE_ADDRESS_FAILURES=8)
def test_one_address_guessing_across_many_usernames_is_refused():
    UserFactory(username="spray-target")
    for number in range(8):
        login(Client(), f"guess-{number}", "Winter2026!")

    assert login(Client(), "spray-target", PASSWORD).status_code == 429
    assert login(Client(), "spray-target", PASSWORD, address="203.0.113.9").status_code == 302


@pytest.mark.django_db
def test_a_forged_x_forwarded_for_does_not_reset_the_count():
    UserFactory(username="forged-fred")
    for number in range(settings.LOGIN_THROTTLE_FAILURES):
        Client().post(
            LOGIN,
            {"username": "forged-fred", "password": "wrong"},
            REMOTE_ADDR="198.51.100.7",
            HTTP_X_FORWARDED_FOR=f"192.0.2.{number}",
        )
    refused = Client().post(
        LOGIN,
        {"username": "forged-fred", "password": PASSWORD},
        REMOTE_ADDR="198.51.100.7",
        HTTP_X_FORWARDED_FOR="192.0.2.200",
    )
    assert refused.status_code == 429


@pytest.mark.django_db
@override_settings(NUM_PROXIES=1)
def test_behind_a_trusted_proxy_the_forwarded_address_is_counted():
    UserFactory(username="proxied-pia")
    proxy = "10.0.0.2"
    for _ in range(settings.LOGIN_THROTTLE_FAILURES):
        login_via = Client().post(
            LOGIN,
            {"username": "proxied-pia", "password": "wrong"},
            REMOTE_ADDR=proxy,
            HTTP_X_FORWARDED_FOR="198.51.100.7",
        )
        assert login_via.status_code == 200
    held = Client().post(
        LOGIN,
        {"username": "proxied-pia", "password": PASSWORD},
        REMOTE_ADDR=proxy,
        HTTP_X_FORWARDED_FOR="198.51.100.7",
    )
    other_client = Client().post(
        LOGIN,
        {"username": "proxied-pia", "password": PASSWORD},
        REMOTE_ADDR=proxy,
        HTTP_X_FORWARDED_FOR="203.0.113.9",
    )
    assert (held.status_code, other_client.status_code) == (429, 302)


# --- password policy -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "weak",
    ["short-pw", "password1234", "123456789012345", "nurse-nina-2026"],
    ids=["too short", "common", "all digits", "like the username"],
)
def test_weak_passwords_are_refused(weak):
    user = get_user_model()(username="nurse-nina-2026", email="nina@example.org")
    with pytest.raises(ValidationError):
        validate_password(weak, user=user)


def test_a_long_passphrase_is_accepted_and_the_minimum_is_at_least_twelve():
    validate_password("violet kettle harbour 19")
    minimum = next(v for v in settings.AUTH_PASSWORD_VALIDATORS if v["NAME"].endswith("MinimumLengthValidator"))[
        "OPTIONS"
    ]["min_length"]
    assert minimum >= 12


@pytest.mark.django_db
def test_the_admin_refuses_to_set_a_weak_password():
    admin = UserFactory(username="admin-otto", is_staff=True, is_superuser=True)
    client = Client()
    client.force_login(admin)
    response = client.post(
        "/admin/auth/user/add/",
        {"username": "new-nurse", "password1": "password1234", "password2": "password1234", "usable_password": "true"},
    )
    assert response.status_code == 200  # the form again, with the validators' errors
    assert b"This password is too common" in response.content


def test_the_page_scan_finds_what_the_policy_would_block():
    found = scan(
        '<style>p{}</style><p style="color:red" onclick="go()"><a href="javascript:go()">x</a></p>'
        '<script>go()</script><script src="https://cdn.example.org/x.js"></script><script src="/static/ok.js"></script>'
    )
    assert len(found.inline) == 6, found.inline
