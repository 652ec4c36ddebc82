"""The code map of the demo features, defined once: each feature's project code, and its LOINC code where
LOINC has that measurement in the unit the dataset uses.

The demo data are the feature columns of two datasets that scikit-learn ships: the Wisconsin
diagnostic breast-cancer set (30 measurements of cell nuclei from a digitised image of a fine
needle aspirate, category "imaging") and the diabetes set of Efron et al. (10 baseline variables,
category "laboratory", unscaled). Each feature names its dataset column so that the analytics app
can rebuild a feature vector in the column order its models were trained on.

A feature is named by its project code (what the models declare and their anchored hashes cover) and is
recognised in a record under either coding: (LOINC, its LOINC code) or (the project system, its project
code). A LOINC-coded feed and a project-coded feed therefore give the same feature vectors. An Observation
that carries no category takes its feature's. docs/CODES.md lists the map with the source of every LOINC
code and the reason where a feature keeps its project code; tests/records check that the two stay in step.

The labels (diagnosis, disease progression) are outcomes, not features: they are not coded here and
never travel in a record.
"""

from dataclasses import dataclass
from functools import partial
from typing import Any

from health_platform.fhir_codes import LOINC, PLATFORM, UCUM

FEATURE_SYSTEM = f"{PLATFORM}/CodeSystem/features"
UCUM_SYSTEM = UCUM

BREAST_CANCER_DATASET = "breast_cancer"
DIABETES_DATASET = "diabetes"


@dataclass(frozen=True)
class FeatureCode:
    code: str
    display: str
    unit: str
    """Unit as shown; `ucum` is True when it is also a UCUM code (valueQuantity.system/code)."""
    ucum: bool
    dataset: str
    column: str
    category: str
    loinc: str | None = None
    """The LOINC code of the same measurement in the same unit, where one exists (docs/CODES.md: its source)."""

    @property
    def coding(self) -> tuple[str, str]:
        """(system, code) the feature is written with: LOINC where the map has it, else the project's code."""
        return (LOINC, self.loinc) if self.loinc else (FEATURE_SYSTEM, self.code)

    @property
    def codings(self) -> tuple[tuple[str, str], ...]:
        """Every (system, code) the feature is recognised under."""
        own = (FEATURE_SYSTEM, self.code)
        return (own, (LOINC, self.loinc)) if self.loinc else (own,)


def _breast_cancer_codes() -> tuple[FeatureCode, ...]:
    # (column stem, unit): the dataset gives lengths in image units and areas in their square.
    measurements = (
        ("radius", "[arb'U]", "Radius (mean distance from centre to perimeter)"),
        ("texture", "[arb'U]", "Texture (standard deviation of grey-scale values)"),
        ("perimeter", "[arb'U]", "Perimeter"),
        ("area", "[arb'U]", "Area"),
        ("smoothness", "1", "Smoothness (local variation in radius lengths)"),
        ("compactness", "1", "Compactness (perimeter^2 / area - 1.0)"),
        ("concavity", "1", "Concavity (severity of concave portions of the contour)"),
        ("concave points", "1", "Concave points (number of concave portions of the contour)"),
        ("symmetry", "1", "Symmetry"),
        ("fractal dimension", "1", "Fractal dimension (coastline approximation - 1)"),
    )
    statistics = (
        ("mean", "mean {}", "Nucleus {}, mean"),
        ("se", "{} error", "Nucleus {}, standard error"),
        ("worst", "worst {}", "Nucleus {}, worst (mean of the three largest)"),
    )
    imaging = partial(FeatureCode, ucum=True, dataset=BREAST_CANCER_DATASET, category="imaging")
    return tuple(
        imaging(
            code=f"bc-{statistic}-{stem.replace(' ', '-')}",
            display=display_pattern.format(description[0].lower() + description[1:]),
            unit=unit,
            column=column_pattern.format(stem),
        )
        for statistic, column_pattern, display_pattern in statistics
        for stem, unit, description in measurements
    )


# (project code, display, UCUM unit, column, LOINC code or None): docs/CODES.md gives each LOINC code's source,
# and why sex, the total/HDL ratio and the log of triglycerides keep the project's code.
_DIABETES = (
    ("db-age", "Age", "a", "age", "30525-0"),
    ("db-sex", "Sex (dataset coding: 1 or 2)", "1", "sex", None),
    ("db-bmi", "Body mass index", "kg/m2", "bmi", "39156-5"),
    ("db-bp", "Average blood pressure", "mm[Hg]", "bp", "8478-0"),
    ("db-tc", "Total serum cholesterol (tc)", "mg/dL", "s1", "2093-3"),
    ("db-ldl", "Low-density lipoproteins (ldl)", "mg/dL", "s2", "13457-7"),
    ("db-hdl", "High-density lipoproteins (hdl)", "mg/dL", "s3", "2085-9"),
    ("db-tch", "Total cholesterol / HDL (tch)", "1", "s4", None),
    ("db-ltg", "Log of serum triglycerides level (ltg)", "1", "s5", None),
    ("db-glu", "Blood sugar level (glu)", "mg/dL", "s6", "2345-7"),
)

_laboratory = partial(FeatureCode, ucum=True, dataset=DIABETES_DATASET, category="laboratory")

FEATURE_CODES: tuple[FeatureCode, ...] = _breast_cancer_codes() + tuple(
    _laboratory(code=code, display=display, unit=unit, column=column, loinc=loinc)
    for code, display, unit, column, loinc in _DIABETES
)

FEATURE_CODES_BY_CODE: dict[str, FeatureCode] = {feature.code: feature for feature in FEATURE_CODES}
FEATURE_CODES_BY_CODING: dict[tuple[str, str], FeatureCode] = {
    coding: feature for feature in FEATURE_CODES for coding in feature.codings
}
"""Each (system, code) a feature is recognised under -> that feature."""


def feature_codes_for_dataset(dataset: str) -> tuple[FeatureCode, ...]:
    """The codes of `dataset`, in the dataset's column order."""
    return tuple(feature for feature in FEATURE_CODES if feature.dataset == dataset)


def load_dataset(dataset: str) -> Any:
    """The scikit-learn dataset (bundled, no download) behind `dataset`, its columns checked against the codes."""
    from sklearn.datasets import load_breast_cancer, load_diabetes

    if dataset == BREAST_CANCER_DATASET:
        data = load_breast_cancer()
    elif dataset == DIABETES_DATASET:
        data = load_diabetes(scaled=False)
    else:
        raise ValueError(f"unknown dataset {dataset!r}")
    columns = [str(name) for name in data.feature_names]
    if columns != [feature.column for feature in feature_codes_for_dataset(dataset)]:
        raise RuntimeError(f"the {dataset} columns differ from records.codes")
    return data


def dataset_columns(dataset: str, codes: tuple[str, ...]) -> list[int]:
    """The dataset column of each feature code, in the order given (a model's declared feature order)."""
    columns = [feature.code for feature in feature_codes_for_dataset(dataset)]
    unknown = [code for code in codes if code not in columns]
    if unknown:
        raise ValueError(f"{', '.join(unknown)} are not features of the {dataset} dataset")
    return [columns.index(code) for code in codes]
