"""The model steward's side of a run: the only code that opens a sum. Free of Django.

It holds the steward's secret context for the run, decrypts each round's summed update (never one organisation's:
it is only ever handed the aggregator's sums), hashes it for the lineage, and answers the next weights; after the
last round it turns the summed validation statistics into metrics. In this slice it runs in the process that hosts
the aggregator, as the strategy's callback (the embedded, one-platform topology); the seam (training.federation
.Steward) lets it run on the steward's own machine instead.

Under differential privacy (a run with ε and δ: training.privacy) the steward adds Gaussian noise to each opened sum
before anything else reads it, then projects its matrix part onto the symmetric positive semi-definite matrices so
that the solve stays well posed: the weights, the next round and the aggregate's hash on the ledger all come from the
noisy sum. (The hash of the exact sum would undo the noise: anyone knowing every record but one could test each
candidate against it.)
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from training import maths
from training.privacy import GaussianBudget


class Decrypter(Protocol):
    """What the steward needs of the homomorphic engine (analytics.he.HomomorphicEngine)."""

    slots: int

    def decrypt_many(self, secret: bytes, ciphertexts: Sequence[tuple[bytes, int]]) -> list[np.ndarray]: ...


@dataclass(frozen=True)
class PrivateRounds:
    """A run's differential privacy: its budget, its updates' sensitivity (training.maths.record_sensitivity) and the
    generator its noise is drawn from (training.privacy.noise_source)."""

    budget: GaussianBudget
    sensitivity: float
    noise: np.random.Generator

    @property
    def noise_scale(self) -> float:
        return self.budget.noise_scale(self.sensitivity)

    def perturb(self, aggregate: np.ndarray) -> np.ndarray:
        """`aggregate` with independent N(0, noise_scale²) noise on each of its numbers."""
        return aggregate + self.noise.normal(0.0, self.noise_scale, aggregate.shape)


class RunSteward:
    def __init__(
        self,
        *,
        engine: Decrypter,
        secret: bytes,
        kind: str,
        features: int,
        ridge: float,
        privacy: PrivateRounds | None = None,
    ):
        self._engine, self._secret = engine, secret
        self.kind, self.width, self.ridge = kind, features + 1, ridge
        self.privacy = privacy
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

    @property
    def epsilon_spent(self) -> float | None:
        """The ε the rounds opened so far have spent (None without differential privacy)."""
        return None if self.privacy is None else self.privacy.budget.epsilon_spent(len(self.round_hashes))

    def open_round(self, round_index: int, summed: list[bytes]) -> np.ndarray:
        aggregate = self._open(summed, maths.update_size(self.width - 1))
        if self.privacy is not None:
            aggregate = maths.positive_part_of_update(self.privacy.perturb(aggregate), self.width)
        self.round_hashes.append(maths.aggregate_sha256(aggregate))
        if self.kind == maths.LINEAR:
            self.weights = maths.linear_solve(aggregate, self.width, self.ridge)
        else:
            self.weights = maths.newton_step(aggregate, self.width, self.ridge, self.weights)
        return self.weights

    def open_validation(self, summed: list[bytes]) -> None:
        size = 2 if self.kind == maths.LOGISTIC else 4
        self.metrics = maths.validation_metrics(self.kind, self._open(summed, size))
