"""Trainers of the declared diagnostic models: each retrains a model from the scikit-learn dataset its
declaration names (bundled, no download), on the declared features in the declared order, with a fixed
split and seed. A declaration names its trainer (module:function); the trainer gets the declaration and
returns the model at the declaration's latest version. Adding a model over a known dataset needs no new
trainer: declare `trainer = "analytics.trainers:logistic_regression"` (or linear_regression).

    python -m analytics.trainers [--write] [NAME ...]

compares each named (default: every) declared model, retrained, with its kept weights, or with --write
writes the retrained weights. It needs no Django: it runs before a new model's weights exist, when the
platform itself refuses to start (`manage.py train_models` is the same check from a running platform).

Training's last digits depend on the machine's BLAS (OpenBLAS picks kernels by CPU), so weights are never
retrained at run time; the check allows TOLERANCE.
"""

import argparse
import sys
from collections.abc import Callable

import numpy as np

from analytics.diagnostic_models import LinearModel, load_model, trainers, write_model
from health_platform.model_catalogue import ModelDeclaration
from records.codes import dataset_columns, load_dataset

# Retraining on another machine may differ in the last digits (BLAS kernels); beyond this it is another model.
TOLERANCE = 1e-6
TEST_SIZE = 0.25
SPLIT_SEED = 0
RANGE_MARGIN = 0.10  # documented input range: the dataset's range widened by 10% each side


def dataset_split(declaration: ModelDeclaration) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x_train, x_test, y_train, y_test) of the declared features; stratified for a logistic model."""
    from sklearn.model_selection import train_test_split

    data = load_dataset(declaration.dataset)
    features = data.data[:, dataset_columns(declaration.dataset, declaration.features)]
    stratify = data.target if declaration.kind == "logistic" else None
    return tuple(
        train_test_split(features, data.target, test_size=TEST_SIZE, random_state=SPLIT_SEED, stratify=stratify)
    )


def logistic_regression(declaration: ModelDeclaration) -> LinearModel:
    """Standard scaling and logistic regression, the scaling folded into the weights (w' = w/σ,
    b' = b − Σ w·μ/σ); the score is the logit of the declaration's positive label."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, roc_auc_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    data = load_dataset(declaration.dataset)
    x_train, x_test, y_train, y_test = dataset_split(declaration)
    pipeline = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000, random_state=SPLIT_SEED))
    pipeline.fit(x_train, y_train)
    scaler, regression = pipeline[0], pipeline[1]
    positive = [str(name) for name in data.target_names].index(declaration.positive_label)
    sign = 1.0 if positive == 1 else -1.0  # sklearn's logit is of target 1 (breast cancer: benign)
    weights = sign * regression.coef_[0] / scaler.scale_
    bias = sign * (regression.intercept_[0] - float(np.sum(regression.coef_[0] * scaler.mean_ / scaler.scale_)))
    positive_test = (y_test == positive).astype(int)
    logits = x_test @ weights + bias
    return _model(
        declaration,
        x_all=data.data[:, dataset_columns(declaration.dataset, declaration.features)],
        weights=weights,
        bias=bias,
        metrics={
            "accuracy": float(accuracy_score(positive_test, (logits >= 0).astype(int))),
            "roc_auc": float(roc_auc_score(positive_test, logits)),
            "test_records": len(y_test),
            "train_records": len(y_train),
        },
    )


def linear_regression(declaration: ModelDeclaration) -> LinearModel:
    """Ordinary least squares on the raw features; the score is the predicted value."""
    from sklearn.linear_model import LinearRegression
    from sklearn.metrics import mean_absolute_error, r2_score

    data = load_dataset(declaration.dataset)
    x_train, x_test, y_train, y_test = dataset_split(declaration)
    regression = LinearRegression().fit(x_train, y_train)
    predictions = regression.predict(x_test)
    return _model(
        declaration,
        x_all=data.data[:, dataset_columns(declaration.dataset, declaration.features)],
        weights=regression.coef_,
        bias=regression.intercept_,
        metrics={
            "r2": float(r2_score(y_test, predictions)),
            "mae": float(mean_absolute_error(y_test, predictions)),
            "test_records": len(y_test),
            "train_records": len(y_train),
        },
    )


def _model(
    declaration: ModelDeclaration, *, x_all: np.ndarray, weights: np.ndarray, bias: float, metrics: dict[str, float]
) -> LinearModel:
    low, high = x_all.min(axis=0), x_all.max(axis=0)
    span = high - low
    return LinearModel(
        name=declaration.name,
        version=declaration.versions[-1],
        kind=declaration.kind,
        purpose=declaration.purpose,
        category=declaration.category,
        dataset=declaration.dataset,
        feature_codes=declaration.features,
        weights=tuple(float(w) for w in weights),
        bias=float(bias),
        feature_min=tuple(float(v) for v in low - RANGE_MARGIN * span),
        feature_max=tuple(float(v) for v in high + RANGE_MARGIN * span),
        metrics=metrics,
        description=declaration.description,
        positive_label=declaration.positive_label,
        negative_label=declaration.negative_label,
    )


def retrain(names: list[str], *, write: bool, say: Callable[[str], object] = print) -> list[str]:
    """Retrain `names` (every declared model when empty); write their weights, or compare them with the kept
    ones. Returns the models whose retrained weights differ from the kept ones beyond TOLERANCE."""
    known = trainers()
    unknown = sorted(set(names) - set(known))
    if unknown:
        raise LookupError(f"not declared: {', '.join(unknown)}")
    differing = []
    for name in names or list(known):
        trained = known[name]()
        if write:
            say(f"wrote {write_model(trained)} (sha256 {trained.sha256})")
            continue
        kept = load_model(trained.name, trained.version)
        gap = float(np.max(np.abs(np.subtract((*trained.weights, trained.bias), (*kept.weights, kept.bias)))))
        scale = float(np.max(np.abs((*kept.weights, kept.bias))))
        say(f"{name}: largest weight difference {gap:.3g} (relative {gap / scale:.3g})")
        if gap > TOLERANCE * scale:
            differing.append(name)
    return differing


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m analytics.trainers", description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="declared models (default: all)")
    parser.add_argument("--write", action="store_true", help="write the retrained weights into the catalogue")
    arguments = parser.parse_args(argv)
    try:
        differing = retrain(arguments.names, write=arguments.write)
    except (LookupError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if differing:
        print(f"retrained weights differ from the kept ones: {', '.join(differing)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
