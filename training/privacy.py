"""Differential privacy of a training run (optional): Gaussian noise on each round's opened aggregate, and the
accounting of the budget over the rounds. Free of Django; plain numpy.

Mechanism: the classic Gaussian mechanism. A round's aggregate is the sum of the records' contributions, whose L2
sensitivity Δ (one record added or removed) training.maths.record_sensitivity derives; the steward adds N(0, σ²) to
every number of the opened sum before using it (the weights, the next round, the aggregate's hash on the ledger are
all computed from the noisy sum: post-processing).

Accounting: zero-concentrated DP (Bun & Steinke, "Concentrated Differential Privacy", TCC 2016). The Gaussian
mechanism with sensitivity Δ and noise σ is ρ-zCDP with ρ = Δ²/(2σ²) (Prop. 1.6); zCDP composes by adding the ρ's
(Lemma 2.3), so T rounds at ρ/T each are ρ-zCDP; ρ-zCDP implies (ρ + 2√(ρ·ln(1/δ)), δ)-DP (Prop. 1.3). A run asking
for (ε, δ) therefore gets the ρ solving ε = ρ + 2√(ρ·ln(1/δ)), i.e. √ρ = √(ln(1/δ) + ε) − √(ln(1/δ)), split evenly
over its rounds: σ = Δ / √(2ρ/T). The ε spent, recorded in the lineage, is that conversion of the ρ used.

What it covers: the records of the training split (the published weights and round hashes are functions of the noisy
sums only). Not covered, by design: the counts the lineage publishes (records and consents per organisation: the
issue's lineage says them exactly), and the validation sums of the held-out records (accuracy or R²), which are
aggregate counts over records that trained nothing.

Written in closed form rather than with an accounting library: zCDP of the Gaussian mechanism is the three formulas
above, and adding a library (dp-accounting, opacus) would bring its dependency tree into the platform's one lock.
"""

import math
import secrets
from dataclasses import dataclass

import numpy as np

MECHANISM = "gaussian-zcdp"
MAX_EPSILON = 100.0
MAX_DELTA = 1e-3


@dataclass(frozen=True)
class GaussianBudget:
    """A run's (ε, δ) spread evenly over its rounds under zCDP."""

    epsilon: float
    delta: float
    rounds: int

    @property
    def rho(self) -> float:
        """The run's whole zCDP budget: the ρ whose (ε, δ)-DP conversion is this budget's ε."""
        log_inverse_delta = math.log(1 / self.delta)
        return (math.sqrt(log_inverse_delta + self.epsilon) - math.sqrt(log_inverse_delta)) ** 2

    def noise_scale(self, sensitivity: float) -> float:
        """σ of each round's Gaussian noise, for updates of L2 sensitivity `sensitivity`."""
        return sensitivity / math.sqrt(2 * self.rho / self.rounds)

    def epsilon_spent(self, rounds_run: int) -> float:
        """The ε of `rounds_run` rounds at this budget's per-round ρ (the whole ε after every round)."""
        rho = self.rho * rounds_run / self.rounds
        return rho + 2 * math.sqrt(rho * math.log(1 / self.delta))


def noise_source(seed: int | None = None) -> np.random.Generator:
    """The generator of a run's noise: seeded from the operating system's CSPRNG (secrets), 128 bits. A fixed `seed`
    is for tests only (a statistical test of the noise's scale): a run never passes one."""
    return np.random.Generator(np.random.PCG64(secrets.randbits(128) if seed is None else seed))
