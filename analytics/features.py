"""A model's features read from a record's FHIR bundle, on the custodian's critical path.

The custodian reads every admitted record of a batch here, so the bundle is decoded against a schema
of just the fields that matter (entry[].resource: resourceType, code.coding[].code,
valueQuantity.value): msgspec skips everything else without building Python objects for it, which
takes a third of the time of decoding the whole bundle (about 15 µs for a 16.7 KB bundle instead of
45 µs, `python -m benchmarks.analysis`'s records).

A document that is not JSON, or whose kept fields have another shape than FHIR gives them (an entry
that is not an object, a `coding` that is not a list), has no features: the record is skipped as
missing_features, never scored on a guess. Stored content is validated FHIR in canonical form, so
this happens only to damaged content.
"""

import math
from typing import Any

import msgspec


class _Coding(msgspec.Struct, gc=False):
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


def features_of(plaintext: bytes, codes: tuple[str, ...]) -> list[float] | None:
    """The values of `codes` in the bundle's Observations, in that order; None if any is missing.

    A value counts if it is a finite int or float (not a bool, not a string) under a coding the model
    wants; when several Observations carry one code, the last one counts.
    """
    try:
        bundle = _decoder.decode(plaintext)
    except msgspec.DecodeError:  # not JSON, or a kept field of another shape
        return None
    wanted = set(codes)
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
            if type(coding.code) is str and coding.code in wanted:
                found[coding.code] = number
    if len(found) != len(codes):
        return None
    return [found[code] for code in codes]
