"""The engine's encrypted sums: organisations encrypt with the public context, the aggregator adds with the
parameters-only one, and only the secret context opens the sum, to within what the solve after it can bear."""

import numpy as np
import pytest

from analytics.he import TenSEALEngine

pytestmark = pytest.mark.he


def test_the_sum_of_two_encrypted_updates_opens_to_the_plaintext_sum_within_1e_8():
    engine = TenSEALEngine()
    keys = engine.keygen_for_sums()
    rng = np.random.default_rng(18)
    updates = [rng.uniform(-5_000, 5_000, 992), rng.uniform(-5_000, 5_000, 992)]  # a Hessian and gradient's size
    ciphertexts = [engine.encrypt_vector(keys.public, update.tolist()) for update in updates]
    summed = engine.add(keys.compute, ciphertexts)
    opened = engine.decrypt(keys.secret, summed, 992)
    assert np.max(np.abs(opened - (updates[0] + updates[1]))) < 1e-8


def test_the_aggregator_cannot_add_with_a_secret_context():
    engine = TenSEALEngine()
    keys = engine.keygen_for_sums()
    ciphertext = engine.encrypt_vector(keys.public, [1.0, 2.0])
    with pytest.raises(ValueError, match="secret"):
        engine.add(keys.secret, [ciphertext, ciphertext])
