"""Keep one background program running: start it again whenever it stops. Free of Django.

    python -m health_platform.supervise --name custodian --log var/celery-custodian.log -- celery -A ...

scripts/run.sh runs the custodian worker, the compute worker and the beat each under one of these, so that
no single process death stalls the platform's work for long: a worker or the beat killed (by the kernel's
out-of-memory killer, an operator, a crash) is running again within RESTART_SECONDS, and the messages it held
are delivered again by the broker (health_platform.filesystem_broker, health_platform.redis_broker). A
program that keeps dying right after it starts is started again less and less often (at most every
MAX_BACKOFF_SECONDS), so that a configuration error does not spin. SIGTERM or SIGINT stops the program (the
same signal, then SIGKILL after STOP_SECONDS) and the supervisor with it. In containers the orchestrator's
restart policy plays this part (docker-compose.yml: restart: unless-stopped).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

RESTART_SECONDS = 1.0
MAX_BACKOFF_SECONDS = 30.0
HEALTHY_AFTER_SECONDS = 10.0  # a run this long resets the backoff
STOP_SECONDS = 10.0


def pid_alive(pid: int) -> bool:
    """Whether process `pid` exists on this host (one of another user's counts: it exists)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Supervisor:
    def __init__(self, name: str, command: list[str], log_path: Path):
        self.name = name
        self.command = command
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self.stopping = False
        self.stop_signal = signal.SIGTERM
        self.kill_at = 0.0  # once stopping: when the program is killed if it has not stopped
        self.restarts = 0

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        wait = RESTART_SECONDS
        while not self.stopping:
            started = time.monotonic()
            with self.log_path.open("ab") as log:
                # The command is the operator's own (scripts/run.sh), run without a shell.
                self.process = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT)  # noqa: S603
                status = self._wait(self.process)
            if self.stopping:
                break
            ran = time.monotonic() - started
            wait = RESTART_SECONDS if ran >= HEALTHY_AFTER_SECONDS else min(wait * 2, MAX_BACKOFF_SECONDS)
            self.restarts += 1
            self._note(f"{self.name} stopped (status {status}) after {ran:.1f} s; starting it again in {wait:.0f} s")
            self._sleep(wait)
        return 0

    def _note(self, text: str) -> None:
        with self.log_path.open("a") as log:
            log.write(f"[supervise] {text}\n")

    def _sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self.stopping and time.monotonic() < deadline:
            time.sleep(0.05)

    def _wait(self, process: subprocess.Popen[bytes]) -> int:
        """The program's exit status; once it was asked to stop, it has STOP_SECONDS before it is killed.

        Polled, not Popen.wait(): the stop signal arrives while the main thread waits, and a handler that
        waited too could not take the lock of the wait it interrupted (it timed out after STOP_SECONDS and
        killed a program that had stopped cleanly within a second).
        """
        asked_to_stop = False
        while (status := process.poll()) is None:
            if self.stopping and not asked_to_stop:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(self.stop_signal)
                asked_to_stop = True
            elif asked_to_stop and time.monotonic() >= self.kill_at:
                process.kill()
                return process.wait()
            time.sleep(0.05)
        return status

    def _stop(self, signum: int, frame: FrameType | None) -> None:
        if not self.stopping:
            self.stop_signal = signal.Signals(signum)
            self.kill_at = time.monotonic() + STOP_SECONDS
            self.stopping = True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m health_platform.supervise", description=__doc__.splitlines()[0])
    parser.add_argument("--name", required=True, help="the program's name, in the log")
    parser.add_argument("--log", required=True, type=Path, help="the file its output is appended to")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then the command")
    arguments = parser.parse_args(argv)
    command = arguments.command[1:] if arguments.command[:1] == ["--"] else arguments.command
    if not command:
        parser.error("give the command after --")
    return Supervisor(arguments.name, command, arguments.log).run()


if __name__ == "__main__":
    sys.exit(main())
