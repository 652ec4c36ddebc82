"""Shared fixtures. Every test gets its own embedded ledger file: real contracts, real SQLite."""

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import pytest

from health_platform import bootstrap


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_setupnodes(config, specs):
    """Under pytest-xdist (scripts/test.sh runs the suite with -n), each worker process gets its own
    HEALTH_PLATFORM_VAR_DIR: a subfolder named after it (gw0, gw1...) of this run's VAR_DIR.

    Set in the worker's environment before it starts (execnet applies `spec.env` before pytest, so
    before Django reads its settings), so that everything kept under VAR_DIR is the worker's own: the
    sign-in throttle's file cache, the default broker, blob and export folders, the generated keys, the
    SQLite test database (pytest-django also suffixes test database names per worker, which keeps the
    PostgreSQL pass's apart). The Celery workers and commands a test starts inherit the same folder.
    """
    from django.conf import settings

    for spec in specs:
        spec.env["HEALTH_PLATFORM_VAR_DIR"] = str(Path(settings.VAR_DIR) / spec.id)


@pytest.fixture(scope="session", autouse=True)
def fast_password_hashing():
    """Passwords hashed with a fast hasher first: the production hasher (PBKDF2, deliberately ~0.2 s a
    hash here) is not under test, and users are made and signed in by the thousand (it was over a third
    of the suite's time). The production hashers stay listed after it, so a password hashed by another
    process (a command run as a subprocess) still verifies; `manage.py check --deploy` and the password
    policy run on the settings as they are."""
    from django.conf import settings
    from django.test import override_settings

    with override_settings(
        PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher", *settings.PASSWORD_HASHERS]
    ):
        yield


@pytest.fixture(autouse=True)
def ledger_url(tmp_path, settings):
    """Point LEDGER_URL at a fresh embedded ledger for this test."""
    url = f"embedded://{tmp_path / 'ledger.sqlite3'}"
    settings.LEDGER_URL = url
    bootstrap.reset_ledger()
    yield url
    bootstrap.reset_ledger()


@pytest.fixture
def auditor(db):
    from health_platform.roles import Role
    from tests.records.factories import UserFactory

    return UserFactory(username="auditor-erin", roles=[Role.AUDITOR])


@pytest.fixture
def other_clinician(db):
    """A clinician with no organisation, for "another clinician's" checks."""
    from health_platform.services import clinician_register
    from tests.records.factories import UserFactory

    user = UserFactory(username="dr-dave")
    clinician_register(user=user, display_name="Dr Dave")
    return user


@pytest.fixture
def ledger(ledger_url):
    """The ledger client the application uses in this test."""
    return bootstrap.ledger()


REPO = Path(__file__).resolve().parents[1]


def worker_database_url(connection) -> str:
    """The DATABASE_URL of the test database `connection` is on, for the worker processes a test starts.

    Workers are other processes: they must open the test database (SQLite's test file, or PostgreSQL's
    test_<name> database on the same server), never the one DATABASE_URL names.
    """
    settings_dict = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{settings_dict['NAME']}"
    if connection.vendor == "postgresql":
        credentials = quote(settings_dict["USER"] or "", safe="")
        if settings_dict["PASSWORD"]:
            credentials += ":" + quote(settings_dict["PASSWORD"], safe="")
        host = settings_dict["HOST"] or ""
        port = f":{settings_dict['PORT']}" if settings_dict["PORT"] else ""
        # A unix-socket folder goes after the "@" as a path (django-environ's reading of it).
        location = f"{port}/{host}" if host.startswith("/") else f"{host}{port}"
        return f"postgres://{credentials}@{location}/{quote(settings_dict['NAME'], safe='')}"
    raise NotImplementedError(f"no worker DATABASE_URL for the {connection.vendor} backend")


@pytest.fixture
def broker(tmp_path):
    """This test's broker: a fresh folder of kombu's filesystem transport (the embedded default), used by
    this process and by every worker the test starts. Returns the environment that points workers at it."""
    from health_platform.celery import app

    folder = tmp_path / "broker"
    for sub in ("queue", "processed"):
        (folder / sub).mkdir(parents=True)
    options = {
        "data_folder_in": str(folder / "queue"),
        "data_folder_out": str(folder / "queue"),
        "processed_folder": str(folder / "processed"),
        "control_folder": str(folder / "control"),
        "store_processed": False,
    }
    saved_url, saved_options = app.conf.broker_url, dict(app.conf.broker_transport_options or {})
    # The app reads its configuration under the CELERY_ namespace: the namespaced key is the one it looks up.
    app.conf.update(CELERY_BROKER_URL="filesystem://", CELERY_BROKER_TRANSPORT_OPTIONS=options)
    _reset_broker_connections(app)
    yield {"CELERY_BROKER_URL": "filesystem://", "CELERY_FILESYSTEM_BROKER_DIR": str(folder)}
    app.conf.update(CELERY_BROKER_URL=saved_url, CELERY_BROKER_TRANSPORT_OPTIONS=saved_options)
    _reset_broker_connections(app)


@pytest.fixture
def start_worker(tmp_path, ledger_url, broker):
    """Start real Celery worker processes; all are killed (SIGKILL, whole) at the end of the test.

    start_worker(app="health_platform", queues="custodian,compute", environment=None, overrides=None,
    extra=None, concurrency=1) uses the test's settings (database, ledger, broker, blob folder).
    `environment`, when given, is the worker's WHOLE environment (plus PATH and the broker variables):
    how the compute worker is started with no database settings and no keys; `overrides` are added to
    the default one; `extra` are more worker arguments. Each worker runs in its own process group, so
    a test can kill it whole. Tests must use `django_db(transaction=True)`: a worker is another process
    and sees only committed rows of the test database.
    """
    from django.conf import settings
    from django.db import connection

    processes = []

    def start(
        app: str = "health_platform",
        queues: str = "custodian,compute",
        environment: dict | None = None,
        overrides: dict | None = None,
        extra: list[str] | None = None,
        concurrency: int = 1,
    ):
        if environment is None:
            environment = {
                **os.environ,
                "LEDGER_URL": ledger_url,
                "DATABASE_URL": worker_database_url(connection),
                "ANALYTICS_BLOB_DIR": str(settings.ANALYTICS_BLOB_DIR),
            }
        environment = {"PATH": os.environ["PATH"], **environment, **broker, **(overrides or {})}
        log_path = tmp_path / f"worker-{len(processes)}.log"
        with log_path.open("wb") as log_file:
            process = subprocess.Popen(
                [
                    str(REPO / ".venv" / "bin" / "celery"),
                    "-A",
                    app,
                    "worker",
                    "--queues",
                    queues,
                    "--pool",
                    "prefork",
                    "--concurrency",
                    str(concurrency),
                    "--without-gossip",
                    "--without-mingle",
                    "--without-heartbeat",
                    "--loglevel",
                    "INFO",
                    "--hostname",
                    f"worker{len(processes)}@%h",
                    *(extra or []),
                ],
                cwd=REPO,
                env=environment,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        process.log_path = log_path  # type: ignore[attr-defined]
        processes.append(process)
        deadline = time.monotonic() + 60
        while b"ready." not in log_path.read_bytes():
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"Celery worker did not start:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.1)
        return process

    yield start
    # Nothing reads a worker once its test is over (its log and its effects were checked in the test), so
    # each is stopped whole, pool processes included, at once. A warm shutdown took ~6 s a worker (the
    # consumer notices the signal only between its broker polls) and checked nothing.
    for process in processes:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    for process in processes:
        process.wait(timeout=10)


@pytest.fixture
def celery_worker(start_worker):
    """One real worker on both queues with the test's settings."""
    return start_worker()


def _reset_broker_connections(app) -> None:
    """Drop every cached broker connection so the next publish uses the current transport options."""
    import kombu.pools

    if app._pool is not None:
        app._pool.force_close_all()
        app._pool = None
    app.amqp._producer_pool = None
    kombu.pools.reset()


def wait_for(condition, *, timeout: float = 30.0, interval: float = 0.2, what: str = "condition"):
    """Poll `condition` until it returns a truthy value; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


class LedgerLock:
    """A real SQLite lock on an embedded ledger, held by another process, as a long write or a backup would
    hold it: the write lock and every WAL read mark of the ledger's shared-memory index are taken, so every
    other process's reads and writes wait, then fail with SQLite's "database is locked"."""

    _HOLDER = (
        "import fcntl, os, sys, time\n"
        "fd = os.open(sys.argv[1], os.O_RDWR)\n"
        "fcntl.lockf(fd, fcntl.LOCK_EX, 8, 120, os.SEEK_SET)\n"  # WAL write, checkpoint, recover, read marks
        "print('locked', flush=True)\n"
        "sys.stdin.read()\n"
    )

    def __init__(self, ledger_path: Path):
        self.shm = Path(f"{ledger_path}-shm")
        self.process: subprocess.Popen | None = None

    def take(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", self._HOLDER, str(self.shm)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        assert self.process.stdout.readline().strip() == "locked"

    def release(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None
