"""Settings, read from the environment with embedded defaults.

Every default is for one machine with nothing installed beyond the project: SQLite, the embedded
ledger file and a broker that needs no server, all under VAR_DIR. Production sets the variables
documented in .env.example; switching database, broker or ledger is configuration only.
"""

import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import environ

from health_platform import celery_config
from training import peers as _training_peers

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
# The file both Celery workers read (HEALTH_PLATFORM_ENV_FILE, default .env here); the environment wins.
environ.Env.read_env(celery_config.env_file(), overwrite=False)

VAR_DIR = celery_config.var_dir(os.environ)
VAR_DIR.mkdir(parents=True, exist_ok=True)

DEBUG = env.bool("DJANGO_DEBUG", default=False)
# The embedded default generates no secrets: without DJANGO_SECRET_KEY a per-installation key is
# created once under VAR_DIR (never in the repository).
SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="")
if not SECRET_KEY:
    from health_platform.local_secrets import local_secret

    SECRET_KEY = local_secret(VAR_DIR, "django-secret-key")

ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",  # allauth's passkey list loads it
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_filters",
    "django_htmx",
    "allauth",
    "allauth.account",
    "allauth.mfa",
    "allauth.usersessions",
    "allauth.socialaccount",
    "allauth.socialaccount.providers.openid_connect",
    "health_platform",
    "accounts",
    "records",
    "consent",
    "analytics",
    "training",
    "audit",
    "care",
    "oversight",
    "directory",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Above whitenoise, so that static files carry the Content-Security-Policy too.
    "health_platform.security.SecurityHeadersMiddleware",
    # Before anything is spent on the request: a URL too long is 414 uri_too_long, a body sent without a length
    # past REQUEST_BODY_MAX_BYTES 413 payload_too_large (JSON under /api/, the portal's page elsewhere).
    "health_platform.request_limits.RequestLimits",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "health_platform.security.PageMethodsMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    "allauth.usersessions.middleware.UserSessionsMiddleware",
    # Staff (clinicians, auditors, custodians, model stewards) without a second factor reach only enrolment and their
    # account.
    "health_platform.second_factor.EnrolmentRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # Last, so that it sees the exceptions views raise: a ledger or database outage is a 503, never a 500.
    "health_platform.portal.OutageMiddleware",
]

ROOT_URLCONF = "health_platform.urls"
WSGI_APPLICATION = "health_platform.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "health_platform.roles.roles_context",
            ],
        },
    },
]

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'health_platform.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL and a busy timeout let the web process and the workers share the file. Transactions begin
    # IMMEDIATE (taking the write lock, waiting up to the timeout for it): SQLite has no SELECT ... FOR
    # UPDATE, and a transaction that reads and then writes while another process has written since its
    # read fails at once with "database is locked", whatever the timeout (seen under the load test).
    # secure_delete: deleted and overwritten content is zeroed in the file (an erased patient's ciphertexts).
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "timeout": 30,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA secure_delete=ON;",
        }
    )
    # A file, not memory: tests start real worker processes that must see the same database.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test-health_platform.sqlite3")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 12}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# Failed sign-ins are counted per (username, client address) and per client address by this backend,
# whichever door they come through (portal, API token, admin); see health_platform.security.
# allauth's backend is not needed for sign-in by username (with it, a token request with a very long username was 503).
AUTHENTICATION_BACKENDS = ["health_platform.security.ThrottledModelBackend"]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

# --- Accounts (django-allauth): sign-in by username, e-mail for reset and verification, second factor ---
# Accounts are made by the hospital (invitations, the directory, seed_demo), never by signing up.
ACCOUNT_ADAPTER = "accounts.adapter.AccountAdapter"
ACCOUNT_LOGIN_METHODS = {"username"}
# The sign-in page answers a signed-in user too (as Django's did): to sign in as someone else on a shared computer.
ACCOUNT_AUTHENTICATED_LOGIN_REDIRECTS = False
ACCOUNT_SIGNUP_FIELDS = ["username*", "email*", "password1*", "password2*"]
ACCOUNT_EMAIL_VERIFICATION = "optional"
ACCOUNT_LOGOUT_ON_PASSWORD_CHANGE = False
ACCOUNT_LOGIN_ON_PASSWORD_RESET = False
ACCOUNT_SESSION_REMEMBER = False  # sessions last SESSION_COOKIE_AGE, a working shift
ACCOUNT_FORMS = {"login": "accounts.forms.LoginForm"}
ACCOUNT_EMAIL_SUBJECT_PREFIX = "[health_platform] "
# A reset asked for an address of no account sends nothing (allauth would send one inviting to sign up, which
# the platform does not offer: its link was a 500). The page answers the same either way.
ACCOUNT_EMAIL_UNKNOWN_ACCOUNTS = False
# Failed sign-ins are throttled by health_platform.security (per username and address, and per address, within
# a window, across the portal, the API token and the admin): allauth's own count of them is left off.
ACCOUNT_RATE_LIMITS = {"login_failed": None}
MFA_SUPPORTED_TYPES = ["totp", "recovery_codes", "webauthn"]
MFA_PASSKEY_LOGIN_ENABLED = True
MFA_ADAPTER = "accounts.adapter.MFAAdapter"
MFA_TOTP_ISSUER = env.str("MFA_TOTP_ISSUER", default="health_platform")
# A code typed in the last second of its 30 s period arrives in the next one: one period either side is accepted
# (RFC 6238, section 5.2, allows one step of transmission delay). A code still passes once only.
MFA_TOTP_TOLERANCE = 1
# WebAuthn needs a secure origin; http://127.0.0.1 and localhost (the embedded default) count as one for browsers.
MFA_WEBAUTHN_ALLOW_INSECURE_ORIGIN = not env.bool("DJANGO_HTTPS", default=False)
SOCIALACCOUNT_ADAPTER = "accounts.adapter.SocialAccountAdapter"
SOCIALACCOUNT_ONLY = False
SOCIALACCOUNT_LOGIN_ON_GET = False
USERSESSIONS_TRACK_ACTIVITY = False
# Single sign-on for staff by OpenID Connect: configured by the OIDC_* variables, nothing when unset.
OIDC_PROVIDER_ID = env.str("OIDC_PROVIDER_ID", default="")
SOCIALACCOUNT_PROVIDERS: dict = {}
if OIDC_PROVIDER_ID:
    SOCIALACCOUNT_PROVIDERS["openid_connect"] = {
        "OAUTH_PKCE_ENABLED": True,
        "APPS": [
            {
                "provider_id": OIDC_PROVIDER_ID,
                "name": env.str("OIDC_PROVIDER_NAME", default="Hospital sign-in"),
                "client_id": env.str("OIDC_CLIENT_ID"),
                "secret": env.str("OIDC_CLIENT_SECRET", default=""),
                "settings": {"server_url": env.str("OIDC_SERVER_URL"), "token_auth_method": "client_secret_post"},
            }
        ],
    }

# E-mail: the embedded default writes each message to a file under VAR_DIR/mail; EMAIL_URL (smtp://...)
# or the EMAIL_* variables send it by SMTP.
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="health_platform <no-reply@localhost>")
EMAIL_HOST = env.str("EMAIL_HOST", default="")
if EMAIL_HOST:
    EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    EMAIL_PORT = env.int("EMAIL_PORT", default=587)
    EMAIL_HOST_USER = env.str("EMAIL_HOST_USER", default="")
    EMAIL_HOST_PASSWORD = env.str("EMAIL_HOST_PASSWORD", default="")
    EMAIL_USE_TLS = env.bool("EMAIL_USE_TLS", default=True)
    EMAIL_USE_SSL = env.bool("EMAIL_USE_SSL", default=False)
    EMAIL_TIMEOUT = env.int("EMAIL_TIMEOUT", default=10)
else:
    EMAIL_BACKEND = "django.core.mail.backends.filebased.EmailBackend"
    EMAIL_FILE_PATH = str(VAR_DIR / "mail")

LANGUAGE_CODE = "en"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
# Without collectstatic (tests, development) static files are served from the apps' folders.
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG

# --- Web security ---
# Headers that hold on plain HTTP too (so on the embedded default, served on 127.0.0.1).
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
# URLs carry record, consent and analysis ids: never send them to another site.
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
# A working shift, not Django's two weeks: a forgotten session on a ward computer ends the same day.
SESSION_COOKIE_AGE = env.int("DJANGO_SESSION_COOKIE_AGE", default=8 * 60 * 60)
# No page reads the CSRF cookie from JavaScript: every form carries the token as a hidden field.
CSRF_COOKIE_HTTPONLY = True
CSRF_COOKIE_SAMESITE = "Lax"
# Production serves the site over HTTPS (directly or behind a TLS-terminating proxy) and sets
# DJANGO_HTTPS=true. It is a switch of its own, not DEBUG: the embedded default runs without DEBUG on
# http://127.0.0.1, where secure-only cookies and a redirect to https would lock everyone out.
HTTPS = env.bool("DJANGO_HTTPS", default=False)
SESSION_COOKIE_SECURE = HTTPS
CSRF_COOKIE_SECURE = HTTPS
SECURE_SSL_REDIRECT = HTTPS
SECURE_HSTS_SECONDS = env.int("DJANGO_HSTS_SECONDS", default=365 * 24 * 60 * 60) if HTTPS else 0
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("DJANGO_HSTS_INCLUDE_SUBDOMAINS", default=True)
SECURE_HSTS_PRELOAD = env.bool("DJANGO_HSTS_PRELOAD", default=True)
# Behind a proxy that terminates TLS: the header it sets on HTTPS requests, e.g. "X-Forwarded-Proto: https".
# Set it only when the proxy always sets (or strips) that header: a client could forge it otherwise.
_proxy_ssl_header = env.str("DJANGO_SECURE_PROXY_SSL_HEADER", default="")
if _proxy_ssl_header:
    _name, _, _value = _proxy_ssl_header.partition(":")
    SECURE_PROXY_SSL_HEADER = ("HTTP_" + _name.strip().upper().replace("-", "_"), _value.strip())
# How many proxies append to X-Forwarded-For in front of the application (0: use the peer address).
# Login throttling counts per client address, so this must match the deployment.
NUM_PROXIES = env.int("DJANGO_NUM_PROXIES", default=0)
# Every response carries this Content-Security-Policy (health_platform.security): the portal loads
# scripts (htmx from django-htmx's static file) and styles from its own origin only, with no inline code.
CONTENT_SECURITY_POLICY = {
    "default-src": ["'self'"],
    "script-src": ["'self'"],
    "style-src": ["'self'"],
    "img-src": ["'self'", "data:"],
    "font-src": ["'self'"],
    "connect-src": ["'self'"],
    "object-src": ["'none'"],
    "base-uri": ["'none'"],
    "form-action": ["'self'"],
    "frame-ancestors": ["'none'"],
}
if OIDC_PROVIDER_ID:
    # Single sign-on starts with a form posted to the platform, answered by a redirect to the provider's
    # authorization endpoint; browsers hold that redirect to form-action too (Chromium refused it with 'self'
    # alone). The provider's origin (OIDC_SERVER_URL's, where its endpoints are) is allowed, nothing more.
    _oidc_server = urlsplit(env.str("OIDC_SERVER_URL"))
    CONTENT_SECURITY_POLICY["form-action"].append(f"{_oidc_server.scheme}://{_oidc_server.netloc}")
if HTTPS:
    CONTENT_SECURITY_POLICY["upgrade-insecure-requests"] = []
# true: send Content-Security-Policy-Report-Only instead (to try a changed policy without breaking pages).
CONTENT_SECURITY_POLICY_REPORT_ONLY = env.bool("DJANGO_CSP_REPORT_ONLY", default=False)
PERMISSIONS_POLICY = "camera=(), microphone=(), geolocation=(), payment=(), usb=()"
# Sign-in throttling against password guessing: after LOGIN_THROTTLE_FAILURES failed sign-ins for one
# username from one address, or LOGIN_THROTTLE_ADDRESS_FAILURES from one address whatever the username,
# sign-in from there is refused (429) until LOGIN_THROTTLE_WINDOW_SECONDS after the first failure.
LOGIN_THROTTLE_FAILURES = env.int("LOGIN_THROTTLE_FAILURES", default=5)
LOGIN_THROTTLE_ADDRESS_FAILURES = env.int("LOGIN_THROTTLE_ADDRESS_FAILURES", default=100)
LOGIN_THROTTLE_WINDOW_SECONDS = env.int("LOGIN_THROTTLE_WINDOW_SECONDS", default=15 * 60)
LOGIN_THROTTLE_CACHE = "default"
# The counters must be shared by every web process: the embedded default keeps them in files under
# VAR_DIR (gunicorn's workers share them); production points CACHE_URL at Redis.
CACHES = {"default": env.cache("CACHE_URL", default=f"filecache://{VAR_DIR / 'cache'}")}

# The longest URL (path and query string) answered: longer is 414 uri_too_long. The web server lets request
# lines of up to 8190 bytes reach the platform (health_platform/gunicorn_config.py): keep this below that.
REQUEST_URI_MAX_BYTES = env.int("REQUEST_URI_MAX_BYTES", default=4096)

# Request size: the ingest limit is enforced by the API with a stable error code, so Django's own
# limit sits just above it.
INGEST_MAX_BYTES = env.int("INGEST_MAX_BYTES", default=5 * 1024 * 1024)
INGEST_MAX_ENTRIES = env.int("INGEST_MAX_ENTRIES", default=1000)
INGEST_MAX_JSON_DEPTH = env.int("INGEST_MAX_JSON_DEPTH", default=32)
# The bulk (NDJSON) ingest stores this many patients' records per database transaction, with the job's progress,
# and anchors them in one ledger transaction: an interrupted ingest resumes at the first slice not committed.
INGEST_NDJSON_SLICE_PATIENTS = env.int("INGEST_NDJSON_SLICE_PATIENTS", default=500)
# Processes reading the next slices while the command stores one, and one more checking the files first
# (records.ndjson); 0: the command reads them itself. Default: one per core.
INGEST_NDJSON_PROCESSES = env.int("INGEST_NDJSON_PROCESSES", default=os.cpu_count() or 1)
DATA_UPLOAD_MAX_MEMORY_SIZE = INGEST_MAX_BYTES + 64 * 1024

# --- Keys (from configuration; the embedded default creates per-installation keys under VAR_DIR) ---
# RECORD_ENCRYPTION_KEYS: "key-id:base64(32 bytes),..."; RECORD_ENCRYPTION_ACTIVE_KEY names the one used
# for new records. Older ids stay listed so that records written under them can still be read.
_default_record_key = None
if not env.str("RECORD_ENCRYPTION_KEYS", default=""):
    from health_platform.local_secrets import local_key_b64

    _default_record_key = f"local-1:{local_key_b64(VAR_DIR, 'record-key-local-1')}"
RECORD_ENCRYPTION_KEYS: str = env.str("RECORD_ENCRYPTION_KEYS", default="") or _default_record_key or ""
RECORD_ENCRYPTION_ACTIVE_KEY = env.str(
    "RECORD_ENCRYPTION_ACTIVE_KEY", default=RECORD_ENCRYPTION_KEYS.split(",")[0].split(":", 1)[0]
)
# Each patient's records are sealed under their own data key, wrapped under the keys above (records.patient_keys);
# this many unwrapped data keys are kept per process (least recently used out).
RECORD_DATA_KEY_CACHE_SIZE = env.int("RECORD_DATA_KEY_CACHE_SIZE", default=4096)
PSEUDONYM_KEY = env.str("PSEUDONYM_KEY", default="")
if not PSEUDONYM_KEY:
    from health_platform.local_secrets import local_key_b64

    PSEUDONYM_KEY = local_key_b64(VAR_DIR, "pseudonym-key")

# The portal's key vault: requesters' CKKS secret contexts (portal mode) are sealed under these keys,
# in the same "key-id:base64" format, and opened only by the web process.
ANALYTICS_KEY_VAULT_KEYS: str = env.str("ANALYTICS_KEY_VAULT_KEYS", default="") or ""
if not ANALYTICS_KEY_VAULT_KEYS:
    from health_platform.local_secrets import local_key_b64

    ANALYTICS_KEY_VAULT_KEYS = f"local-1:{local_key_b64(VAR_DIR, 'analytics-vault-key-local-1')}"
ANALYTICS_KEY_VAULT_ACTIVE_KEY = env.str(
    "ANALYTICS_KEY_VAULT_ACTIVE_KEY", default=ANALYTICS_KEY_VAULT_KEYS.split(",")[0].split(":", 1)[0]
)

# Second factors: allauth keeps each TOTP secret and recovery-code seed in the database; they are sealed under
# these keys (same "key-id:base64" format) by accounts.adapter.MFAAdapter, so a copy of the database alone does
# not give anyone a member of staff's second factor.
SECOND_FACTOR_KEYS: str = env.str("SECOND_FACTOR_KEYS", default="") or ""
if not SECOND_FACTOR_KEYS:
    from health_platform.local_secrets import local_key_b64

    SECOND_FACTOR_KEYS = f"local-1:{local_key_b64(VAR_DIR, 'second-factor-key-local-1')}"
SECOND_FACTOR_ACTIVE_KEY = env.str(
    "SECOND_FACTOR_ACTIVE_KEY", default=SECOND_FACTOR_KEYS.split(",")[0].split(":", 1)[0]
)

# --- Care: reads for treatment and emergency access ---
# How long an emergency declaration opens its patient's records (hours; the ledger caps it at 24).
EMERGENCY_ACCESS_HOURS = env.float("EMERGENCY_ACCESS_HOURS", default=4.0)
# The identifier system a clinician's bare patient identifier is taken in (an MRN's naming system); the demo's.
PATIENT_IDENTIFIER_SYSTEM = env.str(
    "PATIENT_IDENTIFIER_SYSTEM", default="https://health-platform.example/fhir/NamingSystem/demo-patient"
)

# The misuse detector: fitted on this many days of the access log before the days it scores.
OVERSIGHT_HISTORY_DAYS = env.int("OVERSIGHT_HISTORY_DAYS", default=28)
# The hospital's hours from UTC: a clinician's day and night (22:00-06:00 for emergency reads) are the hospital's.
OVERSIGHT_UTC_OFFSET_HOURS = env.int("OVERSIGHT_UTC_OFFSET_HOURS", default=0)

# --- Analytics ---
# Ciphertexts and contexts are stored here and passed by key; compute workers need this folder only.
AUDIT_EXPORT_DIR = env.str("AUDIT_EXPORT_DIR", default=str(VAR_DIR / "exports"))
AUDIT_VERIFY_MAX_BYTES = env.int("AUDIT_VERIFY_MAX_BYTES", default=200 * 1024 * 1024)
# The largest request body any endpoint takes (by default an audit copy with its multipart envelope). A body
# sent without a Content-Length (chunked) is read up to this, then bounded by its endpoint like any other;
# past it, 413 payload_too_large (health_platform.request_limits). At least every endpoint's own limit.
REQUEST_BODY_MAX_BYTES = env.int(
    "REQUEST_BODY_MAX_BYTES", default=max(DATA_UPLOAD_MAX_MEMORY_SIZE, AUDIT_VERIFY_MAX_BYTES + 64 * 1024)
)
ANALYTICS_BLOB_DIR = str(celery_config.blob_dir(os.environ))  # the compute worker reads the same
# Records per batch (at most; batches are evened out). One CheckAccessBatch and one access-log transaction
# each; measured fastest around 5,000 on 2 cores (benchmarks/analysis.py).
ANALYTICS_BATCH_SIZE = env.int("ANALYTICS_BATCH_SIZE", default=5000)
ANALYTICS_MAX_BATCH_SIZE = 10_000  # CheckAccessBatch's limit
# Where a batch's encrypted features are scored: "compute", by the compute queue's workers, which hold no key,
# no record and no database (run them on a separately trusted machine); or "custodian", in memory by the custodian
# worker that has just encrypted them (only the score ciphertext is written), for when both would run on one
# machine anyway, as in the embedded default. Either way nothing is scored but what the gate admitted.
ANALYTICS_SCORE_ON = env.str("ANALYTICS_SCORE_ON", default="custodian")
if ANALYTICS_SCORE_ON not in ("compute", "custodian"):
    raise environ.ImproperlyConfigured("ANALYTICS_SCORE_ON must be compute or custodian")
ANALYTICS_MAX_COHORT = env.int("ANALYTICS_MAX_COHORT", default=100_000)
# A request whose batches cannot reach the ledger keeps retrying (fail-closed meanwhile: nothing is computed)
# until this long after it was made; then it fails with ledger_unavailable.
ANALYTICS_REQUEST_DEADLINE_SECONDS = env.int("ANALYTICS_REQUEST_DEADLINE_SECONDS", default=6 * 3600)
# An export the ledger cannot verify is tried again until this long after it was asked for, then it fails.
AUDIT_EXPORT_DEADLINE_SECONDS = env.int("AUDIT_EXPORT_DEADLINE_SECONDS", default=3600)
# A patient's "download my data" is one Bundle built in memory (its SHA-256 goes on the ledger before it is sent):
# at most this many entries; past it the download is refused (download_too_large) and $everything pages instead.
PATIENT_DOWNLOAD_MAX_ENTRIES = env.int("PATIENT_DOWNLOAD_MAX_ENTRIES", default=10_000)
# Work unchanged this long is sent again (its message was lost); longer than any step's time limit.
ANALYTICS_STALL_SECONDS = env.int("ANALYTICS_STALL_SECONDS", default=900)
# A training run the ledger does not answer waits (nothing is trained meanwhile) and tries again with the analyses'
# backoff, until this long after it was asked for; then it fails with ledger_unavailable.
TRAINING_RUN_DEADLINE_SECONDS = env.int("TRAINING_RUN_DEADLINE_SECONDS", default=6 * 3600)
ANALYTICS_LEDGER_RETRY_BACKOFF_SECONDS = env.int("ANALYTICS_LEDGER_RETRY_BACKOFF_SECONDS", default=2)
# The longest wait between two attempts: the ledger back, a batch waits at most this long to notice.
ANALYTICS_LEDGER_RETRY_MAX_BACKOFF_SECONDS = env.int("ANALYTICS_LEDGER_RETRY_MAX_BACKOFF_SECONDS", default=30)

# --- Training: models that answer to revocation ---
# A model trained on the platform is retired from new analyses (on the ledger: RetireModel) once MORE than this
# fraction of the consents in its lineage are withdrawn (revoked, or their records erased), or more than this many:
# whichever is crossed first. "off" disables either; with both off no model is ever retired for revocations.


def _retirement_threshold(name: str, text: str, parse: Any, valid: Any, what: str) -> Any:
    """A threshold of the retirement policy, or None when "off"; a value that is not one stops the start."""
    if text.strip().lower() in ("", "off"):
        return None
    try:
        value = parse(text.strip())
    except ValueError:
        value = None
    if value is None or not valid(value):
        raise environ.ImproperlyConfigured(f"{name} must be {what}, or off")
    return value


TRAINING_RETIREMENT_REVOKED_FRACTION: float | None = _retirement_threshold(
    "TRAINING_RETIREMENT_REVOKED_FRACTION",
    env.str("TRAINING_RETIREMENT_REVOKED_FRACTION", default="0.05"),
    float,
    lambda value: 0 <= value < 1,
    "a fraction from 0 to below 1 (0.05: more than 5 % of its consents withdrawn)",
)
TRAINING_RETIREMENT_REVOKED_COUNT: int | None = _retirement_threshold(
    "TRAINING_RETIREMENT_REVOKED_COUNT",
    env.str("TRAINING_RETIREMENT_REVOKED_COUNT", default="off"),
    int,
    lambda value: value >= 0,
    "a whole number of 0 or more (0: any withdrawal retires)",
)

# --- Training: one platform instance per organisation ---
# The organisations whose records this instance holds (org:<slug>, comma-separated): their custodian is here and
# only their records are offered to a run. Empty (the embedded default): every organisation of the directory.
try:
    TRAINING_HOSTED_ORGANISATIONS = _training_peers.hosted_parse(
        "TRAINING_HOSTED_ORGANISATIONS", env.list("TRAINING_HOSTED_ORGANISATIONS", default=[])
    )
    # Other organisations' instances a run federates with: a JSON object {"org:<slug>": {"url", "key"}}
    # (training.peers). The key is a secret the two instances share (base64, at least 32 bytes): set it in the
    # environment, never in git.
    TRAINING_FEDERATION_PEERS = _training_peers.peers_parse(
        "TRAINING_FEDERATION_PEERS",
        env.str("TRAINING_FEDERATION_PEERS", default=""),
        hosted=TRAINING_HOSTED_ORGANISATIONS,
    )
except _training_peers.PeersMisconfigured as misconfigured:
    raise environ.ImproperlyConfigured(str(misconfigured)) from None
# Where a run's aggregator listens, and the name the invited organisations dial (its certificate names it).
TRAINING_AGGREGATOR_BIND = env.str("TRAINING_AGGREGATOR_BIND", default="127.0.0.1")
TRAINING_AGGREGATOR_HOST = env.str("TRAINING_AGGREGATOR_HOST", default="localhost")
# How long the aggregator waits for every client (an invited instance that never connects: organisation_unreachable).
TRAINING_CONNECT_SECONDS = env.int("TRAINING_CONNECT_SECONDS", default=120)
# How long a steward's instance waits for an invited instance's answer (an invitation, its outcome at the end).
TRAINING_PEER_TIMEOUT_SECONDS = env.float("TRAINING_PEER_TIMEOUT_SECONDS", default=30.0)

# --- Ledger ---
# embedded:///absolute/path.sqlite3 (default) or fabric://... (see .env.example).
LEDGER_URL = env.str("LEDGER_URL", default=f"embedded://{VAR_DIR / 'ledger.sqlite3'}")
# How long an embedded ledger call waits for a lock another process holds (a long write, a backup) before
# the platform answers ledger_unavailable (503 with Retry-After; the pipeline retries). Commits hold the
# write lock for milliseconds, so this is only reached in an outage.
LEDGER_BUSY_TIMEOUT_SECONDS = env.float("LEDGER_BUSY_TIMEOUT_SECONDS", default=10.0)
# Signed grants made at the same moment through one process (many patients at once) go to the ledger together,
# up to 64 per transaction (ledger.group_commit); a grant alone goes at once. false: one transaction per grant.
LEDGER_GROUP_GRANTS = env.bool("LEDGER_GROUP_GRANTS", default=True)

# --- Celery ---
# Configured in health_platform/celery_config.py, from the same environment and .env: the compute
# worker's app reads it too, and it has no Django.
ANCHOR_RETRY_COUNTDOWN_SECONDS = env.int("ANCHOR_RETRY_COUNTDOWN_SECONDS", default=10)

# --- API ---
REST_FRAMEWORK = {
    # Token first: a bad token is then answered 401 with WWW-Authenticate, not 403.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "health_platform.second_factor.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    # JSON bodies within DATA_UPLOAD_MAX_MEMORY_SIZE and INGEST_MAX_JSON_DEPTH, checked before parsing.
    "DEFAULT_PARSER_CLASSES": [
        "health_platform.parsers.LimitedJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "health_platform.api.exception_handler",
    "NUM_PROXIES": NUM_PROXIES or None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "health_platform API",
    "DESCRIPTION": "Records anchored on a permissioned ledger; consent and access on the same ledger.",
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # The docs UI is served from the installed package, not a CDN: it works offline and under a strict CSP.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "health_platform.api.error_responses_documented",
    ],
    "ENUM_NAME_OVERRIDES": {
        "AnalysisStatusEnum": "analytics.models.AnalysisStatus",
        "CohortKindEnum": "analytics.models.CohortKind",
        "TrainingRunStatusEnum": "training.models.TrainingRun.Status",
    },
}

# --- Logging: structured events carrying ids only ---
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "filters": {"request_path_redacted": {"()": "health_platform.log_filters.RequestPathRedacted"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        # The chaincode library logs state values at DEBUG; nothing below WARNING leaves it.
        "asyncio": {"level": "WARNING"},
        "fabric_chaincode_python": {"level": "WARNING"},
        # Django logs the path of every 4xx and 5xx: whatever a client put in it stays out.
        "django.request": {"filters": ["request_path_redacted"]},
        "django.security.csrf": {"filters": ["request_path_redacted"]},
    },
}

# Directory and patient enrolment (directory/): how long an enrolment invitation stays valid, and the address
# that links in e-mails start with when no request tells it (management commands).
DIRECTORY_INVITATION_HOURS = env.int("DIRECTORY_INVITATION_HOURS", default=7 * 24)
DIRECTORY_LINK_BASE_URL = env.str("DIRECTORY_LINK_BASE_URL", default="http://127.0.0.1:8000")
