"""Gate and log throughput on the embedded ledger, against the naive per-record design.

    python -m benchmarks.ledger_gate [--records 10000] [--naive-sample 500]

Batched (the design): ONE CheckAccessBatch evaluate per batch, ONE AppendAccessEvents transaction
per batch. Naive: per record, a ReadAnchor and a ListConsentsForPatient evaluate (the gate done by
the client), and one AppendAccessEvents transaction per record; run on a sample and reported per
record, in the same run, on the same ledger.
"""

import argparse
import json
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

from benchmarks.common import report, timed
from ledger.embedded import EmbeddedLedger

PURPOSE = "diagnostic-model:breast-cancer"
GRANTEE = "clinician:bench"


def _pseudonym(patient: int) -> str:
    return format(patient, "064x")


def _digest(record: int) -> str:
    return format(record + 7, "064x")


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def populate(chain: EmbeddedLedger, records: int) -> None:
    """One record per patient; every other patient consents."""
    for start in range(0, records, 5000):
        chain.submit(
            "anchors",
            "AnchorRecords",
            json.dumps(
                [
                    {"record_id": f"rec-{i}", "patient_pseudonym": _pseudonym(i), "sha256": _digest(i), "version": 1}
                    for i in range(start, min(records, start + 5000))
                ]
            ),
        )
    now = datetime.now(UTC)
    for patient in range(0, records, 2):
        chain.submit(
            "consent",
            "GrantConsent",
            json.dumps(
                {
                    "consent_id": f"c-{patient}",
                    "patient_pseudonym": _pseudonym(patient),
                    "grantee": GRANTEE,
                    "purposes": [PURPOSE],
                    "categories": ["imaging"],
                    "valid_from": _stamp(now - timedelta(days=1)),
                    "valid_until": _stamp(now + timedelta(days=30)),
                }
            ),
        )


def _items(indices: range) -> list[dict[str, str]]:
    return [{"record_id": f"rec-{i}", "category": "imaging", "sha256": _digest(i)} for i in indices]


def _events(indices: range, run: str) -> dict[str, object]:
    """One access-log batch (the contract's AppendAccessEvents argument) for records `indices`."""
    events = [
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
    return {"batch_id": f"{run}-{indices.start}", "events": events}


def gate_batched(chain: EmbeddedLedger, indices: range) -> int:
    request = {"grantee": GRANTEE, "purpose": PURPOSE, "at": _stamp(datetime.now(UTC)), "items": _items(indices)}
    results = chain.evaluate("consent", "CheckAccessBatch", json.dumps(request)).json()["results"]
    return sum(r["decision"] == "admit" for r in results)


def gate_naive(chain: EmbeddedLedger, indices: range) -> int:
    admitted = 0
    for i in indices:
        chain.evaluate("anchors", "ReadAnchor", f"rec-{i}")
        consents = chain.evaluate("consent", "ListConsentsForPatient", _pseudonym(i)).json()
        admitted += any(c["grantee"] == GRANTEE and c["status"] == "active" for c in consents)
    return admitted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--batch-sizes", default="100,1000,5000")
    parser.add_argument("--naive-sample", type=int, default=500)
    arguments = parser.parse_args()

    with tempfile.TemporaryDirectory() as directory:
        chain = EmbeddedLedger(Path(directory) / "bench.sqlite3")
        populate(chain, arguments.records)
        rows = []
        every = range(arguments.records)
        seconds, admitted = timed(lambda: gate_batched(chain, every))
        assert admitted == arguments.records // 2
        rows.append(
            {
                "operation": "gate",
                "design": f"CheckAccessBatch x1 ({arguments.records})",
                "records": arguments.records,
                "seconds": seconds,
                "records_per_s": arguments.records / seconds,
            }
        )
        for size in [int(s) for s in arguments.batch_sizes.split(",")]:
            batches = [range(s, min(s + size, arguments.records)) for s in range(0, arguments.records, size)]
            seconds, _ = timed(lambda batches=batches: [gate_batched(chain, b) for b in batches])
            rows.append(
                {
                    "operation": "gate",
                    "design": f"batched, {size}/call",
                    "records": arguments.records,
                    "seconds": seconds,
                    "records_per_s": arguments.records / seconds,
                }
            )
            seconds, _ = timed(
                lambda batches=batches, size=size: [
                    chain.submit("accesslog", "AppendAccessEvents", json.dumps(_events(b, f"run{size}")))
                    for b in batches
                ]
            )
            rows.append(
                {
                    "operation": "log",
                    "design": f"batched, {size}/tx",
                    "records": arguments.records,
                    "seconds": seconds,
                    "records_per_s": arguments.records / seconds,
                }
            )
        sample = range(arguments.naive_sample)
        seconds, _ = timed(lambda: gate_naive(chain, sample))
        rows.append(
            {
                "operation": "gate",
                "design": "naive: 2 calls/record",
                "records": len(sample),
                "seconds": seconds,
                "records_per_s": len(sample) / seconds,
            }
        )
        seconds, _ = timed(
            lambda: [
                chain.submit("accesslog", "AppendAccessEvents", json.dumps(_events(range(i, i + 1), "naive")))
                for i in sample
            ]
        )
        rows.append(
            {
                "operation": "log",
                "design": "naive: 1 tx/record",
                "records": len(sample),
                "seconds": seconds,
                "records_per_s": len(sample) / seconds,
            }
        )
        assert chain.verify().ok
    report("ledger_gate_embedded", rows)
    gate = {r["design"]: r["records_per_s"] for r in rows if r["operation"] == "gate"}
    log = {r["design"]: r["records_per_s"] for r in rows if r["operation"] == "log"}
    print(
        f"\ngate: batched 1000/call is {gate['batched, 1000/call'] / gate['naive: 2 calls/record']:.0f}x naive; "
        f"log: batched 1000/tx is {log['batched, 1000/tx'] / log['naive: 1 tx/record']:.0f}x naive"
    )


if __name__ == "__main__":
    main()
