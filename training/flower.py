"""Flower as the platform uses it: imported with its telemetry off, and the model's weights as Flower parameters.
Free of Django; shared by the aggregator's process (training.aggregator) and the organisations' clients
(training.federation)."""

import os
from typing import Any

import numpy as np

CIPHERTEXT_TENSOR_TYPE = "tenseal.ckks.v1"
WEIGHTS_TENSOR_TYPE = "numpy.float64.le"


def flower() -> Any:
    """Import flwr with its telemetry off (it reads the switch when first imported)."""
    os.environ["FLWR_TELEMETRY_ENABLED"] = "0"
    import flwr
    import flwr.supercore.telemetry

    flwr.supercore.telemetry.FLWR_TELEMETRY_ENABLED = "0"
    return flwr


def weights_parameters(weights: np.ndarray) -> Any:
    from flwr.common import Parameters

    return Parameters(tensors=[np.asarray(weights, dtype="<f8").tobytes()], tensor_type=WEIGHTS_TENSOR_TYPE)


def parameters_weights(parameters: Any) -> np.ndarray:
    if parameters.tensor_type != WEIGHTS_TENSOR_TYPE or len(parameters.tensors) != 1:
        raise ValueError("expected the model's weights")
    return np.frombuffer(parameters.tensors[0], dtype="<f8").copy()
