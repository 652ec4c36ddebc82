"""Diagnostic models, trained from scikit-learn's bundled datasets (no downloads), as linear scorers.

Every model here is linear in its features so that it can run under CKKS as Σ wᵢ·xᵢ + b:
- breast-cancer: logistic regression on the 30 Wisconsin diagnostic features, standard scaling folded
  into the weights (w' = w/σ, b' = b − Σ w·μ/σ). The encrypted score is the LOGIT of malignancy;
  the sigmoid and the 0.5 threshold are applied after decryption, so labels are exact.
- diabetes-progression: linear regression on the 10 raw diabetes features; the score is the predicted
  disease progression one year after baseline.

The platform runs the weights kept in analytics/weights/ (one JSON document per model version): their
SHA-256 is what the ledger anchors and every result cites. Training (fixed split and seed) is how
those documents were made, but its last digits depend on the machine's BLAS (OpenBLAS picks kernels by
CPU), so weights are never retrained at run time: `manage.py train_models --check` retrains and shows
that the result agrees with the kept weights within tolerance; `--write` replaces them (a new version).
Free of Django.
"""

import hashlib
import json
from dataclasses import asdict, dataclass, field
from functools import cache, cached_property
from pathlib import Path
from typing import Any

import numpy as np

TEST_SIZE = 0.25
SPLIT_SEED = 0
RANGE_MARGIN = 0.10  # documented input range: the dataset's range widened by 10% each side
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


@dataclass(frozen=True)
class LinearModel:
    name: str
    version: str
    kind: str  # "logistic" (score = logit) or "linear" (score = value)
    purpose: str  # the consent purpose this model's use requires
    category: str  # the record category it reads
    dataset: str  # records.codes dataset name
    feature_codes: tuple[str, ...]
    weights: tuple[float, ...]
    bias: float
    feature_min: tuple[float, ...]
    feature_max: tuple[float, ...]
    metrics: dict[str, float] = field(hash=False)
    description: str = ""
    positive_label: str = ""
    negative_label: str = ""

    @property
    def model_id(self) -> str:
        return f"{self.name}@{self.version}"

    def weights_document(self) -> dict[str, Any]:
        """What the hash covers: everything that determines a score."""
        return {
            "name": self.name,
            "version": self.version,
            "kind": self.kind,
            "feature_codes": list(self.feature_codes),
            "weights": [repr(w) for w in self.weights],
            "bias": repr(self.bias),
            "feature_min": [repr(v) for v in self.feature_min],
            "feature_max": [repr(v) for v in self.feature_max],
        }

    @cached_property
    def sha256(self) -> str:
        canonical = json.dumps(self.weights_document(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    def to_document(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_document(cls, document: dict[str, Any]) -> "LinearModel":
        tuples = ("feature_codes", "weights", "feature_min", "feature_max")
        fields: dict[str, Any] = {k: tuple(v) if k in tuples else v for k, v in document.items()}
        return cls(**fields)

    def clip(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Features clipped to the documented range, and which records had a value outside it.

        CKKS packs many records in one ciphertext: one out-of-range value would overflow the scale and
        corrupt every record packed with it, so nothing outside the range is ever encrypted.
        """
        low, high = np.asarray(self.feature_min), np.asarray(self.feature_max)
        outside = np.asarray(((features < low) | (features > high)).any(axis=1), dtype=bool)
        return np.clip(features, low, high), outside

    def score_plain(self, features: np.ndarray) -> np.ndarray:
        return features @ np.asarray(self.weights) + self.bias

    def interpret(self, scores: np.ndarray) -> list[dict[str, Any]]:
        """Decrypted scores as results: probability and label for logistic models, value for linear ones."""
        if self.kind == "logistic":
            probability = 1.0 / (1.0 + np.exp(-np.clip(scores, -500, 500)))
            return [
                {"score": float(p), "label": self.positive_label if z >= 0 else self.negative_label}
                for z, p in zip(scores, probability, strict=True)
            ]
        return [{"score": float(v), "label": ""} for v in scores]


def _ranges(data: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    low, high = data.min(axis=0), data.max(axis=0)
    span = high - low
    return tuple(float(v) for v in low - RANGE_MARGIN * span), tuple(float(v) for v in high + RANGE_MARGIN * span)


def weights_path(name: str, version: str) -> Path:
    return WEIGHTS_DIR / f"{name}@{version}.json"


def load_model(name: str, version: str) -> LinearModel:
    """A model as kept in analytics/weights/: the weights the platform runs and anchors."""
    return LinearModel.from_document(json.loads(weights_path(name, version).read_text()))


def write_model(model: LinearModel) -> Path:
    path = weights_path(model.name, model.version)
    path.write_text(json.dumps(model.to_document(), indent=1) + "\n")
    return path


@cache
def breast_cancer_model() -> LinearModel:
    return load_model("breast-cancer", "1")


@cache
def diabetes_model() -> LinearModel:
    return load_model("diabetes-progression", "1")


def train_breast_cancer_model() -> LinearModel:
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, roc_auc_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from records.codes import BREAST_CANCER_DATASET, feature_codes_for_dataset

    data = load_breast_cancer()
    x_train, x_test, y_train, y_test = breast_cancer_split()
    pipeline = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000, random_state=SPLIT_SEED))
    pipeline.fit(x_train, y_train)
    scaler, regression = pipeline[0], pipeline[1]
    # sklearn's target 1 is benign; the platform scores malignancy, so the signs flip.
    weights = -regression.coef_[0] / scaler.scale_
    bias = -(regression.intercept_[0] - float(np.sum(regression.coef_[0] * scaler.mean_ / scaler.scale_)))
    low, high = _ranges(data.data)
    malignant_test = (y_test == 0).astype(int)
    logits = x_test @ weights + bias
    return LinearModel(
        name="breast-cancer",
        version="1",
        kind="logistic",
        purpose="diagnostic-model:breast-cancer",
        category="imaging",
        dataset=BREAST_CANCER_DATASET,
        feature_codes=tuple(f.code for f in feature_codes_for_dataset(BREAST_CANCER_DATASET)),
        weights=tuple(float(w) for w in weights),
        bias=float(bias),
        feature_min=low,
        feature_max=high,
        metrics={
            "accuracy": float(accuracy_score(malignant_test, (logits >= 0).astype(int))),
            "roc_auc": float(roc_auc_score(malignant_test, logits)),
            "test_records": len(y_test),
            "train_records": len(y_train),
        },
        description="Logistic regression on the 30 Wisconsin diagnostic breast cancer features "
        "(fine-needle aspirate image measurements). Score: probability of malignancy.",
        positive_label="malignant",
        negative_label="benign",
    )


def breast_cancer_split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split

    data = load_breast_cancer()
    return tuple(
        train_test_split(data.data, data.target, test_size=TEST_SIZE, random_state=SPLIT_SEED, stratify=data.target)
    )  # type: ignore[return-value]


def train_diabetes_model() -> LinearModel:
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import LinearRegression
    from sklearn.metrics import mean_absolute_error, r2_score
    from sklearn.model_selection import train_test_split

    from records.codes import DIABETES_DATASET, feature_codes_for_dataset

    data = load_diabetes(scaled=False)
    x_train, x_test, y_train, y_test = train_test_split(
        data.data, data.target, test_size=TEST_SIZE, random_state=SPLIT_SEED
    )
    regression = LinearRegression().fit(x_train, y_train)
    predictions = regression.predict(x_test)
    low, high = _ranges(data.data)
    return LinearModel(
        name="diabetes-progression",
        version="1",
        kind="linear",
        purpose="diagnostic-model:diabetes-progression",
        category="laboratory",
        dataset=DIABETES_DATASET,
        feature_codes=tuple(f.code for f in feature_codes_for_dataset(DIABETES_DATASET)),
        weights=tuple(float(w) for w in regression.coef_),
        bias=float(regression.intercept_),
        feature_min=low,
        feature_max=high,
        metrics={
            "r2": float(r2_score(y_test, predictions)),
            "mae": float(mean_absolute_error(y_test, predictions)),
            "test_records": len(y_test),
            "train_records": len(y_train),
        },
        description="Linear regression on age, sex, BMI, blood pressure and six serum measurements. "
        "Score: quantitative disease progression one year after baseline.",
    )


def all_models() -> list[LinearModel]:
    return [breast_cancer_model(), diabetes_model()]


def trainers() -> dict[str, Any]:
    return {"breast-cancer": train_breast_cancer_model, "diabetes-progression": train_diabetes_model}
