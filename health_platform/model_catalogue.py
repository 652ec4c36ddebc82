"""The diagnostic models the platform offers, declared once, as data. Free of Django.

A model is declared by one TOML file in the catalogue folder (the DIAGNOSTIC_MODELS_DIR environment
variable, or `.env`; default `diagnostic_models/` at the top of the repository), `<name>.toml`:

    name = "breast-cancer"                         # the model family; lower case, digits and -
    kind = "logistic"                               # logistic (score = logit) or linear (score = value)
    purpose = "diagnostic-model:breast-cancer"      # the consent purpose its use requires
    category = "imaging"                            # the record category it reads
    dataset = "breast_cancer"                       # the demo dataset its demo patients come from
    trainer = "analytics.trainers:breast_cancer"    # module:function that retrains it
    versions = ["1"]                                # kept weights, oldest first; the last one serves new requests
    features = ["bc-mean-radius", ...]              # the feature codes, in the order of the weights
    description = "..."
    positive_label = "malignant"                    # logistic models: what a score >= 0.5 means
    negative_label = "benign"

and its weights, one JSON document per version, `<name>@<version>.json` (what the trainer wrote: the
weights, bias, the documented feature range and the validation metrics). The SHA-256 of a version's
weights document is what the ledger anchors and every access event cites.

Everything that names models derives from here: the registry (analytics.registry), the purposes a patient
can consent to (consent: running each model, and training each model family), the labels auditors read for a
model hash (audit) and the demo's consents.
`catalogue_check` is run at start-up: an unknown purpose, category or kind, a feature list that differs
from the weights', a missing weights file or a malformed declaration stops the platform with a message
naming the file and the field.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from chaincode.vocabulary import (
    CATEGORIES,
    MODEL_PURPOSE_PREFIX,
    PURPOSES,
    is_model_purpose,
    model_family_of,
    training_purpose,
)

DEFAULT_FOLDER = Path(__file__).resolve().parent.parent / "diagnostic_models"
KINDS = ("logistic", "linear")
_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,47}")
_VERSION = re.compile(r"[0-9A-Za-z][0-9A-Za-z._-]{0,31}")
_TRAINER = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*")
_REQUIRED = ("name", "kind", "purpose", "category", "dataset", "trainer", "versions", "features")
_OPTIONAL = ("description", "positive_label", "negative_label", "purpose_label")
_WEIGHTS_FIELDS = ("name", "version", "feature_codes", "weights", "bias", "feature_min", "feature_max", "metrics")


class CatalogueError(ValueError):
    """A declaration or weights document that the platform cannot run; the message names file and field."""


@dataclass(frozen=True)
class ModelVersion:
    """One version of a declared model: its kept weights document and that document's hash."""

    declaration: ModelDeclaration
    version: str
    weights: dict[str, Any]

    @property
    def name(self) -> str:
        return self.declaration.name

    @property
    def label(self) -> str:
        return f"{self.name}@{self.version}"

    def hashed_document(self) -> dict[str, Any]:
        fields: dict[str, Any] = {
            **self.weights,
            "name": self.name,
            "version": self.version,
            "kind": self.declaration.kind,
        }
        return hashed_document(**{name: fields[name] for name in HASHED_FIELDS})

    @property
    def sha256(self) -> str:
        return weights_sha256(self.hashed_document())


@dataclass(frozen=True)
class ModelDeclaration:
    name: str
    kind: str
    purpose: str
    category: str
    dataset: str
    trainer: str
    versions: tuple[str, ...]
    features: tuple[str, ...]
    folder: Path
    description: str = ""
    positive_label: str = ""
    negative_label: str = ""
    purpose_label: str = ""

    @property
    def consent_label(self) -> str:
        """How a patient reads the purpose (GA4GH DUO:0000007, disease-specific research, narrowed to the model)."""
        return self.purpose_label or f"Running the {self.name} diagnostic model (DUO:0000007)"

    @property
    def family(self) -> str:
        """The model family its purpose names ("breast-cancer" for "diagnostic-model:breast-cancer")."""
        return model_family_of(self.purpose)

    @property
    def training_purpose(self) -> str:
        """The purpose a record needs to help train this family's model: "training:<family>" (issue 18)."""
        return training_purpose(self.family)

    @property
    def training_label(self) -> str:
        """How a patient reads the training purpose: GA4GH DUO:0000007 narrowed to training this model family, of
        HL7 v3 HRESCH (research whose results serve other patients)."""
        return f"Training of the {self.family} model (GA4GH DUO:0000007, HL7 v3 HRESCH)"

    def weights_path(self, version: str) -> Path:
        return self.folder / f"{self.name}@{version}.json"

    def version(self, version: str) -> ModelVersion:
        if version not in self.versions:
            raise CatalogueError(f"{self.name}: no declared version {version!r}")
        return _version(self, version)

    @property
    def latest(self) -> ModelVersion:
        return self.version(self.versions[-1])


def catalogue_folder() -> Path:
    """The catalogue folder every process reads: DIAGNOSTIC_MODELS_DIR, else the repository's own."""
    return Path(os.environ.get("DIAGNOSTIC_MODELS_DIR") or DEFAULT_FOLDER)


# The arguments of hashed_document: the declaration's name, version and kind, and the weights' fields.
HASHED_FIELDS = ("name", "version", "kind", "feature_codes", "weights", "bias", "feature_min", "feature_max")


def hashed_document(
    *,
    name: str,
    version: str,
    kind: str,
    feature_codes: Iterable[str],
    weights: Iterable[float],
    bias: float,
    feature_min: Iterable[float],
    feature_max: Iterable[float],
) -> dict[str, Any]:
    """What a model's hash covers: everything that determines a score, each number as repr(float) (the
    shortest string that reads back as the same double)."""
    return {
        "name": name,
        "version": version,
        "kind": kind,
        "feature_codes": list(feature_codes),
        "weights": [repr(float(w)) for w in weights],
        "bias": repr(float(bias)),
        "feature_min": [repr(float(v)) for v in feature_min],
        "feature_max": [repr(float(v)) for v in feature_max],
    }


def weights_sha256(document: dict[str, Any]) -> str:
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def catalogue(folder: Path | None = None) -> tuple[ModelDeclaration, ...]:
    """The declarations in `folder` (default: catalogue_folder()). Raises CatalogueError naming the first
    problem found."""
    return _catalogue(folder or catalogue_folder())


@cache
def _catalogue(folder: Path) -> tuple[ModelDeclaration, ...]:
    if not folder.is_dir():
        raise CatalogueError(f"the diagnostic model folder {folder} does not exist")
    declarations = tuple(_declaration(path) for path in sorted(folder.glob("*.toml")))
    seen: dict[str, str] = {}
    for declaration in declarations:
        for key in (declaration.name, declaration.purpose):
            if key in seen:
                raise CatalogueError(f"{declaration.name}.toml: {key!r} is declared by {seen[key]} too")
            seen[key] = f"{declaration.name}.toml"
    return declarations


def catalogue_check(folder: Path | None = None) -> tuple[ModelDeclaration, ...]:
    """Load every declaration and every version's weights: what start-up runs, so that a mistake in a
    declaration stops the platform instead of the first analysis that uses it."""
    declarations = catalogue(folder)
    for declaration in declarations:
        for version in declaration.versions:
            declaration.version(version)
    return declarations


def declared(name: str, folder: Path | None = None) -> ModelDeclaration | None:
    return next((d for d in catalogue(folder) if d.name == name), None)


def model_purposes(folder: Path | None = None) -> dict[str, str]:
    """The purpose of each declared model, with the words a patient reads for it."""
    return {d.purpose: d.consent_label for d in catalogue(folder)}


def training_purposes(folder: Path | None = None) -> dict[str, str]:
    """The training purpose of each declared model family, with the words a patient reads for it."""
    return {d.training_purpose: d.training_label for d in catalogue(folder)}


def consent_purposes(folder: Path | None = None) -> dict[str, str]:
    """Every purpose a patient can consent to, with its words: the ledger's own, then one per declared model, then
    the training of each declared model family."""
    return {**PURPOSES, **model_purposes(folder), **training_purposes(folder)}


def model_labels(folder: Path | None = None) -> dict[str, str]:
    """sha256 -> "name@version" of every declared version (what access events cite)."""
    return {v.sha256: v.label for d in catalogue(folder) for v in (d.version(x) for x in d.versions)}


def _declaration(path: Path) -> ModelDeclaration:
    where = path.name
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise CatalogueError(f"{where}: not a readable TOML document ({type(error).__name__})") from None
    unknown = set(document) - set(_REQUIRED) - set(_OPTIONAL)
    if unknown:
        raise CatalogueError(f"{where}: unknown fields {', '.join(sorted(unknown))}")
    missing = [name for name in _REQUIRED if name not in document]
    if missing:
        raise CatalogueError(f"{where}: missing fields {', '.join(missing)}")
    texts = {name: document.get(name, "") for name in (*_REQUIRED, *_OPTIONAL) if name not in ("versions", "features")}
    for name, value in texts.items():
        if not isinstance(value, str):
            raise CatalogueError(f"{where}: {name} must be a string")
    name = texts["name"]
    if not _NAME.fullmatch(name) or path.stem != name:
        raise CatalogueError(f"{where}: name must be lower case letters, digits and -, and the file <name>.toml")
    if texts["kind"] not in KINDS:
        raise CatalogueError(f"{where}: kind must be one of {', '.join(KINDS)}")
    if not is_model_purpose(texts["purpose"]):
        raise CatalogueError(f"{where}: purpose must be '{MODEL_PURPOSE_PREFIX}<family>' (lower case, digits and -)")
    if texts["category"] not in CATEGORIES:
        raise CatalogueError(f"{where}: category must be one of {', '.join(sorted(CATEGORIES))}")
    if not _TRAINER.fullmatch(texts["trainer"]):
        raise CatalogueError(f"{where}: trainer must be 'module:function'")
    versions = _strings(document["versions"], where, "versions", _VERSION)
    features = _strings(document["features"], where, "features", None)
    if len(set(versions)) != len(versions) or len(set(features)) != len(features):
        raise CatalogueError(f"{where}: versions and features must not repeat an entry")
    return ModelDeclaration(
        **texts,
        versions=tuple(versions),
        features=tuple(features),
        folder=path.parent,
    )


def _strings(value: Any, where: str, field: str, pattern: re.Pattern[str] | None) -> list[str]:
    if not isinstance(value, list) or not value or not all(isinstance(item, str) and item for item in value):
        raise CatalogueError(f"{where}: {field} must be a non-empty list of strings")
    if pattern is not None and not all(pattern.fullmatch(item) for item in value):
        raise CatalogueError(f"{where}: {field} holds an entry of the wrong form")
    return value


@cache
def _version(declaration: ModelDeclaration, version: str) -> ModelVersion:
    path = declaration.weights_path(version)
    where = path.name
    try:
        weights = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CatalogueError(f"{declaration.name}.toml: version {version} has no weights file {where}") from None
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise CatalogueError(f"{where}: not a readable JSON document ({type(error).__name__})") from None
    if not isinstance(weights, dict) or set(weights) != set(_WEIGHTS_FIELDS):
        raise CatalogueError(f"{where}: a weights document has exactly the fields {', '.join(_WEIGHTS_FIELDS)}")
    if weights["name"] != declaration.name or weights["version"] != version:
        raise CatalogueError(f"{where}: name and version differ from the file's")
    if weights["feature_codes"] != list(declaration.features):
        raise CatalogueError(f"{where}: feature_codes differ from the declaration's features")
    count = len(declaration.features)
    for field in ("weights", "feature_min", "feature_max"):
        values = weights[field]
        if not isinstance(values, list) or len(values) != count or not all(_number(v) for v in values):
            raise CatalogueError(f"{where}: {field} must hold one number per feature")
    if not _number(weights["bias"]) or not isinstance(weights["metrics"], dict):
        raise CatalogueError(f"{where}: bias must be a number and metrics an object")
    if any(low >= high for low, high in zip(weights["feature_min"], weights["feature_max"], strict=True)):
        raise CatalogueError(f"{where}: every feature_min must be below its feature_max")
    return ModelVersion(declaration=declaration, version=version, weights=weights)


def _number(value: Any) -> bool:
    return (
        isinstance(value, int | float) and not isinstance(value, bool) and value == value and abs(value) != float("inf")
    )
