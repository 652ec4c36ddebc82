"""The pipeline through real worker processes: a custodian worker (Django) and a compute worker that
has no database settings and no keys, on the embedded default's broker and on a real Redis."""

import os
from pathlib import Path

import pytest

from analytics.models import AnalysisRequest, AnalysisStatus
from analytics.selectors import analysis_results
from analytics.services import analysis_request_create
from benchmarks.common import redis_server
from tests.conftest import REPO, broker_switched, plain_scores, python_output, wait_for

pytestmark = [pytest.mark.he, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def _run_analysis(consented, clinician, start_worker, start_compute_worker, patients=3, score_on="compute"):
    """An analysis of `patients` consenting patients through a custodian worker scoring `score_on`, and a compute
    worker when it scores there (start_compute_worker None: none)."""
    people = consented(patients)
    custodian = start_worker(queues="custodian", overrides={"ANALYTICS_SCORE_ON": score_on})
    compute = start_compute_worker() if start_compute_worker else None
    request = analysis_request_create(requester=clinician, model_name="breast-cancer", cohort_kind="consented")
    wait_for(
        lambda: AnalysisRequest.objects.get(pk=request.id).status in (AnalysisStatus.COMPLETED, AnalysisStatus.FAILED),
        timeout=120,
        what="the analysis to finish",
    )
    request.refresh_from_db()
    return request, custodian, compute, people


def test_compute_worker_without_database_settings_or_keys_scores_the_batches(
    consented, clinician, models_registered, start_worker, start_compute_worker
):
    request, custodian, compute, people = _run_analysis(consented, clinician, start_worker, start_compute_worker)

    assert request.status == AnalysisStatus.COMPLETED
    assert len(analysis_results(request=request, viewer=clinician).rows) == len(people)
    compute_log, custodian_log = compute.log_path.read_text(), custodian.log_path.read_text()
    assert "analytics.compute.score_batch" in compute_log
    assert "succeeded" in compute_log
    assert "analytics.compute.score_batch[" not in custodian_log  # the custodian never computed
    assert "analytics.tasks.analysis_batch_gate" in custodian_log


def test_a_custodian_worker_that_scores_in_memory_completes_the_analysis_with_no_compute_worker(
    consented, clinician, models_registered, start_worker, blob_dir
):
    """ANALYTICS_SCORE_ON=custodian, as the embedded default runs: the custodian worker scores what it encrypted,
    writes one score ciphertext per chunk and no feature column, and sends nothing to the compute queue."""
    request, custodian, _, people = _run_analysis(
        consented, clinician, start_worker, None, patients=4, score_on="custodian"
    )

    assert request.status == AnalysisStatus.COMPLETED
    rows = analysis_results(request=request, viewer=clinician).rows
    expected = plain_scores(4)
    assert sorted(round(row.score, 3) for row in rows) == sorted(round(e["score"], 3) for e in expected)
    (batch,) = request.batches.all()
    assert [chunk["columns"] for chunk in batch.column_keys] == [[]]
    assert batch.score_keys == [chunk["score"] for chunk in batch.column_keys]
    assert len(people) == 4
    log = custodian.log_path.read_text()
    assert "analysis_batch_scored" in log  # collected by the worker itself, at once
    assert "analytics.compute.score_batch[" not in log  # (listed among its tasks; never run)


def test_the_compute_app_loads_no_django_settings_database_or_record_code(tmp_path):
    # (kombu imports django.utils.functional when Django is installed; nothing of Django's
    # configuration, ORM or the project's custodian code may be loaded. Of health_platform, only the
    # Django-free modules both Celery apps share: the package itself, the configuration, the broker and the
    # supervisor's process check the broker uses, the supervisor being what runs the compute worker anyway.)
    forbidden = ("django.conf", "django.db", "sqlite3", "psycopg", "records", "consent")
    shared = (
        *("health_platform", "health_platform.celery_config", "health_platform.filesystem_broker"),
        "health_platform.supervise",
    )
    probe = (
        "import sys, analytics.compute_app; print(sorted(m for m in sys.modules"
        f" if m in {forbidden!r} or m.split('.')[0] == 'health_platform' and m not in {shared!r}))"
    )
    environment = {"PATH": os.environ["PATH"], "PYTHONPATH": str(REPO), "HEALTH_PLATFORM_VAR_DIR": str(tmp_path)}
    assert python_output(probe, environment) == "[]"


@pytest.fixture
def redis_url(tmp_path):
    """A real Redis server on 127.0.0.1 (installed by the project's test setup)."""
    with redis_server(tmp_path / "redis") as server:
        yield server.url


@pytest.fixture
def redis_broker(redis_url, broker):
    """Switch this process and every worker the test starts from the filesystem broker to Redis."""
    with broker_switched(broker, redis_url, {"CELERY_BROKER_URL": redis_url}):
        yield redis_url


def test_the_same_pipeline_runs_on_a_real_redis(
    consented, clinician, models_registered, redis_broker, start_worker, start_compute_worker
):
    request, _custodian, compute, people = _run_analysis(consented, clinician, start_worker, start_compute_worker)

    assert request.status == AnalysisStatus.COMPLETED
    assert len(analysis_results(request=request, viewer=clinician).rows) == len(people)
    assert f"redis://127.0.0.1:{redis_broker.rsplit(':', 1)[1].split('/')[0]}" in compute.log_path.read_text()


@pytest.fixture
def broker_only_in_env_file(redis_url, broker, tmp_path, monkeypatch):
    """A Redis broker named in a .env file and nowhere else: no worker gets CELERY_BROKER_URL in its
    environment, only HEALTH_PLATFORM_ENV_FILE (the project's .env, moved aside for the test)."""
    env_file = tmp_path / "project.env"
    env_file.write_text(f"CELERY_BROKER_URL={redis_url}\n")
    monkeypatch.delenv("CELERY_BROKER_URL", raising=False)  # the custodian worker inherits this environment
    with broker_switched(broker, redis_url, {"HEALTH_PLATFORM_ENV_FILE": str(env_file)}):
        yield redis_url


def test_a_broker_url_given_only_in_the_env_file_reaches_both_workers(
    consented, clinician, models_registered, broker_only_in_env_file, start_worker, start_compute_worker
):
    request, custodian, compute, people = _run_analysis(consented, clinician, start_worker, start_compute_worker)

    for worker in (custodian, compute):
        environment = Path(f"/proc/{worker.pid}/environ").read_bytes().split(b"\0")
        assert not [variable for variable in environment if variable.startswith(b"CELERY_BROKER_URL=")]
    assert request.status == AnalysisStatus.COMPLETED
    assert len(analysis_results(request=request, viewer=clinician).rows) == len(people)
    address = f"redis://127.0.0.1:{broker_only_in_env_file.rsplit(':', 1)[1].split('/')[0]}"
    assert address in compute.log_path.read_text()
    assert address in custodian.log_path.read_text()
