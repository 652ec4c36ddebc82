"""Diagnostic models as linear scorers, built from the catalogue's declarations and kept weights.

Every model here is linear in its features so that it can run under CKKS as Σ wᵢ·xᵢ + b:
- kind "logistic": the encrypted score is the LOGIT; the sigmoid and the 0.5 threshold are applied after
  decryption, so labels are exact (e.g. breast-cancer: standard scaling folded into the weights,
  w' = w/σ, b' = b − Σ w·μ/σ);
- kind "linear": the score is the value (e.g. diabetes-progression: disease progression after a year).

The platform runs the weights kept in the catalogue folder (health_platform.model_catalogue: a
declaration per model, a weights document per version): their SHA-256 is what the ledger anchors and every
result cites. Training (each declaration names its trainer, analytics.trainers) is how those documents were
made, but its last digits depend on the machine's BLAS (OpenBLAS picks kernels by CPU), so weights are never
retrained at run time: `manage.py train_models --check` retrains and shows that the result agrees with the
kept weights within tolerance; `--write` replaces them (a new version). Free of Django.
"""

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import cached_property
from importlib import import_module
from pathlib import Path
from typing import Any

import numpy as np

from health_platform.model_catalogue import (
    HASHED_FIELDS,
    ModelDeclaration,
    ModelVersion,
    catalogue,
    catalogue_folder,
    declared,
    hashed_document,
    weights_sha256,
)


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
        """What the hash covers (model_catalogue.hashed_document)."""
        return hashed_document(**{name: getattr(self, name) for name in HASHED_FIELDS})

    @cached_property
    def sha256(self) -> str:
        return weights_sha256(self.weights_document())

    def to_document(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_document(cls, document: dict[str, Any]) -> "LinearModel":
        tuples = ("feature_codes", "weights", "feature_min", "feature_max")
        fields: dict[str, Any] = {k: tuple(v) if k in tuples else v for k, v in document.items()}
        return cls(**fields)

    @classmethod
    def from_catalogue(cls, kept: ModelVersion) -> "LinearModel":
        declaration, weights = kept.declaration, kept.weights
        return cls(
            name=declaration.name,
            version=kept.version,
            kind=declaration.kind,
            purpose=declaration.purpose,
            category=declaration.category,
            dataset=declaration.dataset,
            feature_codes=tuple(weights["feature_codes"]),
            weights=tuple(float(w) for w in weights["weights"]),
            bias=float(weights["bias"]),
            feature_min=tuple(float(v) for v in weights["feature_min"]),
            feature_max=tuple(float(v) for v in weights["feature_max"]),
            metrics=dict(weights["metrics"]),
            description=declaration.description,
            positive_label=declaration.positive_label,
            negative_label=declaration.negative_label,
        )

    def weights_file_document(self) -> dict[str, Any]:
        """What a trainer writes: the catalogue's weights document for this version."""
        return {
            "name": self.name,
            "version": self.version,
            "feature_codes": list(self.feature_codes),
            "weights": list(self.weights),
            "bias": self.bias,
            "feature_min": list(self.feature_min),
            "feature_max": list(self.feature_max),
            "metrics": self.metrics,
        }

    def clip(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Features clipped to the documented range, and which records had a value outside it.

        CKKS packs many records in one ciphertext: one out-of-range value would overflow the scale and
        corrupt every record packed with it, so nothing outside the range is ever encrypted.
        """
        low, high = np.asarray(self.feature_min), np.asarray(self.feature_max)
        outside = np.asarray(((features < low) | (features > high)).any(axis=1), dtype=bool)
        return np.clip(features, low, high), outside

    def score_bound(self) -> float:
        """The largest magnitude a score or one of its terms wᵢ·xᵢ can take on clipped features (the range the
        homomorphic parameters must hold: analytics.he.scoring_parameters)."""
        weights = np.asarray(self.weights)
        low, high = weights * np.asarray(self.feature_min), weights * np.asarray(self.feature_max)
        scores = (np.minimum(low, high).sum() + self.bias, np.maximum(low, high).sum() + self.bias)
        return float(max(np.abs(scores).max(), np.maximum(np.abs(low), np.abs(high)).max(initial=0.0)))

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


def _declaration(name: str) -> ModelDeclaration:
    found = declared(name)
    if found is None:
        raise KeyError(f"no diagnostic model {name!r} is declared in {catalogue_folder()}")
    return found


def load_model(name: str, version: str | None = None) -> LinearModel:
    """A declared model as kept in the catalogue (its latest version by default)."""
    declaration = _declaration(name)
    return LinearModel.from_catalogue(declaration.version(version) if version else declaration.latest)


def all_models() -> list[LinearModel]:
    """Every declared version of every declared model."""
    return [
        LinearModel.from_catalogue(declaration.version(version))
        for declaration in catalogue()
        for version in declaration.versions
    ]


def trainers() -> dict[str, Callable[[], LinearModel]]:
    """Each declared model's trainer (module:function, imported when asked for)."""

    def trainer(declaration: ModelDeclaration) -> Callable[[], LinearModel]:
        module, _, function = declaration.trainer.partition(":")
        train: Callable[[ModelDeclaration], LinearModel] = getattr(import_module(module), function)
        return lambda: train(declaration)

    return {declaration.name: trainer(declaration) for declaration in catalogue()}


def write_model(model: LinearModel) -> Path:
    """Write a trained version's weights document into the catalogue (its declaration must list the version)."""
    path = _declaration(model.name).weights_path(model.version)
    path.write_text(json.dumps(model.weights_file_document(), indent=1) + "\n")
    return path


def breast_cancer_model() -> LinearModel:
    """The demo's breast-cancer model (a convenience for tests and benchmarks)."""
    return load_model("breast-cancer")


def diabetes_model() -> LinearModel:
    """The demo's diabetes-progression model."""
    return load_model("diabetes-progression")
