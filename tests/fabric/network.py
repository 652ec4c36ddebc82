"""A real Fabric network for tests: started once per test session from FABRIC_BIN_DIR, stopped at its end.

`shared_network()` starts network/fabric.sh's native network (the hospital's two peers, research's
peer, three Raft orderers, each peer organisation's own chaincode service) on free 127.0.0.1 ports in
a temporary folder, the first time any test asks for it; every later caller in the session gets the
same network. `stop_shared_network()` stops it (idempotent); every fixture that starts it registers
that as a session finalizer.

Without FABRIC_BIN_DIR the callers skip with FABRIC_BIN_NOT_SET as the visible reason. A network
that fails to start fails every test that needs it, with the tail of the failing node's log, and is
not started again in the same session. `dedicated_network()` starts one of a module's own, for tests
that crash nodes (FabricNetwork.kill, then start_node; raft_leader and committed_blocks read the
orderers' metrics when the network runs with ORDERER_METRICS_PROVIDER=prometheus).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack, closing, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import pytest

from tests.processes import child_processes, process_alive

T = TypeVar("T")

REPO = Path(__file__).resolve().parents[2]
FABRIC_SCRIPT = REPO / "network" / "fabric.sh"
FABRIC_BIN_NOT_SET = (
    "FABRIC_BIN_DIR is not set: the Fabric backend needs Fabric v2.5 binaries "
    "(peer, orderer, configtxgen, osnadmin, cryptogen, discover); see network/README.md"
)
# Every node of network/env.sh, in the order `up` starts them: the names of their logs and pid files.
ORDERERS = ("orderer0.ordering", "orderer1.ordering", "orderer2.ordering")
PEERS = ("peer0.hospital", "peer1.hospital", "peer0.research")
CHANNEL_LABEL = '{channel="health"}'  # a channel's Prometheus series, as the orderers label them
CHAINCODE_SERVICES = ("chaincode.hospital", "chaincode.research")
NODES = ORDERERS + PEERS + CHAINCODE_SERVICES
PORT_VARIABLES = (
    *(
        f"ORDERER{n}_{port}"
        for n in range(len(ORDERERS))
        for port in ("PORT", "CLUSTER_PORT", "ADMIN_PORT", "OPERATIONS_PORT")
    ),
    *(
        f"{peer.split('.')[1].upper()}_{peer.split('.')[0].upper()}_{port}"
        for peer in PEERS
        for port in ("PORT", "CHAINCODE_PORT", "OPERATIONS_PORT")
    ),
    "HOSPITAL_CHAINCODE_PORT",
    "RESEARCH_CHAINCODE_PORT",
)


@dataclass
class FabricNetwork:
    """A running network: where it lives and what a Gateway client needs to reach it."""

    directory: Path
    script_environment: dict[str, str]
    client_environment: dict[str, str] = field(default_factory=dict)

    @property
    def ledger_url(self) -> str:
        return self.client_environment["LEDGER_URL"]

    def client_environment_of(self, organisation: str) -> dict[str, str]:
        """What a Gateway client of `organisation` (hospital or research) needs: `fabric.sh client-env ORG`, its own
        organisation's User1 and gateway peer first (the platform instance of that organisation)."""
        result = self.run("client-env", organisation)
        if result.returncode != 0:
            raise RuntimeError(f"fabric.sh client-env {organisation} failed:\n{result.stderr[-2000:]}")
        return dict(line.partition("=")[::2] for line in result.stdout.splitlines() if "=" in line)

    def open_ledger(self):  # -> ledger.fabric.FabricLedger
        from ledger.fabric import FabricLedger

        return FabricLedger.from_url(self.ledger_url, environ=self.client_environment)

    def run(
        self, *arguments: str, timeout: float = 180, environment: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess:
        """`network/fabric.sh ARGUMENTS...` on this network (with `environment`'s settings over its own)."""
        return subprocess.run(
            ["sh", str(FABRIC_SCRIPT), *arguments],
            cwd=REPO,
            env={**self.script_environment, **(environment or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def processes(self, name: str) -> list[int]:
        """The pids of a node started by network/fabric.sh (its wrapper shell and everything under it)."""
        wrapper = int((self.directory / "run" / f"{name}.pid").read_text())
        found, frontier = [wrapper], [wrapper]
        while frontier:
            children = child_processes(frontier.pop())
            found += children
            frontier += children
        return found

    def kill(self, name: str) -> float:
        """Crash the node: SIGKILL to its whole process tree. Returns time.monotonic() at the signal, once every
        process of it is gone."""
        pids = self.processes(name)
        killed_at = time.monotonic()
        for pid in pids:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        deadline = killed_at + 10
        while any(map(process_alive, pids)):
            assert time.monotonic() < deadline, f"{name} is still running 10 s after SIGKILL"
            time.sleep(0.05)
        return killed_at

    def start_node(self, name: str) -> None:
        """`fabric.sh start-node NAME`: the node started again as `up` starts it (same environment, pid file and
        log, appended to), returned once it listens; RuntimeError with its log's tail if it does not."""
        result = self.run("start-node", name, timeout=60)
        if result.returncode != 0:
            raise RuntimeError(f"{name} did not start again:\n{result.stderr[-2000:]}\n{self.log_tail(name)}")

    def metrics(self, orderer: str) -> dict[str, float]:
        """The orderer's Prometheus metrics for the channel (its operations endpoint's /metrics; the network must
        run with ORDERER_METRICS_PROVIDER=prometheus): {"consensus_etcdraft_is_leader": 1.0, ...}. Raises OSError
        when the orderer does not answer."""
        port = self.script_environment[f"ORDERER{ORDERERS.index(orderer)}_OPERATIONS_PORT"]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
            text = response.read().decode()
        found = {}
        for line in text.splitlines():
            name, _, value = line.rpartition(" ")
            if name.endswith(CHANNEL_LABEL):
                found[name.removesuffix(CHANNEL_LABEL)] = float(value)
        return found

    def stop(self) -> None:
        """`fabric.sh down`, then the network's folder removed (kept with FABRIC_KEEP_NETWORK_DIR set)."""
        self.run("down", timeout=60)
        if not os.environ.get("FABRIC_KEEP_NETWORK_DIR"):
            shutil.rmtree(self.directory, ignore_errors=True)

    def raft_leader(self, among: tuple[str, ...] = ORDERERS, seconds: float = 30) -> str:
        """The orderer of `among` that leads the channel's Raft, once exactly one of them says so (its
        consensus_etcdraft_is_leader gauge is 1, the others' 0; one that does not answer is not it): each orderer
        sets that gauge itself whenever its own Raft node becomes leader or stops being it."""
        deadline = time.monotonic() + seconds
        while True:
            leaders = [name for name in among if self._metric(name, "consensus_etcdraft_is_leader") == 1]
            if len(leaders) == 1:
                return leaders[0]
            assert time.monotonic() < deadline, f"no single Raft leader among {among} after {seconds} s: {leaders}"
            time.sleep(0.05)

    def committed_blocks(self) -> dict[str, float | None]:
        """The number of the last block each orderer wrote to its ledger (None: it does not answer)."""
        return {name: self._metric(name, "consensus_etcdraft_committed_block_number") for name in ORDERERS}

    def _metric(self, orderer: str, name: str) -> float | None:
        try:
            return self.metrics(orderer).get(name)
        except OSError:
            return None

    @contextmanager
    def stopped(self, name: str) -> Iterator[None]:
        """The node frozen (SIGSTOP: it holds its connections and answers nothing) for the block, then resumed."""
        pids = self.processes(name)
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        try:
            yield
        finally:
            for pid in pids:
                with suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)

    def log_tail(self, name: str, lines: int = 40) -> str:
        path = self.directory / "logs" / f"{name}.log"
        if not path.exists():
            return f"(no {path})"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def until_available(call: Callable[[], T], seconds: float = 60) -> T:
    """call() until it does not raise LedgerUnavailable (a peer back from a fault may need a few seconds of
    gossip before its gateway counts the other organisation's peers again), for at most `seconds`."""
    from ledger import LedgerUnavailable

    deadline = time.monotonic() + seconds
    while True:
        try:
            return call()
        except LedgerUnavailable:
            assert time.monotonic() < deadline, f"the ledger was still unavailable after {seconds} s"
            time.sleep(1)


def free_ports(count: int) -> list[int]:
    """`count` distinct ports free on 127.0.0.1 now (the OS picks them; a small race is accepted)."""
    with ExitStack() as stack:
        sockets = [stack.enter_context(closing(socket.socket())) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]


def start_network(bin_dir: str, directory: Path, settings: dict[str, str] | None = None) -> FabricNetwork:
    """Start the native network in `directory` (with network/env.sh `settings` over the defaults); raise
    RuntimeError with the logs if it does not come up."""
    environment = {
        **os.environ,
        "FABRIC_BIN_DIR": bin_dir,
        "NETWORK_DIR": str(directory),
        "PYTHON": sys.executable,
        "FABRIC_LOGGING_SPEC": os.environ.get("FABRIC_TEST_LOGGING_SPEC", "WARNING"),
        **dict(zip(PORT_VARIABLES, map(str, free_ports(len(PORT_VARIABLES))), strict=True)),
        **(settings or {}),
    }
    network = FabricNetwork(directory=directory, script_environment=environment)
    result = network.run("up")
    if result.returncode != 0:
        logs = "\n".join(f"--- {name}.log\n{network.log_tail(name)}" for name in NODES)
        raise RuntimeError(f"network/fabric.sh up failed ({result.returncode}):\n{result.stderr[-4000:]}\n{logs}")
    for line in (directory / "client.env").read_text().splitlines():
        name, _, value = line.partition("=")
        if name:
            network.client_environment[name] = value
    return network


_shared: dict[str, FabricNetwork | Exception | None] = {"network": None}


def fabric_bin_dir() -> str:
    """FABRIC_BIN_DIR; the caller skips, with FABRIC_BIN_NOT_SET as the reason, when it is not set."""
    bin_dir = os.environ.get("FABRIC_BIN_DIR")
    if not bin_dir:
        pytest.skip(FABRIC_BIN_NOT_SET)
    return bin_dir


def shared_network(request: pytest.FixtureRequest) -> FabricNetwork:
    """The session's network, started on first use; skips without FABRIC_BIN_DIR."""
    bin_dir = fabric_bin_dir()
    current = _shared["network"]
    if current is None:
        request.session.config.add_cleanup(stop_shared_network)
        directory = Path(tempfile.mkdtemp(prefix="health-fabric-"))
        try:
            current = start_network(bin_dir, directory)
        except Exception as error:  # kept, and reported to every test that needs the network
            current = error
        _shared["network"] = current
    if isinstance(current, Exception):
        pytest.fail(f"the Fabric test network did not start: {current}", pytrace=False)
    return current


@contextmanager
def dedicated_network(settings: dict[str, str] | None = None) -> Iterator[FabricNetwork]:
    """A network of the caller's own (network/env.sh `settings` over the defaults), for tests that crash its
    nodes: started in a temporary folder, stopped on the way out. Skips without FABRIC_BIN_DIR."""
    bin_dir = fabric_bin_dir()
    try:
        network = start_network(bin_dir, Path(tempfile.mkdtemp(prefix="health-fabric-")), settings)
    except RuntimeError as error:
        pytest.fail(f"the dedicated Fabric network did not start: {error}", pytrace=False)
    try:
        yield network
    finally:
        network.stop()


def stop_shared_network() -> None:
    current = _shared["network"]
    _shared["network"] = None
    if isinstance(current, FabricNetwork):
        current.stop()


def backend(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator:
    """A LedgerClient of backend `kind` ("embedded": a fresh ledger file; "fabric": the session's network)."""
    if kind == "embedded":
        from ledger.embedded import EmbeddedLedger

        client = EmbeddedLedger(tmp_path / "chain.sqlite3")
    else:
        client = shared_network(request).open_ledger()
    try:
        yield client
    finally:
        client.close()


BACKENDS = ["embedded", pytest.param("fabric", marks=pytest.mark.fabric)]
