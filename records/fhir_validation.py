"""FHIR validation of ingested resources (fhir.resources' R4B models), remembered by shape.

A hospital's resources come in a handful of shapes: the same members, nested the same way, with values of the
same JSON types; only the values differ. Validating each one through the pydantic models costs ~0.4 ms, most of
it in the models' Python validators, so `ResourceValidator` validates a shape through the models once and, for
every later resource of that shape, checks each value with the validator of its field's own FHIR type
(fhir_core's constrained types: the same pydantic validators the model runs on that field), remembered per value.

What must hold for that to be exactly as strict as validating every resource: in fhir.resources, a model's own
validators (required primitive elements, choice types, no null in complex lists, an extension's id or extension)
look only at which members are present and whether they are null, never at values; a contained resource's model
is chosen by its resourceType, which is kept in the shape as a value; every other value is checked by its
field's type alone. A resource the shortcut cannot vouch for (a new shape, a value its type refuses, a field
whose type is not a plain FHIR primitive) is validated through the models, so every error is the models' own.
tests/records/test_fhir_validation.py holds the shortcut to that on mutated resources.
"""

import types
import typing
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError

ErrorLocation = tuple[int | str, ...]
LeafCheck = Callable[[Any], bool]

_SHAPE_CACHE_LIMIT = 10_000
_VALUE_CACHE_LIMIT = 200_000
_UNCHECKED = object()
_CONTAINERS = (dict, list)


class ResourceValidator:
    """Validate resources of the given types (resourceType -> pydantic model) and return their error locations.

    `also` finds further errors the models let through; it must depend on a resource's shape alone (which members
    are present, null, of which JSON type), as records.bundles' JSON-form check does: a shape is remembered only
    once a resource of it passed both.
    """

    def __init__(
        self,
        models: dict[str, type[BaseModel]],
        *,
        also: Callable[[dict[str, Any]], list[ErrorLocation]] = lambda _resource: [],
    ):
        self._models = models
        self._also = also
        self._shapes: dict[tuple[Any, ...], tuple[LeafCheck, ...] | None] = {}
        self._leaf_checks: dict[tuple[type[BaseModel], str], LeafCheck | None] = {}

    def error_locations(self, resource: dict[str, Any]) -> list[ErrorLocation]:
        """Where the models find `resource` invalid (pydantic locations, in their order); [] when it is valid."""
        shape, leaves = _shape_and_leaves(resource)
        checks = self._shapes.get(shape, _UNCHECKED)
        if checks is not _UNCHECKED and checks is not None:
            checked = typing.cast(tuple[LeafCheck, ...], checks)
            if all(check(leaf) for check, leaf in zip(checked, leaves, strict=True)):
                return []
        locations = self._also(resource)
        try:
            instance = self._models[resource["resourceType"]].model_validate(resource)
        except ValidationError as error:
            items = error.errors(include_url=False, include_context=False, include_input=False)
            return locations + [item["loc"] for item in items]
        if locations:
            return locations
        if checks is _UNCHECKED and len(self._shapes) < _SHAPE_CACHE_LIMIT:
            self._shapes[shape] = self._leaf_checks_of(resource, instance)
        return []

    def _leaf_checks_of(self, resource: dict[str, Any], instance: BaseModel) -> tuple[LeafCheck, ...] | None:
        """One check per leaf of `resource`, in _shape_and_leaves' order, from the fields of the validated
        `instance`; None when a leaf's field is not one this shortcut understands (then: always the models)."""
        checks: list[LeafCheck] = []
        pending: list[tuple[Any, Any]] = [(resource, instance)]
        while pending:
            value, validated = pending.pop()
            if type(value) is list:
                if not isinstance(validated, list) or len(validated) != len(value):
                    return None
                pending.extend(zip(value, validated, strict=True))
                continue
            if type(value) is not dict or not isinstance(validated, BaseModel):
                return None
            fields = _fields_by_key(type(validated))
            for key, member in value.items():
                if key == "resourceType" and type(member) is str:
                    checks.append(_always)  # part of the shape itself
                    continue
                name = fields.get(key)
                if name is None:
                    return None
                if type(member) is dict or (type(member) is list and not _is_primitive_list(member)):
                    pending.append((member, getattr(validated, name)))
                    continue
                check = self._leaf_check(type(validated), name)
                if check is None:
                    return None
                if type(member) is list:
                    checks.extend(_always if element is None else check for element in member)
                else:
                    checks.append(check)
        return tuple(checks)

    def _leaf_check(self, model: type[BaseModel], name: str) -> LeafCheck | None:
        key = (model, name)
        if key not in self._leaf_checks:
            self._leaf_checks[key] = _primitive_check(model, name)
        return self._leaf_checks[key]


def _shape_and_leaves(resource: dict[str, Any]) -> tuple[tuple[Any, ...], list[Any]]:
    """The resource's shape (members, nesting, each value's JSON type; resourceType values as they are) and its
    leaf values, both in the order _leaf_checks_of walks them (depth first, from the last member pushed)."""
    shape: list[Any] = []
    leaves: list[Any] = []
    to_shape, to_leaves, more_leaves = shape.append, leaves.append, leaves.extend
    pending: list[Any] = [resource]
    push, pop = pending.append, pending.pop
    while pending:
        value = pop()
        kind = type(value)
        if kind is list:
            if value and type(value[0]) not in _CONTAINERS and _is_primitive_list(value):
                to_shape(tuple(map(type, value)))
                more_leaves(value)
            else:
                to_shape(len(value))
                pending.extend(value)
            continue
        if kind is not dict:  # a scalar in a list of objects: a shape no check is made for
            to_shape(kind)
            to_leaves(value)
            continue
        to_shape(dict)
        for key, member in value.items():
            kind = type(member)
            if kind is dict:
                to_shape(key)
                push(member)
            elif kind is list:
                if member and type(member[0]) not in _CONTAINERS and _is_primitive_list(member):
                    to_shape((key, tuple(map(type, member))))
                    more_leaves(member)
                else:
                    to_shape(key)
                    push(member)
            elif key == "resourceType" and kind is str:
                to_shape((key, member))
                to_leaves(member)
            else:
                to_shape((key, kind))
                to_leaves(member)
    return tuple(shape), leaves


def _is_primitive_list(value: list[Any]) -> bool:
    return bool(value) and all(type(element) not in _CONTAINERS for element in value)


def _always(_value: Any) -> bool:
    return True


def _fields_by_key(model: type[BaseModel]) -> dict[str, str]:
    """JSON member name -> field name: the alias, and the field name too (the models populate by name)."""
    fields: dict[str, str] = {}
    for name, info in model.model_fields.items():
        fields[name] = name
        if info.alias:
            fields[info.alias] = name
    return fields


def _primitive_check(model: type[BaseModel], name: str) -> LeafCheck | None:
    """A check of one value of the field `name` of `model` (or of one element, for a list field) with the
    field's own type, remembering the values it accepted; None unless that type is a FHIR primitive
    (Annotated[str | bool | int | Decimal..., constraints]) with no constraint on the field itself."""
    info = model.model_fields[name]
    if info.metadata:
        return None
    annotation = _without_none(info.annotation)
    if typing.get_origin(annotation) is list:
        (annotation,) = typing.get_args(annotation)
    if typing.get_origin(annotation) is not typing.Annotated:
        return None
    base = typing.get_args(annotation)[0]
    if isinstance(base, type) and issubclass(base, BaseModel):
        return None
    adapter = TypeAdapter(annotation)
    accepted: set[tuple[type, Any]] = set()

    def check(value: Any) -> bool:
        key = (type(value), value)
        if key in accepted:
            return True
        try:
            adapter.validate_python(value)
        except ValidationError:
            return False
        if len(accepted) < _VALUE_CACHE_LIMIT:
            accepted.add(key)
        return True

    return check


def _without_none(annotation: Any) -> Any:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        arguments = [argument for argument in typing.get_args(annotation) if argument is not type(None)]
        if len(arguments) == 1:
            return arguments[0]
    return annotation
