"""The analytics adapters, chosen once from settings: the homomorphic engine and the blob store.

Domain code asks for `homomorphic_engine()` and `blob_store()`; it never imports TenSEAL or the file
system layout (the ports are analytics.he.HomomorphicEngine and analytics.blobs.BlobStore).
"""

from django.conf import settings

from analytics.blobs import BlobStore, FileSystemBlobStore
from analytics.he import HomomorphicEngine, TenSEALEngine


def homomorphic_engine() -> HomomorphicEngine:
    """The CKKS engine (TenSEAL)."""
    return TenSEALEngine()


def blob_store() -> BlobStore:
    """Where ciphertexts and contexts are kept (settings.ANALYTICS_BLOB_DIR)."""
    return FileSystemBlobStore(settings.ANALYTICS_BLOB_DIR)
