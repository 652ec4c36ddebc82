"""Keyrings: AES-256-GCM under keys from configuration, with rotating key ids. Free of the apps.

A keyring holds every key id still needed to open what was written, and one active id that new
ciphertexts are written under. Records at rest (records.crypto) and the portal's key vault
(analytics.keys) are keyrings; each binds its ciphertexts to their row with associated data.
Key rotation: add a new "kid:key" pair to the keys setting and name it as the active key.
"""

import base64
import binascii
import os
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.core.exceptions import ImproperlyConfigured

NONCE_BYTES = 12
KEY_BYTES = 32


class CiphertextInvalid(Exception):
    """A stored ciphertext does not open: wrong row, unknown key id, or altered bytes."""


class Keyring(Protocol):
    """Encrypts at rest. `associated_data` binds a ciphertext to its row."""

    @property
    def active_key_id(self) -> str: ...

    def encrypt(self, plaintext: bytes, *, associated_data: bytes) -> tuple[str, bytes]:
        """Return (key id, nonce || ciphertext || tag) under the active key."""
        ...

    def decrypt(self, ciphertext: bytes, *, key_id: str, associated_data: bytes) -> bytes:
        """Open what `encrypt` produced; raise CiphertextInvalid if it does not open."""
        ...


class AesGcmKeyring:
    """AES-256-GCM with a random 96-bit nonce per encryption.

    Random nonces are safe for well under 2^32 encryptions per key; rotate long before that.
    """

    def __init__(self, keys: dict[str, bytes], active_key_id: str, *, setting: str):
        if active_key_id not in keys:
            raise ImproperlyConfigured(f"{setting}_ACTIVE_KEY is not one of {setting}_KEYS")
        self._aeads = {key_id: AESGCM(key) for key_id, key in keys.items()}
        self._active_key_id = active_key_id

    @property
    def active_key_id(self) -> str:
        return self._active_key_id

    def encrypt(self, plaintext: bytes, *, associated_data: bytes) -> tuple[str, bytes]:
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._aeads[self._active_key_id].encrypt(nonce, plaintext, associated_data)
        return self._active_key_id, nonce + sealed

    def decrypt(self, ciphertext: bytes, *, key_id: str, associated_data: bytes) -> bytes:
        aead = self._aeads.get(key_id)
        if aead is None or len(ciphertext) < NONCE_BYTES + 16:
            raise CiphertextInvalid(key_id)
        try:
            return aead.decrypt(ciphertext[:NONCE_BYTES], ciphertext[NONCE_BYTES:], associated_data)
        except InvalidTag:
            raise CiphertextInvalid(key_id) from None


def configured_keyring(setting: str) -> AesGcmKeyring:
    """The keyring of settings `<setting>_KEYS` ("kid:base64key,...") and `<setting>_ACTIVE_KEY`."""
    from django.conf import settings

    keys = parse_keys(getattr(settings, f"{setting}_KEYS"), setting=f"{setting}_KEYS")
    return AesGcmKeyring(keys, getattr(settings, f"{setting}_ACTIVE_KEY"), setting=setting)


def parse_keys(value: str, *, setting: str) -> dict[str, bytes]:
    """Parse "kid:base64key,kid2:base64key" into {kid: 32-byte key}; raise ImproperlyConfigured."""
    keys: dict[str, bytes] = {}
    for item in (part.strip() for part in (value or "").split(",")):
        if not item:
            continue
        key_id, sep, encoded = item.partition(":")
        if not sep or not key_id or ":" in key_id:
            raise ImproperlyConfigured(f"{setting} must look like kid:base64key,kid2:base64key")
        key = decode_key(encoded, name=f"{setting}[{key_id}]")
        if key_id in keys:
            raise ImproperlyConfigured(f"{setting} lists key id {key_id!r} twice")
        keys[key_id] = key
    if not keys:
        raise ImproperlyConfigured(f"{setting} is empty")
    return keys


def decode_key(encoded: str, *, name: str) -> bytes:
    try:
        key = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ImproperlyConfigured(f"{name} is not base64") from None
    if len(key) != KEY_BYTES:
        raise ImproperlyConfigured(f"{name} must be {KEY_BYTES} bytes")
    return key
