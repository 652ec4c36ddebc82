"""Shared fixtures. Every test gets its own embedded ledger file: real contracts, real SQLite."""

import os
import subprocess
import time
from pathlib import Path

import pytest

from health_platform import bootstrap


@pytest.fixture(autouse=True)
def ledger_url(tmp_path, settings):
    """Point LEDGER_URL at a fresh embedded ledger for this test."""
    url = f"embedded://{tmp_path / 'ledger.sqlite3'}"
    settings.LEDGER_URL = url
    bootstrap.reset_ledger()
    yield url
    bootstrap.reset_ledger()


@pytest.fixture
def ledger(ledger_url):
    """The ledger client the application uses in this test."""
    return bootstrap.ledger()


REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def celery_worker(tmp_path, ledger_url):
    """A real Celery worker process on the embedded default's broker (kombu's filesystem transport).

    The test must use `django_db(transaction=True)`: the worker is another process and sees only
    committed rows of the (file-based) test database. Each test gets its own broker folder, so no
    message outlives its test.
    """
    from django.db import connection

    from health_platform.celery import app

    broker = tmp_path / "broker"
    for folder in ("queue", "processed"):
        (broker / folder).mkdir(parents=True)
    options = {
        "data_folder_in": str(broker / "queue"),
        "data_folder_out": str(broker / "queue"),
        "processed_folder": str(broker / "processed"),
        "store_processed": False,
    }
    saved = dict(app.conf.broker_transport_options or {})
    # The app reads Django settings under the CELERY_ namespace: the namespaced key is the one it looks up.
    app.conf.update(CELERY_BROKER_TRANSPORT_OPTIONS=options)
    _reset_broker_connections(app)
    environment = {
        **os.environ,
        "CELERY_BROKER_URL": "filesystem://",
        "CELERY_FILESYSTEM_BROKER_DIR": str(broker),
        "LEDGER_URL": ledger_url,
        "DATABASE_URL": f"sqlite:///{connection.settings_dict['NAME']}",
    }
    log_path = tmp_path / "worker.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [
                str(REPO / ".venv" / "bin" / "celery"),
                "-A",
                "health_platform",
                "worker",
                "--queues",
                "custodian,compute",
                "--pool",
                "prefork",
                "--concurrency",
                "1",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                "--loglevel",
                "INFO",
            ],
            cwd=REPO,
            env=environment,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 60
    while b"ready." not in log_path.read_bytes():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"Celery worker did not start:\n{log_path.read_text()[-3000:]}")
        time.sleep(0.2)
    process.log_path = log_path  # type: ignore[attr-defined]
    yield process
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
    app.conf.update(CELERY_BROKER_TRANSPORT_OPTIONS=saved)
    _reset_broker_connections(app)


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
