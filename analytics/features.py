"""A model's features read from a record's FHIR bundle, on the custodian's critical path.

The custodian reads every admitted record of a batch here, so the bundle is decoded against a schema
of just the fields that matter (entry[].resource: resourceType, code.coding[].system and .code,
valueQuantity.value): msgspec skips everything else without building Python objects for it, which
takes a third of the time of decoding the whole bundle (about 15 µs for a 16.7 KB bundle instead of
45 µs, `python -m benchmarks.analysis`'s records).

A document that is not JSON, or whose kept fields have another shape than FHIR gives them (an entry
that is not an object, a `coding` that is not a list), has no features: the record is skipped as
missing_features, never scored on a guess. Stored content is validated FHIR in canonical form, so
this happens only to damaged content.

A feature is recognised under each coding the code map (records.codes) gives it: the project's code in the
project's system, and its LOINC code in LOINC's. A code without its system names nothing (LOINC's 2345-7 and
some local 2345-7 are different things), so a coding without the right system is no feature.
"""

import math
from functools import lru_cache
from typing import Any

import msgspec

from records.codes import FEATURE_CODES_BY_CODE, FEATURE_SYSTEM


class _Coding(msgspec.Struct, gc=False):
    system: Any = None
    code: Any = None


class _CodeableConcept(msgspec.Struct, gc=False):
    coding: list[_Coding] = []


class _Quantity(msgspec.Struct, gc=False):
    value: Any = None


class _Resource(msgspec.Struct, gc=False):
    resourceType: Any = None  # noqa: N815 (FHIR's name)
    code: _CodeableConcept | None = None
    valueQuantity: _Quantity | None = None  # noqa: N815 (FHIR's name)


class _Entry(msgspec.Struct, gc=False):
    resource: _Resource | None = None


class _Bundle(msgspec.Struct, gc=False):
    entry: list[_Entry] = []


_decoder = msgspec.json.Decoder(_Bundle)


@lru_cache(maxsize=64)
def feature_codings(codes: tuple[str, ...]) -> dict[tuple[str, str], str]:
    """(system, code) -> the feature of `codes` it stands for: each feature under the project's system, and under
    LOINC where the code map has its LOINC code. Cached: a model's feature list is the same for every record."""
    wanted = {(FEATURE_SYSTEM, code): code for code in codes}
    for code in codes:
        feature = FEATURE_CODES_BY_CODE.get(code)
        if feature is not None:
            wanted.update(dict.fromkeys(feature.codings, code))
    return wanted


def features_of(plaintext: bytes, codes: tuple[str, ...]) -> list[float] | None:
    """The values of `codes` in the bundle's Observations, in that order; None if any is missing.

    A value counts if it is a finite int or float (not a bool, not a string) under a coding of a feature the
    model wants (feature_codings); when several Observations carry one feature, the last one counts.
    """
    try:
        bundle = _decoder.decode(plaintext)
    except msgspec.DecodeError:  # not JSON, or a kept field of another shape
        return None
    wanted = feature_codings(codes)
    found: dict[str, float] = {}
    for entry in bundle.entry:
        resource = entry.resource
        if resource is None or resource.resourceType != "Observation" or resource.valueQuantity is None:
            continue
        value = resource.valueQuantity.value
        if type(value) not in (int, float) or resource.code is None:
            continue
        try:
            number = float(value)
        except OverflowError:  # an int beyond any float
            continue
        if not math.isfinite(number):
            continue
        for coding in resource.code.coding:
            if type(coding.system) is str and type(coding.code) is str:
                feature = wanted.get((coding.system, coding.code))
                if feature is not None:
                    found[feature] = number
    if len(found) != len(codes):
        return None
    return [found[code] for code in codes]
