"""The analysis benchmark's check of every result row against scikit-learn in the clear: it must be able to fail."""

from dataclasses import replace

import numpy as np
import pytest

from analytics.diagnostic_models import breast_cancer_model
from analytics.selectors import ResultRow
from benchmarks.analysis import _check_against_scikit_learn
from records.codes import BREAST_CANCER_DATASET
from records.demo import demo_patients


def _rows():
    model = breast_cancer_model()
    patients = demo_patients(dataset=BREAST_CANCER_DATASET, count=40)
    features = np.asarray([patient.features for patient in patients])  # row i's patient's, in the rows' order
    clipped, _ = model.clip(features)
    results = model.interpret(model.score_plain(clipped))
    rows = [ResultRow(f"r{i}", f"p{i}", result["score"], result["label"]) for i, result in enumerate(results)]
    return rows, features


def test_rows_that_agree_with_scikit_learn_pass_and_one_wrong_label_or_score_fails_the_run():
    rows, features = _rows()
    assert len({row.label for row in rows}) == 2  # both labels occur, so a wrong one can be made
    assert _check_against_scikit_learn(rows, features) < 1e-9

    wrong_label = rows[:]
    wrong_label[7] = replace(rows[7], label=next(row.label for row in rows if row.label != rows[7].label))
    with pytest.raises(SystemExit, match="1 of 40 labels differ"):
        _check_against_scikit_learn(wrong_label, features)

    wrong_score = rows[:]
    wrong_score[3] = replace(rows[3], score=rows[3].score + 0.01)
    with pytest.raises(SystemExit, match="probability differs"):
        _check_against_scikit_learn(wrong_score, features)
