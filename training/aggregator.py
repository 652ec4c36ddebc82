"""The aggregator in a process of its own: the Flower server and its ciphertext-summing strategy, started for one run
with no database settings, no keys of the platform and no secret key of the run. Free of Django.

    python -m training.aggregator        (started by training.federation.federate; it speaks on stdin/stdout)

Why a process: the steward's secret context is in the process that runs the training task (the steward's side, which
alone opens sums); the aggregator, which receives every organisation's encrypted update, must not share an address
space with it, as the compute worker does not share one with the custodian. Its environment is built from nothing
(PATH, PYTHONPATH, Flower's telemetry switch), as the compute worker's is in the separately trusted deployment.

The conversation, one JSON object a line (ciphertexts base64), on the pipes its parent holds:
- parent -> aggregator, once: {organisations, rounds, initial, context, tls: {authority, certificate, private_key},
  round_timeout, bind, connect_timeout, tokens}; the context must be parameters-only: one holding a secret key is
  refused ("context_not_keyless"); `tokens` are the SHA-256 of each organisation's token, one per organisation:
  every update must carry one of them, each once, or the run fails ("organisation_unknown"): a client that is not
  one of the run's organisations (anyone who can reach the port) never has its update summed;
- aggregator -> parent: {"event": "listening", "port"}; then per round {"event": "round", "round", "sum"}, answered
  {"weights"}; after the last round {"event": "validation", "sum"}, answered {}; at the end {"event": "finished",
  "failure", "received"}: `received` holds, per round, the SHA-256 of each organisation's ciphertexts (what it was
  sent, never the ciphertexts);
- anything else it meets: {"event": "failed", "error": <a code, or the exception's type>} and exit status 1.
Its own logs go to standard error, never a ciphertext.
"""

import base64
import hashlib
import json
import logging
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

import numpy as np

from training.flower import CIPHERTEXT_TENSOR_TYPE, flower, weights_parameters
from training.tls import FlowerTls

REPO = Path(__file__).resolve().parent.parent
STARTUP_TIMEOUT_SECONDS = 60.0


TOKEN_METRIC = "organisation_token"  # noqa: S105 (the metric's name, not a secret)


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", errors="replace")).hexdigest()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


def _send(stream: IO[str], message: dict[str, Any]) -> None:
    stream.write(json.dumps(message, separators=(",", ":")) + "\n")
    stream.flush()


def _receive(stream: IO[str]) -> dict[str, Any]:
    line = stream.readline()
    if not line:
        raise EOFError("the other side closed the conversation")
    message = json.loads(line)
    if not isinstance(message, dict):
        raise ValueError("expected a JSON object")
    return message


class AggregatorFailed(Exception):
    """The aggregator's process ended without finishing the run; `code` says how."""

    def __init__(self, code: str):
        super().__init__(code)
        self.code = code


class Steward(Protocol):
    def open_round(self, round_index: int, summed: list[bytes]) -> np.ndarray:
        """Decrypt a round's summed update; answer the next scaled weights."""
        ...

    def open_validation(self, summed: list[bytes]) -> None:
        """Decrypt the summed validation statistics (the steward keeps the metrics)."""
        ...


Adder = Callable[[bytes, Sequence[bytes]], bytes]  # (keyless context, ciphertexts) -> their sum


class ContextNotKeyless(ValueError):
    """The context the aggregator was handed holds a secret key: it refuses to start."""

    code = "context_not_keyless"


@dataclass
class AggregatorReport:
    """What the aggregator's process said at the end: its failure (empty: none) and the digests of what it received
    per round (a list per organisation)."""

    failure: str = ""
    received: list[tuple[int, list[list[str]]]] = field(default_factory=list)


class AggregatorProcess:
    """The parent's handle: starts `python -m training.aggregator` with an environment of its own and answers its
    rounds with the steward. `pid` and `report` are there for whoever watches (the tests). It listens at `bind`,
    waits `connect_timeout` seconds for every organisation's client (then fails the run organisation_missing) and
    `round_timeout` seconds for a round's updates."""

    def __init__(self, *, bind: str = "127.0.0.1", connect_timeout: float = 120.0, round_timeout: float = 600.0):
        self.timing = {"bind": bind, "connect_timeout": connect_timeout, "round_timeout": round_timeout}
        environment = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "PYTHONPATH": str(REPO),
            "FLWR_TELEMETRY_ENABLED": "0",
            "PYTHONUNBUFFERED": "1",
        }
        self._process = subprocess.Popen(
            [sys.executable, "-m", "training.aggregator"],
            cwd=REPO,
            env=environment,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            close_fds=True,
        )
        self.pid = self._process.pid
        self.report = AggregatorReport()

    def start(self, *, tokens: Sequence[str], rounds: int, initial: np.ndarray, context: bytes, tls: FlowerTls) -> int:
        """Hand it the run; the port it listens on. `tokens`: one per organisation (token_digest of each is all the
        aggregator gets); an organisation's client sends its own with every update."""
        assert self._process.stdin is not None
        assert self._process.stdout is not None
        _send(
            self._process.stdin,
            {
                "organisations": len(tokens),
                "rounds": rounds,
                "initial": [float(w) for w in initial],
                "context": _b64(context),
                "tls": {
                    name: getattr(tls, name).decode("ascii") for name in ("authority", "certificate", "private_key")
                },
                **self.timing,
                "tokens": [token_digest(token) for token in tokens],
            },
        )
        ready: dict[str, Any] = {}
        reader = threading.Thread(target=lambda: ready.update(self._next()), daemon=True)
        reader.start()
        reader.join(STARTUP_TIMEOUT_SECONDS)
        if ready.get("event") != "listening":
            self.stop()
            if not ready:
                raise AggregatorFailed("aggregator_unreachable")
            refused = ready.get("error") == ContextNotKeyless.code
            raise AggregatorFailed(ContextNotKeyless.code if refused else "aggregator_failed")
        return int(ready["port"])

    def _next(self) -> dict[str, Any]:
        assert self._process.stdout is not None
        try:
            return _receive(self._process.stdout)
        except (EOFError, ValueError):
            return {"event": "failed", "error": "ended"}

    def answer_until_finished(self, steward: Steward, opened: Callable[[int], None] = lambda index: None) -> None:
        """Open each round's sum with the steward and send back the next weights (after `opened(round)`), until the
        aggregator finishes. Raises AggregatorFailed if it ends otherwise."""
        assert self._process.stdin is not None
        while True:
            message = self._next()
            event = message.get("event")
            if event == "round":
                summed = [_unb64(text) for text in message["sum"]]
                weights = steward.open_round(int(message["round"]), summed)
                opened(int(message["round"]))
                _send(self._process.stdin, {"weights": [float(w) for w in weights]})
            elif event == "validation":
                steward.open_validation([_unb64(text) for text in message["sum"]])
                _send(self._process.stdin, {})
            elif event == "finished":
                self.report = AggregatorReport(
                    failure=str(message["failure"]),
                    received=[(int(r), [list(map(str, d)) for d in digests]) for r, digests in message["received"]],
                )
                return
            else:
                raise AggregatorFailed("aggregator_failed")

    def stop(self) -> None:
        """Close its input and wait for it a moment; kill it if it lingers."""
        try:
            if self._process.stdin is not None:
                self._process.stdin.close()
            self._process.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            self._process.kill()
            self._process.wait(timeout=5)


class _SumsForTheSteward:
    """The strategy's steward, in the aggregator's process: it sends each sum to the parent and waits for the next
    weights (the steward's key never comes here)."""

    def __init__(self, reader: IO[str], writer: IO[str]):
        self._reader, self._writer = reader, writer

    def open_round(self, round_index: int, summed: list[bytes]) -> np.ndarray:
        _send(self._writer, {"event": "round", "round": round_index, "sum": [_b64(c) for c in summed]})
        return np.asarray(_receive(self._reader)["weights"], dtype=float)

    def open_validation(self, summed: list[bytes]) -> None:
        _send(self._writer, {"event": "validation", "sum": [_b64(c) for c in summed]})
        _receive(self._reader)


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
            tokens: Sequence[str],
            connect_timeout: float = 120.0,
        ):
            self.organisations, self.rounds, self.initial = organisations, rounds, initial
            self.connect_timeout = connect_timeout
            self.tokens = {digest: index for index, digest in enumerate(tokens)}  # digest -> organisation's place
            self.context, self.add, self.steward = context, add, steward
            self.failure = ""
            self.received: list[tuple[int, list[list[bytes]]]] = []  # what reached the aggregator, per round

        def __repr__(self) -> str:
            return f"CiphertextSum(organisations={self.organisations}, rounds={self.rounds})"

        def initialize_parameters(self, client_manager: Any) -> Any:
            return weights_parameters(self.initial)

        def _clients(self, client_manager: Any) -> list[Any]:
            """Every organisation's client, waiting for them at most `connect_timeout` seconds (an invited instance
            that never connects fails the run organisation_missing: nothing waits a day for it)."""
            if not client_manager.wait_for(self.organisations, timeout=self.connect_timeout):
                self.failure = self.failure or "organisation_missing"
                return []
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

        def _in_order(self, results: list[Any]) -> list[Any] | None:
            """The results in the organisations' order, each carrying its own organisation's token once; None if
            one does not (a client that is not one of the run's organisations, or one token twice)."""
            placed: dict[int, Any] = {}
            for _, result in results:
                token = result.metrics.get(TOKEN_METRIC)
                index = self.tokens.get(token_digest(token)) if isinstance(token, str) else None
                if index is None or index in placed:
                    return None
                placed[index] = result
            return [placed[index] for index in sorted(placed)] if len(placed) == len(self.tokens) else None

        def _from_every_organisation(self, results: list[Any], failures: list[Any]) -> list[Any] | None:
            """The results in the organisations' order; None, the run's failure set, when one is missing or failed
            (organisation_missing) or is not from one of the run's organisations (organisation_unknown)."""
            if failures or len(results) != self.organisations or self.failure:
                self.failure = self.failure or "organisation_missing"
                return None
            ordered = self._in_order(results)
            if ordered is None:
                self.failure = "organisation_unknown"
            return ordered

        def aggregate_fit(self, server_round: int, results: list[Any], failures: list[Any]) -> tuple[Any, dict]:
            ordered = self._from_every_organisation(results, failures)
            if ordered is None:
                return None, {}
            updates = []
            for result in ordered:
                if result.parameters.tensor_type != CIPHERTEXT_TENSOR_TYPE:
                    self.failure = "update_not_encrypted"
                    return None, {}
                updates.append(list(result.parameters.tensors))
            self.received.append((server_round, updates))
            next_weights = self.steward.open_round(server_round, self._sum(updates))
            return weights_parameters(next_weights), {}

        def configure_evaluate(self, server_round: int, parameters: Any, client_manager: Any) -> list[Any]:
            if server_round != self.rounds or self.failure:
                return []
            return [(client, EvaluateIns(parameters, {})) for client in self._clients(client_manager)]

        def aggregate_evaluate(self, server_round: int, results: list[Any], failures: list[Any]) -> tuple[Any, dict]:
            ordered = self._from_every_organisation(results, failures)
            if ordered is None:
                return None, {}
            updates = [[r.metrics[f"c{i}"] for i in range(len(r.metrics) - 1)] for r in ordered]
            self.steward.open_validation(self._sum(updates))
            return None, {}

        def evaluate(self, server_round: int, parameters: Parameters) -> None:
            return None

    return CiphertextSum


def ciphertext_sum(**terms: Any) -> Any:
    """The strategy (see _strategy_class) for one run."""
    return _strategy_class()(**terms)


def _digests(updates: Sequence[Sequence[bytes]]) -> list[list[str]]:
    return [[hashlib.sha256(ciphertext).hexdigest() for ciphertext in update] for update in updates]


def _free_port(bind: str) -> int:
    with socket.socket() as probe:
        probe.bind((bind, 0))
        return int(probe.getsockname()[1])


def serve(reader: IO[str], writer: IO[str]) -> None:
    """The aggregator's side of the conversation (see the module's docstring)."""
    from analytics.he import TenSEALEngine

    flwr = flower()
    logging.getLogger("flwr").setLevel(logging.WARNING)  # after its import, which sets it to DEBUG: rounds aren't news
    from flwr.server.server import init_defaults, run_fl
    from flwr.server.superlink.fleet.grpc_bidi.grpc_server import start_grpc_server

    setup = _receive(reader)
    engine = TenSEALEngine()
    context = _unb64(setup["context"])
    try:
        engine.refuse_secret(context)
    except ValueError:
        raise ContextNotKeyless() from None
    if len(setup["tokens"]) != int(setup["organisations"]):
        raise ValueError("one token per organisation")
    strategy = ciphertext_sum(
        organisations=int(setup["organisations"]),
        rounds=int(setup["rounds"]),
        initial=np.asarray(setup["initial"], dtype=float),
        context=context,
        add=engine.add,
        steward=_SumsForTheSteward(reader, writer),
        tokens=[str(digest) for digest in setup["tokens"]],
        connect_timeout=float(setup.get("connect_timeout", 120.0)),
    )
    server, config = init_defaults(
        server=None,
        config=flwr.server.ServerConfig(num_rounds=int(setup["rounds"]), round_timeout=float(setup["round_timeout"])),
        strategy=strategy,
        client_manager=None,
    )
    tls = setup["tls"]
    bind = str(setup.get("bind", "127.0.0.1"))
    port = _free_port(bind)
    grpc_server = start_grpc_server(
        client_manager=server.client_manager(),
        server_address=f"{bind}:{port}",
        certificates=(tls["authority"].encode(), tls["certificate"].encode(), tls["private_key"].encode()),
    )
    _send(writer, {"event": "listening", "port": port})
    try:
        run_fl(server=server, config=config)
    finally:
        grpc_server.stop(grace=1)
    _send(
        writer,
        {
            "event": "finished",
            "failure": strategy.failure,
            "received": [[index, _digests(updates)] for index, updates in strategy.received],
        },
    )


def main() -> int:
    # The conversation keeps the real standard output; anything else written there (a library's print) goes to
    # standard error instead.
    conversation = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    try:
        serve(sys.stdin, conversation)
    except Exception as error:  # a code or its type only: never a value, which might be a ciphertext
        _send(conversation, {"event": "failed", "error": getattr(error, "code", type(error).__name__)})
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
