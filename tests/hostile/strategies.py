"""Hypothesis strategies shared by the hostile-input tests: JSON values, FHIR bundles and their mutations;
and the codes an ingest may be refused with. tests/records uses the JSON values and the codes too."""

import copy
import json
from typing import Any

from hypothesis import strategies as st

from chaincode.vocabulary import OBSERVATION_CATEGORY_SYSTEM
from records.codes import FEATURE_SYSTEM

MRN_SYSTEM = "https://hospital.example/fhir/NamingSystem/mrn"

# The codes POST /api/records/ may refuse a bundle with for what it holds (records/bundles.py)...
BUNDLE_REFUSAL_CODES = frozenset(
    {
        "malformed_json",
        "json_too_deep",
        "not_a_bundle",
        "unsupported_bundle_type",
        "empty_bundle",
        "unsupported_resource_type",
        "duplicate_resource_id",
        "duplicate_patient",
        "patient_identifier_missing",
        "observation_subject_missing",
        "observation_subject_unknown",
        "observation_code_missing",
        "observation_category_missing",
        "observation_category_unknown",
        "observation_category_ambiguous",
        "fhir_invalid",
    }
)
# ... and every code it may refuse a request with (its schema description, records/bundles.py, api.py).
INGEST_REFUSAL_CODES = BUNDLE_REFUSAL_CODES | {"payload_too_large", "too_many_entries", "unsupported_media_type"}


def scalars_of_json(integers: st.SearchStrategy, floats: st.SearchStrategy, *, text_size: int) -> st.SearchStrategy:
    """JSON's scalars: null, booleans, the numbers `integers` and `floats` draw, strings of up to `text_size`."""
    return st.none() | st.booleans() | integers | floats | st.text(max_size=text_size)


def values_of_json(scalars: st.SearchStrategy, *, key_size: int, items: int, leaves: int) -> st.SearchStrategy:
    """JSON values of `scalars` nested in arrays and objects (keys of up to `key_size` characters) of up to
    `items` members each, with up to `leaves` scalars in all."""
    return st.recursive(
        scalars,
        lambda children: (
            st.lists(children, max_size=items) | st.dictionaries(st.text(max_size=key_size), children, max_size=items)
        ),
        max_leaves=leaves,
    )


json_scalars = scalars_of_json(
    # Past 2^53 on purpose: RFC 8785 has no canonical form for them and ingest must refuse them cleanly.
    st.integers(min_value=-(2**60), max_value=2**60),
    st.floats(allow_nan=False, allow_infinity=False),
    text_size=12,
)
json_values = values_of_json(json_scalars, key_size=8, items=4, leaves=12)
SAFE_INTEGER = 2**53 - 1


def _reparses_as_safe(number: float) -> bool:
    """RFC 8785 spells an integral float below 1e21 as an integer, which Python parses back as an int:
    past 2^53 that int has no canonical form (see test_integral_floats_past_2_53_do_not_survive_a_reparse)."""
    return not (number.is_integer() and SAFE_INTEGER < abs(number) < 1e21)


# Values that hash (a canonical form exists): integers within ±2^53, no lone surrogates (st.text has none).
canonical_scalars = scalars_of_json(
    st.integers(min_value=-SAFE_INTEGER, max_value=SAFE_INTEGER),
    st.floats(allow_nan=False, allow_infinity=False).filter(_reparses_as_safe),
    text_size=12,
)
canonical_values = values_of_json(canonical_scalars, key_size=8, items=4, leaves=16)


def valid_bundle(*, patients: int = 1, observations: int = 2, mrn_prefix: str = "MRN-H") -> dict[str, Any]:
    """A Bundle the platform accepts: `patients` Patients, each with `observations` laboratory Observations."""
    entries: list[dict[str, Any]] = []
    for p in range(patients):
        entries.append(
            {
                "fullUrl": f"urn:uuid:00000000-0000-4000-8000-{p:012d}",
                "resource": {
                    "resourceType": "Patient",
                    "id": f"patient-{p}",
                    "identifier": [{"system": MRN_SYSTEM, "value": f"{mrn_prefix}-{p}"}],
                    "name": [{"family": "Quaxley", "given": ["Zebulon"]}],
                },
            }
        )
        for o in range(observations):
            entries.append(
                {
                    "resource": {
                        "resourceType": "Observation",
                        "id": f"observation-{p}-{o}",
                        "status": "final",
                        "category": [{"coding": [{"system": OBSERVATION_CATEGORY_SYSTEM, "code": "laboratory"}]}],
                        "code": {"coding": [{"system": FEATURE_SYSTEM, "code": "db-glu", "display": "Glucose"}]},
                        "subject": {"reference": f"Patient/patient-{p}"},
                        "valueQuantity": {"value": 80.5 + o, "unit": "mg/dL"},
                    }
                }
            )
    return {"resourceType": "Bundle", "type": "collection", "entry": entries}


def _paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path (keys and indexes) into `value`, the root excluded."""
    found: list[tuple] = []
    if isinstance(value, dict):
        for key, child in value.items():
            found.append((*prefix, key))
            found.extend(_paths(child, (*prefix, key)))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found.append((*prefix, index))
            found.extend(_paths(child, (*prefix, index)))
    return found


def _parent(document: Any, path: tuple) -> Any:
    for step in path[:-1]:
        document = document[step]
    return document


@st.composite
def mutated_bundles(draw: st.DrawFn) -> dict[str, Any]:
    """A valid bundle with one to three edits: a value replaced (often by another type), a member removed,
    a member added, or a list item duplicated."""
    document = copy.deepcopy(
        valid_bundle(patients=draw(st.integers(1, 2)), observations=draw(st.integers(1, 3)), mrn_prefix="MRN-MUT")
    )
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(document)
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent, last = _parent(document, path), path[-1]
        action = draw(st.sampled_from(["replace", "remove", "add", "duplicate"]))
        if action == "replace":
            parent[last] = draw(json_values)
        elif action == "remove":
            del parent[last]
        elif action == "add":
            target = parent[last]
            if isinstance(target, dict):
                target[draw(st.text(max_size=12))] = draw(json_values)
            elif isinstance(target, list):
                target.insert(draw(st.integers(0, len(target))), draw(json_values))
            else:
                parent[last] = [target, draw(json_values)]
        elif isinstance(parent, list):
            parent.insert(last, copy.deepcopy(parent[last]))
        else:
            parent[last] = [parent[last], copy.deepcopy(parent[last])]
    return document


def reordered(value: Any, order: list[int]) -> Any:
    """`value` with every object's keys put in another order (drawn from `order`); the same JSON document."""
    if isinstance(value, dict):
        keys = list(value)
        rotated = keys[order[0] % len(keys) :] + keys[: order[0] % len(keys)] if keys else keys
        if order[1:2] == [1]:
            rotated.reverse()
        return {key: reordered(value[key], order[1:] or order) for key in rotated}
    if isinstance(value, list):
        return [reordered(item, order[1:] or order) for item in value]
    return value


def spelled(value: Any, *, indent: int | None, ascii_only: bool) -> bytes:
    """`value` serialised with other whitespace and escaping: different bytes, the same document."""
    return json.dumps(
        value, indent=indent, ensure_ascii=ascii_only, separators=None if indent else (" , ", " : ")
    ).encode()
