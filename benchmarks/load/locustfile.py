"""The load test's users: patients, clinicians and auditors doing what they do, through the portal and the API.

Run by `python -m benchmarks.load.run` (make load), which starts the platform, makes the accounts and
passes them in LOAD_ACCOUNTS (a JSON file). Every request is named "<class>: <endpoint>"; the class
(e.g. "patient portal") is what the summary reports p50/p95 for, from every single response time
(written to LOAD_SUMMARY at the end), not from Locust's rounded histogram.

Any answer that is not what a well-behaved client expects counts as an error: a status other than the
expected one, a sign-in that lands back on the form, an analysis request that is not accepted.
"""

import base64
import hashlib
import hmac
import itertools
import json
import math
import os
import random
import re
import struct
import threading
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from locust import HttpUser, between, events, task

ACCOUNTS: dict[str, Any] = json.loads(Path(os.environ["LOAD_ACCOUNTS"]).read_text())
_patient_accounts = itertools.cycle(ACCOUNTS["patients"])
# Staff accounts: their personal API token and authenticator secret (run.py enrols them); one portal session each.
STAFF_SECOND_FACTOR: dict[str, dict[str, str]] = {
    ACCOUNTS[kind]["username"]: ACCOUNTS[kind] for kind in ("clinician", "auditor") if "token" in ACCOUNTS[kind]
}
STAFF_SESSIONS: dict[str, str] = {}
STAFF_SESSIONS_LOCK = threading.Lock()
_accounts_lock = threading.Lock()
CSRF_FIELD = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


class PlatformUser(HttpUser):
    abstract = True
    wait_time = between(1, 3)
    username = ""
    password = ""

    def sign_in(self) -> None:
        """Get an API token and sign in through the portal's form (session cookie), as the two kinds of client do.

        The token first: once a session is open, the token endpoint (like every API POST made with the
        session) wants the CSRF token, as it should. Staff (whose password alone yields no token) use the personal
        token run.py made for them, and share one portal session per account: the first of them signs in with
        the password and the authenticator app's code (a code passes once per 30 s period).
        """
        account = STAFF_SECOND_FACTOR.get(self.username)
        if account is not None:
            self.api_headers = {"Authorization": f"Token {account['token']}"}
            with STAFF_SESSIONS_LOCK:
                cookie = STAFF_SESSIONS.get(self.username)
                if cookie is None:
                    self._portal_sign_in(second_factor_secret=account["totp_secret"])
                    STAFF_SESSIONS[self.username] = self.client.cookies.get("sessionid") or ""
                else:
                    self.client.cookies.set("sessionid", cookie)
            return
        with self.client.post(
            "/api/auth/token/",
            json={"username": self.username, "password": self.password},
            name="login: API token",
            catch_response=True,
        ) as response:
            if response.status_code == 200:
                self.api_headers = {"Authorization": f"Token {response.json()['token']}"}
            else:
                response.failure(f"no API token ({response.status_code})")
                self.api_headers = {}
        self._portal_sign_in()

    def _portal_sign_in(self, second_factor_secret: str | None = None) -> None:
        form = self.client.get("/accounts/login/", name="login: form")
        token = _csrf_token(form.text)
        with self.client.post(
            "/accounts/login/",
            data={"username": self.username, "password": self.password, "csrfmiddlewaretoken": token, "next": "/"},
            headers={"Referer": f"{self.host}/accounts/login/"},
            name="login: portal sign-in",
            catch_response=True,
        ) as response:
            if second_factor_secret is not None and "/accounts/2fa/authenticate/" in response.url:
                response.success()
                self._second_factor(second_factor_secret, _csrf_token(response.text))
                return
            if response.status_code != 200 or "/accounts/login/" in response.url:
                response.failure(f"sign-in of {self.username} did not open a session ({response.status_code})")

    def _second_factor(self, secret: str, csrf_token: str) -> None:
        with self.client.post(
            "/accounts/2fa/authenticate/",
            data={"code": _totp_code(secret), "csrfmiddlewaretoken": csrf_token},
            headers={"Referer": f"{self.host}/accounts/2fa/authenticate/"},
            name="login: second factor",
            catch_response=True,
        ) as response:
            if response.status_code != 200 or "/accounts/" in response.url:
                response.failure(f"the second factor of {self.username} was refused ({response.status_code})")

    def api_request(self, method: str, path: str, name: str, *, expect: int = 200, **kwargs: Any) -> Any:
        """An API request with the user's token; the parsed JSON, or None after a counted failure (another status)."""
        headers = self.api_headers
        with self.client.request(method, path, headers=headers, name=name, catch_response=True, **kwargs) as response:
            if response.status_code != expect:
                response.failure(f"{response.status_code}")
                return None
            return response.json()

    def api_get(self, path: str, name: str, **kwargs: Any) -> Any:
        return self.api_request("get", path, name, **kwargs)

    def ids_listed(self, path: str, name: str, key: str, known: list[str]) -> list[str]:
        """The ids on the first page of an API list (`key` of each item); `known` when the list failed."""
        page = self.api_get(path, name)
        return known if page is None else [item[key] for item in page["results"]]


class Patient(PlatformUser):
    """Browses the portal (dashboard, records, consents, who used my data) and the API; now and then grants
    the demo clinician a consent and revokes it again (two ledger transactions)."""

    weight = 30

    def on_start(self) -> None:
        with _accounts_lock:
            account = next(_patient_accounts)
        self.username, self.password = account["username"], account["password"]
        self.sign_in()
        self.record_ids: list[str] = []
        self.consent_ids: list[str] = []
        self.refresh_ids()

    def refresh_ids(self) -> None:
        self.record_ids = self.ids_listed("/api/records/", "patient API: records list", "id", self.record_ids)
        self.consent_ids = self.ids_listed(
            "/api/consents/", "patient API: consents list", "consent_id", self.consent_ids
        )

    @task(3)
    def dashboard(self) -> None:
        self.client.get("/", name="patient portal: home")
        self.client.get("/consent/", name="patient portal: consent dashboard")

    @task(3)
    def records(self) -> None:
        self.client.get("/records/", name="patient portal: records list")
        if self.record_ids:
            self.client.get(f"/records/{random.choice(self.record_ids)}/", name="patient portal: record detail")

    @task(2)
    def consents(self) -> None:
        if self.consent_ids:
            self.client.get(f"/consent/{random.choice(self.consent_ids)}/", name="patient portal: consent detail")
        self.client.get("/audit/my-data/", name="patient portal: who used my data")

    @task(3)
    def api(self) -> None:
        self.refresh_ids()
        if self.record_ids:
            record_id = random.choice(self.record_ids)
            self.api_get(f"/api/records/{record_id}/", "patient API: record detail")
            self.api_get(f"/api/records/{record_id}/integrity/", "patient API: record integrity")
        if self.consent_ids:
            self.api_get(f"/api/consents/{random.choice(self.consent_ids)}/history/", "patient API: consent history")
        self.api_get("/api/grantees/", "patient API: grantees")

    @task(1)
    def grant_and_revoke(self) -> None:
        now = datetime.now(UTC)
        granted = self.api_request(
            "post",
            "/api/consents/",
            "patient consent change: grant",
            expect=201,
            json={
                "grantee": ACCOUNTS["clinician_grantee"],
                "purposes": ["diagnostic-model:diabetes-progression"],
                "categories": ["laboratory"],
                "valid_from": now.isoformat(),
                "valid_until": (now + timedelta(days=30)).isoformat(),
            },
        )
        if granted is not None:
            self.api_request("post", f"/api/consents/{granted['consent_id']}/revoke/", "patient consent change: revoke")


class Clinician(PlatformUser):
    """Lists and reads their analyses (portal pages, htmx panels, API) and requests new ones, so that
    analyses run on the workers throughout the test."""

    weight = 12

    def on_start(self) -> None:
        self.username, self.password = ACCOUNTS["clinician"]["username"], ACCOUNTS["clinician"]["password"]
        self.sign_in()
        self.models = [card["name"] for card in self.api_get("/api/models/", "clinician API: models") or []]
        self.analysis_ids: list[str] = []

    def refresh_ids(self) -> None:
        self.analysis_ids = self.ids_listed("/api/analyses/", "clinician API: analyses list", "id", self.analysis_ids)

    @task(3)
    def portal_list(self) -> None:
        self.client.get("/analytics/", name="clinician portal: analyses list")

    @task(4)
    def portal_detail(self) -> None:
        if not self.analysis_ids:
            self.refresh_ids()
        if self.analysis_ids:
            analysis_id = random.choice(self.analysis_ids)
            self.client.get(f"/analytics/{analysis_id}/", name="clinician portal: analysis (with results)")
            htmx = {"HX-Request": "true"}
            self.client.get(
                f"/analytics/{analysis_id}/progress/", headers=htmx, name="clinician portal: progress panel"
            )

    @task(3)
    def api(self) -> None:
        self.refresh_ids()
        if self.analysis_ids:
            self.api_get(f"/api/analyses/{random.choice(self.analysis_ids)}/", "clinician API: analysis detail")
        if self.models:
            self.api_get(f"/api/models/{random.choice(self.models)}/", "clinician API: model card")

    @task(1)
    def submit_in_portal(self) -> None:
        form = self.client.get("/analytics/new/", name="clinician portal: new analysis form")
        with self.client.post(
            "/analytics/new/",
            data={
                "model": random.choice(self.models),
                "cohort_kind": "consented",
                "pseudonyms": "",
                "csrfmiddlewaretoken": _csrf_token(form.text),
            },
            headers={"Referer": f"{self.host}/analytics/new/"},
            name="clinician submit: portal",
            catch_response=True,
        ) as response:
            # Success redirects to the new analysis's page.
            if response.status_code != 200 or not re.search(r"/analytics/[0-9a-f-]{36}/$", response.url):
                response.failure(f"analysis not accepted ({response.status_code})")

    @task(1)
    def submit_by_api(self) -> None:
        submitted = self.api_request(
            "post",
            "/api/analyses/",
            "clinician submit: API",
            expect=201,
            json={"model": random.choice(self.models), "cohort": {"kind": "consented"}},
        )
        if submitted is not None:
            self.analysis_ids.insert(0, submitted["id"])


class Auditor(PlatformUser):
    """Searches the access log (portal and API) with the filters an audit uses."""

    weight = 8

    def on_start(self) -> None:
        self.username, self.password = ACCOUNTS["auditor"]["username"], ACCOUNTS["auditor"]["password"]
        self.sign_in()
        self.pseudonyms: list[str] = []
        self.request_ids: list[str] = []

    def searches(self) -> list[dict[str, str]]:
        since = (datetime.now(UTC) - timedelta(minutes=random.choice((5, 60, 24 * 60)))).strftime("%Y-%m-%dT%H:%M:%SZ")
        choices: list[dict[str, str]] = [
            {},
            {"decision": "refuse"},
            {"decision": "admit", "kind": "record_access"},
            {"since": since},
            {"ordering": "recorded_at", "page": "2"},
        ]
        if self.pseudonyms:
            choices.append({"patient": random.choice(self.pseudonyms)})
        if self.request_ids:
            choices.append({"request": random.choice(self.request_ids)})
        return choices

    @task(3)
    def portal_search(self) -> None:
        params = random.choice(self.searches())
        # An out-of-range page is answered with the last page, as Paginator.get_page does.
        self.client.get("/audit/", params=params, name="auditor portal: access-log search")

    @task(3)
    def api_search(self) -> None:
        params = random.choice(self.searches())
        params.pop("page", None)  # the API answers 404 for a page past the end, by design
        events_page = self.api_get("/api/audit/events/", "auditor API: access-log search", params=params)
        if events_page is not None:
            for event in events_page["results"][:20]:
                if event.get("patient_pseudonym") and len(self.pseudonyms) < 50:
                    self.pseudonyms.append(event["patient_pseudonym"])
                if event.get("request_id") and len(self.request_ids) < 50:
                    self.request_ids.append(event["request_id"])

    @task(1)
    def ledger_view(self) -> None:
        self.api_get("/api/audit/ledger/blocks/", "auditor API: ledger blocks")


def _totp_code(secret: str) -> str:
    """An authenticator app's code for `secret` now (RFC 6238: HMAC-SHA1, 30 s, 6 digits)."""
    key = base64.b32decode(secret, casefold=True)
    digest = hmac.new(key, struct.pack(">Q", int(time.time()) // 30), hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    return f"{(struct.unpack('>I', digest[offset : offset + 4])[0] & 0x7FFFFFFF) % 1_000_000:06d}"


def _csrf_token(html: str) -> str:
    found = CSRF_FIELD.search(html)
    return found.group(1) if found else ""


# --- the summary: exact percentiles per endpoint class -------------------------------------------

_times: dict[str, list[float]] = defaultdict(list)
_errors: dict[str, int] = defaultdict(int)
_error_kinds: dict[str, int] = defaultdict(int)


@events.request.add_listener
def _record(request_type: str, name: str, response_time: float, exception: Any, **_: Any) -> None:
    endpoint_class = name.split(":", 1)[0]
    _times[endpoint_class].append(response_time)
    _times[name].append(response_time)
    if exception is not None:
        _errors[endpoint_class] += 1
        _errors[name] += 1
        _error_kinds[f"{request_type} {name}: {exception}"[:300]] += 1


def _percentile(ordered: list[float], fraction: float) -> float:
    """Nearest-rank percentile of sorted values."""
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


@events.quitting.add_listener
def _write_summary(environment: Any, **_: Any) -> None:
    path = os.environ.get("LOAD_SUMMARY")
    if not path:
        return
    rows = {}
    for name, times in sorted(_times.items()):
        ordered = sorted(times)
        rows[name] = {
            "requests": len(ordered),
            "errors": _errors.get(name, 0),
            "p50_ms": round(_percentile(ordered, 0.50), 1),
            "p95_ms": round(_percentile(ordered, 0.95), 1),
            "p99_ms": round(_percentile(ordered, 0.99), 1),
            "max_ms": round(ordered[-1], 1),
        }
    Path(path).write_text(json.dumps({"rows": rows, "error_kinds": dict(_error_kinds)}, indent=2))
