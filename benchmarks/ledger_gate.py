"""Gate and log throughput on both ledger backends, against the naive per-record design, in one run.

    python -m benchmarks.ledger_gate [--records 10000] [--batch-sizes 100,1000,5000] [--naive-sample 500]
    FABRIC_BIN_DIR=/path/to/fabric/bin python -m benchmarks.ledger_gate      # also on a real Fabric network

Batched (the design): ONE CheckAccessBatch per batch (endorsed by every organisation on Fabric), ONE
AppendAccessEvents transaction per batch. Naive: per record, a ReadAnchor and a ListConsentsForPatient
evaluate (the gate done by the client), and one AppendAccessEvents transaction per record; run on a
sample and reported per record, in the same run, on the same ledger.

Consent writes: signed grants (the patient's passkey assertion over each document), one per patient,
--writers patients at once: through one platform process whose group commit writes the grants made at the same
moment together (the design), against the same concurrency with one transaction per grant, and one client alone.

The embedded ledger always runs. With FABRIC_BIN_DIR set, the same measurements run on the native
network of network/fabric.sh (all on 127.0.0.1), started for the run and stopped after it;
--fabric-records sizes its data set.
"""

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

from benchmarks.common import report, timed
from benchmarks.faults import cpu_ticks
from health_platform.software_passkey import SoftwareSigner
from ledger import LedgerClient
from ledger.contracts import AccessItem, AnchorRequest, ConsentGrant, Contracts
from ledger.embedded import EmbeddedLedger

PURPOSE = "diagnostic-model:breast-cancer"
GRANTEE = "clinician:bench"


def _pseudonym(patient: int) -> str:
    return format(patient, "064x")


def _digest(record: int) -> str:
    return format(record + 7, "064x")


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _consent(consent_id: str) -> ConsentGrant:
    """The grant every consenting patient of the benchmark makes: GRANTEE, PURPOSE, imaging, a month."""
    now = datetime.now(UTC)
    return ConsentGrant(
        consent_id=consent_id,
        grantee=GRANTEE,
        purposes=[PURPOSE],
        categories=["imaging"],
        valid_from=_stamp(now - timedelta(days=1)),
        valid_until=_stamp(now + timedelta(days=30)),
    )


def populate(contracts: Contracts, records: int) -> None:
    """One record per patient; every other patient consents."""
    for start in range(0, records, 5000):
        contracts.anchor_records(
            AnchorRequest(f"rec-{i}", _pseudonym(i), _digest(i), 1) for i in range(start, min(records, start + 5000))
        )
    signer = SoftwareSigner(contracts)

    def grant(patient: int) -> None:
        signer.grant(_pseudonym(patient), _consent(f"c-{patient}"))

    with ThreadPoolExecutor(8) as pool:  # setup only: Fabric commits ~15 tx/s from one client thread
        list(pool.map(grant, range(0, records, 2)))


# The processes of a Fabric network on this machine, by what their command line holds; this process is "client".
_KINDS = (("peers", "peer node start"), ("chaincode", "chaincode.server"), ("orderers", "orderer"))


def cpu_seconds() -> dict[str, float]:
    """CPU seconds spent so far by this process ("client") and by the network's processes, summed by kind (from
    /proc: Linux, as the network's scripts)."""
    spent = dict.fromkeys(["client", *(kind for kind, _ in _KINDS)], 0.0)
    tick = os.sysconf("SC_CLK_TCK")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # the process ended meanwhile
            continue
        kind = "client" if int(entry.name) == os.getpid() else next((k for k, n in _KINDS if n in command), None)
        ticks = cpu_ticks(int(entry.name)) if kind else None
        if kind and ticks is not None:
            spent[kind] += ticks / tick
    return spent


def consent_writes(
    open_client: Callable[[], LedgerClient], patients: range, clients: int, *, grouped: bool
) -> tuple[float, str]:
    """Seconds to grant one signed consent to each of `patients`, `clients` at a time (their passkeys enrolled
    beforehand, untimed), and where the CPU went: milliseconds per grant by kind of process. grouped: through ONE
    platform process's client, whose group commit writes the grants made at the same moment together (the
    design); else each concurrent client with its own connection and one transaction per grant."""
    shared = open_client()
    connections = [shared] if grouped else [shared, *(open_client() for _ in range(clients - 1))]
    signers = [SoftwareSigner(Contracts(connection, group_grants=grouped)) for connection in connections]

    def enrol(patient: int) -> None:
        signers[patient % len(signers)].passkey(_pseudonym(patient))

    def grant(patient: int) -> None:
        signers[patient % len(signers)].grant(_pseudonym(patient), _consent(f"w-{patient}"))

    try:
        with ThreadPoolExecutor(clients) as pool:
            list(pool.map(enrol, patients))
            time.sleep(0.5)  # every peer has committed the enrolments
            before = cpu_seconds()
            seconds, _ = timed(lambda: list(pool.map(grant, patients)))
            after = cpu_seconds()
    finally:
        for connection in connections:
            connection.close()
    spent = {kind: (after[kind] - before[kind]) * 1000 / len(patients) for kind in after if after[kind] > before[kind]}
    return seconds, ", ".join(f"{kind} {ms:.1f}" for kind, ms in spent.items())


def _events(indices: range, run: str) -> list[dict[str, object]]:
    """One access-log batch's events for records `indices`."""
    return [
        {
            "event_id": f"{run}-{i}",
            "kind": "record_access",
            "record_id": f"rec-{i}",
            "patient_pseudonym": _pseudonym(i),
            "grantee": GRANTEE,
            "purpose": PURPOSE,
            "request_id": run,
            "decision": "admit",
        }
        for i in indices
    ]


def log_batches(contracts: Contracts, batches: list[range], run: str) -> None:
    for indices in batches:
        contracts.append_access_events(batch_id=f"{run}-{indices.start}", events=_events(indices, run))


def gate_batched(contracts: Contracts, indices: range) -> int:
    decisions = contracts.check_access_batch(
        grantee=GRANTEE,
        organisation=None,
        purpose=PURPOSE,
        at=_stamp(datetime.now(UTC)),
        items=[AccessItem(f"rec-{i}", "imaging", _digest(i)) for i in indices],
    )
    return sum(decision.admitted for decision in decisions)


def gate_all(contracts: Contracts, batches: list[range]) -> int:
    return sum(gate_batched(contracts, batch) for batch in batches)


def gate_naive(contracts: Contracts, indices: range) -> int:
    admitted = 0
    for i in indices:
        contracts.read_anchor(f"rec-{i}")
        consents = contracts.consents_of_patient(_pseudonym(i), with_blocks=False)
        admitted += any(c.grantee == GRANTEE and c.status == "active" for c in consents)
    return admitted


def measure(
    backend: str,
    open_client: Callable[[], LedgerClient],
    records: int,
    batch_sizes: list[int],
    naive_sample: int,
    writers: int,
) -> list[dict]:
    chain = open_client()
    contracts = Contracts(chain)
    populate(contracts, records)
    rows = []

    def row(operation: str, design: str, count: int, seconds: float, cpu: str = "") -> None:
        rows.append(
            {
                "backend": backend,
                "operation": operation,
                "design": design,
                "records": count,
                "seconds": seconds,
                "records_per_s": count / seconds,
                "cpu_ms_per_record": cpu,
            }
        )

    every = range(records)
    if records <= 10_000:
        seconds, admitted = timed(partial(gate_batched, contracts, every))
        assert admitted == records // 2
        row("gate", f"CheckAccessBatch x1 ({records})", records, seconds)
    for size in batch_sizes:
        batches = [range(s, min(s + size, records)) for s in range(0, records, size)]
        seconds, admitted = timed(partial(gate_all, contracts, batches))
        assert admitted == records // 2
        row("gate", f"batched, {size}/call", records, seconds)
        seconds, _ = timed(partial(log_batches, contracts, batches, f"run{size}"))
        row("log", f"batched, {size}/tx", records, seconds)
    sample = range(min(naive_sample, records))
    seconds, _ = timed(partial(gate_naive, contracts, sample))
    row("gate", "naive: 2 calls/record", len(sample), seconds)
    seconds, _ = timed(partial(log_batches, contracts, [range(i, i + 1) for i in sample], "naive"))
    row("log", "naive: 1 tx/record", len(sample), seconds)
    grouped = range(records, records + 20 * writers)
    design = f"{writers} patients at once, one process, grouped"
    row("consent write", design, len(grouped), *consent_writes(open_client, grouped, writers, grouped=True))
    apart = range(grouped.stop, grouped.stop + 20 * writers)
    one_each = f"{writers} clients at once, 1 tx per grant"
    row("consent write", one_each, len(apart), *consent_writes(open_client, apart, writers, grouped=False))
    alone = range(apart.stop, apart.stop + 5 * writers)
    row("consent write", "naive: 1 client", len(alone), *consent_writes(open_client, alone, 1, grouped=False))
    report_chain = chain.verify()
    assert report_chain.ok, report_chain.problems[:5]
    chain.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--fabric-records", type=int, default=10_000)
    parser.add_argument("--batch-sizes", default="100,1000,5000")
    parser.add_argument("--naive-sample", type=int, default=500)
    parser.add_argument("--fabric-naive-sample", type=int, default=100)
    parser.add_argument("--writers", type=int, default=32, help="concurrent clients writing consents")
    arguments = parser.parse_args()
    sizes = [int(s) for s in arguments.batch_sizes.split(",")]

    rows = []
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "bench.sqlite3"
        rows += measure(
            "embedded",
            partial(EmbeddedLedger, path),
            arguments.records,
            sizes,
            arguments.naive_sample,
            arguments.writers,
        )
        bin_dir = os.environ.get("FABRIC_BIN_DIR")
        if bin_dir:
            from tests.fabric.network import start_network

            network = start_network(bin_dir, Path(directory) / "fabric")
            try:
                rows += measure(
                    "fabric",
                    network.open_ledger,
                    arguments.fabric_records,
                    sizes,
                    arguments.fabric_naive_sample,
                    arguments.writers,
                )
            finally:
                network.run("down", timeout=60)
        else:
            print("FABRIC_BIN_DIR is not set: measuring the embedded ledger only")
    report("ledger_gate", rows)
    for backend in sorted({r["backend"] for r in rows}):
        gate = {r["design"]: r["records_per_s"] for r in rows if r["operation"] == "gate" and r["backend"] == backend}
        log = {r["design"]: r["records_per_s"] for r in rows if r["operation"] == "log" and r["backend"] == backend}
        writes = {
            r["design"]: r["records_per_s"]
            for r in rows
            if r["operation"] == "consent write" and r["backend"] == backend
        }
        print(
            f"{backend}: gate batched 1000/call is {gate['batched, 1000/call'] / gate['naive: 2 calls/record']:.0f}x "
            f"naive; log batched 1000/tx is {log['batched, 1000/tx'] / log['naive: 1 tx/record']:.0f}x naive; "
            f"consent writes from {arguments.writers} patients at once: "
            f"{writes[f'{arguments.writers} patients at once, one process, grouped']:.0f}/s grouped, "
            f"{writes[f'{arguments.writers} clients at once, 1 tx per grant']:.0f}/s one transaction each; "
            f"{writes['naive: 1 client']:.0f}/s from one client"
        )


if __name__ == "__main__":
    main()
