"""The project's code system for the demo features, defined once.

The demo data are the feature columns of two datasets that scikit-learn ships: the Wisconsin
diagnostic breast-cancer set (30 measurements of cell nuclei from a digitised image of a fine
needle aspirate, category "imaging") and the diabetes set of Efron et al. (10 baseline variables,
category "laboratory", unscaled). Each code names its dataset column so that the analytics app
can rebuild a feature vector in the column order its models were trained on. docs/CODES.md lists
them all; tests/records check that the two stay in step.

The labels (diagnosis, disease progression) are outcomes, not features: they are not coded here and
never travel in a record.
"""

from dataclasses import dataclass
from typing import Any

FEATURE_SYSTEM = "https://health-platform.example/fhir/CodeSystem/features"
UCUM_SYSTEM = "http://unitsofmeasure.org"

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
    codes = []
    for statistic, column_pattern, display_pattern in statistics:
        for stem, unit, description in measurements:
            codes.append(
                FeatureCode(
                    code=f"bc-{statistic}-{stem.replace(' ', '-')}",
                    display=display_pattern.format(description[0].lower() + description[1:]),
                    unit=unit,
                    ucum=True,
                    dataset=BREAST_CANCER_DATASET,
                    column=column_pattern.format(stem),
                    category="imaging",
                )
            )
    return tuple(codes)


_DIABETES = (
    ("db-age", "Age", "a", True, "age"),
    ("db-sex", "Sex (dataset coding: 1 or 2)", "1", True, "sex"),
    ("db-bmi", "Body mass index", "kg/m2", True, "bmi"),
    ("db-bp", "Average blood pressure", "mm[Hg]", True, "bp"),
    ("db-tc", "Total serum cholesterol (tc)", "mg/dL", True, "s1"),
    ("db-ldl", "Low-density lipoproteins (ldl)", "mg/dL", True, "s2"),
    ("db-hdl", "High-density lipoproteins (hdl)", "mg/dL", True, "s3"),
    ("db-tch", "Total cholesterol / HDL (tch)", "1", True, "s4"),
    ("db-ltg", "Log of serum triglycerides level (ltg)", "1", True, "s5"),
    ("db-glu", "Blood sugar level (glu)", "mg/dL", True, "s6"),
)

FEATURE_CODES: tuple[FeatureCode, ...] = _breast_cancer_codes() + tuple(
    FeatureCode(
        code=code,
        display=display,
        unit=unit,
        ucum=ucum,
        dataset=DIABETES_DATASET,
        column=column,
        category="laboratory",
    )
    for code, display, unit, ucum, column in _DIABETES
)

FEATURE_CODES_BY_CODE: dict[str, FeatureCode] = {feature.code: feature for feature in FEATURE_CODES}


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
