"""One Celery configuration for both workers, from the environment and the project's .env file."""

import os
import subprocess
import sys

import environ
import pytest

from health_platform import celery_config
from tests.conftest import REPO

TRICKY_ENV_FILE = r"""# a comment
CELERY_BROKER_URL=redis://127.0.0.1:6379/0
export CELERY_FILESYSTEM_POLLING_INTERVAL=0.5
HEALTH_PLATFORM_VAR_DIR='/srv/health platform'
ANALYTICS_BLOB_DIR="/srv/blobs\"x\"\n"
CELERY_TASK_ALWAYS_EAGER=yes # not a comment
ANCHOR_SWEEP_SECONDS=
  INDENTED=ignored
not an assignment
EMPTY_QUOTES=""
"""


def test_the_env_file_is_read_as_django_environ_reads_it(tmp_path, monkeypatch):
    path = tmp_path / ".env"
    path.write_text(TRICKY_ENV_FILE)
    read_by_django_environ: dict[str, str] = {}
    monkeypatch.setattr(environ.Env, "ENVIRON", read_by_django_environ)

    environ.Env.read_env(path, overwrite=True)

    assert celery_config.read_env_file(path) == read_by_django_environ
    assert read_by_django_environ["HEALTH_PLATFORM_VAR_DIR"] == "/srv/health platform"


def test_a_missing_env_file_sets_nothing(tmp_path):
    assert celery_config.read_env_file(tmp_path / "absent.env") == {}


def test_the_environment_wins_over_the_env_file(tmp_path, monkeypatch):
    path = tmp_path / ".env"
    path.write_text("CELERY_BROKER_URL=redis://from-file:6379/0\nCELERY_FILESYSTEM_BROKER_DIR=/from-file\n")
    monkeypatch.setenv(celery_config.ENV_FILE_VARIABLE, str(path))

    variables = celery_config.worker_variables({"CELERY_BROKER_URL": "redis://from-environment:6379/0"})

    assert variables == {
        "CELERY_BROKER_URL": "redis://from-environment:6379/0",
        "CELERY_FILESYSTEM_BROKER_DIR": "/from-file",
    }


def test_only_the_workers_variables_are_taken_from_the_env_file(tmp_path, monkeypatch):
    path = tmp_path / ".env"
    path.write_text(
        "DATABASE_URL=postgres://user:secret@db/health\nRECORD_ENCRYPTION_KEY=c2VjcmV0\n"
        "CELERY_BROKER_URL=redis://broker:6379/0\nANALYTICS_BLOB_DIR=/srv/blobs\n"
    )
    monkeypatch.setenv(celery_config.ENV_FILE_VARIABLE, str(path))

    assert celery_config.worker_variables({}) == {
        "CELERY_BROKER_URL": "redis://broker:6379/0",
        "ANALYTICS_BLOB_DIR": "/srv/blobs",
    }


def test_the_compute_app_takes_its_broker_from_the_env_file_and_exports_nothing_of_it(tmp_path):
    """The compute worker's own process, with a clean environment as scripts/run.sh starts it."""
    path = tmp_path / ".env"
    path.write_text(
        "DATABASE_URL=postgres://user:secret@db/health\nCELERY_BROKER_URL=redis://127.0.0.1:6399/0\n"
        f"ANALYTICS_BLOB_DIR={tmp_path / 'blobs'}\n"
    )
    given = ("PATH", "PYTHONPATH", "HEALTH_PLATFORM_ENV_FILE", "LC_CTYPE")  # (Python sets LC_CTYPE itself)
    probe = (
        "import os, analytics.compute_app as compute; "
        "print(compute.app.conf.broker_url, compute.app.conf.task_default_queue, compute._blob_dir, "
        f"sorted(name for name in os.environ if name not in {given!r}))"
    )
    environment = {"PATH": os.environ["PATH"], "PYTHONPATH": str(REPO), "HEALTH_PLATFORM_ENV_FILE": str(path)}
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, env=environment, capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.split() == ["redis://127.0.0.1:6399/0", "compute", str(tmp_path / "blobs"), "[]"]


def test_the_defaults_keep_everything_under_the_var_folder_on_the_filesystem_broker(tmp_path):
    config = celery_config.celery_config(queue="compute", variables={"HEALTH_PLATFORM_VAR_DIR": str(tmp_path)})

    assert config == {
        "CELERY_BROKER_URL": "filesystem://",
        "CELERY_BROKER_TRANSPORT_OPTIONS": {
            "data_folder_in": str(tmp_path / "broker" / "queue"),
            "data_folder_out": str(tmp_path / "broker" / "queue"),
            "processed_folder": str(tmp_path / "broker" / "processed"),
            "control_folder": str(tmp_path / "broker" / "control"),
            "store_processed": False,
            "polling_interval": 0.1,
        },
        "CELERY_TASK_SERIALIZER": "json",
        "CELERY_ACCEPT_CONTENT": ["json"],
        "CELERY_TASK_IGNORE_RESULT": True,
        "CELERY_TASK_ACKS_LATE": True,
        "CELERY_TASK_REJECT_ON_WORKER_LOST": True,
        "CELERY_WORKER_PREFETCH_MULTIPLIER": 16,
        "CELERY_TASK_DEFAULT_QUEUE": "compute",
        "CELERY_TIMEZONE": "UTC",
    }
    assert (tmp_path / "broker" / "queue").is_dir()
    assert (tmp_path / "broker" / "processed").is_dir()
    assert celery_config.blob_dir({"HEALTH_PLATFORM_VAR_DIR": str(tmp_path)}) == tmp_path / "blobs"


@pytest.mark.parametrize("queue", ["custodian", "compute"])
def test_a_redis_broker_takes_one_message_per_process_and_no_folders(queue):
    config = celery_config.celery_config(queue=queue, variables={"CELERY_BROKER_URL": "redis://broker:6379/0"})

    assert config["CELERY_BROKER_URL"] == "redis://broker:6379/0"
    assert config["CELERY_BROKER_TRANSPORT_OPTIONS"] == {}
    assert config["CELERY_WORKER_PREFETCH_MULTIPLIER"] == 1
    assert config["CELERY_TASK_DEFAULT_QUEUE"] == queue


def test_only_the_custodian_app_has_the_beat_schedule_and_the_eager_switch():
    variables = {"CELERY_BROKER_URL": "redis://broker:6379/0", "CELERY_TASK_ALWAYS_EAGER": "true"}
    custodian = celery_config.celery_config(queue="custodian", variables=variables)
    compute = celery_config.celery_config(queue="compute", variables=variables)

    assert custodian["CELERY_TASK_ALWAYS_EAGER"] is True
    assert set(custodian["CELERY_BEAT_SCHEDULE"]) == {
        "anchor-pending-records",
        "resume-stalled-analyses",
        "resume-stalled-training-runs",
        "score-access-log",
        "trained-models-standing",
    }
    assert custodian["CELERY_BEAT_SCHEDULE"]["trained-models-standing"]["task"] == (
        "training.tasks.trained_models_standing_sweep"
    )
    from health_platform.celery import app  # every task the beat sends is one the custodian's worker knows

    app.loader.import_default_modules()
    assert {entry["task"] for entry in custodian["CELERY_BEAT_SCHEDULE"].values()} <= set(app.tasks)
    assert set(custodian) - set(compute) == {"CELERY_TASK_ALWAYS_EAGER", "CELERY_BEAT_SCHEDULE"}
