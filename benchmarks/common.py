"""Helpers shared by the benchmarks: a platform of their own in a temporary folder (Django, real Celery workers,
a Redis server), timing and a results table."""

import contextlib
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPOSITORY = Path(__file__).resolve().parent.parent
RESULTS_DIR = Path(__file__).resolve().parent / "results"


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (the kernel's choice; free until someone binds it)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def stop_group(process: subprocess.Popen, *, timeout: float = 15) -> None:
    """Stop a program started in a process group of its own (start_new_session): SIGTERM to the group, SIGKILL
    to it after `timeout` seconds."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def timed(work: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = work()
    return time.perf_counter() - start, result


def report(name: str, rows: list[dict[str, Any]]) -> None:
    """Print a table and keep the figures as JSON beside the benchmarks (benchmarks/results/)."""
    columns = list(rows[0])
    widths = [max(len(str(c)), *(len(_cell(r[c])) for r in rows)) for c in columns]
    print(f"\n{name}  ({platform.python_implementation()} {platform.python_version()}, {platform.machine()})")
    print("  ".join(str(c).ljust(w) for c, w in zip(columns, widths, strict=True)))
    for row in rows:
        print("  ".join(_cell(row[c]).ljust(w) for c, w in zip(columns, widths, strict=True)))
    RESULTS_DIR.mkdir(exist_ok=True)
    (RESULTS_DIR / f"{name}.json").write_text(json.dumps(rows, indent=2) + "\n")


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.1f}" if value >= 10 else f"{value:.3f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


# --- a platform of the benchmark's own ---------------------------------------------------------------


def setup_django(directory: str) -> None:
    """Django on `directory` as its var folder (database, ledger, keys), migrated; only errors are logged."""
    os.environ["HEALTH_PLATFORM_VAR_DIR"] = directory
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "health_platform.settings")
    import django

    django.setup()
    import logging

    logging.disable(logging.WARNING)
    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


class RedisServer:
    """A redis-server of Debian's on a free 127.0.0.1 port, its files in `folder`.

    Durable, it keeps an append-only file fsynced on every write, so that a server stopped (even SIGKILLed)
    and started again still holds the queued messages, as a production broker configured for durability
    does; stop() and start() keep the port and the folder. The benchmarks and the tests share it."""

    def __init__(self, folder: Path, *, durable: bool = False):
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed: run the test command from the README (it installs it)")
        self.binary = binary
        self.folder = folder
        self.durable = durable
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        persistence = ["--appendonly", "yes", "--appendfsync", "always"] if self.durable else ["--appendonly", "no"]
        self.process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--dir",
                str(self.folder),
                *persistence,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    self.kill()
                    raise RuntimeError("redis-server did not start within 20 s") from None
                time.sleep(0.05)

    def kill(self) -> None:
        """Stop the server the hard way (a crash): SIGKILL."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None


@contextlib.contextmanager
def redis_server(directory: str | Path, *, durable: bool = False) -> Iterator[RedisServer]:
    """A RedisServer started for the block and stopped after it."""
    server = RedisServer(Path(directory), durable=durable)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@dataclass(frozen=True)
class Program:
    """A background program a benchmark started: a Celery worker or the beat, or the supervisor that runs it
    (health_platform.supervise), whose output goes to `log_path`."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    supervised: bool

    def stop(self) -> None:
        """SIGTERM (a worker shuts down warm; a supervisor stops its program the same way), SIGKILL after 30 s.

        A supervised program runs in a process group of its own, which is then killed whole, so that nothing
        it started outlives the run."""
        with contextlib.suppress(ProcessLookupError):
            self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        if self.supervised:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)


def start_workers(
    directory: str, *, supervised: bool = False, beat: bool = False, score_on: str | None = None
) -> list[Program]:
    """Two custodian processes (Django) and two compute processes (no Django, no keys), as deployed, on
    `directory` as their var folder; with `beat`, the beat (the periodic sweeps) too. Returns once each worker
    says it is ready.

    `supervised`: each runs under health_platform.supervise as scripts/run.sh runs it (started again within a
    second when it stops), in a process group of its own. The compute worker gets no database setting and no
    key: its environment is the broker's variables, the var folder and the .env file named, nothing else.
    `score_on`: the custodians' ANALYTICS_SCORE_ON (the setting's default when None).
    """
    celery = os.path.join(os.path.dirname(sys.executable), "celery")
    base = {
        "PATH": os.environ["PATH"],
        "PYTHONPATH": str(REPOSITORY),
        "HEALTH_PLATFORM_VAR_DIR": directory,
        "HOME": directory,
        **{name: value for name, value in os.environ.items() if name.startswith("CELERY_")},
    }
    if "HEALTH_PLATFORM_ENV_FILE" in os.environ:
        base["HEALTH_PLATFORM_ENV_FILE"] = os.environ["HEALTH_PLATFORM_ENV_FILE"]
    custodian_environment = {
        **base,
        # The custodians' ledger, when not the embedded default: a Fabric network's URL and client identity. The
        # compute workers never get it.
        **{name: value for name, value in os.environ.items() if name == "LEDGER_URL" or name.startswith("FABRIC_")},
        "DJANGO_SETTINGS_MODULE": "health_platform.settings",
        **({"ANALYTICS_SCORE_ON": score_on} if score_on else {}),
    }
    quiet = ["--without-gossip", "--without-mingle", "--without-heartbeat"]
    commands = [
        (
            "custodian",
            [celery, "-A", "health_platform", "worker", "-Q", "custodian", "-c", "2", "-n", "custodian@%h", *quiet],
            custodian_environment,
        ),
        (
            "compute",
            [celery, "-A", "analytics.compute_app", "worker", "-Q", "compute", "-c", "2", "-n", "compute@%h", *quiet],
            base,
        ),
    ]
    if beat:
        schedule = os.path.join(directory, "celerybeat-schedule")
        commands.append(
            ("beat", [celery, "-A", "health_platform", "beat", "--schedule", schedule], custodian_environment)
        )
    programs = []
    for name, command, environment in commands:
        log_path = Path(directory) / f"celery-{name}.log"
        command = [*command, "--loglevel", "INFO"]
        if supervised:
            supervise = [sys.executable, "-m", "health_platform.supervise", "--name", name, "--log", str(log_path)]
            process = subprocess.Popen(
                [*supervise, "--", *command], env=environment, cwd=REPOSITORY, start_new_session=True
            )
        else:
            with log_path.open("wb") as log_file:
                process = subprocess.Popen(command, env=environment, stdout=log_file, stderr=subprocess.STDOUT)
        program = Program(name, process, log_path, supervised)
        programs.append(program)
        _wait_until_started(program, b"beat: Starting" if name == "beat" else b"ready.")
    return programs


def _wait_until_started(program: Program, sign: bytes, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not (program.log_path.exists() and sign in program.log_path.read_bytes()):
        if program.process.poll() is not None or time.monotonic() > deadline:
            text = program.log_path.read_text()[-2000:] if program.log_path.exists() else ""
            raise RuntimeError(f"{program.name} did not start: {text}")
        time.sleep(0.1)


# --- synthetic records, their consents, and timing what a run calls ----------------------------------


def synthetic_patients(count: int, *, dataset: str = "", seed: int = 0) -> list[Any]:
    """`count` patients like `dataset`'s (breast-cancer by default): patient i is the dataset's row i mod its size
    with 1% multiplicative noise on each feature, clipped to the dataset's declared model's range (records.demo's
    DemoPatient, numbered 0..count-1; features: synthetic_features). Patient i's outcome is its row's:
    `synthetic_targets`."""
    return synthetic_demo_patients(synthetic_features(count, dataset=dataset, seed=seed), dataset=dataset)


def synthetic_features(count: int, *, dataset: str = "", seed: int = 0) -> Any:
    """The features of synthetic_patients(count) as a (count x features) array: 8 bytes a value, where a patient
    object costs about a kilobyte (a million patients' features: 240 MB)."""
    import numpy as np

    from analytics.diagnostic_models import all_models
    from records.codes import BREAST_CANCER_DATASET, load_dataset

    dataset = dataset or BREAST_CANCER_DATASET
    base = np.asarray(load_dataset(dataset).data, dtype=float)
    model = [spec for spec in all_models() if spec.dataset == dataset][-1]  # the latest declared
    noise = np.random.default_rng(seed).standard_normal((count, base.shape[1]))
    return np.clip(base[np.arange(count) % len(base)] * (1 + 0.01 * noise), model.feature_min, model.feature_max)


def synthetic_demo_patients(features: Any, *, dataset: str = "", first: int = 0) -> list[Any]:
    """DemoPatients first, first+1, ... holding the rows of `features` (a slice of synthetic_features')."""
    from records.codes import BREAST_CANCER_DATASET
    from records.demo import DemoPatient

    dataset = dataset or BREAST_CANCER_DATASET
    return [
        DemoPatient(dataset=dataset, row=first + index, features=tuple(float(v) for v in values))
        for index, values in enumerate(features)
    ]


def synthetic_targets(patients: list[Any]) -> Any:
    """The dataset's target of each synthetic patient's row (see synthetic_patients)."""
    import numpy as np

    from records.codes import load_dataset

    targets = np.asarray(load_dataset(patients[0].dataset).target) if patients else np.zeros(0)
    return np.asarray([targets[patient.row % len(targets)] for patient in patients])


def patients_ingest(patients: list[Any], *, actor: Any) -> None:
    """Ingest the patients' records through the ingest service (FHIR bundles, anchored on the ledger)."""
    import json

    from django.conf import settings

    from records.demo import demo_bundles
    from records.services import record_ingest

    for document in demo_bundles(patients=patients, max_entries=settings.INGEST_MAX_ENTRIES):
        record_ingest(raw_body=json.dumps(document).encode(), actor=actor)


def consents_grant(grants: list[tuple[str, str, str]], *, purposes: list[str], categories: list[str]) -> None:
    """Grant each (consent id, patient pseudonym, grantee) for 30 days from yesterday, signed by the patient's
    software passkey (health_platform.software_passkey): the patients' keys enrolled 64 to a transaction first, then
    the grants 16 at a time (the ledger groups those made together)."""
    from concurrent.futures import ThreadPoolExecutor
    from datetime import UTC, datetime, timedelta

    from health_platform import bootstrap
    from health_platform.software_passkey import SoftwareSigner
    from ledger.contracts import ConsentGrant

    now = datetime.now(UTC)
    signer = SoftwareSigner(bootstrap.contracts())

    def grant(item: tuple[str, str, str]) -> None:
        consent_id, pseudonym, grantee = item
        signer.grant(
            pseudonym,
            ConsentGrant(
                consent_id=consent_id,
                grantee=grantee,
                purposes=purposes,
                categories=categories,
                valid_from=(now - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                valid_until=(now + timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            ),
        )

    signer.enrol([pseudonym for _, pseudonym, _ in grants])
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(grant, grants))


@contextlib.contextmanager
def time_spent_in(targets: dict[str, tuple[Any, str]]) -> Iterator[dict[str, float]]:
    """Seconds spent in each named callable (an attribute of a class or module) while the block runs, summed over
    calls: each is wrapped for the block and put back after it, so that nothing is measured, nor costs anything,
    outside it. Calls on other threads count too (the wrapper is shared)."""
    import functools

    spent = dict.fromkeys(targets, 0.0)
    originals = {name: getattr(owner, attribute) for name, (owner, attribute) in targets.items()}

    def timing(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(function)
        def timed_call(*arguments: Any, **keywords: Any) -> Any:
            start = time.perf_counter()
            try:
                return function(*arguments, **keywords)
            finally:
                spent[name] += time.perf_counter() - start

        return timed_call

    for name, (owner, attribute) in targets.items():
        setattr(owner, attribute, timing(name, originals[name]))
    try:
        yield spent
    finally:
        for name, (owner, attribute) in targets.items():
            setattr(owner, attribute, originals[name])
