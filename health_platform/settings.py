"""Settings, read from the environment with embedded defaults.

Every default is for one machine with nothing installed beyond the project: SQLite, the embedded
ledger file and a broker that needs no server, all under VAR_DIR. Production sets the variables
documented in .env.example; switching database, broker or ledger is configuration only.
"""

from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

VAR_DIR = Path(env.str("HEALTH_PLATFORM_VAR_DIR", default=str(BASE_DIR / "var")))
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
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_filters",
    "django_htmx",
    "health_platform",
    "records",
    "consent",
    "analytics",
    "audit",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
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
    # WAL and a busy timeout let the web process and the workers share the file.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"timeout": 30, "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"}
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
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

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

# Request size: the ingest limit is enforced by the API with a stable error code, so Django's own
# limit sits just above it.
INGEST_MAX_BYTES = env.int("INGEST_MAX_BYTES", default=5 * 1024 * 1024)
INGEST_MAX_ENTRIES = env.int("INGEST_MAX_ENTRIES", default=1000)
INGEST_MAX_JSON_DEPTH = env.int("INGEST_MAX_JSON_DEPTH", default=32)
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

# --- Analytics ---
# Ciphertexts and contexts are stored here and passed by key; compute workers need this folder only.
AUDIT_EXPORT_DIR = env.str("AUDIT_EXPORT_DIR", default=str(VAR_DIR / "exports"))
ANALYTICS_BLOB_DIR = env.str("ANALYTICS_BLOB_DIR", default=str(VAR_DIR / "blobs"))
# Records per batch (at most; batches are evened out). One CheckAccessBatch and one access-log transaction
# each; measured fastest around 5,000 on 2 cores (benchmarks/analysis.py).
ANALYTICS_BATCH_SIZE = env.int("ANALYTICS_BATCH_SIZE", default=5000)
ANALYTICS_MAX_BATCH_SIZE = 10_000  # CheckAccessBatch's limit
ANALYTICS_MAX_COHORT = env.int("ANALYTICS_MAX_COHORT", default=100_000)
ANALYTICS_LEDGER_MAX_RETRIES = env.int("ANALYTICS_LEDGER_MAX_RETRIES", default=8)
ANALYTICS_LEDGER_RETRY_BACKOFF_SECONDS = env.int("ANALYTICS_LEDGER_RETRY_BACKOFF_SECONDS", default=2)

# --- Ledger ---
# embedded:///absolute/path.sqlite3 (default) or fabric://... (see .env.example).
LEDGER_URL = env.str("LEDGER_URL", default=f"embedded://{VAR_DIR / 'ledger.sqlite3'}")

# --- Celery ---
# The default broker is kombu's filesystem transport: a real worker with no server to install.
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="filesystem://")
CELERY_BROKER_TRANSPORT_OPTIONS = {}
if CELERY_BROKER_URL.startswith("filesystem://"):
    _broker_dir = Path(env.str("CELERY_FILESYSTEM_BROKER_DIR", default=str(VAR_DIR / "broker")))
    for _sub in ("queue", "processed"):
        (_broker_dir / _sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
        # How often an idle worker looks for messages: the latency of each step of a pipeline.
        "polling_interval": env.float("CELERY_FILESYSTEM_POLLING_INTERVAL", default=0.1),
    }
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_DEFAULT_QUEUE = "custodian"
ANCHOR_RETRY_COUNTDOWN_SECONDS = env.int("ANCHOR_RETRY_COUNTDOWN_SECONDS", default=10)
# Safety net behind the per-ingest retries: anything still pending is anchored every few minutes
# (run by the worker started with --beat in the embedded default, or a separate beat process).
CELERY_BEAT_SCHEDULE = {
    "anchor-pending-records": {
        "task": "records.tasks.anchor_pending_records",
        "schedule": env.int("ANCHOR_SWEEP_SECONDS", default=300),
    },
}

# --- API ---
REST_FRAMEWORK = {
    # Token first: a bad token is then answered 401 with WWW-Authenticate, not 403.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "health_platform.api.exception_handler",
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
    "ENUM_NAME_OVERRIDES": {
        "AnalysisStatusEnum": "analytics.models.AnalysisStatus",
        "CohortKindEnum": "analytics.models.CohortKind",
    },
}

# --- Logging: structured events carrying ids only ---
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        # The chaincode library logs state values at DEBUG; nothing below WARNING leaves it.
        "asyncio": {"level": "WARNING"},
        "fabric_chaincode_python": {"level": "WARNING"},
    },
}
