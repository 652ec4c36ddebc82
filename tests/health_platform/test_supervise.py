"""health_platform.supervise keeps a program running: killed, it is started again within seconds; stopped
by SIGTERM, it stops with its program."""

import os
import signal
import subprocess
import sys
import time

from tests.conftest import REPO, wait_for

PROGRAM = "import os, time; print('started', os.getpid(), flush=True); time.sleep(600)"


def _pids(log):
    text = log.read_text() if log.exists() else ""
    return [int(line.split()[1]) for line in text.splitlines() if line.startswith("started ")]


def _running(pid):
    """A process that exists and is not a zombie waiting to be reaped."""
    try:
        state = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]  # noqa: SIM115
    except FileNotFoundError:
        return False
    return state != "Z"


def test_a_killed_program_is_started_again_and_sigterm_stops_both(tmp_path):
    log = tmp_path / "program.log"
    supervisor = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "health_platform.supervise",
            "--name",
            "sleeper",
            "--log",
            str(log),
            "--",
            sys.executable,
            "-c",
            PROGRAM,
        ],
        cwd=REPO,
    )
    try:
        wait_for(lambda: _pids(log), timeout=20, interval=0.05, what="the program to start")
        (first,) = _pids(log)
        os.kill(first, signal.SIGKILL)
        killed = time.monotonic()

        wait_for(lambda: len(_pids(log)) == 2, timeout=10, interval=0.05, what="the program to start again")
        assert time.monotonic() - killed < 5
        second = _pids(log)[1]
        assert second != first
        assert "sleeper stopped (status -9)" in log.read_text()

        supervisor.send_signal(signal.SIGTERM)
        assert supervisor.wait(timeout=15) == 0
        time.sleep(0.2)
        assert not _running(second)
    finally:
        supervisor.kill()


def test_run_sh_runs_every_background_program_under_the_supervisor():
    script = (REPO / "scripts" / "run.sh").read_text()
    for program in ("custodian", "compute", "beat"):
        assert f"--name {program}" in script or f"supervise {program} " in script
    assert "--beat" not in script  # the beat is a program of its own, not a thread of a worker that may die


def _supervise(tmp_path, program):
    log = tmp_path / "program.log"
    command = [sys.executable, "-m", "health_platform.supervise", "--name", "p", "--log", str(log), "--"]
    supervisor = subprocess.Popen([*command, sys.executable, "-c", program], cwd=REPO)
    wait_for(lambda: _pids(log), timeout=20, interval=0.05, what="the program to start")
    return supervisor, _pids(log)[0]


def test_sigterm_stops_the_supervisor_as_soon_as_its_program_has_stopped(tmp_path):
    """The stop waited STOP_SECONDS whatever the program did: the signal handler's wait for the program could not
    take the lock of the wait it had interrupted, so it timed out, and a worker's warm shutdown done in a second
    was then SIGKILLed anyway."""
    supervisor, program = _supervise(tmp_path, PROGRAM)  # a Python program: SIGTERM ends it at once
    try:
        stopping = time.monotonic()
        supervisor.send_signal(signal.SIGTERM)
        assert supervisor.wait(timeout=15) == 0
        assert time.monotonic() - stopping < 3
        assert not _running(program)
    finally:
        supervisor.kill()


def test_a_program_that_ignores_sigterm_is_killed_after_the_stop_seconds(tmp_path):
    from health_platform.supervise import STOP_SECONDS

    ignoring = "import signal; signal.signal(signal.SIGTERM, signal.SIG_IGN); " + PROGRAM
    supervisor, program = _supervise(tmp_path, ignoring)
    try:
        stopping = time.monotonic()
        supervisor.send_signal(signal.SIGTERM)
        assert supervisor.wait(timeout=STOP_SECONDS + 10) == 0
        assert STOP_SECONDS <= time.monotonic() - stopping < STOP_SECONDS + 3
        assert not _running(program)
    finally:
        supervisor.kill()
