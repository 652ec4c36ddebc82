"""The statistics an organisation computes on its admitted records, and what the model steward does with their sum.
Free of Django and of TenSEAL: plain numpy, so that central training in the clear (the tests' reference, a
benchmark's baseline) runs the very same arithmetic.

Features are scaled by the model family's DOCUMENTED range (the catalogue's feature_min/feature_max: public, the same
at every organisation, no extra round): z = (x − centre) / half-width, then a constant 1 for the intercept. The
sums stay small (|z| ≤ 1), so CKKS's absolute error on them stays far below what the solve amplifies. The weights are
unscaled at the end (w = w'/half-width, b = b' − Σ w'·centre/half-width): exact, so for a linear regression with no
ridge term the result is the ordinary least squares of the raw features.

- linear regression: an organisation sends [vec(ZᵀZ), Zᵀy] once; the steward solves (ΣZᵀZ + λI′) w′ = ΣZᵀy, the
  normal equations of central training (I′ leaves the intercept unpenalised);
- logistic regression (federated Newton): each round an organisation sends [vec(Zᵀ diag(p(1−p)) Z), Zᵀ(p − y)] at
  the round's weights, p = σ(Zw′); the steward adds the ridge terms (once, not once per organisation) and takes the
  Newton step w′ ← w′ − (H + λI′)⁻¹ (g + λI′w′).

Validation (on each organisation's held-out records, after the last round): linear sends [Σ(y − ŷ)², Σy, Σy², n],
logistic [correct, n]; the steward turns the sums into R² or accuracy.

Differential privacy (optional, per run: training.privacy) needs a bound on what one record can move a round's
update, in L2 over all its numbers: `record_sensitivity` derives it from the update's form (see its docstring).
"""

from dataclasses import dataclass

import numpy as np

LINEAR, LOGISTIC = "linear", "logistic"
AGGREGATE_DECIMALS = 6  # a decrypted aggregate is hashed rounded to this: CKKS's error is far below it


@dataclass(frozen=True)
class Scaling:
    """The documented feature range as an affine map to [−1, 1] (public: the catalogue's)."""

    centre: np.ndarray
    half_width: np.ndarray

    @classmethod
    def of_range(cls, low: tuple[float, ...], high: tuple[float, ...]) -> "Scaling":
        low_array, high_array = np.asarray(low, dtype=float), np.asarray(high, dtype=float)
        half = (high_array - low_array) / 2
        return cls((high_array + low_array) / 2, np.where(half > 0, half, 1.0))

    def design(self, features: np.ndarray) -> np.ndarray:
        """Z: the scaled features and a column of ones."""
        scaled = (np.asarray(features, dtype=float) - self.centre) / self.half_width
        return np.hstack([scaled, np.ones((scaled.shape[0], 1))])

    def unscale(self, scaled_weights: np.ndarray) -> tuple[np.ndarray, float]:
        """(weights, bias) over the raw features, from weights over Z."""
        weights = scaled_weights[:-1] / self.half_width
        return weights, float(scaled_weights[-1] - np.sum(weights * self.centre))


def update_size(features: int) -> int:
    """How many numbers an organisation's update holds."""
    width = features + 1
    return width * width + width


def linear_statistics(design: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """[vec(ZᵀZ), Zᵀy]: the sufficient statistics of least squares."""
    return np.concatenate([(design.T @ design).ravel(), design.T @ targets])


def newton_statistics(design: np.ndarray, labels: np.ndarray, scaled_weights: np.ndarray) -> np.ndarray:
    """[vec(Hessian), gradient] of the (unregularised) log-loss at `scaled_weights`."""
    probability = 1.0 / (1.0 + np.exp(-np.clip(design @ scaled_weights, -500, 500)))
    hessian = design.T @ (design * (probability * (1 - probability))[:, None])
    return np.concatenate([hessian.ravel(), design.T @ (probability - labels)])


def record_sensitivity(kind: str, width: int, target_bound: float | None = None) -> float:
    """The L2 sensitivity of one round's update to adding or removing one record: the largest L2 norm of a single
    record's contribution to [vec(M), v], over the whole vector.

    Derivation. A record's design row z holds its features scaled by the documented range, CLIPPED to it (an analysis
    clips them so too), so each |zᵢ| ≤ 1, and the intercept's 1: ‖z‖² ≤ width. For any scalar c, ‖c·zzᵀ‖_F =
    |c|·‖z‖² ≤ |c|·width and ‖c·z‖₂ ≤ |c|·√width. Hence:
    - logistic (Newton): the record adds p(1−p)·zzᵀ to the Hessian, p(1−p) ≤ 1/4, and (p − y)·z to the gradient,
      |p − y| ≤ 1 for y ∈ {0, 1}: Δ² ≤ (width/4)² + width;
    - linear (sufficient statistics): it adds zzᵀ and y·z, with |y| ≤ `target_bound` once the organisation clips its
      targets to [−B, B] (it does under differential privacy: training.local): Δ² ≤ width² + B²·width.
    The bound holds at any weights, so every round has the same sensitivity. (vec(M) counts each off-diagonal term
    twice, as the Frobenius norm does: the noise covers the whole vector the steward opens.)
    """
    if kind == LOGISTIC:
        return float(np.sqrt((width / 4) ** 2 + width))
    if target_bound is None:
        raise ValueError("a linear update's sensitivity needs the targets' bound")
    return float(np.sqrt(width**2 + target_bound**2 * width))


def symmetric_positive_part(matrix: np.ndarray) -> np.ndarray:
    """The nearest symmetric positive semi-definite matrix (in Frobenius norm): symmetrised, negative eigenvalues set
    to 0. A noisy Gram matrix or Hessian is projected so before a solve; post-processing, it costs no privacy."""
    symmetric = (matrix + matrix.T) / 2
    values, vectors = np.linalg.eigh(symmetric)
    return (vectors * np.clip(values, 0.0, None)) @ vectors.T


def positive_part_of_update(aggregate: np.ndarray, width: int) -> np.ndarray:
    """The update with its matrix part replaced by its symmetric positive part (the vector part unchanged)."""
    matrix, vector = _split(aggregate, width)
    return np.concatenate([symmetric_positive_part(matrix).ravel(), vector])


def _split(aggregate: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    return aggregate[: width * width].reshape(width, width), aggregate[width * width : width * width + width]


def _ridge(width: int, ridge: float) -> np.ndarray:
    penalty = np.eye(width) * ridge
    penalty[-1, -1] = 0.0  # the intercept is not penalised
    return penalty


def linear_solve(aggregate: np.ndarray, width: int, ridge: float) -> np.ndarray:
    """The scaled weights solving the normal equations of the summed statistics."""
    gram, moments = _split(aggregate, width)
    return np.linalg.solve(gram + _ridge(width, ridge), moments)


def newton_step(aggregate: np.ndarray, width: int, ridge: float, scaled_weights: np.ndarray) -> np.ndarray:
    """The next scaled weights: one Newton step of the ridge-regularised log-loss from the summed statistics."""
    hessian, gradient = _split(aggregate, width)
    penalty = _ridge(width, ridge)
    return scaled_weights - np.linalg.solve(hessian + penalty, gradient + penalty @ scaled_weights)


def validation_statistics(kind: str, design: np.ndarray, targets: np.ndarray, scaled_weights: np.ndarray) -> np.ndarray:
    """What an organisation sends of its held-out records: see the module's docstring."""
    scores = design @ scaled_weights
    if kind == LOGISTIC:
        return np.asarray([float(np.sum((scores >= 0) == (targets == 1))), float(len(targets))])
    return np.asarray(
        [float(np.sum((targets - scores) ** 2)), float(np.sum(targets)), float(np.sum(targets**2)), float(len(targets))]
    )


def validation_metrics(kind: str, sums: np.ndarray) -> dict[str, float]:
    """Accuracy or R² from the summed validation statistics (the count alone when nothing was held out)."""
    count = round(float(sums[-1]))
    if count == 0:
        return {"validation_records": 0.0}
    if kind == LOGISTIC:
        return {"accuracy": float(sums[0]) / count, "validation_records": float(count)}
    squared_errors, total, total_squares = (float(value) for value in sums[:3])
    spread = total_squares - total * total / count
    metrics = {"validation_records": float(count)}
    if spread > 0:
        metrics["r2"] = 1.0 - squared_errors / spread
    return metrics


def central_weights(
    kind: str, features: np.ndarray, targets: np.ndarray, scaling: Scaling, *, ridge: float, rounds: int
) -> tuple[np.ndarray, float]:
    """The same model trained centrally in the clear on one matrix: the reference federated training must meet."""
    design = scaling.design(features)
    width = design.shape[1]
    if kind == LINEAR:
        return scaling.unscale(linear_solve(linear_statistics(design, targets), width, ridge))
    weights = np.zeros(width)
    for _ in range(rounds):
        weights = newton_step(newton_statistics(design, targets, weights), width, ridge, weights)
    return scaling.unscale(weights)


def chunk_sizes(size: int, slots: int) -> list[int]:
    """How a vector of `size` numbers is laid over ciphertexts of `slots` slots: full ones, then the rest."""
    return [min(slots, size - start) for start in range(0, size, slots)]


def aggregate_sha256(aggregate: np.ndarray) -> str:
    """The hash of a decrypted aggregate: SHA-256 over its values rounded to AGGREGATE_DECIMALS, as little-endian
    float64 (canonical: CKKS's last digits vary from one encryption to the next; the rounded values do not)."""
    import hashlib

    rounded = np.round(np.asarray(aggregate, dtype=float), AGGREGATE_DECIMALS) + 0.0  # no negative zero
    return hashlib.sha256(rounded.astype("<f8").tobytes()).hexdigest()
