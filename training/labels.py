"""Where a training label comes from. The catalogue's records carry no label: records.codes keeps the outcomes
(diagnosis, disease progression) out of every record on purpose, so no record has a label feature to read.

So, for the demo datasets, the label of a record is DERIVED the way analytics.trainers labels its bundled dataset:
the scikit-learn dataset's target for the row whose features the record holds (looked up by the features, which the
demo records are made of, in the declared order), as 1 for the declaration's positive label and 0 otherwise for a
logistic model, the target's value for a linear one. A record whose features match no row (or two rows with
different targets) has no label and is left out of training (skipped: "no_label"). A hospital's label source (an
outcome the custodian codes, a registry) replaces `demo_label_source`: a function from a record's features to its
label or None.
"""

from collections.abc import Callable
from functools import cache

import numpy as np

from records.codes import dataset_columns, load_dataset

LabelSource = Callable[[tuple[float, ...]], float | None]
_DECIMALS = 9  # features as kept at ingest round-trip exactly; rounding only absorbs a last-digit difference


def _key(features: tuple[float, ...] | np.ndarray) -> tuple[float, ...]:
    return tuple(round(float(value), _DECIMALS) for value in features)


@cache
def _labels(dataset: str, feature_codes: tuple[str, ...], kind: str, positive_label: str) -> dict:
    data = load_dataset(dataset)
    columns = data.data[:, dataset_columns(dataset, feature_codes)]
    if kind == "logistic":
        positive = [str(name) for name in data.target_names].index(positive_label)
        targets = (np.asarray(data.target) == positive).astype(float)
    else:
        targets = np.asarray(data.target, dtype=float)
    return _by_features(columns, targets)


def _by_features(rows: np.ndarray, targets: np.ndarray) -> dict[tuple[float, ...], float | None]:
    labels: dict[tuple[float, ...], float | None] = {}
    for row, target in zip(rows, targets, strict=True):
        key = _key(row)
        labels[key] = float(target) if labels.get(key, target) == target else None  # ambiguous rows: no label
    return labels


def label_source_of(*, rows: np.ndarray, targets: np.ndarray) -> LabelSource:
    """A label source that knows the target of each of `rows` (features in the declared order), looked up by the
    features as demo_label_source looks them up (rows with equal features and different targets: no label)."""
    labels = _by_features(np.asarray(rows, dtype=float), np.asarray(targets, dtype=float))
    return lambda features: labels.get(_key(features))


def demo_label_source(*, dataset: str, feature_codes: tuple[str, ...], kind: str, positive_label: str) -> LabelSource:
    """The label of a demo record from its features (see the module's docstring), or None."""
    labels = _labels(dataset, feature_codes, kind, positive_label)
    return lambda features: labels.get(_key(features))
