"""Per-installation secrets for the embedded default.

A fresh clone must run without any secret in the repository and without the user inventing one.
When a key is not given by the environment, one is generated once (from the OS CSPRNG), stored
under VAR_DIR with mode 0600, and reused on every later start. Production sets every key from
configuration instead (.env.example).
"""

import base64
import os
import secrets
from pathlib import Path


def _read_or_create(var_dir: Path, name: str, make: bytes) -> bytes:
    path = var_dir / "secrets" / name
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        return path.read_bytes().strip()
    except FileNotFoundError:
        pass
    # Written whole to a private temporary file, then linked into place: when two processes start
    # at once, exactly one link succeeds and both read the same complete key.
    temporary = path.with_name(f".{name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(make)
    try:
        os.link(temporary, path)
    except FileExistsError:
        pass
    finally:
        temporary.unlink()
    return path.read_bytes().strip()


def local_secret(var_dir: Path, name: str) -> str:
    return _read_or_create(var_dir, name, secrets.token_urlsafe(50).encode()).decode()


def local_key_b64(var_dir: Path, name: str) -> str:
    return _read_or_create(var_dir, name, base64.b64encode(secrets.token_bytes(32))).decode()
