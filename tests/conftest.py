"""Shared fixtures. Every test gets its own embedded ledger file: real contracts, real SQLite.

Here too is what several folders of tests share: the people (patients, clinicians, auditors,
custodians), Celery run in this process, the demo cohorts and their consents, the folders the
analysis and the audit exports write to, and the real workers with the broker they use.
"""

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import pytest
from django.utils import timezone

from analytics.diagnostic_models import breast_cancer_model
from analytics.models import AnalysisStatus
from analytics.registry import diagnostic_models_register
from analytics.selectors import analysis_results
from analytics.services import analysis_request_create
from benchmarks.common import free_port, stop_group
from consent.services import consent_revoke_document
from health_platform import bootstrap
from health_platform.celery import app
from health_platform.quickstart import wait_for_page
from health_platform.roles import Role
from health_platform.services import clinician_register, organisation_create
from records.codes import BREAST_CANCER_DATASET
from records.crypto import patient_pseudonym
from records.demo import demo_bundles, demo_patients
from records.models import Patient, Record, RecordVersion
from records.services import patient_link_user, record_ingest
from tests.records.factories import UserFactory, patient_account
from tests.signing import grant_signed, passkey_of, revoke_signed

BREAST_CANCER = "diagnostic-model:breast-cancer"
UNREACHABLE_LEDGER_URL = "embedded:///proc/health-platform-no-such-dir/ledger.sqlite3"


def _database_group(item: pytest.Item) -> int:
    """pytest-django's order of a test: 0 uses the database, 1 in transactions it commits, 2 no database."""
    marker = item.get_closest_marker("django_db")
    fixtures = getattr(item, "fixturenames", ())
    if (marker is not None and (marker.kwargs.get("transaction") or marker.kwargs.get("reset_sequences"))) or any(
        name in fixtures for name in ("transactional_db", "live_server")
    ):
        return 1
    return 0 if marker is not None or "db" in fixtures else 2


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The slow tests first: those without a database before everything, the others first in their database group
    (pytest-django keeps Django's order of the groups). Split over workers (-n), a long test that starts last holds the
    whole run up by its length; started first, it runs while the short ones fill the other workers."""

    def key(item: pytest.Item) -> tuple[int, int]:
        slow = item.get_closest_marker("slow") is not None
        group = _database_group(item)
        return (-1 if slow and group == 2 else group, 0 if slow else 1)

    items.sort(key=key)


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


@pytest.fixture(scope="session", autouse=True)
def staff_enrolled_in_a_second_factor():
    """Every user given a staff role (clinician, auditor, custodian, model steward) in a test is enrolled with an
    authenticator app holding tests.clients.TOTP_SECRET, as the platform requires of staff: without it every portal
    page sends them to enrolment. A test of that sends an unenrolled member of staff (tests.clients.unenrol)."""
    from django.contrib.auth import get_user_model
    from django.db.models.signals import m2m_changed

    from health_platform.second_factor import STAFF_ROLES
    from tests.clients import enrol_totp

    staff_names = {role.value for role in STAFF_ROLES}

    def enrol_staff(sender, instance, action, pk_set, model, **kwargs):
        if action != "post_add" or not isinstance(instance, get_user_model()):
            return
        if model.objects.filter(pk__in=pk_set, name__in=staff_names).exists():
            enrol_totp(instance)

    through = get_user_model().groups.through
    m2m_changed.connect(enrol_staff, sender=through, dispatch_uid="tests-staff-second-factor")
    yield
    m2m_changed.disconnect(sender=through, dispatch_uid="tests-staff-second-factor")


@contextlib.contextmanager
def ledger_at(settings, url: str):
    """Point LEDGER_URL at `url` for as long as the block runs: the application's ledger client is
    dropped on the way in and on the way out, so that it is opened afresh on the ledger named."""
    settings.LEDGER_URL = url
    bootstrap.reset_ledger()
    try:
        yield url
    finally:
        bootstrap.reset_ledger()


@pytest.fixture(autouse=True)
def ledger_url(tmp_path, settings):
    """Point LEDGER_URL at a fresh embedded ledger for this test."""
    with ledger_at(settings, f"embedded://{tmp_path / 'ledger.sqlite3'}") as url:
        yield url


@pytest.fixture
def ledger(ledger_url):
    """The ledger client the application uses in this test."""
    return bootstrap.ledger()


@pytest.fixture
def ledger_switch(settings):
    """Take this test's ledger away and bring it back: down() points LEDGER_URL where no ledger can be
    opened (a directory that cannot be created), up() back at this test's ledger. Starts up.

    Not a fake: the real embedded backend fails to open and raises LedgerUnavailable.
    """
    working = settings.LEDGER_URL

    class Switch:
        def down(self):
            settings.LEDGER_URL = UNREACHABLE_LEDGER_URL

        def up(self):
            settings.LEDGER_URL = working

    switch = Switch()
    yield switch
    switch.up()


# --- people --------------------------------------------------------------------------------------


@pytest.fixture
def patient_user(db):
    return patient_account("patient-alice")


@pytest.fixture
def other_patient_user(db):
    return patient_account("patient-bob")


def dr_carol():
    """Dr Carol, a clinician of St Mary's, registered in the directory (and on the ledger)."""
    user = UserFactory(username="dr-carol")
    clinician_register(
        user=user, display_name="Dr Carol", organisation=organisation_create(slug="st-marys", name="St Mary's")
    )
    return user


@pytest.fixture
def clinician(db):
    """Dr Carol, a clinician of St Mary's."""
    return dr_carol()


@pytest.fixture
def other_clinician(db):
    """A clinician with no organisation, for "another clinician's" checks."""
    user = UserFactory(username="dr-dave")
    clinician_register(user=user, display_name="Dr Dave")
    return user


@pytest.fixture
def auditor(db):
    return UserFactory(username="auditor-erin", roles=[Role.AUDITOR])


@pytest.fixture
def custodian(db):
    return UserFactory(username="custodian", roles=[Role.CUSTODIAN])


# --- Celery in this process ----------------------------------------------------------------------


@contextlib.contextmanager
def tasks_run_eagerly():
    """Celery runs each task in this process when it is sent, and its errors reach the sender."""
    saved = app.conf.task_always_eager, app.conf.task_eager_propagates
    app.conf.update(CELERY_TASK_ALWAYS_EAGER=True, CELERY_TASK_EAGER_PROPAGATES=True)
    try:
        yield
    finally:
        app.conf.update(CELERY_TASK_ALWAYS_EAGER=saved[0], CELERY_TASK_EAGER_PROPAGATES=saved[1])


@pytest.fixture
def eager_tasks():
    """Celery runs each task in this process when it is sent (a task sent at commit, at commit)."""
    with tasks_run_eagerly():
        yield


@pytest.fixture
def eager(eager_tasks, settings):
    """Run tasks in this process as they are sent, with no pause between ledger retries. Tests using it
    are transactional (django_db(transaction=True)) so that on-commit callbacks run as in production."""
    settings.ANALYTICS_LEDGER_RETRY_BACKOFF_SECONDS = 0


# --- analyses: models, cohorts, consents, and the folders the platform writes to -------------------


@pytest.fixture
def blob_dir(tmp_path, settings):
    settings.ANALYTICS_BLOB_DIR = str(tmp_path / "blobs")
    return tmp_path / "blobs"


@pytest.fixture
def export_dir(tmp_path, settings):
    settings.AUDIT_EXPORT_DIR = str(tmp_path / "exports")
    return tmp_path / "exports"


@pytest.fixture
def models_registered(db, ledger):
    return {m.name: m for m in diagnostic_models_register()}


@pytest.fixture
def cohort(db, ledger):
    """Breast-cancer demo patients 0..n-1 ingested (anchored), each with a portal account.

    cohort(n) -> list of (user, patient, record) in dataset order.
    """

    def make(count: int):
        people = demo_people_ingested(dataset=BREAST_CANCER_DATASET, count=count, custodian="custodian")
        return [(user, patient, Record.objects.get(patient=patient, category="imaging")) for _, user, patient in people]

    return make


def demo_people_ingested(*, dataset: str, count: int, custodian: str) -> list[tuple[Any, Any, Patient]]:
    """The dataset's demo patients 0..count-1 ingested (anchored) by a custodian of that username, each with a portal
    account: (demo patient, user, patient) in dataset order."""
    sender = UserFactory(username=custodian, roles=[Role.CUSTODIAN])
    patients = demo_patients(dataset=dataset, count=count)
    for document in demo_bundles(patients=patients, max_entries=1000):
        record_ingest(raw_body=json.dumps(document).encode(), actor=sender)
    made = []
    for demo in patients:
        patient = Patient.objects.get(pseudonym=patient_pseudonym(demo.patient_key))
        user = UserFactory(username=f"patient-{demo.identifier}", roles=[Role.PATIENT])
        patient_link_user(patient=patient, user=user)
        made.append((demo, user, patient))
    return made


def analysis_held(requester, **terms: Any):
    """A breast-cancer analysis over `requester`'s consented cohort, requested but not yet started, and the call
    that starts it (through Celery, eager or not): what happens between the two is what the gate sees."""
    from analytics import tasks

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("analytics.services._enqueue_start", lambda request_id: None)
        request = analysis_request_create(
            requester=requester, model_name="breast-cancer", cohort_kind="consented", **terms
        )
    return request, lambda: tasks.analysis_start.delay(str(request.pk))


def consent_terms(clinician, **change) -> dict:
    """Valid grant terms: `clinician` may run the breast-cancer model over imaging records, from now for
    30 days; `change` replaces any of them."""
    now = timezone.now()
    return {
        "grantee_id": clinician.clinician_profile.grantee_id,
        "purposes": [BREAST_CANCER],
        "categories": ["imaging"],
        "valid_from": now,
        "valid_until": now + timedelta(days=30),
        **change,
    }


def consent_api_body(terms: dict, **change) -> dict:
    """`terms` (consent_terms) as the consent API's JSON body; `change` replaces any of its fields."""
    body = {
        "grantee": terms["grantee_id"],
        "purposes": terms["purposes"],
        "categories": terms["categories"],
        "valid_from": terms["valid_from"].isoformat(),
        "valid_until": terms["valid_until"].isoformat(),
    }
    return {**body, **change}


def grant(user, patient, clinician, **change):
    """`patient` (signed in as `user`) consents to `clinician` on consent_terms."""
    return grant_signed(actor=user, patient=patient, **consent_terms(clinician, **change))


@pytest.fixture
def consented(cohort, clinician):
    """consented(n, not_consenting=0) -> cohort(n), each of whom has consented to the clinician (grant's
    terms) but for the last `not_consenting`, who never did."""

    def make(count: int, *, not_consenting: int = 0):
        people = cohort(count)
        for user, patient, _ in people[: count - not_consenting]:
            grant(user, patient, clinician)
        return people

    return make


def revoked_on_the_ledger_only(user, patient, clinician):
    """`patient` (signed in as `user`) consents to `clinician` (grant's terms), then the consent is revoked on
    the ledger alone, through the contract: the consent mirror still says active, as a mirror that missed the
    revocation would. Returns the mirror's row."""
    consent = grant(user, patient, clinician)
    document = consent_revoke_document(actor=user, consent=consent)
    bootstrap.contracts().revoke_consent(document, passkey_of(patient).sign(document))
    consent.refresh_from_db()
    assert consent.status == "active"
    (on_ledger,) = bootstrap.contracts().consents_of_patient(patient.pseudonym)
    assert on_ledger.status == "revoked"
    return consent


def analysis_over_a_consent_revoked_on_the_ledger_only(cohort, clinician):
    """One patient whose consent is revoked on the ledger alone (revoked_on_the_ledger_only): the mirror makes
    them a candidate of "everyone who consented to me", and the ledger's gate must refuse them. Runs the
    analysis (eagerly), checks it completed with that one refusal and no result; returns (request, record)."""
    ((user, patient, record),) = cohort(1)
    revoked_on_the_ledger_only(user, patient, clinician)
    request = analysis_request_create(requester=clinician, model_name="breast-cancer", cohort_kind="consented")
    request.refresh_from_db()
    assert (request.status, request.total_records) == (AnalysisStatus.COMPLETED, 1)
    results = analysis_results(request=request, viewer=clinician)
    assert (results.rows, results.refusals) == ([], {"consent_revoked": 1})
    return request, record


def tamper_with(record) -> None:
    """Flip one bit of the stored ciphertext of `record`'s version: it no longer opens, so it hashes to no anchor."""
    version = RecordVersion.objects.get(record=record)
    tampered = bytearray(version.ciphertext)
    tampered[40] ^= 1
    RecordVersion.objects.filter(pk=version.pk).update(ciphertext=bytes(tampered))


def every_gate_answer(cohort, clinician, monkeypatch):
    """cohort(6), a patient for each answer of the gate: 0 consented, record intact (the only one admitted);
    1 never consented; 2 consented until an hour from now (expired when the batch is gated: the gate's clock,
    analytics.pipeline.gate_clock, is moved to a second after that hour); 3 consented and revoked; 4 consented
    for laboratory records, not imaging; 5 consented, but its stored ciphertext tampered with."""
    people = cohort(6)
    (u0, p0, _), _, (u2, p2, _), (u3, p3, _), (u4, p4, _), (u5, p5, r5) = people
    grant(u0, p0, clinician)
    expires = timezone.now() + timedelta(hours=1)
    grant(u2, p2, clinician, valid_until=expires)
    revoke_signed(actor=u3, consent=grant(u3, p3, clinician))
    grant(u4, p4, clinician, categories=["laboratory"])
    grant(u5, p5, clinician)
    tamper_with(r5)
    monkeypatch.setattr("analytics.pipeline.gate_clock", lambda: expires + timedelta(seconds=1))
    return people


EVERY_GATE_ANSWER = (
    ("admit", None),
    ("refuse", "no_consent"),
    ("refuse", "consent_expired"),
    ("refuse", "consent_revoked"),
    ("refuse", "category_not_covered"),
    ("refuse", "hash_mismatch"),
)
"""The gate's answer, (decision, reason), for each of every_gate_answer's people in order."""


def every_gate_answer_scored(request, clinician, people) -> dict[str, tuple[str, str | None]]:
    """Check that `clinician`'s completed analysis of every_gate_answer's `people` scored patient 0's record alone, as
    the model scores it in the clear; returns what the access log must say of each record: id -> (decision, reason)."""
    results = analysis_results(request=request, viewer=clinician)
    assert [row.record_id for row in results.rows] == [str(people[0][2].id)]
    expected = plain_scores(1)[0]
    assert results.rows[0].label == expected["label"]
    assert abs(results.rows[0].score - expected["score"]) < 1e-3
    return {str(record.id): answer for (_, _, record), answer in zip(people, EVERY_GATE_ANSWER, strict=True)}


def plain_scores(count: int) -> list[dict]:
    """The breast-cancer model's answers ({"label", "score", ...}) for demo patients 0..count-1, computed in
    the clear: what the encrypted analysis of their records must come to."""
    model = breast_cancer_model()
    features = np.asarray([demo.features for demo in demo_patients(dataset=BREAST_CANCER_DATASET, count=count)])
    return model.interpret(model.score_plain(features))


def explicit_analysis(clinician, people, *more_pseudonyms: str):
    """`clinician`'s breast-cancer analysis of `people` (cohort's tuples) and `more_pseudonyms`, read back
    once requested: with tasks run eagerly, once it has run."""
    request = analysis_request_create(
        requester=clinician,
        model_name="breast-cancer",
        cohort_kind="explicit",
        pseudonyms=[patient.pseudonym for _, patient, _ in people] + list(more_pseudonyms),
    )
    request.refresh_from_db()
    return request


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
                # The worker tests are about the custodian and compute workers apart, each on its queue (the
                # separately trusted deployment); scoring in the custodian is asked for with `overrides`.
                "ANALYTICS_SCORE_ON": "compute",
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


def compute_environment(tmp_path: Path, blob_dir: Path) -> dict[str, str]:
    """The compute worker's whole environment: the blob folder and the code; no database, no key, no settings."""
    return {
        "ANALYTICS_BLOB_DIR": str(blob_dir),
        "PYTHONPATH": str(REPO),
        "HOME": str(tmp_path),
        "HEALTH_PLATFORM_VAR_DIR": str(tmp_path / "compute-var"),
    }


@pytest.fixture
def start_compute_worker(start_worker, tmp_path, blob_dir):
    """start_compute_worker(): a real compute worker (analytics.compute_app on the compute queue) with
    nothing but compute_environment: it can reach neither the database nor a key."""

    def start():
        return start_worker(
            app="analytics.compute_app", queues="compute", environment=compute_environment(tmp_path, blob_dir)
        )

    return start


@dataclass
class Web:
    """A web server start_web started: its address, its process and the file its output goes to."""

    url: str
    process: subprocess.Popen
    log_path: Path

    def output(self) -> str:
        """Everything it wrote so far (gunicorn's access and error logs, the platform's logs)."""
        return self.log_path.read_text(errors="replace")


@pytest.fixture
def start_web(tmp_path, ledger_url, broker):
    """Start the web server as `make run` does: scripts/web.sh (gunicorn with health_platform.gunicorn_config),
    on a free port of 127.0.0.1, on this test's database, ledger, broker, blob and export folders; stopped
    whole at the end of the test.

    start_web(overrides=None, workers=1, port=None) -> Web, once it answers. `overrides` are added to its environment
    (os.environ otherwise, so the var folder and the keys are this process's); a None value unsets a variable.
    `port` is a free port of 127.0.0.1 the test chose (one a single sign-on provider must know in advance).
    Its stdout and stderr go to one file (Web.output()). Tests must use `django_db(transaction=True)`: the
    server is another process and sees only committed rows.
    """
    from django.conf import settings
    from django.db import connection

    started = []

    def start(overrides: dict[str, str | None] | None = None, workers: int = 1, port: int | None = None) -> Web:
        if port is None:
            port = free_port()
        environment: dict[str, str | None] = {
            **os.environ,
            "LEDGER_URL": ledger_url,
            "DATABASE_URL": worker_database_url(connection),
            "ANALYTICS_BLOB_DIR": str(settings.ANALYTICS_BLOB_DIR),
            "AUDIT_EXPORT_DIR": str(settings.AUDIT_EXPORT_DIR),
            "PORT": str(port),
            "WEB_WORKERS": str(workers),
            **broker,
            **(overrides or {}),
        }
        log_path = tmp_path / f"web-{len(started)}.log"
        with log_path.open("wb") as log_file:
            process = subprocess.Popen(
                [str(REPO / "scripts" / "web.sh")],
                cwd=REPO,
                env={name: value for name, value in environment.items() if value is not None},
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        web = Web(f"http://127.0.0.1:{port}", process, log_path)
        started.append(web)
        if not wait_for_page(url=f"{web.url}/accounts/login/", timeout=60, alive=lambda: process.poll() is None):
            pytest.fail(f"the web server did not start:\n{web.output()[-3000:]}")
        return web

    yield start
    for web in started:  # gunicorn stops its workers and removes its control socket on SIGTERM
        stop_group(web.process)


@contextlib.contextmanager
def broker_switched(broker: dict, url: str, worker_environment: dict[str, str]):
    """While the block runs, this process publishes to the broker at `url` and every worker the test starts
    gets `worker_environment` in place of the filesystem broker's variables (`broker` is the fixture's
    dict); on the way out this process is back on the filesystem broker."""
    app.conf.update(CELERY_BROKER_URL=url, CELERY_BROKER_TRANSPORT_OPTIONS={})
    _reset_broker_connections(app)
    broker.clear()
    broker.update(worker_environment)
    try:
        yield url
    finally:
        app.conf.update(CELERY_BROKER_URL="filesystem://")
        _reset_broker_connections(app)


def _reset_broker_connections(app) -> None:
    """Drop every cached broker connection so the next publish uses the current transport options."""
    import kombu.pools

    if app._pool is not None:
        app._pool.force_close_all()
        app._pool = None
    app.amqp._producer_pool = None
    kombu.pools.reset()


def python_output(probe: str, environment: dict[str, str], *, cwd: Path = REPO, timeout: float = 60) -> str:
    """What `python -c probe` prints (stripped), run with exactly `environment`; a failure fails the test."""
    command = [sys.executable, "-c", probe]
    done = subprocess.run(command, cwd=cwd, env=environment, capture_output=True, text=True, timeout=timeout)
    done.check_returncode()
    return done.stdout.strip()


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
