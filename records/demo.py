"""Demo patients built from the datasets scikit-learn ships (no download).

Breast-cancer rows become "imaging" records (30 features), diabetes rows "laboratory" records
(10 features, unscaled). Each Observation is coded as the code map says (records.codes): LOINC where it has
the measurement, else the project's code. Patient identifiers are synthetic ("bc-0000", "db-0000") in a demo
naming system; the outcome labels are left out (they are not clinical features).
"""

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from health_platform.fhir_codes import OBSERVATION_CATEGORY
from records.codes import (
    BREAST_CANCER_DATASET,
    DIABETES_DATASET,
    UCUM_SYSTEM,
    FeatureCode,
    feature_codes_for_dataset,
    load_dataset,
)

DEMO_IDENTIFIER_SYSTEM = "https://health-platform.example/fhir/NamingSystem/demo-patient"
DATASET_PREFIXES = {BREAST_CANCER_DATASET: "bc", DIABETES_DATASET: "db"}


@dataclass(frozen=True)
class DemoPatient:
    dataset: str
    row: int
    features: tuple[float, ...]

    @property
    def identifier(self) -> str:
        return f"{DATASET_PREFIXES[self.dataset]}-{self.row:04d}"

    @property
    def patient_key(self) -> str:
        return f"{DEMO_IDENTIFIER_SYSTEM}|{self.identifier}"


def demo_patients(*, dataset: str, count: int) -> list[DemoPatient]:
    """The first `count` rows of `dataset` (fewer if the dataset is smaller)."""
    data = load_dataset(dataset)
    return [
        DemoPatient(dataset=dataset, row=row, features=tuple(float(value) for value in data.data[row]))
        for row in range(min(count, len(data.data)))
    ]


def demo_patient_resources(patient: DemoPatient) -> list[dict[str, Any]]:
    """The Patient resource and one Observation per feature, for one demo patient."""
    resources: list[dict[str, Any]] = [
        {
            "resourceType": "Patient",
            "id": patient.identifier,
            "identifier": [{"system": DEMO_IDENTIFIER_SYSTEM, "value": patient.identifier}],
        }
    ]
    for feature, value in zip(feature_codes_for_dataset(patient.dataset), patient.features, strict=True):
        resources.append(_observation(patient, feature, value))
    return resources


def _observation(patient: DemoPatient, feature: FeatureCode, value: float) -> dict[str, Any]:
    quantity: dict[str, Any] = {"value": value, "unit": feature.unit}
    if feature.ucum:
        quantity.update({"system": UCUM_SYSTEM, "code": feature.unit})
    return {
        "resourceType": "Observation",
        "id": f"{patient.identifier}-{feature.code.removeprefix(DATASET_PREFIXES[patient.dataset] + '-')}",
        "status": "final",
        "category": [{"coding": [{"system": OBSERVATION_CATEGORY, "code": feature.category}]}],
        "code": _code(feature),
        "subject": {"reference": f"Patient/{patient.identifier}"},
        "valueQuantity": quantity,
    }


def _code(feature: FeatureCode) -> dict[str, Any]:
    """The Observation's code: the project's coding with its display, or the LOINC coding with the feature's words
    as text (the display of a LOINC coding is LOINC's own name, which the map does not keep)."""
    system, code = feature.coding
    if feature.loinc is None:
        return {"coding": [{"system": system, "code": code, "display": feature.display}]}
    return {"coding": [{"system": system, "code": code}], "text": feature.display}


def demo_bundles(*, patients: list[DemoPatient], max_entries: int) -> Iterator[dict[str, Any]]:
    """Collection bundles holding as many whole patients as `max_entries` allows."""
    batch: list[dict[str, Any]] = []
    for patient in patients:
        resources = demo_patient_resources(patient)
        if len(resources) > max_entries:
            raise ValueError("INGEST_MAX_ENTRIES is too small for one demo patient")
        if len(batch) + len(resources) > max_entries:
            yield _bundle(batch)
            batch = []
        batch.extend(resources)
    if batch:
        yield _bundle(batch)


def _bundle(resources: list[dict[str, Any]]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in resources]}
