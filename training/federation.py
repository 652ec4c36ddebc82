"""Flower as the transport between organisations: one Flower server (the aggregator, in a process of its own:
training.aggregator) and one Flower client per organisation, over gRPC with TLS, carrying CKKS ciphertexts as Flower
parameters. Free of Django.

Flower API: the legacy "ECE" fleet transport of flwr 1.42 (grpc-bidi): the server is assembled from the pieces
`flwr.server.start_server` is made of (see training.aggregator), the clients are `flwr.client.start_client` with
the run's root certificate. It runs in library calls, with no SuperLink/SuperNode processes to manage, and Flower's
telemetry is switched off (training.flower): a hospital's training never calls out.

What each side holds:
- the aggregator's process gets each organisation's update as ciphertexts and a context WITHOUT a secret key
  (parameters only): it adds ciphertexts slot-wise and hands the sum to the steward; it never decrypts, never sees
  one organisation's plaintext update, and shares no memory with the steward's key;
- the steward (`Steward`), in the process that runs the training task, alone opens a sum, and answers the next
  round's weights (plaintext: the model is what is being published) and, after the last round, the validation
  metrics;
- an organisation (`OrganisationTrainer`) computes its encrypted update on its own records at the weights it is sent.

Threads of the task's process: one Flower client per organisation, and one answering the aggregator's sums with the
steward; every organisation's work is handed back to the thread that called `federate` (the caller's database
connection, its transaction in a test), one job at a time.
"""

import queue
import secrets
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import structlog

from training.aggregator import TOKEN_METRIC, AggregatorFailed, AggregatorProcess, Steward
from training.flower import CIPHERTEXT_TENSOR_TYPE, flower, parameters_weights
from training.tls import FlowerTls, loopback_tls

log = structlog.get_logger(__name__)

CONNECT_TIMEOUT_SECONDS = 30.0


class OrganisationTrainer(Protocol):
    organisation: str

    def fit(self, round_index: int, scaled_weights: np.ndarray) -> tuple[list[bytes], int]:
        """The organisation's encrypted update at `scaled_weights` (its ciphertexts) and how many records it covers."""
        ...

    def validate(self, scaled_weights: np.ndarray) -> tuple[list[bytes], int]:
        """Its encrypted validation statistics on its held-out records at the final weights, and their count."""
        ...


class FederationFailed(Exception):
    """A round did not hear from every organisation, or the federation did not finish; `code` says which."""

    def __init__(self, code: str):
        super().__init__(code)
        self.code = code


def _client_class() -> type:
    from flwr.client import Client
    from flwr.common import Code, EvaluateRes, FitRes, Parameters, Status

    class OrganisationClient(Client):
        """One organisation's Flower client: its work runs on the caller's thread (`run`)."""

        def __init__(
            self,
            trainer: OrganisationTrainer,
            run: Callable[[Callable[[], Any]], Any],
            errors: list[BaseException],
            token: str,
        ):
            self.trainer, self.run, self.errors, self.token = trainer, run, errors, token

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
                metrics={TOKEN_METRIC: self.token},
            )

        def evaluate(self, ins: Any) -> Any:
            weights = parameters_weights(ins.parameters)
            done = self._work(lambda: self.trainer.validate(weights))
            if done is None:
                return EvaluateRes(Status(Code.EVALUATE_NOT_IMPLEMENTED, "failed"), 0.0, 0, {})
            ciphertexts, count = done
            metrics: dict[str, Any] = {f"c{i}": ciphertext for i, ciphertext in enumerate(ciphertexts)}
            metrics[TOKEN_METRIC] = self.token
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


def federate(
    *,
    trainers: Sequence[OrganisationTrainer],
    steward: Steward,
    rounds: int,
    initial: np.ndarray,
    aggregation_context: bytes,
    tls: FlowerTls | None = None,
    round_timeout: float = 600.0,
    observe: Callable[[AggregatorProcess], None] | None = None,
    round_opened: Callable[[int], None] | None = None,
    invited: int = 0,
    invite: Callable[[str, FlowerTls, list[str]], None] | None = None,
    bind: str = "127.0.0.1",
    host: str = "localhost",
    connect_timeout: float = 120.0,
) -> None:
    """Run `rounds` federated rounds and the validation over Flower with TLS (a fresh authority for `host` unless
    `tls` is given), the aggregator in a process of its own listening at `bind`. `trainers` are the organisations this
    instance hosts (their clients run here); `invited` more organisations' clients come from other instances:
    `invite(address, tls, tokens)` is called once the aggregator listens, to send them the address ("host:port"), the
    authority and each its token (training.participation), and raises FederationFailed if it cannot. The aggregator
    waits `connect_timeout` seconds for every client, and sums only updates that carry the run's tokens, one per
    organisation, made here for this attempt: a client that is not one of the organisations fails the attempt
    (organisation_unknown) and is never summed.

    `observe` is shown the aggregator's process once it listens (tests check what it holds; its report is filled at
    the end); `round_opened(index)` is called on the caller's thread (its database connection) once the steward has
    opened a round's sum, before the next round starts: how a run's page follows its rounds. Raises FederationFailed
    when an organisation does not answer a round, or the aggregator fails."""
    flwr = flower()
    tls = tls or loopback_tls(host)
    tokens = [secrets.token_urlsafe(32) for _ in range(len(trainers) + invited)]
    aggregator = AggregatorProcess(bind=bind, connect_timeout=connect_timeout, round_timeout=round_timeout)
    try:
        try:
            port = aggregator.start(tokens=tokens, rounds=rounds, initial=initial, context=aggregation_context, tls=tls)
        except AggregatorFailed as error:
            raise FederationFailed(error.code) from None
        if observe is not None:
            observe(aggregator)
        if invite is not None:
            invite(f"{host}:{port}", tls, tokens[len(trainers) :])
        hosted = zip(trainers, tokens[: len(trainers)], strict=True)
        _run_rounds(flwr, aggregator, f"localhost:{port}", tls, hosted, steward, round_opened)
    finally:
        aggregator.stop()
    if aggregator.report.failure:
        raise FederationFailed(aggregator.report.failure)
    log.info("training_federation_finished", organisations=len(trainers) + invited, rounds=rounds)


def participate(*, trainer: OrganisationTrainer, address: str, authority: bytes, token: str) -> None:
    """One organisation's side of a run that another instance's steward federates: its Flower client connects to the
    aggregator at `address` ("host:port"), trusting only `authority` (the run's, from its signed invitation), sends
    `token` (the organisation's, from the same invitation) with every update, and does the organisation's work on the
    calling thread (its database connection). Returns when the aggregator ends the federation; raises FederationFailed
    when the organisation's own work failed (organisation_failed, caused by its error) or the transport did
    (federation_error)."""
    flwr = flower()
    caller = _CallerThread()
    errors: list[BaseException] = []
    organisation_errors: list[BaseException] = []
    client = _client_thread(
        flwr, address, authority, trainer, token, caller, organisation_errors, errors, name="training-client"
    )
    client.start()
    caller.serve_until(lambda: not client.is_alive())
    _raise_failures(organisation_errors, errors)


def _client_thread(
    flwr: Any,
    address: str,
    authority: bytes,
    trainer: OrganisationTrainer,
    token: str,
    caller: _CallerThread,
    organisation_errors: list[BaseException],
    errors: list[BaseException],
    *,
    name: str,
) -> threading.Thread:
    """A thread running `trainer`'s Flower client until the aggregator ends the federation (or is gone for good)."""

    def connect() -> None:
        try:
            flwr.client.start_client(
                server_address=address,
                client=_client_class()(trainer, caller.submit, organisation_errors, token),
                root_certificates=authority,
                max_wait_time=CONNECT_TIMEOUT_SECONDS,  # a server gone for good: give up, never linger
            )
        except BaseException as error:
            errors.append(error)

    return threading.Thread(target=connect, name=name, daemon=True)


def _raise_failures(organisation_errors: list[BaseException], errors: list[BaseException]) -> None:
    if organisation_errors:
        log.error("training_organisation_failed", error=type(organisation_errors[0]).__name__)
        raise FederationFailed("organisation_failed") from organisation_errors[0]
    if errors:
        log.error("training_federation_failed", error=type(errors[0]).__name__)
        code = errors[0].code if isinstance(errors[0], AggregatorFailed) else "federation_error"
        raise FederationFailed(code) from errors[0]


def _run_rounds(
    flwr: Any,
    aggregator: AggregatorProcess,
    address: str,
    tls: FlowerTls,
    trainers: Iterable[tuple[OrganisationTrainer, str]],
    steward: Steward,
    round_opened: Callable[[int], None] | None,
) -> None:
    caller = _CallerThread()

    def opened(round_index: int) -> None:
        if round_opened is not None:
            caller.submit(lambda: round_opened(round_index))

    errors: list[BaseException] = []  # the transport's, or the aggregator's
    organisation_errors: list[BaseException] = []  # an organisation's own work's (a ledger that did not answer...)

    def answer() -> None:
        try:
            aggregator.answer_until_finished(steward, opened=opened)
        except BaseException as error:  # the caller raises it
            errors.append(error)
            aggregator.stop()  # its clients then see the server gone and end

    steward_side = threading.Thread(target=answer, name="training-steward", daemon=True)
    clients = [
        _client_thread(
            flwr,
            address,
            tls.authority,
            trainer,
            token,
            caller,
            organisation_errors,
            errors,
            name=f"training-client-{index}",
        )
        for index, (trainer, token) in enumerate(trainers)
    ]
    steward_side.start()
    for client in clients:
        client.start()
    caller.serve_until(lambda: not steward_side.is_alive())
    for client in clients:
        client.join(timeout=CONNECT_TIMEOUT_SECONDS)
    _raise_failures(organisation_errors, errors)
