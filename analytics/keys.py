"""The portal's key vault: requesters' CKKS secret contexts sealed under a key from configuration.

Only the web process opens a sealed context, to show a requester their results. Workers never do:
the custodian encrypts with the public context, the compute worker evaluates with parameters only.
"""

from health_platform.keyring import AesGcmKeyring, configured_keyring


def _vault() -> AesGcmKeyring:
    return configured_keyring("ANALYTICS_KEY_VAULT")


def _associated_data(request_id: object) -> bytes:
    return f"analysis-secret-context|{request_id}".encode()


def secret_context_seal(*, request_id: object, secret: bytes) -> tuple[str, bytes]:
    return _vault().encrypt(secret, associated_data=_associated_data(request_id))


def secret_context_open(*, request_id: object, key_id: str, sealed: bytes) -> bytes:
    return _vault().decrypt(sealed, key_id=key_id, associated_data=_associated_data(request_id))
