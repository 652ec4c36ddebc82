"""The model steward's side of a run: the only code that opens a sum. Free of Django.

It holds the steward's secret context for the run, decrypts each round's summed update (never one organisation's:
it is only ever handed the aggregator's sums), hashes it for the lineage, and answers the next weights; after the
last round it turns the summed validation statistics into metrics. In this slice it runs in the process that hosts
the aggregator, as the strategy's callback (the embedded, one-platform topology); the seam (training.federation
.Steward) lets it run on the steward's own machine instead.
"""

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from training import maths


class Decrypter(Protocol):
    """What the steward needs of the homomorphic engine (analytics.he.HomomorphicEngine)."""

    slots: int

    def decrypt_many(self, secret: bytes, ciphertexts: Sequence[tuple[bytes, int]]) -> list[np.ndarray]: ...


class RunSteward:
    def __init__(self, *, engine: Decrypter, secret: bytes, kind: str, features: int, ridge: float):
        self._engine, self._secret = engine, secret
        self.kind, self.width, self.ridge = kind, features + 1, ridge
        self.weights = np.zeros(self.width)
        self.round_hashes: list[str] = []
        self.metrics: dict[str, float] = {}

    def __repr__(self) -> str:  # never the secret
        return f"RunSteward(kind={self.kind!r}, rounds_opened={len(self.round_hashes)})"

    def _open(self, summed: Sequence[bytes], size: int) -> np.ndarray:
        counts = maths.chunk_sizes(size, self._engine.slots)
        if len(counts) != len(summed):
            raise ValueError("the sum does not have the update's shape")
        opened = self._engine.decrypt_many(self._secret, list(zip(summed, counts, strict=True)))
        return np.concatenate(opened)

    def open_round(self, round_index: int, summed: list[bytes]) -> np.ndarray:
        aggregate = self._open(summed, maths.update_size(self.width - 1))
        self.round_hashes.append(maths.aggregate_sha256(aggregate))
        if self.kind == maths.LINEAR:
            self.weights = maths.linear_solve(aggregate, self.width, self.ridge)
        else:
            self.weights = maths.newton_step(aggregate, self.width, self.ridge, self.weights)
        return self.weights

    def open_validation(self, summed: list[bytes]) -> None:
        size = 2 if self.kind == maths.LOGISTIC else 4
        self.metrics = maths.validation_metrics(self.kind, self._open(summed, size))
