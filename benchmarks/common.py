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
