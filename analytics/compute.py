"""The compute step: scores ciphertexts. Free of Django, of the database and of every key.

It reads a parameters-only CKKS context and the feature ciphertexts from the blob store, computes
Σ wᵢ·ctᵢ + b with the plaintext model weights, and stores the result ciphertexts. It cannot decrypt
anything: no context it can reach holds a secret key, and it has no record key or database. It runs
in the compute worker (analytics.compute_app), on its own queue, possibly on another machine.
"""

from collections.abc import Sequence

from analytics.blobs import BlobStore
from analytics.he import HomomorphicEngine

SCORE_TASK = "analytics.compute.score_batch"


def score_batch(
    *,
    engine: HomomorphicEngine,
    blobs: BlobStore,
    compute_context_key: str,
    column_keys: Sequence[Sequence[str]],
    weights: Sequence[float],
    bias: float,
) -> list[str]:
    """Score each chunk of column ciphertexts; return the keys of the score ciphertexts, in order."""
    context = blobs.get(compute_context_key)
    if engine.is_secret_context(context):
        raise PermissionError("the compute step refuses a context that holds a secret key")
    return [
        blobs.put(engine.linear_score(context, [blobs.get(key) for key in columns], weights, bias))
        for columns in column_keys
    ]
