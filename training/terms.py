"""The limits of a training run's terms, shared by the steward's request (training.services) and an invited
instance's check of the same terms (training.participation)."""

import math
from numbers import Real

MAX_ROUNDS = 50
MAX_RIDGE = 1_000_000.0  # on features scaled to their documented range: far past any useful penalty
MAX_VALIDATION_FRACTION = 0.5  # at least half of the admitted records train the model
MAX_TARGET_BOUND = 1e6


def finite_number(value: object) -> bool:
    """A real number a float holds, finite: not a boolean (Python counts True as 1), a string, NaN, an infinity, or
    an integer too large for a float (10**400)."""
    if not isinstance(value, Real) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(float(value))
    except OverflowError:
        return False
