"""The Celery configuration of both workers, from the environment and the project's .env. Free of Django.

The custodian app (health_platform.celery) and the compute app (analytics.compute_app) both load
celery_config(), so a variable reaches both workers or neither. (When the compute app read only its
process environment, a broker URL kept in .env reached the custodian worker, whose Django settings read
the file, but not the compute worker: the two listened on different brokers and analyses never ran.)

A value comes from the process environment first, then from the .env file, then from the defaults
below: the precedence of the Django settings (`environ.Env.read_env(env_file(), overwrite=False)`).
The file is HEALTH_PLATFORM_ENV_FILE when the environment names one, else `.env` at the repository root.
Values are taken as written: a value `$OTHER`, which django-environ's getters would replace by OTHER's,
is not followed here.

What must hold:
- Only the variables in VARIABLES are taken from .env, and nothing is written into os.environ. The same
  file holds the database URL and the keys, and the compute worker is started with an empty environment
  (scripts/run.sh) so that it never has them: reading its broker here must not hand it the rest.
- No Django here, nor health_platform.settings: the compute worker loads neither
  (tests/analytics/test_workers.py checks). django-environ imports Django, so the file is read by
  read_env_file, the same way django-environ reads it (tests/health_platform/test_celery_config.py
  compares the two).
"""

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

REPOSITORY = Path(__file__).resolve().parent.parent
ENV_FILE_VARIABLE = "HEALTH_PLATFORM_ENV_FILE"

# Everything this module reads, and so everything it may take from .env.
VARIABLES = frozenset(
    {
        "HEALTH_PLATFORM_VAR_DIR",
        "ANALYTICS_BLOB_DIR",
        "CELERY_BROKER_URL",
        "CELERY_FILESYSTEM_BROKER_DIR",
        "CELERY_FILESYSTEM_POLLING_INTERVAL",
        "CELERY_FILESYSTEM_PREFETCH_MULTIPLIER",
        "CELERY_TASK_ALWAYS_EAGER",
        "ANCHOR_SWEEP_SECONDS",
        "ANALYTICS_STALL_SWEEP_SECONDS",
        "TRAINING_STANDING_SWEEP_SECONDS",
    }
)

Queue = Literal["custodian", "compute"]

_ASSIGNMENT = re.compile(r"\A(?:export )?([A-Za-z_0-9]+)=(.*)\Z")
_TRUE = ("true", "on", "ok", "y", "yes", "1")  # django-environ's Env.BOOLEAN_TRUE_STRINGS


def env_file() -> Path:
    """The .env file the Django settings and both workers read (named by the environment only)."""
    return Path(os.environ.get(ENV_FILE_VARIABLE) or REPOSITORY / ".env")


def read_env_file(path: Path) -> dict[str, str]:
    """The assignments of a .env file as django-environ's `Env.read_env` reads them; {} without a file.

    `KEY=value` or `export KEY=value`; a value in single quotes is taken as written, one in double quotes
    has its backslash escapes resolved (`\\n`, `\\r`, `\\t` stay as written); `#` starts a comment only
    at the beginning of a line. Other lines are ignored.
    """
    try:
        content = path.read_text(encoding="utf8")
    except OSError:
        return {}
    values = {}
    for line in content.splitlines():
        assignment = _ASSIGNMENT.match(line)
        if assignment is None:
            continue
        name, value = assignment.group(1), assignment.group(2)
        single_quoted = re.match(r"\A'(.*)'\Z", value)
        if single_quoted:
            value = single_quoted.group(1)
        double_quoted = re.match(r'\A"(.*)"\Z', value)
        if double_quoted:
            value = re.sub(r"\\(.)", _keep_escaped_format_characters, double_quoted.group(1))
        values[name] = value
    return values


def _keep_escaped_format_characters(match: re.Match[str]) -> str:
    character = match.group(1)
    return "\\" + character if character in "rnt" else character


def worker_variables(environment: Mapping[str, str] | None = None) -> dict[str, str]:
    """The VARIABLES that are set: each from the environment (default os.environ), else from .env."""
    environment = os.environ if environment is None else environment
    from_file = read_env_file(env_file())
    values = {name: from_file[name] for name in VARIABLES if name in from_file}
    values.update({name: environment[name] for name in VARIABLES if name in environment})
    return values


def var_dir(variables: Mapping[str, str]) -> Path:
    """Where the embedded defaults keep their files (HEALTH_PLATFORM_VAR_DIR, default var/ in the repository)."""
    return Path(variables.get("HEALTH_PLATFORM_VAR_DIR", str(REPOSITORY / "var")))


def blob_dir(variables: Mapping[str, str]) -> Path:
    """Where ciphertexts and contexts are kept (ANALYTICS_BLOB_DIR, default blobs/ in the var folder)."""
    return Path(variables.get("ANALYTICS_BLOB_DIR", str(var_dir(variables) / "blobs")))


def celery_config(*, queue: Queue, variables: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The configuration of the Celery app whose tasks go to `queue` by default (custodian or compute).

    Keys are Celery's settings under the CELERY_ namespace (`app.config_from_object(..., namespace="CELERY")`),
    the names the variables and the Django settings gave them. Creates the filesystem broker's folders.
    Only the custodian app gets the beat schedule and the eager switch (tests and one-process runs).
    """
    variables = worker_variables() if variables is None else variables
    broker_url = variables.get("CELERY_BROKER_URL", "filesystem://")
    config: dict[str, Any] = {
        # The default broker is kombu's filesystem transport: a real worker with no server to install.
        "CELERY_BROKER_URL": broker_url,
        "CELERY_BROKER_TRANSPORT_OPTIONS": {},
        "CELERY_TASK_SERIALIZER": "json",
        "CELERY_ACCEPT_CONTENT": ["json"],
        "CELERY_TASK_IGNORE_RESULT": True,
        "CELERY_TASK_ACKS_LATE": True,
        "CELERY_TASK_REJECT_ON_WORKER_LOST": True,
        # Messages a worker process may hold unacknowledged. Redis: 1, so that a long batch never waits
        # behind another in a busy process while an idle worker could take it. The filesystem broker (below):
        # Celery runs transports without async I/O in its fallback loop, which sends acknowledgements only
        # between polls that wait up to 2 s (celery.worker.loops.synloop), and a worker whose window is full
        # takes nothing new meanwhile: with a window of 1 each pipeline step waited 1.4-2.0 s to be picked
        # up. That broker serves one host, whose worker per queue may as well reserve what is queued.
        "CELERY_WORKER_PREFETCH_MULTIPLIER": 1,
        "CELERY_TASK_DEFAULT_QUEUE": queue,
        "CELERY_TIMEZONE": "UTC",  # as the Django settings' TIME_ZONE, which Celery read from them before
    }
    if broker_url.startswith("filesystem://"):
        folder = Path(variables.get("CELERY_FILESYSTEM_BROKER_DIR", str(var_dir(variables) / "broker")))
        for sub in ("queue", "processed"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        config["CELERY_BROKER_TRANSPORT_OPTIONS"] = {
            "data_folder_in": str(folder / "queue"),
            "data_folder_out": str(folder / "queue"),
            "processed_folder": str(folder / "processed"),
            "control_folder": str(folder / "control"),
            "store_processed": False,
            # The longest an idle worker waits between polls (a new message wakes it at once on Linux).
            "polling_interval": float(variables.get("CELERY_FILESYSTEM_POLLING_INTERVAL", "0.1")),
        }
        config["CELERY_WORKER_PREFETCH_MULTIPLIER"] = int(variables.get("CELERY_FILESYSTEM_PREFETCH_MULTIPLIER", "16"))
    if queue == "custodian":
        config["CELERY_TASK_ALWAYS_EAGER"] = variables.get("CELERY_TASK_ALWAYS_EAGER", "").lower().strip() in _TRUE
        # Safety nets behind the per-ingest retries and the pipeline's own steps: anything still pending
        # is anchored every few minutes, stalled analyses are sent again (run by the worker started with
        # --beat in the embedded default, or a separate beat process).
        config["CELERY_BEAT_SCHEDULE"] = {
            "anchor-pending-records": {
                "task": "records.tasks.anchor_pending_records",
                "schedule": int(variables.get("ANCHOR_SWEEP_SECONDS", "300")),
            },
            "resume-stalled-analyses": {
                "task": "analytics.tasks.resume_stalled_analyses",
                "schedule": int(variables.get("ANALYTICS_STALL_SWEEP_SECONDS", "60")),
            },
            "resume-stalled-training-runs": {
                "task": "training.tasks.resume_stalled_training_runs",
                "schedule": int(variables.get("ANALYTICS_STALL_SWEEP_SECONDS", "60")),
            },
            # Trained models: their consents since revoked counted again, their pending retirements sent to the ledger.
            "trained-models-standing": {
                "task": "training.tasks.trained_models_standing_sweep",
                "schedule": int(variables.get("TRAINING_STANDING_SWEEP_SECONDS", "300")),
            },
            # The misuse detector scores yesterday's and today's access log (a day alerted is not alerted again).
            "score-access-log": {
                "task": "oversight.tasks.misuse_score_run",
                "schedule": int(variables.get("OVERSIGHT_SCORE_SECONDS", "3600")),
            },
        }
    return config
