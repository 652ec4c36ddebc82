"""Helpers shared by the benchmarks: timing and a results table."""

import json
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def timed(work: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = work()
    return time.perf_counter() - start, result


def report(name: str, rows: list[dict[str, Any]]) -> None:
    """Print a table and keep the figures as JSON beside the benchmarks (benchmarks/results/)."""
    columns = list(rows[0])
    widths = [max(len(str(c)), *(len(_cell(r[c])) for r in rows)) for c in columns]
    print(f"\n{name}  ({platform.python_implementation()} {platform.python_version()}, {platform.machine()})")
    print("  ".join(str(c).ljust(w) for c, w in zip(columns, widths, strict=True)))
    for row in rows:
        print("  ".join(_cell(row[c]).ljust(w) for c, w in zip(columns, widths, strict=True)))
    RESULTS_DIR.mkdir(exist_ok=True)
    (RESULTS_DIR / f"{name}.json").write_text(json.dumps(rows, indent=2) + "\n")


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.1f}" if value >= 10 else f"{value:.3f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)
