"""Content-addressed blob storage for ciphertexts and contexts. Free of Django.

Large payloads never travel on the broker: a task stores them here and passes their key (the
SHA-256 of the content). The compute worker reads and writes blobs and nothing else; it needs only
the folder (a shared volume when workers run on other machines). Content is verified on read.
"""

import hashlib
import os
import re
import secrets
from pathlib import Path
from typing import Protocol

_KEY = re.compile(r"[0-9a-f]{64}")


class BlobNotFound(Exception):
    pass


class BlobCorrupted(Exception):
    pass


class BlobStore(Protocol):
    def put(self, data: bytes) -> str: ...

    def get(self, key: str) -> bytes: ...

    def delete(self, key: str) -> bool: ...


class FileSystemBlobStore:
    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def put(self, data: bytes) -> str:
        key = hashlib.sha256(data).hexdigest()
        path = self._path(key)
        if path.exists():
            return key
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{key}.{secrets.token_hex(4)}")
        temporary.write_bytes(data)
        os.replace(temporary, path)
        return key

    def get(self, key: str) -> bytes:
        try:
            data = self._path(key).read_bytes()
        except FileNotFoundError:
            raise BlobNotFound(key) from None
        if hashlib.sha256(data).hexdigest() != key:
            raise BlobCorrupted(key)
        return data

    def delete(self, key: str) -> bool:
        """Remove a blob; False if there was none (deleting twice is harmless)."""
        try:
            self._path(key).unlink()
        except FileNotFoundError:
            return False
        return True

    def _path(self, key: str) -> Path:
        if not _KEY.fullmatch(key):
            raise ValueError("a blob key is 64 lowercase hex characters")
        return self.root / key[:2] / key
