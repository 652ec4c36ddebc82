"""Start the test OpenID Connect provider as a process of its own, set up by its own manage.py commands."""

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

REPO = Path(__file__).resolve().parents[3]
SETTINGS = "tests.accounts.oidc_provider.settings"
CLIENT_ID = "health-platform"
CLIENT_SECRET = "test-client-secret-not-for-production"


@dataclass(frozen=True)
class DirectoryUser:
    """A person in the provider's directory."""

    username: str
    password: str
    email: str


@dataclass(frozen=True)
class Provider:
    url: str  # the issuer: what the platform's OIDC_SERVER_URL names
    client_id: str
    client_secret: str
    log_path: Path

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")


def _signing_key_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def running_provider(
    directory: Path, *, redirect_uri: str, users: list[DirectoryUser], host: str = "127.0.0.1"
) -> Iterator[Provider]:
    """A provider on a free port of `host`, with one confidential authorization-code client (RS256, consent
    skipped) allowed to send its users back to `redirect_uri`, and `users` in its directory. Stopped on exit."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "signing-key.pem").write_text(_signing_key_pem())
    environment = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": SETTINGS,
        "OIDC_TEST_PROVIDER_DIR": str(directory),
    }
    log_path = directory / "provider.log"

    def manage(*arguments: str, **extra: str) -> None:
        with log_path.open("ab") as log:
            subprocess.run(
                [sys.executable, "manage.py", *arguments],
                cwd=REPO,
                env={**environment, **extra},
                stdout=log,
                stderr=subprocess.STDOUT,
                check=True,
                timeout=120,
            )

    manage("migrate", "--no-input", "-v", "0")
    manage(
        "createapplication",
        "confidential",
        "authorization-code",
        "--name=health_platform",
        f"--client-id={CLIENT_ID}",
        f"--client-secret={CLIENT_SECRET}",
        f"--redirect-uris={redirect_uri}",
        "--algorithm=RS256",
        "--skip-authorization",
    )
    for user in users:
        manage(
            "createsuperuser",
            "--no-input",
            f"--username={user.username}",
            f"--email={user.email}",
            DJANGO_SUPERUSER_PASSWORD=user.password,
        )

    port = _free_port()
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "manage.py", "runserver", "--noreload", f"{host}:{port}"],
            cwd=REPO,
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    provider = Provider(f"http://{host}:{port}/o", CLIENT_ID, CLIENT_SECRET, log_path)
    try:
        _wait_until_it_answers(provider, process)
        yield provider
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def _wait_until_it_answers(provider: Provider, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 60
    while True:
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the OIDC provider did not start:\n{provider.output()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{provider.url}/.well-known/openid-configuration", timeout=5) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.2)
