"""`make run`'s quick start (issue 14): quiet, every program's output in the var folder's logs, one box at the end
with the address, each demo user and password, and where e-mails and logs are."""

import io
import os
import re
import signal
import stat
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from django.core.management import call_command

from benchmarks.common import free_port
from health_platform.quickstart import credentials_file_read, credentials_table, quick_start_box
from tests.conftest import wait_for

REPO = Path(__file__).resolve().parents[2]
DEMO_USERNAMES = (
    "demo-custodian",
    "demo-clinician",
    "demo-auditor",
    "demo-model-steward",
    "demo-patient-bc",
    "demo-patient-db",
)
ROWS = [
    ("custodian", "demo-custodian", "pw-custodian-1", ""),
    ("patient", "demo-patient-bc", "pw-patient-2", ""),
]


def test_credentials_table_without_extras_is_role_username_password_per_line():
    lines = credentials_table(ROWS)

    assert [line.split() for line in lines] == [
        ["role", "username", "password"],
        ["custodian", "demo-custodian", "pw-custodian-1"],
        ["patient", "demo-patient-bc", "pw-patient-2"],
    ]
    assert len({line.index(line.split()[1]) for line in lines}) == 1  # the usernames line up


def test_credentials_table_shows_the_extra_column_under_its_heading():
    rows = [(*ROWS[0][:3], "JBSWY3DP 123456"), ROWS[1]]

    lines = credentials_table(rows, extra_heading="authenticator secret, code")

    assert lines[0].endswith("authenticator secret, code")
    assert lines[1].endswith("JBSWY3DP 123456")
    assert lines[1].index("JBSWY3DP") == lines[0].index("authenticator")
    assert lines[2].split() == ["patient", "demo-patient-bc", "pw-patient-2"]


def test_box_holds_the_address_every_user_the_mail_and_log_folders_and_how_to_stop(tmp_path):
    box = quick_start_box(
        url="http://127.0.0.1:8123/", rows=ROWS, mail_dir=tmp_path / "mail", log_dir=tmp_path / "logs"
    ).splitlines()

    assert box[0] == box[-1]
    assert set(box[0]) == {"+", "-"}
    assert {len(line) for line in box} == {len(box[0])}
    assert all(line.startswith("| ") and line.endswith(" |") for line in box[1:-1])
    text = "\n".join(box)
    assert "http://127.0.0.1:8123/" in text
    for role, username, password, _extra in ROWS:
        assert any(line.split()[1:4] == [role, username, password] for line in box[1:-1] if len(line.split()) > 3)
    assert f"{tmp_path / 'mail'}/" in text
    assert f"{tmp_path / 'logs'}/" in text
    assert "Ctrl-C" in text


@pytest.mark.django_db
def test_seed_demo_writes_the_printed_credentials_to_a_private_file_for_the_box(tmp_path):
    path = tmp_path / "demo-credentials.json"
    out = io.StringIO()

    call_command("seed_demo", "--patients", "1", "--credentials-file", str(path), stdout=out)

    rows, extra_heading = credentials_file_read(path)
    assert [row[1] for row in rows] == list(DEMO_USERNAMES)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    printed = out.getvalue().splitlines()
    assert credentials_table(rows, extra_heading=extra_heading) == printed[-len(rows) - 1 :]


def _run_sh(tmp_path: Path, **overrides: str) -> tuple[subprocess.Popen, Path, Path]:
    """scripts/run.sh as `make run` starts it, on the embedded defaults in a var folder of its own."""
    var_dir = tmp_path / "var"
    terminal = tmp_path / "terminal.out"
    # This process's environment without the platform's own variables (those .env.example documents: the test's
    # database, ledger, broker and var folder), so that the script runs on its embedded defaults.
    platform_variables = set(re.findall(r"^#? ?([A-Z][A-Z0-9_]+)=", (REPO / ".env.example").read_text(), re.MULTILINE))
    environment = {name: value for name, value in os.environ.items() if name not in platform_variables}
    environment.update({"HEALTH_PLATFORM_VAR_DIR": str(var_dir), "PORT": str(free_port()), "DEMO_PATIENTS": "2"})
    environment.update(overrides)
    with terminal.open("wb") as output:
        process = subprocess.Popen(
            [str(REPO / "scripts" / "run.sh")],
            cwd=REPO,
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a process group, as a terminal's: Ctrl-C reaches all of it
        )
    return process, terminal, var_dir


def _group_gone(process_group: int) -> bool:
    try:
        os.killpg(process_group, 0)
    except ProcessLookupError:
        return True
    return False


def _stop(process: subprocess.Popen) -> None:
    if not _group_gone(process.pid):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)


@pytest.mark.slow
def test_run_sh_is_quiet_ends_with_the_box_and_ctrl_c_stops_everything(tmp_path):
    process, terminal, var_dir = _run_sh(tmp_path)
    try:

        def box_printed() -> bool:
            if process.poll() is not None:
                pytest.fail(f"run.sh stopped:\n{terminal.read_text()}")
            lines = terminal.read_text().splitlines()
            return len(lines) > 2 and lines[-1].startswith("+-") and lines.count(lines[-1]) == 2

        wait_for(box_printed, timeout=280, interval=0.5, what="the box")
        lines = terminal.read_text().splitlines()
        top = lines.index(lines[-1])
        progress, box = lines[:top], lines[top:]
        assert len(lines) <= 30, "\n".join(lines)
        assert all(line.startswith("==> ") or not line for line in progress), "\n".join(progress)
        url = next(word for word in box[1].split() if word.startswith("http://127.0.0.1:"))
        rows = [line.split() for line in box]
        # "| role username password [secret code recovery] |": staff rows carry their second factor too.
        passwords = {words[2]: words[3] for words in rows if len(words) >= 5 and words[2].startswith("demo-")}
        assert set(passwords) == set(DEMO_USERNAMES)
        assert f"{var_dir.resolve() / 'mail'}/" in "\n".join(box)
        assert f"{var_dir.resolve() / 'logs'}/" in "\n".join(box)
        # The passwords printed are the users' (a token for a patient: staff need their second factor too).
        patient = next(name for name in DEMO_USERNAMES if name.startswith("demo-patient"))
        body = urllib.parse.urlencode({"username": patient, "password": passwords[patient]}).encode()
        with urllib.request.urlopen(f"{url}api/auth/token/", data=body, timeout=30) as answer:
            assert answer.status == 200
        # Every program's output is in the logs, none on the terminal.
        logs = var_dir / "logs"
        for name in ("setup", "migrate", "seed_demo", "web", "celery-custodian", "celery-compute", "celery-beat"):
            assert (logs / f"{name}.log").exists(), name
        assert "Applying" in (logs / "migrate.log").read_text()
        assert "records_ingested" in (logs / "seed_demo.log").read_text()
        wait_for(lambda: '"POST /api/auth/' in (logs / "web.log").read_text(), what="the access log line")

        os.killpg(process.pid, signal.SIGINT)  # Ctrl-C

        process.wait(timeout=60)
        wait_for(lambda: _group_gone(process.pid), timeout=30, what="every program started to stop")
    finally:
        _stop(process)


@pytest.mark.slow
def test_run_sh_shows_the_log_of_a_failing_step_and_exits_non_zero(tmp_path):
    unwritable = tmp_path / "no-such-folder" / "health_platform.sqlite3"
    process, terminal, var_dir = _run_sh(tmp_path, DATABASE_URL=f"sqlite:///{unwritable}")
    try:
        status = process.wait(timeout=180)

        text = terminal.read_text()
        assert status != 0
        assert "!! migrating failed" in text
        assert str(var_dir.resolve() / "logs" / "migrate.log") in text
        assert "unable to open database file" in text  # the end of migrate's log, on the terminal
        assert len(text.splitlines()) <= 60
        wait_for(lambda: _group_gone(process.pid), timeout=15, what="every program started to stop")
    finally:
        _stop(process)


@pytest.mark.slow
@pytest.mark.parametrize("during", ["migrating the database", "seeding the demo data"])
def test_ctrl_c_before_the_box_stops_everything_without_reporting_a_failure(tmp_path, during):
    process, terminal, _ = _run_sh(tmp_path, DEMO_PATIENTS="200")
    try:
        wait_for(lambda: during in terminal.read_text(), timeout=120, interval=0.1, what=during)
        time.sleep(0.5)  # inside the step

        os.killpg(process.pid, signal.SIGINT)  # Ctrl-C

        assert process.wait(timeout=60) == 130
        text = terminal.read_text()
        assert text.rstrip().endswith("==> stopping"), text
        assert "!!" not in text, text  # the mark of a step that failed
        wait_for(lambda: _group_gone(process.pid), timeout=30, what="every program started to stop")
    finally:
        _stop(process)
