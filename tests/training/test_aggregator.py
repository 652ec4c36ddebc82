"""The aggregator's process: started apart from the steward's key with an environment of its own, it loads nothing
of Django or the records, refuses a context that could decrypt, and a federation whose aggregator dies fails with a
code instead of hanging."""

import contextlib
import os
import signal
import threading

import numpy as np
import pytest

from analytics.he import TenSEALEngine
from tests.conftest import REPO, python_output
from training.aggregator import AggregatorFailed, AggregatorProcess
from training.federation import FederationFailed, federate, participate
from training.tls import loopback_tls

pytestmark = pytest.mark.he


def test_the_aggregator_loads_no_django_no_database_driver_and_no_record_code(tmp_path):
    # what its process imports once it has its engine and Flower: the same probe as the compute worker's
    forbidden = ("django.conf", "django.db", "sqlite3", "psycopg", "records", "consent", "training.models")
    probe = (
        "import sys, training.aggregator as a, analytics.he; analytics.he.TenSEALEngine(); a.flower();"
        f" print(sorted(m for m in sys.modules if m in {forbidden!r} or m.split('.')[0] == 'health_platform'))"
    )
    environment = {"PATH": os.environ["PATH"], "PYTHONPATH": str(REPO)}
    assert python_output(probe, environment, cwd=tmp_path) == "[]"


def test_the_aggregator_refuses_a_context_holding_a_secret_key():
    keys = TenSEALEngine().keygen_for_sums()
    aggregator, tokens = AggregatorProcess(), ["a" * 43, "b" * 43]
    try:
        with pytest.raises(AggregatorFailed) as refused:
            aggregator.start(tokens=tokens, rounds=1, initial=np.zeros(3), context=keys.secret, tls=loopback_tls())
    finally:
        aggregator.stop()
    assert refused.value.code == "context_not_keyless"


class _NeverAsked:
    def fit(self, round_index, weights):  # pragma: no cover - the aggregator is gone before any round
        raise AssertionError("a round was asked for")

    validate = fit


def test_a_federation_whose_aggregator_dies_fails_with_a_code_and_does_not_hang():
    keys = TenSEALEngine().keygen_for_sums()
    trainers = [_NeverAsked(), _NeverAsked()]
    for index, trainer in enumerate(trainers):
        trainer.organisation = f"org:o{index}"

    def kill(aggregator):
        os.kill(aggregator.pid, signal.SIGKILL)
        aggregator._process.wait(timeout=10)

    with pytest.raises(FederationFailed) as failed:
        federate(
            trainers=trainers,
            steward=object(),
            rounds=1,
            initial=np.zeros(3),
            aggregation_context=keys.compute,
            observe=kill,
        )
    assert failed.value.code == "aggregator_failed"


class _Zeros:
    """An organisation whose update is an encrypted vector of zeros (the aggregator never looks inside)."""

    def __init__(self, organisation: str, public: bytes):
        self.organisation, self.public = organisation, public

    def fit(self, round_index, weights):
        return [TenSEALEngine().encrypt_vector(self.public, [0.0] * 4)], 1

    validate = fit


def test_a_client_without_one_of_the_runs_tokens_is_never_summed_and_fails_the_attempt():
    """Anyone who can reach the aggregator's port and holds the run's authority (it is public) can connect; its update
    carries no token of the run's organisations, so the attempt fails organisation_unknown before any sum is opened
    (the steward here would fail the test if it were asked to open one)."""
    keys = TenSEALEngine().keygen_for_sums()
    intruders = []

    def invite(address, tls, tokens):
        assert len(tokens) == 1  # the invited organisation's token: the intruder does not have it
        intruder = threading.Thread(
            target=lambda: _quietly(
                participate,
                trainer=_Zeros("org:intruder", keys.public),
                address=address,
                authority=tls.authority,
                token="guessed-token-" + "x" * 30,
            ),
            daemon=True,
        )
        intruder.start()
        intruders.append(intruder)

    with pytest.raises(FederationFailed) as failed:
        federate(
            trainers=[_Zeros("org:o0", keys.public)],
            steward=object(),
            rounds=1,
            initial=np.zeros(3),
            aggregation_context=keys.compute,
            invited=1,
            invite=invite,
            connect_timeout=30,
        )
    assert failed.value.code == "organisation_unknown"
    for intruder in intruders:
        intruder.join(timeout=60)


def _quietly(call, **arguments):
    with contextlib.suppress(FederationFailed):
        call(**arguments)
