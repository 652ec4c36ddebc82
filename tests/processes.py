"""Processes as /proc shows them (Linux), for tests that kill processes and watch what is left."""

from pathlib import Path


def process_alive(pid: int) -> bool:
    """Whether process `pid` exists and has not ended (a zombie, ended but not yet reaped, has)."""
    fields = _stat(pid)
    return bool(fields) and fields[0] != "Z"


def child_processes(pid: int) -> list[int]:
    """The processes whose parent is `pid`."""
    return [int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit() and _parent(entry.name) == pid]


def _parent(pid: str) -> int | None:
    fields = _stat(int(pid))
    return int(fields[1]) if len(fields) > 1 else None


def _stat(pid: int) -> list[str]:
    """/proc/<pid>/stat's fields after the command's name (state, parent, ...); [] for a process that is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return []
