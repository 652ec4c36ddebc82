"""The web server as `make run` starts it (scripts/web.sh: gunicorn with health_platform.gunicorn_config), tested
as a client meets it: over a socket, against the real gunicorn."""

import json
import stat
import subprocess
import urllib.request
from pathlib import Path

import pytest

from health_platform import gunicorn_config
from tests.conftest import REPO

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def everything_under(folder: Path) -> list[str]:
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*"))


def test_the_control_socket_is_in_the_var_folder_and_nothing_is_written_to_home(start_web, tmp_path):
    """gunicorn's default is ~/.gunicorn/gunicorn.ctl when XDG_RUNTIME_DIR is unset: shared by every gunicorn of
    the user, outside the platform's folders."""
    home, var = tmp_path / "home", tmp_path / "var"
    home.mkdir()

    web = start_web(overrides={"HOME": str(home), "HEALTH_PLATFORM_VAR_DIR": str(var), "XDG_RUNTIME_DIR": None})
    with urllib.request.urlopen(f"{web.url}/api/schema/", timeout=30) as response:
        assert response.status == 200

    control = var / "gunicorn.ctl"
    assert stat.S_ISSOCK(control.stat().st_mode)
    assert stat.S_IMODE(control.stat().st_mode) == 0o600
    # It is gunicorn's control socket: gunicornc reaches the server through it.
    shown = subprocess.run(
        [str(REPO / ".venv" / "bin" / "gunicornc"), "--socket", str(control), "--command", "show workers", "--json"],
        capture_output=True,
        text=True,
        timeout=30,
        env={"PATH": "/usr/bin:/bin", "HOME": str(home)},
        check=False,
    )
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["count"] == 1
    assert everything_under(home) == []


def test_the_control_socket_is_left_out_when_the_var_folder_is_too_deep_for_a_unix_socket(monkeypatch, tmp_path):
    deep = tmp_path / ("d" * 100)
    monkeypatch.setenv("HEALTH_PLATFORM_VAR_DIR", str(deep))
    assert gunicorn_config.control_socket_path() is None

    monkeypatch.setenv("HEALTH_PLATFORM_VAR_DIR", str(tmp_path / "var"))
    assert gunicorn_config.control_socket_path() == str(tmp_path / "var" / "gunicorn.ctl")


def test_the_configuration_loads_no_django():
    """gunicorn's master reads it before the application: settings read there would be read too early."""
    loaded = subprocess.run(
        [
            str(REPO / ".venv" / "bin" / "python"),
            "-c",
            "import sys, health_platform.gunicorn_config; print([m for m in sys.modules if m.startswith('django')])",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert loaded.stdout.strip() == "[]"
