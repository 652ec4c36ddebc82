"""Flower as the transport between organisations: one Flower server (the aggregator) and one Flower client per
organisation, over gRPC with TLS, carrying CKKS ciphertexts as Flower parameters. Free of Django.

Flower API: the legacy "ECE" fleet transport of flwr 1.42 (grpc-bidi): the server is assembled from the pieces
`flwr.server.start_server` is made of (`init_defaults`, the grpc-bidi `start_grpc_server` with certificates,
`run_fl`), the clients are `flwr.client.start_client` with the run's root certificate. It runs in a library call,
with no SuperLink/SuperNode processes to manage; `start_server` itself is not called because it installs signal
handlers, which Python allows on the main thread only (a Celery task or a test thread is not), and it reports to
Flower's telemetry, which is switched off here before flwr is first imported (FLWR_TELEMETRY_ENABLED=0): a hospital's
training never calls out.

What each side holds:
- the aggregator (`CiphertextSum`, a flwr Strategy) gets each organisation's update as ciphertexts and a context
  WITHOUT a secret key (parameters only): it adds ciphertexts slot-wise and hands the sum to the steward; it never
  decrypts and never sees one organisation's plaintext update;
- the steward (`Steward`) alone opens a sum, and answers the next round's weights (plaintext: the model is what is
  being published) and, after the last round, the validation metrics;
- an organisation (`OrganisationTrainer`) computes its encrypted update on its own records at the weights it is sent.

Threads: the Flower server runs on a thread of its own; every organisation's work is handed back to the thread that
called `federate` (the caller's database connection, its transaction in a test), one job at a time.
"""

import os
import queue
import socket
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import structlog

from training.tls import FlowerTls, loopback_tls

log = structlog.get_logger(__name__)

CIPHERTEXT_TENSOR_TYPE = "tenseal.ckks.v1"
WEIGHTS_TENSOR_TYPE = "numpy.float64.le"
CONNECT_TIMEOUT_SECONDS = 30.0


class OrganisationTrainer(Protocol):
    organisation: str

    def fit(self, round_index: int, scaled_weights: np.ndarray) -> tuple[list[bytes], int]:
        """The organisation's encrypted update at `scaled_weights` (its ciphertexts) and how many records it covers."""
        ...

    def validate(self, scaled_weights: np.ndarray) -> tuple[list[bytes], int]:
        """Its encrypted validation statistics on its held-out records at the final weights, and their count."""
        ...


class Steward(Protocol):
    def open_round(self, round_index: int, summed: list[bytes]) -> np.ndarray:
        """Decrypt a round's summed update; answer the next scaled weights."""
        ...

    def open_validation(self, summed: list[bytes]) -> None:
        """Decrypt the summed validation statistics (the steward keeps the metrics)."""
        ...


Adder = Callable[[bytes, Sequence[bytes]], bytes]  # (keyless context, ciphertexts) -> their sum


class FederationFailed(Exception):
    """A round did not hear from every organisation, or the federation did not finish; `code` says which."""

    def __init__(self, code: str):
        super().__init__(code)
        self.code = code


def _flower() -> Any:
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


def _strategy_class() -> type:
    from flwr.common import EvaluateIns, FitIns, Parameters
    from flwr.server.strategy import Strategy

    class CiphertextSum(Strategy):
        """Sums the organisations' ciphertexts, round by round; the steward opens the sums. Holds no secret key:
        `context` is a parameters-only CKKS context, enough to add, not to decrypt (nor to encrypt)."""

        def __init__(
            self,
            *,
            organisations: int,
            rounds: int,
            initial: np.ndarray,
            context: bytes,
            add: Adder,
            steward: Steward,
            opened: Callable[[int], None],
        ):
            self.organisations, self.rounds, self.initial = organisations, rounds, initial
            self.context, self.add, self.steward, self.opened = context, add, steward, opened
            self.failure = ""
            self.received: list[tuple[int, list[list[bytes]]]] = []  # what reached the aggregator, per round

        def __repr__(self) -> str:
            return f"CiphertextSum(organisations={self.organisations}, rounds={self.rounds})"

        def initialize_parameters(self, client_manager: Any) -> Any:
            return weights_parameters(self.initial)

        def _clients(self, client_manager: Any) -> list[Any]:
            return client_manager.sample(num_clients=self.organisations, min_num_clients=self.organisations)

        def configure_fit(self, server_round: int, parameters: Any, client_manager: Any) -> list[Any]:
            if self.failure:
                return []
            config: dict[str, Any] = {"round": server_round}
            return [(client, FitIns(parameters, config)) for client in self._clients(client_manager)]

        def _sum(self, updates: list[list[bytes]]) -> list[bytes]:
            if len({len(update) for update in updates}) != 1:
                raise ValueError("the organisations' updates differ in shape")
            return [self.add(self.context, [update[i] for update in updates]) for i in range(len(updates[0]))]

        def aggregate_fit(self, server_round: int, results: list[Any], failures: list[Any]) -> tuple[Any, dict]:
            if failures or len(results) != self.organisations or self.failure:
                self.failure = self.failure or "organisation_missing"
                return None, {}
            updates = []
            for _, result in results:
                if result.parameters.tensor_type != CIPHERTEXT_TENSOR_TYPE:
                    self.failure = "update_not_encrypted"
                    return None, {}
                updates.append(list(result.parameters.tensors))
            self.received.append((server_round, updates))
            next_weights = self.steward.open_round(server_round, self._sum(updates))
            self.opened(server_round)
            return weights_parameters(next_weights), {}

        def configure_evaluate(self, server_round: int, parameters: Any, client_manager: Any) -> list[Any]:
            if server_round != self.rounds or self.failure:
                return []
            return [(client, EvaluateIns(parameters, {})) for client in self._clients(client_manager)]

        def aggregate_evaluate(self, server_round: int, results: list[Any], failures: list[Any]) -> tuple[Any, dict]:
            if failures or len(results) != self.organisations:
                self.failure = self.failure or "organisation_missing"
                return None, {}
            updates = [[r.metrics[f"c{i}"] for i in range(len(r.metrics))] for _, r in results]
            self.steward.open_validation(self._sum(updates))
            return None, {}

        def evaluate(self, server_round: int, parameters: Parameters) -> None:
            return None

    return CiphertextSum


def _client_class() -> type:
    from flwr.client import Client
    from flwr.common import Code, EvaluateRes, FitRes, Parameters, Status

    class OrganisationClient(Client):
        """One organisation's Flower client: its work runs on the caller's thread (`run`)."""

        def __init__(
            self, trainer: OrganisationTrainer, run: Callable[[Callable[[], Any]], Any], errors: list[BaseException]
        ):
            self.trainer, self.run, self.errors = trainer, run, errors

        def _work(self, job: Callable[[], tuple[list[bytes], int]]) -> tuple[list[bytes], int] | None:
            """The organisation's work; None when it failed (the error is kept for the caller, and the round
            is answered with a failure status: never the error's text, which might name a record)."""
            try:
                return self.run(job)
            except Exception as error:
                self.errors.append(error)
                return None

        def fit(self, ins: Any) -> Any:
            weights, round_index = parameters_weights(ins.parameters), int(ins.config["round"])
            done = self._work(lambda: self.trainer.fit(round_index, weights))
            if done is None:
                empty = Parameters(tensors=[], tensor_type=CIPHERTEXT_TENSOR_TYPE)
                return FitRes(Status(Code.FIT_NOT_IMPLEMENTED, "failed"), empty, 0, {})
            ciphertexts, count = done
            return FitRes(
                status=Status(Code.OK, ""),
                parameters=Parameters(tensors=ciphertexts, tensor_type=CIPHERTEXT_TENSOR_TYPE),
                num_examples=count,
                metrics={},
            )

        def evaluate(self, ins: Any) -> Any:
            weights = parameters_weights(ins.parameters)
            done = self._work(lambda: self.trainer.validate(weights))
            if done is None:
                return EvaluateRes(Status(Code.EVALUATE_NOT_IMPLEMENTED, "failed"), 0.0, 0, {})
            ciphertexts, count = done
            metrics: dict[str, Any] = {f"c{i}": ciphertext for i, ciphertext in enumerate(ciphertexts)}
            return EvaluateRes(status=Status(Code.OK, ""), loss=0.0, num_examples=count, metrics=metrics)

    return OrganisationClient


@dataclass
class _CallerThread:
    """Runs jobs handed over by other threads on the thread that made it."""

    jobs: "queue.Queue[tuple[Callable[[], Any], Future]]" = field(default_factory=queue.Queue)

    def submit(self, job: Callable[[], Any]) -> Any:
        future: Future = Future()
        self.jobs.put((job, future))
        return future.result()

    def serve_until(self, done: Callable[[], bool]) -> None:
        while not done() or not self.jobs.empty():
            try:
                job, future = self.jobs.get(timeout=0.05)
            except queue.Empty:
                continue
            try:
                future.set_result(job())
            except BaseException as error:  # reaches the client thread, which fails its round
                future.set_exception(error)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_for_port(port: int) -> None:
    deadline = time.monotonic() + CONNECT_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise FederationFailed("aggregator_unreachable")


def federate(
    *,
    trainers: Sequence[OrganisationTrainer],
    steward: Steward,
    rounds: int,
    initial: np.ndarray,
    aggregation_context: bytes,
    add: Adder,
    tls: FlowerTls | None = None,
    round_timeout: float = 600.0,
    observe: Callable[[Any], None] | None = None,
    round_opened: Callable[[int], None] | None = None,
) -> None:
    """Run `rounds` federated rounds and the validation over Flower on 127.0.0.1 with TLS (a fresh loopback
    authority unless `tls` is given). `observe` is shown the aggregator's strategy before the run (tests check what
    it holds); `round_opened(index)` is called on the caller's thread (its database connection) once the steward
    has opened a round's sum, before the next round starts: how a run's page follows its rounds. Raises
    FederationFailed when an organisation does not answer a round."""
    flwr = _flower()
    from flwr.server.server import init_defaults, run_fl
    from flwr.server.superlink.fleet.grpc_bidi.grpc_server import start_grpc_server

    tls = tls or loopback_tls()
    caller = _CallerThread()

    def opened(round_index: int) -> None:
        if round_opened is not None:
            caller.submit(lambda: round_opened(round_index))

    strategy = _strategy_class()(
        organisations=len(trainers),
        rounds=rounds,
        initial=initial,
        context=aggregation_context,
        add=add,
        steward=steward,
        opened=opened,
    )
    if observe is not None:
        observe(strategy)
    server, config = init_defaults(
        server=None,
        config=flwr.server.ServerConfig(num_rounds=rounds, round_timeout=round_timeout),
        strategy=strategy,
        client_manager=None,
    )
    port = _free_port()
    grpc_server = start_grpc_server(
        client_manager=server.client_manager(),
        server_address=f"127.0.0.1:{port}",
        certificates=(tls.authority, tls.certificate, tls.private_key),
    )
    errors: list[BaseException] = []  # the transport's
    organisation_errors: list[BaseException] = []  # an organisation's own work's (a ledger that did not answer...)

    def serve() -> None:
        try:
            run_fl(server=server, config=config)
        except BaseException as error:  # the caller raises it
            errors.append(error)
        finally:
            grpc_server.stop(grace=1)

    def connect(trainer: OrganisationTrainer) -> None:
        try:
            flwr.client.start_client(
                server_address=f"localhost:{port}",
                client=_client_class()(trainer, caller.submit, organisation_errors),
                root_certificates=tls.authority,
            )
        except BaseException as error:
            errors.append(error)

    _wait_for_port(port)
    aggregator = threading.Thread(target=serve, name="training-aggregator", daemon=True)
    clients = [
        threading.Thread(target=connect, args=(trainer,), name=f"training-client-{index}", daemon=True)
        for index, trainer in enumerate(trainers)
    ]
    aggregator.start()
    for client in clients:
        client.start()
    caller.serve_until(lambda: not aggregator.is_alive())
    for client in clients:
        client.join(timeout=CONNECT_TIMEOUT_SECONDS)
    if organisation_errors:
        log.error("training_organisation_failed", error=type(organisation_errors[0]).__name__)
        raise FederationFailed("organisation_failed") from organisation_errors[0]
    if errors:
        log.error("training_federation_failed", error=type(errors[0]).__name__)
        raise FederationFailed("federation_error") from errors[0]
    if strategy.failure:
        raise FederationFailed(strategy.failure)
    log.info("training_federation_finished", organisations=len(trainers), rounds=rounds)
