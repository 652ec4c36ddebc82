"""What `make run` shows once the platform answers: one box with the portal's address, each demo user with their
password, where e-mails and logs go and how to stop. Free of Django.

    python -m health_platform.quickstart wait --url http://127.0.0.1:8000/ --pid 1234 --timeout 300
    python -m health_platform.quickstart box --url ... --credentials var/demo-credentials.json --var-dir var

`manage.py seed_demo --credentials-file` writes the demo users' rows (mode 0600, in the var folder like the keys);
scripts/run.sh waits for the portal's first page, then prints the box from them. Every credentials table the
platform prints, seed_demo's own and the box's, is `credentials_table`: one place to add a column to.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path

from health_platform.supervise import pid_alive

# (role, username, password, extra): `extra` is whatever else a visitor needs to sign in as that user
# (empty when nothing), under the heading `extra_heading`.
CredentialRow = tuple[str, str, str, str]

BOX_MIN_WIDTH = 60


def credentials_table(rows: Sequence[CredentialRow], *, extra_heading: str = "") -> list[str]:
    """The demo users as aligned lines: a heading, then one line per user (role, username, password, extra).

    Without any extra the lines are `role  username  password` only, which scripts and tests split on blanks."""
    username_width = max(len("username"), *(len(username) for _role, username, _password, _extra in rows))
    with_extra = any(extra for *_rest, extra in rows)
    password_width = max(len("password"), *(len(password) for _role, _username, password, _extra in rows))

    def line(role: str, username: str, password: str, extra: str) -> str:
        text = f"{role:<10}  {username:<{username_width}}  "
        return (text + f"{password:<{password_width}}  {extra}" if with_extra else text + password).rstrip()

    return [line("role", "username", "password", extra_heading), *(line(*row) for row in rows)]


def credentials_file_write(path: Path, rows: Sequence[CredentialRow], *, extra_heading: str = "") -> None:
    """Write the rows for the box, readable by the owner only (they hold passwords), replacing any older file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump({"extra_heading": extra_heading, "rows": [list(row) for row in rows]}, handle)
    temporary.replace(path)


def credentials_file_read(path: Path) -> tuple[list[CredentialRow], str]:
    document = json.loads(path.read_text())
    rows = [(str(role), str(user), str(password), str(extra)) for role, user, password, extra in document["rows"]]
    return rows, str(document.get("extra_heading", ""))


def quick_start_box(
    *, url: str, rows: Sequence[CredentialRow], mail_dir: Path, log_dir: Path, extra_heading: str = ""
) -> str:
    """The box `make run` ends with (ASCII only: any terminal shows it)."""
    base = url.rstrip("/")
    body = [
        f"health_platform is running: {base}/",
        f"API documentation:          {base}/api/docs/",
        "",
        "Demo users (new passwords at every start):",
        *("  " + line for line in credentials_table(rows, extra_heading=extra_heading)),
        "",
        f"E-mails land in: {mail_dir}/ (one file per message)",
        f"Logs:            {log_dir}/",
        "Stop:            Ctrl-C (stops the web server, the workers and the beat)",
    ]
    width = max(BOX_MIN_WIDTH, *(len(text) for text in body))
    rule = "+" + "-" * (width + 2) + "+"
    return "\n".join([rule, *(f"| {text:<{width}} |" for text in body), rule])


def wait_for_page(*, url: str, timeout: float, alive: Callable[[], bool] | None = None, interval: float = 0.2) -> bool:
    """Whether `url` answered 200 within `timeout` seconds; False at once when `alive()` (is the web server
    still running?) says no."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if alive is not None and not alive():
            return False
        try:
            # The platform's own address on 127.0.0.1, given by scripts/run.sh.
            with urllib.request.urlopen(url, timeout=5) as answer:  # noqa: S310
                if answer.status == 200:
                    return True
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(interval)
    return False


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m health_platform.quickstart", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    wait = commands.add_parser("wait", help="wait until the page answers 200 (exit 1 if it does not)")
    wait.add_argument("--url", required=True)
    wait.add_argument("--pid", type=int, help="the web server's process: stop waiting if it is gone")
    wait.add_argument("--timeout", type=float, default=300.0)
    box = commands.add_parser("box", help="print the box")
    box.add_argument("--url", required=True)
    box.add_argument("--credentials", type=Path, required=True, help="the file seed_demo --credentials-file wrote")
    box.add_argument("--var-dir", type=Path, required=True)
    arguments = parser.parse_args(argv)
    if arguments.command == "wait":
        try:
            pid = arguments.pid
            alive = None if pid is None else (lambda: pid_alive(pid))
            return 0 if wait_for_page(url=arguments.url, timeout=arguments.timeout, alive=alive) else 1
        except KeyboardInterrupt:  # Ctrl-C while waiting: scripts/run.sh stops everything, no traceback
            return 130
    rows, extra_heading = credentials_file_read(arguments.credentials)
    var_dir = arguments.var_dir.resolve()
    print(
        quick_start_box(
            url=arguments.url,
            rows=rows,
            mail_dir=var_dir / "mail",
            log_dir=var_dir / "logs",
            extra_heading=extra_heading,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
