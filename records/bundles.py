"""Checking an incoming FHIR R4 Bundle and splitting it into records.

`bundle_parse` does the checks in the order a sender can act on: size, JSON, depth, Bundle shape
(collection, batch or transaction), entries, references and codes, then FHIR validation of every resource
(fhir.resources, R4B models, which are wire-compatible with R4 for Patient and Observation). Nothing here
touches the database.

An Observation with no observation-category code is filed under its feature's category in the code map
(records.codes), as feeds that code with LOINC and send no category need; one the map does not know is refused.

Errors name entry indexes and field paths, never values (pydantic's messages quote the input, so
only the location of each error is kept).

The checks of one resource (its type, a Patient's identifiers, an Observation's subject, category and code, its
FHIR validity) and the building of records are shared with the bulk ingest (records.ndjson): each takes the
`Location` to name in its errors, a bundle's entry here, a file's line there, so both paths refuse the same
input with the same codes.
"""

import json
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import orjson
import rfc8785
from django.conf import settings
from fhir.resources.R4B.observation import Observation as FhirObservation
from fhir.resources.R4B.patient import Patient as FhirPatient

from chaincode.vocabulary import CATEGORIES, OBSERVATION_CATEGORY_SYSTEM
from health_platform.parsers import json_depth_check, json_too_deep
from records.canonical import (
    canonical_json,
    digits_folded,
    record_canonical,
    record_document,
    resource_canonical,
    sha256_hex,
)
from records.codes import FEATURE_CODES_BY_CODING
from records.errors import BundleRejected, BundleTooLarge
from records.fhir_validation import ResourceValidator

SUPPORTED_BUNDLE_TYPES = ("collection", "batch", "transaction")
SUPPORTED_RESOURCE_TYPES = ("Patient", "Observation")
MAX_REPORTED_ERRORS = 20

_SAFE_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
_FHIR_MODELS: dict[str, Any] = {"Patient": FhirPatient, "Observation": FhirObservation}
# Every string of a JSON text, each with the colon that follows it when it is a key (only keys are followed by one).
_STRING_THEN_COLON = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"\s*(:?)')
# A quote followed by JSON whitespace: a key may be spaced from its colon (see _keys_unrepeated).
_QUOTE_THEN_SPACE = re.compile(r'"[ \t\n\r]')


class Location(Protocol):
    """Where a resource is, as its errors name it: a bundle's entry, a file's line."""

    def detail(self) -> dict[str, Any]:
        """The members an error's detail names it by ({"entry": 3}, {"file": ..., "line": 7})."""
        ...

    def reference(self) -> Any:
        """How a list of locations names it (detail.entries of a duplicate)."""
        ...


@dataclass(frozen=True, order=True)
class EntryAt:
    """A bundle's entry, by its index."""

    index: int

    def detail(self) -> dict[str, Any]:
        return {"entry": self.index}

    def reference(self) -> Any:
        return self.index


Patientlike = TypeVar("Patientlike")


@dataclass(frozen=True)
class ParsedRecord:
    """One patient's observations of one category, ready to store: the canonical form of its document
    (records.canonical.record_document, not kept itself: the canonical form is what is sealed and hashed) and its
    hash."""

    patient_key: str
    category: str
    canonical: bytes
    sha256: str
    patient_keys: tuple[str, ...] = ()
    """Every identifier of the patient ("system|value"), the first being `patient_key`."""
    patient_entry: int = -1
    """The bundle entry of the Patient resource, and of each Observation the record holds (for the ingest report)."""
    entries: tuple[int, ...] = ()


def bundle_parse(raw_body: bytes) -> list[ParsedRecord]:
    """Check `raw_body` and return its records, one per (patient, category), in a stable order.

    Raises BundleTooLarge (413) or BundleRejected (400) with a stable code.
    """
    document = bundle_load_json(raw_body)
    entries = _check_bundle(document)
    patients, observations = _check_entries(entries)
    _check_fhir(entries)
    return _records(patients, observations)


def bundle_entry_count(raw_body: bytes) -> int:
    """How many entries the body's Bundle lists, 0 when it is not a readable bundle (for a refusal's report:
    the same loading checks as bundle_parse, no more)."""
    try:
        document = bundle_load_json(raw_body)
    except (BundleRejected, BundleTooLarge):
        return 0
    entries = document.get("entry") if isinstance(document, dict) else None
    return len(entries) if isinstance(entries, list) else 0


def bundle_load_json(raw_body: bytes) -> Any:
    """Parse the body as strict JSON after checking its size and nesting depth.

    Depth is measured on the text before parsing, so a deeply nested body never reaches the
    recursive parser (nor the validators and the canonicaliser after it).
    """
    if len(raw_body) > settings.INGEST_MAX_BYTES:
        raise BundleTooLarge(
            "The bundle is larger than the configured limit.",
            code="payload_too_large",
            detail={"max_bytes": settings.INGEST_MAX_BYTES},
        )
    try:
        text = raw_body.decode("utf-8")
    except UnicodeDecodeError:
        raise BundleRejected("The body is not UTF-8 encoded JSON.", code="malformed_json") from None
    json_depth_check(text, settings.INGEST_MAX_JSON_DEPTH, error=BundleRejected)
    try:
        document = json_value(raw_body)
        if not _keys_unrepeated(text, document):
            # A repeated key (json.loads keeps the last): parsed again to be refused as it always was.
            document = json.loads(
                text, object_pairs_hook=_object_without_duplicate_keys, parse_constant=_reject_constant
            )
        return document
    except RecursionError:
        raise json_too_deep(settings.INGEST_MAX_JSON_DEPTH, error=BundleRejected) from None
    except ValueError as error:
        detail = {"line": error.lineno, "column": error.colno} if isinstance(error, json.JSONDecodeError) else None
        raise BundleRejected("The body is not valid JSON.", code="malformed_json", detail=detail) from None


def json_value(raw: bytes) -> Any:
    """json.loads of UTF-8 `raw`, NaN and Infinity refused (ValueError), read by orjson where it gives the same
    value: about three times faster.

    orjson reads an integer beyond 64 bits as a float, so a text with 19 digits in a row goes to json.loads; so does
    one orjson refuses (json.loads then refuses it with its own error, line and column, or takes what orjson does
    not: a lone surrogate escape, a number too large for a double). Held to json.loads by
    tests/records/test_json_value.py.
    """
    if b"0" * 19 not in digits_folded(raw):  # an integer orjson may read as a float (beyond 64 bits)
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass
    return json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)


def _keys_unrepeated(text: str, document: Any) -> bool:
    """Whether no object of `document`, parsed from `text`, had a key twice (the parsers keep the last).

    A JSON text with no backslash (every quote opens or closes a string, none inside one) and no quote followed by
    whitespace (each key's closing quote is followed by its colon) has one quote-colon per key and one per string
    beginning with a colon. orjson writes `document` back the same way, with its members: one count falls short of
    the other exactly when a key repeated. Any other text: every string read by _STRING_THEN_COLON, against the
    members counted one by one."""
    if "\\" not in text and _QUOTE_THEN_SPACE.search(text) is None:
        try:
            return text.count('":') == orjson.dumps(document).count(b'":')
        except orjson.JSONEncodeError:  # an integer beyond 64 bits
            pass
    return _member_count(document) == _STRING_THEN_COLON.findall(text).count(":")


def _member_count(document: Any) -> int:
    """How many object members `document` holds, nested ones included (bounded by the depth check). Equal to the
    number of keys in its valid JSON text (a string followed by a colon is always a key) unless a key repeats."""
    count = 0
    pending = [document]
    while pending:
        value = pending.pop()
        if type(value) is dict:
            count += len(value)
            pending.extend(member for member in value.values() if type(member) in (dict, list))
        elif type(value) is list:
            pending.extend(element for element in value if type(element) in (dict, list))
    return count


def _object_without_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # A repeated key would make the canonical form (and so the anchored hash) depend on the parser.
    result = dict(pairs)
    if len(result) != len(pairs):
        raise ValueError("duplicate key")
    return result


def _reject_constant(name: str) -> Any:
    raise ValueError("NaN and Infinity are not JSON")


def _check_bundle(document: Any) -> list[Any]:
    if not isinstance(document, dict) or document.get("resourceType") != "Bundle":
        raise BundleRejected("The body is not a FHIR Bundle.", code="not_a_bundle", detail={"path": "resourceType"})
    if document.get("type") not in SUPPORTED_BUNDLE_TYPES:
        raise BundleRejected(
            "The Bundle type is not supported.",
            code="unsupported_bundle_type",
            detail={"path": "type", "supported": list(SUPPORTED_BUNDLE_TYPES)},
        )
    entries = document.get("entry", [])
    if not isinstance(entries, list):
        raise BundleRejected(
            "Bundle.entry must be a list.", code="fhir_invalid", detail={"errors": [{"path": "entry"}]}
        )
    if len(entries) > settings.INGEST_MAX_ENTRIES:
        raise BundleTooLarge(
            "The bundle has more entries than the configured limit.",
            code="too_many_entries",
            detail={"max_entries": settings.INGEST_MAX_ENTRIES},
        )
    if not entries:
        raise BundleRejected("The bundle has no entries.", code="empty_bundle")
    return entries


@dataclass
class _Patient:
    index: int
    resource: dict[str, Any]
    patient_key: str
    patient_keys: tuple[str, ...] = ()


@dataclass
class _Observation:
    index: int
    resource: dict[str, Any]
    patient: _Patient
    category: str


class FirstSeen:
    """Where each key (a resource id, a fullUrl, a patient identifier) was first seen: a resource that repeats
    one held by another is refused with `code`, naming both.

    `at` is kept as it is given: a Location, or anything `located` turns into one when a repeat is refused (the bulk
    ingest keeps a line's number in its index, not an object per line)."""

    def __init__(
        self, *, message: str, code: str, path: str, located: Callable[[Any], Location] = lambda at: at
    ) -> None:
        self._first: dict[Any, Any] = {}
        self._message, self._code, self._path = message, code, path
        self._located = located

    def add(self, keys: list[Any], at: Any) -> None:
        for key in keys:
            first = self._first.get(key)
            if first is not None and first != at:
                raise BundleRejected(
                    self._message,
                    code=self._code,
                    detail={
                        "entries": [self._located(first).reference(), self._located(at).reference()],
                        "path": self._path,
                    },
                )
        for key in keys:
            self._first.setdefault(key, at)


def duplicate_ids(located: Callable[[Any], Location] = lambda at: at) -> FirstSeen:
    message = "Two entries carry the same resource id."
    return FirstSeen(message=message, code="duplicate_resource_id", path="resource.id", located=located)


def duplicate_patients(located: Callable[[Any], Location] = lambda at: at) -> FirstSeen:
    message = "Two Patient entries carry the same identifier."
    return FirstSeen(message=message, code="duplicate_patient", path="resource.identifier", located=located)


def _check_entries(entries: list[Any]) -> tuple[list[_Patient], list[_Observation]]:
    seen_ids, seen_patients = duplicate_ids(), duplicate_patients()
    seen_full_urls = FirstSeen(
        message="Two entries carry the same fullUrl.", code="duplicate_resource_id", path="fullUrl"
    )
    patients: list[_Patient] = []
    references: dict[str, _Patient] = {}
    observation_entries: list[tuple[int, dict[str, Any]]] = []

    for index, entry in enumerate(entries):
        at = EntryAt(index)
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(resource, dict):
            raise BundleRejected(
                "An entry has no resource.",
                code="fhir_invalid",
                detail={"errors": [{"entry": index, "path": "resource"}]},
            )
        resource_type = resource_type_check(resource, at)
        resource_id = resource.get("id")
        if isinstance(resource_id, str):
            seen_ids.add([(resource_type, resource_id)], at)
        full_url = entry.get("fullUrl")
        if isinstance(full_url, str):
            seen_full_urls.add([full_url], at)

        if resource_type == "Patient":
            keys = patient_identifier_keys(resource, at)
            # Any identifier two Patient entries share (an MRN, a national id) makes them one person.
            seen_patients.add(keys, at)
            patient = _Patient(index=index, resource=resource, patient_key=keys[0], patient_keys=tuple(keys))
            patients.append(patient)
            if isinstance(resource_id, str):
                references[f"Patient/{resource_id}"] = patient
            if isinstance(full_url, str):
                references[full_url] = patient
        else:
            observation_entries.append((index, resource))

    if not observation_entries:
        raise BundleRejected("The bundle has no Observation to record.", code="empty_bundle")
    observations = [
        _Observation(
            index=index,
            resource=resource,
            patient=observation_subject(resource, EntryAt(index), references),
            category=observation_category(resource, EntryAt(index)),
        )
        for index, resource in observation_entries
    ]
    for observation in observations:
        observation_code_check(observation.resource, EntryAt(observation.index))
    return patients, observations


def resource_type_check(resource: dict[str, Any], at: Location) -> str:
    """The resource's type, one of SUPPORTED_RESOURCE_TYPES; refused (unsupported_resource_type) otherwise."""
    resource_type = resource.get("resourceType")
    if resource_type not in SUPPORTED_RESOURCE_TYPES:
        raise BundleRejected(
            "Only Patient and Observation resources are accepted.",
            code="unsupported_resource_type",
            detail={**at.detail(), "path": "resource.resourceType", "supported": list(SUPPORTED_RESOURCE_TYPES)},
        )
    return str(resource_type)


def patient_identifier_keys(resource: dict[str, Any], at: Location) -> list[str]:
    """ "system|value" of each of the patient's identifiers that has both, in order. The first is the patient's
    key (its pseudonym is the patient's: unchanged, so that patients ingested before still match)."""
    identifiers = resource.get("identifier")
    keys = []
    for identifier in identifiers if isinstance(identifiers, list) else ():
        if not isinstance(identifier, dict):
            continue
        system, value = identifier.get("system"), identifier.get("value")
        if isinstance(system, str) and system.strip() and isinstance(value, str) and value.strip():
            keys.append(f"{system}|{value}")
    if keys:
        return keys
    raise BundleRejected(
        "A Patient has no identifier with both system and value.",
        code="patient_identifier_missing",
        detail={**at.detail(), "path": "resource.identifier"},
    )


def observation_subject(resource: dict[str, Any], at: Location, references: dict[str, Patientlike]) -> Patientlike:
    """The patient `references` names by the Observation's subject.reference; refused when it has none
    (observation_subject_missing) or names no patient of the bundle or export (observation_subject_unknown)."""
    subject = resource.get("subject")
    reference = subject.get("reference") if isinstance(subject, dict) else None
    if not isinstance(reference, str) or not reference:
        raise BundleRejected(
            "An Observation has no subject reference.",
            code="observation_subject_missing",
            detail={**at.detail(), "path": "resource.subject.reference"},
        )
    patient = references.get(reference)
    if patient is None:
        raise BundleRejected(
            "An Observation's subject is not a Patient in this bundle.",
            code="observation_subject_unknown",
            detail={**at.detail(), "path": "resource.subject.reference"},
        )
    return patient


def observation_category(resource: dict[str, Any], at: Location) -> str:
    """The category the Observation is filed under: its one observation-category code, else its feature's in the
    code map; refused (observation_category_missing, _unknown, _ambiguous) when there is no single one."""
    codes: set[Any] = set()
    categories = resource.get("category")
    for concept in categories if isinstance(categories, list) else ():
        codings = concept.get("coding") if isinstance(concept, dict) else None
        for coding in codings if isinstance(codings, list) else ():
            if isinstance(coding, dict) and coding.get("system") == OBSERVATION_CATEGORY_SYSTEM:
                code = coding.get("code")
                codes.add(code if isinstance(code, str) else None)  # a list or object is no code (and unhashable)
    path = {**at.detail(), "path": "resource.category"}
    if not codes:
        mapped = _category_from_code_map(resource)
        if len(mapped) == 1:
            return mapped.pop()
        if mapped:
            raise BundleRejected(
                "An Observation without a category has codes of features of different categories.",
                code="observation_category_ambiguous",
                detail={**at.detail(), "path": "resource.code.coding"},
            )
        raise BundleRejected(
            "An Observation has no category from the observation-category system.",
            code="observation_category_missing",
            detail=path,
        )
    if not all(isinstance(code, str) and code in CATEGORIES for code in codes):
        raise BundleRejected(
            "An Observation's category is not one of the accepted categories.",
            code="observation_category_unknown",
            detail={**path, "supported": sorted(CATEGORIES)},
        )
    if len(codes) > 1:
        raise BundleRejected(
            "An Observation must have exactly one observation-category code.",
            code="observation_category_ambiguous",
            detail=path,
        )
    category: str = codes.pop()
    return category


def _category_from_code_map(resource: dict[str, Any]) -> set[str]:
    """The categories of the features the Observation's codings name in the code map (records.codes): what an
    Observation from a feed that sends no category is filed under. Empty when no coding is a known feature."""
    code = resource.get("code")
    codings = code.get("coding") if isinstance(code, dict) else None
    categories = set()
    for coding in codings if isinstance(codings, list) else ():
        if isinstance(coding, dict):
            system, value = coding.get("system"), coding.get("code")
            if isinstance(system, str) and isinstance(value, str):
                feature = FEATURE_CODES_BY_CODING.get((system, value))
                if feature is not None:
                    categories.add(feature.category)
    return categories


def observation_code_check(resource: dict[str, Any], at: Location) -> None:
    """Refuse (observation_code_missing) an Observation with no code.coding that has a code."""
    code = resource.get("code")
    codings = code.get("coding") if isinstance(code, dict) else None
    if not isinstance(codings, list) or not any(
        isinstance(coding, dict) and isinstance(coding.get("code"), str) and coding["code"] for coding in codings
    ):
        raise BundleRejected(
            "An Observation has no code.coding with a code.",
            code="observation_code_missing",
            detail={**at.detail(), "path": "resource.code.coding"},
        )


def _check_fhir(entries: list[dict[str, Any]]) -> None:
    resources_fhir_check((EntryAt(index), entry["resource"]) for index, entry in enumerate(entries))


def resources_fhir_check(located: Iterable[tuple[Location, dict[str, Any]]]) -> None:
    """Refuse (fhir_invalid) when any resource is not valid FHIR R4, naming up to MAX_REPORTED_ERRORS locations
    and field paths."""
    errors: list[dict[str, Any]] = []
    for at, resource in located:
        paths = [_error_path(location) for location in _FHIR_VALIDATOR.error_locations(resource)]
        for path in dict.fromkeys(paths):  # each path once, in order
            errors.append({**at.detail(), "path": path})
            if len(errors) >= MAX_REPORTED_ERRORS:
                break
        if len(errors) >= MAX_REPORTED_ERRORS:
            break
    if errors:
        raise BundleRejected("A resource is not valid FHIR R4.", code="fhir_invalid", detail={"errors": errors})


def _json_form_errors(resource: dict[str, Any]) -> list[tuple[int | str, ...]]:
    """Where the resource breaks FHIR's JSON form in ways fhir.resources lets through (it reads JSON leniently).

    - `null` is never a value in FHIR JSON: a member with no value is left out. (Only an array of primitives
      may hold null, where its `_name` companion array carries an extension at that position, and the reverse.)
    - A quantity's value is a JSON number: fhir.resources takes "12.5" (a string) for a decimal, and None for
      any element. An Observation's valueQuantity.value (its own or a component's) is what the models read,
      so a value that is not a number is refused here, at ingest, not found missing when an analysis runs.
    Recursion is bounded by the depth check the body passed before it was parsed.
    """
    found = list(_nulls(resource, ()))
    if resource.get("resourceType") == "Observation":
        components = resource.get("component")
        holders = [(resource, ())] + [
            (component, ("component", position))
            for position, component in enumerate(components if isinstance(components, list) else ())
            if isinstance(component, dict)
        ]
        for holder, location in holders:
            quantity = holder.get("valueQuantity")
            if isinstance(quantity, dict) and "value" in quantity and not _is_json_number(quantity["value"]):
                found.append((*location, "valueQuantity", "value"))
    return found


_FHIR_VALIDATOR = ResourceValidator(_FHIR_MODELS, also=_json_form_errors)


def _nulls(value: Any, location: tuple[int | str, ...]) -> Iterator[tuple[int | str, ...]]:
    if isinstance(value, dict):
        for key, item in value.items():
            if item is None:
                yield (*location, key)
            elif isinstance(item, list):
                # A primitive array and its `_key` companion may hold nulls where the other has a value.
                companion = key[1:] if key.startswith("_") else f"_{key}"
                nulls_allowed = companion in value
                for position, element in enumerate(item):
                    if element is None:
                        if not nulls_allowed:
                            yield (*location, key, position)
                    else:
                        yield from _nulls(element, (*location, key, position))
            else:
                yield from _nulls(item, (*location, key))
    elif isinstance(value, list):
        for position, element in enumerate(value):
            yield from _nulls(element, (*location, position))


def _is_json_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _error_path(location: tuple[int | str, ...]) -> str:
    """ "resource.valueQuantity.value"-style path; keys that are not plain names are masked."""
    parts = ["resource"]
    for part in location:
        if isinstance(part, int):
            parts[-1] += f"[{part}]"
        elif _SAFE_KEY.fullmatch(part):
            parts.append(part)
        else:
            parts.append("<key>")
    return ".".join(parts)


def _records(patients: list[_Patient], observations: list[_Observation]) -> list[ParsedRecord]:
    grouped: dict[tuple[int, str], list[tuple[int, dict[str, Any]]]] = {}
    for observation in observations:
        grouped.setdefault((observation.patient.index, observation.category), []).append(
            (observation.index, observation.resource)
        )
    patients_by_index = {patient.index: patient for patient in patients}
    try:
        return [
            record_parse(
                patient=patients_by_index[patient_index].resource,
                patient_keys=patients_by_index[patient_index].patient_keys,
                category=category,
                observations=[resource for _index, resource in indexed],
                patient_entry=patient_index,
                entries=tuple(index for index, _resource in indexed),
            )
            for (patient_index, category), indexed in sorted(grouped.items(), key=lambda item: item[0])
        ]
    except RecordNotCanonicalizable:
        located: list[tuple[EntryAt, dict[str, Any]]] = [(EntryAt(p.index), p.resource) for p in patients] + [
            (EntryAt(observation.index), observation.resource) for observation in observations
        ]
        raise not_canonicalizable(sorted(located, key=lambda item: item[0].reference())) from None


class RecordNotCanonicalizable(Exception):
    """A resource of the record holds a value RFC 8785 has no form for (an integer beyond 2^53, a lone
    surrogate); the caller names the first such resource (not_canonicalizable)."""


def record_parse(
    *,
    patient: dict[str, Any],
    patient_keys: tuple[str, ...],
    category: str,
    observations: list[dict[str, Any]],
    patient_entry: int = -1,
    entries: tuple[int, ...] = (),
    texts: Sequence[bytes] = (),
) -> ParsedRecord:
    """One record of checked resources: the canonical form of its document (records.canonical.record_document) and
    its hash. `texts`, when given, are the JSON texts the patient and each observation were parsed from, in that
    order: the canonical form is then made from theirs (records.canonical.record_canonical), without building the
    document. Raises RecordNotCanonicalizable."""
    try:
        if texts:
            canonical = record_canonical(
                patient=resource_canonical(texts[0], patient),
                observations=[
                    (str(observation.get("id", "")), resource_canonical(text, observation))
                    for text, observation in zip(texts[1:], observations, strict=True)
                ],
            )
        else:
            canonical = canonical_json(record_document(patient=patient, observations=observations))
    except rfc8785.CanonicalizationError as error:
        raise RecordNotCanonicalizable from error
    return ParsedRecord(
        patient_key=patient_keys[0],
        patient_keys=patient_keys,
        category=category,
        canonical=canonical,
        sha256=sha256_hex(canonical),
        patient_entry=patient_entry,
        entries=entries,
    )


def not_canonicalizable(located: Sequence[tuple[Location, dict[str, Any]]]) -> BundleRejected:
    """The refusal (fhir_invalid) of resources one of which has no canonical form, naming the first such."""
    first: dict[str, Any] = {"entry": None}
    for at, resource in located:
        try:
            canonical_json(resource)
        except rfc8785.CanonicalizationError:
            first = at.detail()
            break
    return BundleRejected(
        "A resource holds a value that has no canonical JSON form.",
        code="fhir_invalid",
        detail={"errors": [{**first, "path": "resource"}]},
    )
