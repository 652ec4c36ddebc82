"""Short texts about patients kept off the ledger: an emergency's justification, a reviewer's or triager's note.

Each is sealed under the record keys (AES-256-GCM, bound to its purpose and row) with a random salt in front, and
only the SHA-256 of salt and text goes on the ledger: the chain proves which text was written without holding it,
and a short text ("ok") cannot be found from its hash by guessing.
"""

import hashlib
import os
import uuid

from health_platform.keyring import configured_keyring

SALT_BYTES = 16


def _associated_data(purpose: str, row: uuid.UUID, key_id: str) -> bytes:
    return f"health_platform/{purpose}/v1|{row}|{key_id}".encode()


def text_seal(text: str, *, purpose: str, row: uuid.UUID) -> tuple[str, bytes, str]:
    """(key id, ciphertext, SHA-256 of salt and text): the ciphertext holds the salt, the ledger the digest."""
    plaintext = os.urandom(SALT_BYTES) + text.encode()
    keyring = configured_keyring("RECORD_ENCRYPTION")
    key_id = keyring.active_key_id
    _, sealed = keyring.encrypt(plaintext, associated_data=_associated_data(purpose, row, key_id))
    return key_id, sealed, hashlib.sha256(plaintext).hexdigest()


def text_open(sealed: bytes | memoryview, *, key_id: str, purpose: str, row: uuid.UUID, digest: str) -> str:
    """The text, checked against the digest the ledger holds (ValueError when it differs)."""
    plaintext = configured_keyring("RECORD_ENCRYPTION").decrypt(
        bytes(sealed), key_id=key_id, associated_data=_associated_data(purpose, row, key_id)
    )
    if hashlib.sha256(plaintext).hexdigest() != digest:
        raise ValueError("the stored text does not match its hash")
    return plaintext[SALT_BYTES:].decode()
