"""The analytics adapters, chosen once from settings: the homomorphic engine and the blob store.

Domain code asks for `homomorphic_engine()` and `blob_store()`; it never imports TenSEAL or the file
system layout (the ports are analytics.he.HomomorphicEngine and analytics.blobs.BlobStore).
"""

from functools import cache

from django.conf import settings

from analytics.blobs import BlobStore, FileSystemBlobStore
from analytics.he import HomomorphicEngine, TenSEALEngine


@cache
def homomorphic_engine() -> HomomorphicEngine:
    """The CKKS engine (TenSEAL), one per process: it keeps the few public and parameters-only contexts it last
    read (never a secret one), which every batch of a request and every chunk of a batch encrypt or score with;
    read afresh, each would cost ~30 ms."""
    return TenSEALEngine()


def blob_store() -> BlobStore:
    """Where ciphertexts and contexts are kept (settings.ANALYTICS_BLOB_DIR)."""
    return FileSystemBlobStore(settings.ANALYTICS_BLOB_DIR)
