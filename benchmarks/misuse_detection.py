"""Misuse detection on a synthetic hospital month: recall per injected scenario, precision, and the time to score
the month, against a naive per-clinician volume rule, in one run.

    python -m benchmarks.misuse_detection [--clinicians 200] [--patients 20000] [--days 30] [--history-days 28]
                                          [--seed 0]

The hospital (oversight.synthetic.generate_month): 200 clinicians on day, evening and night shifts, 20,000
patients in four organisations' panels, weekly and daily rhythms, emergencies, analyses; over 500,000 access
events in the 30-day month, after 28 days of history. Ten clinician-days of each misuse are injected in the
month: snooping (one patient read 10-20 times), bulk_pull (a cohort 8-15x the clinician's usual), night_emergency
(emergency declarations and reads at night by a clinician who has none), outside_patients (most of a day's
patients from another organisation). Generating it is timed apart.

Protocol: the deployment's, with one fit. The detector is fitted on the 28 days before the month (the history
holds no injected misuse, but all the natural rare events) and scores every day of the month with that fit. A
day scored must come after the history it is judged against (inside it, it would be part of its own baseline,
and its patients part of its organisation's usual ones); a deployment refits daily on the past 28 days and scores
yesterday, which one fit followed by a month of scoring measures at least as severely (its baselines are up to a
month old). An alert on a clinician-day with no injection is a false alarm; recall is per scenario.

Measured in the same run, on the same events:
- the detector (oversight.detector): features of all the events (history and month, one numpy pass), the fit,
  the scoring of the month; each timed;
- the same rule without the forest's gate (the reasons alone), to show what the gate changes;
- naive: per clinician, the median of their daily volume (record_access and record_read events) over the
  history; a day of the month whose volume exceeds 3x that median is flagged. Counted with a plain Python loop
  over the events, as a first version would.

Targets: recall >= 0.9 per scenario at precision >= 0.8 overall; features + fit + score of the month <= 60 s on
2 cores. Figures also go to benchmarks/results/misuse_detection.json.
"""

import argparse
import os
import statistics
import time
from collections import defaultdict
from datetime import date
from typing import Any

import numpy as np

from benchmarks.common import report, timed
from oversight.detector import Alert, EventColumns, MisuseDetector, Reason, clinician_days, reason_text
from oversight.synthetic import SCENARIOS, SyntheticMonth, evaluate, generate_month

NAIVE_FACTOR = 3.0


def naive_volume_alerts(events: EventColumns, start: date, end: date) -> list[Alert]:
    """The naive rule, one event at a time: volume per clinician-day, each clinician's median over the days before
    `start`, then the days from `start` to `end` above NAIVE_FACTOR times it (a clinician with no history is not
    judged)."""
    volume: dict[tuple[str, date], int] = defaultdict(int)
    for grantee, kind, moment in zip(
        events.grantee.tolist(), events.kind.tolist(), events.recorded_at.tolist(), strict=True
    ):
        if grantee.startswith("clinician:") and kind in ("record_access", "record_read"):
            volume[(grantee, moment.date())] += 1
    history: dict[str, list[int]] = defaultdict(list)
    for (grantee, day), count in volume.items():
        if day < start:
            history[grantee].append(count)
    medians = {grantee: statistics.median(counts) for grantee, counts in history.items()}
    alerts = []
    for (grantee, day), count in sorted(volume.items()):
        usual = medians.get(grantee)
        if start <= day < end and usual is not None and count > NAIVE_FACTOR * usual:
            reason = Reason("volume", count, usual, reason_text("volume", count, usual))
            alerts.append(Alert(grantee, day, 0.0, (reason,)))
    return alerts


def rows_of(method: str, alerts: list[Alert], month: SyntheticMonth, seconds: float) -> list[dict[str, Any]]:
    """One row per scenario, then the overall row (with the precision and the time)."""
    figures = evaluate(alerts, month.injected)
    rows = [
        _row(method, scenario, found["injected"], found["flagged"], found["with_reason"])
        for scenario, found in sorted(figures["scenarios"].items(), key=lambda item: SCENARIOS.index(item[0]))
    ]
    injected = sum(found["injected"] for found in figures["scenarios"].values())
    overall = _row(method, "all scenarios", injected, figures["true_positives"], "")
    overall.update(
        alerts=figures["alerts"],
        false_alarms=figures["false_positives"],
        precision=round(figures["precision"], 3),
        seconds=round(seconds, 2),
    )
    return [*rows, overall]


def _row(method: str, measure: str, injected: int, flagged: int, right_reason: int | str) -> dict[str, Any]:
    return {
        "method": method,
        "measure": measure,
        "injected": injected,
        "flagged": flagged,
        "right_reason": right_reason,
        "recall": round(flagged / injected, 3) if injected else "",
        "alerts": "",
        "false_alarms": "",
        "precision": "",
        "seconds": "",
    }


def _timing(method: str, measure: str, seconds: float) -> dict[str, Any]:
    return {**_row(method, measure, 0, 0, ""), "injected": "", "flagged": "", "seconds": round(seconds, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clinicians", type=int, default=200)
    parser.add_argument("--patients", type=int, default=20_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--history-days", type=int, default=28)
    parser.add_argument("--seed", type=int, default=0)
    arguments = parser.parse_args()

    generation, month = timed(
        lambda: generate_month(
            clinicians=arguments.clinicians,
            patients=arguments.patients,
            days=arguments.days,
            history_days=arguments.history_days,
            seed=arguments.seed,
        )
    )
    events = month.events
    in_month = int((events.recorded_at >= np.datetime64(month.start)).sum())

    started = time.perf_counter()
    featuring, every = timed(lambda: clinician_days(events, month.organisations))
    history, scored = every.during(month.history_start, month.start), every.during(month.start, month.end)
    fitting, detector = timed(lambda: MisuseDetector().fit(history))
    scoring, alerts = timed(lambda: detector.score(scored))
    detecting = time.perf_counter() - started
    ungating, ungated = timed(lambda: detector.score(scored, forest_gate=False))
    naive_seconds, naive = timed(lambda: naive_volume_alerts(events, month.start, month.end))

    rows = [
        _timing(
            "synthetic month",
            f"generated: {len(events):,} events ({in_month:,} in the month), seed {arguments.seed}",
            generation,
        ),
        *rows_of(f"detector {detector.version}", alerts, month, detecting),
        _timing("  features", f"{len(events):,} events -> {len(every):,} clinician-days", featuring),
        _timing("  fit", f"history: {len(history):,} clinician-days, {arguments.history_days} days", fitting),
        _timing("  score", f"month: {len(scored):,} clinician-days, {arguments.days} days", scoring),
        *rows_of("reasons alone (no forest gate)", ungated, month, featuring + fitting + ungating),
        *rows_of(f"naive: volume > {NAIVE_FACTOR:g}x median", naive, month, naive_seconds),
    ]
    print(
        f"load average (1, 5, 15 min): {', '.join(f'{load:.2f}' for load in os.getloadavg())}; {os.cpu_count()} cores"
    )
    report("misuse_detection", rows)
    overall = evaluate(alerts, month.injected)
    met = (
        all(found["recall"] >= 0.9 for found in overall["scenarios"].values())
        and overall["precision"] >= 0.8
        and detecting <= 60
    )
    print(f"\ntargets (recall >= 0.9 per scenario, precision >= 0.8, <= 60 s): {'met' if met else 'NOT met'}")


if __name__ == "__main__":
    main()
