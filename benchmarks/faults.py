"""Real faults for the chaos run (benchmarks.chaos) and the reliability tests: the embedded ledger locked by another
process, and the processes a worker runs, found from /proc so that one can be killed."""

import subprocess
import sys
from pathlib import Path


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

    def __init__(self, ledger_path: Path | str):
        self.shm = Path(f"{ledger_path}-shm")
        self.process: subprocess.Popen[str] | None = None

    def take(self) -> None:
        """Returns once the lock is held (the holder waits for the locks that ledger users hold for a moment)."""
        self.process = subprocess.Popen(
            [sys.executable, "-c", self._HOLDER, str(self.shm)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        answer = self.process.stdout.readline().strip()
        if answer != "locked":
            self.release()
            raise RuntimeError(f"the ledger lock was not taken ({self.shm} may not exist yet)")

    @property
    def held(self) -> bool:
        return self.process is not None

    def release(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after "pid (comm)" (comm may hold spaces and parentheses), None if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()


def child_pids(pid: int) -> list[int]:
    """The pids of the children of process `pid` (a worker's prefork pool processes; a supervisor's program),
    those that died and were not reaped yet by their parent included."""
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))  # state ppid ...
        if fields is not None and int(fields[1]) == pid:
            children.append(int(entry.name))
    return children


def running(pid: int) -> bool:
    """Whether process `pid` exists and has not died (a zombie, dead and not reaped yet, has)."""
    fields = _stat_fields(pid)
    return fields is not None and fields[0] != "Z"


def cpu_ticks(pid: int) -> int | None:
    """The CPU time process `pid` has used (user + system, in clock ticks); None if it is gone."""
    fields = _stat_fields(pid)
    return None if fields is None else int(fields[11]) + int(fields[12])
