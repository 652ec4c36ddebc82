"""The remembered-shape FHIR validation (records.fhir_validation) refuses exactly what the models refuse, with
their error locations, including for resources of a shape it has already seen pass."""

import copy
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from records.bundles import _FHIR_MODELS, _json_form_errors
from records.codes import BREAST_CANCER_DATASET
from records.demo import demo_patient_resources, demo_patients
from records.fhir_validation import ResourceValidator
from tests.hostile.strategies import mutated_bundles, valid_bundle

# Values a sender might put where a valid one was: each FHIR primitive type refuses some of them.
HOSTILE_TEXT = st.sampled_from(
    ["", " ", "a  b", " leading", "x" * 65, "bad id!", "\x00", "1e-07", "2020-13-45", "urn:uuid:nope", "\t"]
) | st.text(max_size=70)
HOSTILE_NUMBERS = st.sampled_from([1e-7, 1e21, -0.0, 0.1, 3.0, 1.5e300]) | st.floats(allow_nan=False)


def _models_locations(resource: dict[str, Any]) -> list[tuple]:
    """What validating through the models alone says: the JSON-form errors, then pydantic's."""
    locations = list(_json_form_errors(resource))
    try:
        _FHIR_MODELS[resource["resourceType"]].model_validate(resource)
    except ValidationError as error:
        locations += [item["loc"] for item in error.errors(include_url=False, include_context=False)]
    return locations


def _warmed_validator() -> ResourceValidator:
    validator = ResourceValidator(_FHIR_MODELS, also=_json_form_errors)
    resources = [entry["resource"] for entry in valid_bundle(patients=2, observations=3)["entry"]]
    for patient in demo_patients(dataset=BREAST_CANCER_DATASET, count=2):
        resources += demo_patient_resources(patient)
    for resource in resources:
        assert validator.error_locations(resource) == []
    return validator


def _leaf_paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    if isinstance(value, dict):
        return [path for key, child in value.items() for path in _leaf_paths(child, (*prefix, key))]
    if isinstance(value, list):
        return [path for index, child in enumerate(value) for path in _leaf_paths(child, (*prefix, index))]
    return [prefix]


@st.composite
def resources_with_a_leaf_replaced(draw: st.DrawFn) -> dict[str, Any]:
    """A valid resource of a shape the validator has seen, with one or two values replaced by others of the same
    JSON type (so the shape stays the same and the shortcut is taken whenever the values pass their types)."""
    patient = draw(st.sampled_from(demo_patients(dataset=BREAST_CANCER_DATASET, count=3)))
    resource = copy.deepcopy(draw(st.sampled_from(demo_patient_resources(patient))))
    for _ in range(draw(st.integers(1, 2))):
        path = draw(st.sampled_from([p for p in _leaf_paths(resource) if p != ("resourceType",)]))
        parent = resource
        for step in path[:-1]:
            parent = parent[step]
        old = parent[path[-1]]
        parent[path[-1]] = draw(HOSTILE_TEXT if isinstance(old, str) else HOSTILE_NUMBERS)
    return resource


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(resource=resources_with_a_leaf_replaced())
def test_a_known_shape_with_other_values_is_refused_exactly_when_the_models_refuse_it(resource):
    assert _warmed_validator().error_locations(resource) == _models_locations(resource)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bundle=mutated_bundles())
def test_a_mutated_resource_is_refused_exactly_when_the_models_refuse_it(bundle):
    validator = _warmed_validator()
    entries = bundle.get("entry")
    for entry in entries if isinstance(entries, list) else ():
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if isinstance(resource, dict) and resource.get("resourceType") in ("Patient", "Observation"):
            assert validator.error_locations(resource) == _models_locations(resource)
            # Asked twice: what it remembered from the first answer changes nothing.
            assert validator.error_locations(resource) == _models_locations(resource)


def test_a_value_its_type_refuses_is_refused_in_a_shape_seen_valid():
    validator = _warmed_validator()
    resource = demo_patient_resources(demo_patients(dataset=BREAST_CANCER_DATASET, count=1)[0])[1]
    bad_id, empty_reference = copy.deepcopy(resource), copy.deepcopy(resource)
    bad_id["id"] = "not an id!"
    empty_reference["subject"]["reference"] = ""  # FHIR strings are never empty

    assert validator.error_locations(bad_id) == [("id",)]
    assert validator.error_locations(empty_reference) == [("subject", "reference")]
