"""The training benchmark end to end at a tiny size, so that it cannot rot: it runs the federated and the central
training, reports every figure, and its targets hold (exact aggregation: the weights meet central Newton)."""

import json
import os
import subprocess
import sys

import pytest

from benchmarks.common import REPOSITORY, RESULTS_DIR

pytestmark = [pytest.mark.he, pytest.mark.slow]


def test_the_training_benchmark_runs_at_a_tiny_size_and_meets_its_targets(tmp_path):
    name = "training_smoke"
    (RESULTS_DIR / f"{name}.json").unlink(missing_ok=True)
    environment = {**os.environ, "HOME": str(tmp_path), "TMPDIR": str(tmp_path)}
    environment.pop("DJANGO_SETTINGS_MODULE", None)
    sizes = ["--records", "80", "--linear-records", "60", "--held-out", "100", "--rounds", "3"]
    finished = subprocess.run(
        [sys.executable, "-m", "benchmarks.training", *sizes, "--report-name", name],
        cwd=REPOSITORY,
        env=environment,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert "targets: met" in finished.stdout
    rows = {row["what"].strip(): row for row in json.loads((RESULTS_DIR / f"{name}.json").read_text())}
    run = rows["federated run, breast-cancer (3 Newton rounds, no DP)"]
    assert run["records"] == 80
    assert 0 < rows["of which CKKS (keys, encrypt, add, decrypt)"]["seconds"] < run["seconds"]
    assert rows["of which gate + log (ledger)"]["seconds"] > 0
    assert float(rows["largest weight difference, breast-cancer federated vs central numpy"]["figure"]) < 1e-4
    assert float(rows["largest weight difference, diabetes federated vs central numpy"]["figure"]) < 1e-4
    assert {"held-out accuracy, federated", "held-out accuracy, scikit-learn"} <= set(rows)
    (RESULTS_DIR / f"{name}.json").unlink()
