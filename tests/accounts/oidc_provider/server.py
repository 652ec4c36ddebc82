"""Start the test OpenID Connect provider as a process of its own, set up by its own manage.py commands."""

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from benchmarks.common import free_port, stop_group
from health_platform.quickstart import wait_for_page

REPO = Path(__file__).resolve().parents[3]
SETTINGS = "tests.accounts.oidc_provider.settings"
CLIENT_ID = "health-platform"
CLIENT_SECRET = "test-client-secret-not-for-production"


class DirectoryUser(NamedTuple):
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

    port = free_port()
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
        stop_group(process)


def _wait_until_it_answers(provider: Provider, process: subprocess.Popen) -> None:
    if not wait_for_page(
        url=f"{provider.url}/.well-known/openid-configuration", timeout=60, alive=lambda: process.poll() is None
    ):
        raise RuntimeError(f"the OIDC provider did not start:\n{provider.output()[-3000:]}")
