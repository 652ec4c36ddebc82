"""Canonical form and hash of a record: RFC 8785 (JSON Canonicalization Scheme) and SHA-256.

The hash is what the ledger anchors, so it must not depend on key order, whitespace or number
spelling in what a sender sent: RFC 8785 fixes all three.
"""

import hashlib
import math
import re
from collections.abc import Sequence
from typing import Any

import orjson
import rfc8785

_SAFE_INTEGER = 2**53 - 1
# Every digit as 0 and E as e (bytes.translate, at C speed): a run of n digits is then b"0" * n, an exponent b"0e".
_DIGITS_FOLDED = bytes.maketrans(b"0123456789E", b"0000000000e")
# A fraction of zeros only (17.0, 3.00): an integral float, which RFC 8785 writes as an integer.
_INTEGRAL_FLOAT = re.compile(rb"\.0+(?![0-9])")
_SORTED = orjson.OPT_SORT_KEYS
_RECORD_OPENING = b'{"entry":[{"resource":'
_RECORD_BETWEEN = b'},{"resource":'
_RECORD_CLOSING = b'}],"resourceType":"Bundle","type":"collection"}'


def canonical_json(document: Any) -> bytes:
    """The RFC 8785 serialisation of `document` (UTF-8 bytes).

    orjson writes it when the document is in the subset where its output is RFC 8785's byte for byte (keys in
    ASCII, so code-point order is UTF-16 order; integers within 2^53; floats that Python writes without an
    exponent, which RFC 8785 writes as Python does, integral ones as the integer): about four times faster, and
    held to the rfc8785 package by tests/records/test_canonical.py. Anything else goes to rfc8785, which also
    raises the errors (rfc8785.CanonicalizationError).
    """
    subset = _orjson_subset(document)
    if subset is not None:
        try:
            return orjson.dumps(subset, option=orjson.OPT_SORT_KEYS)
        except orjson.JSONEncodeError:  # a lone surrogate: rfc8785 refuses it with its own error
            pass
    return rfc8785.dumps(document)


def resource_canonical(text: bytes, resource: Any) -> bytes:
    """canonical_json(resource), for `resource` parsed from the JSON text `text`, told from the text where it can.

    A text in ASCII with no \\u escape, no 16 digits in a row, no exponent and no ".0000" holds only what
    _orjson_subset lets through (ASCII keys and strings, integers within 2^53, floats from 1e-4 to 2^53 written
    without an exponent), so orjson writes it at once, integral floats made integers first where the text shows
    one. Any other text, or one that merely looks like it (a string holding "1e5" or "v1.0"), takes
    canonical_json's walk, which also raises its errors.
    """
    folded = digits_folded(text)
    if (
        text.isascii()
        and b"\\u" not in text  # an escape that may stand for a non-ASCII character or a lone surrogate
        and b"0" * 16 not in folded  # an integer that may pass 2^53
        and b"0e" not in folded  # an exponent
        and b".0000" not in text  # a number below 1e-4 written without an exponent
    ):
        integral = b".0" in text and _INTEGRAL_FLOAT.search(text) is not None  # 17.0, written 17 by RFC 8785
        return orjson.dumps(_integral_floats_as_integers(resource) if integral else resource, option=_SORTED)
    return canonical_json(resource)


def digits_folded(text: bytes) -> bytes:
    """`text` with every digit as 0 and E as e, to look for runs of digits and exponents with `in`."""
    return text.translate(_DIGITS_FOLDED)


def record_canonical(*, patient: bytes, observations: Sequence[tuple[str, bytes]]) -> bytes:
    """canonical_json(record_document(...)) from the canonical forms of its resources: the patient's, and each
    observation's with its id as record_document reads it (str(observation.get("id", ""))).

    The record's document is a Bundle whose members sort as "entry", "resourceType", "type", each entry an object
    of one member, so its canonical form is its resources' own, in record_document's order, between fixed bytes.
    Sorting by (id, canonical form) is that order: by id when the ids are unique, by both when they are not.
    """
    ordered = [canonical for _id, canonical in sorted(observations)]
    return _RECORD_OPENING + _RECORD_BETWEEN.join([patient, *ordered]) + _RECORD_CLOSING


def _orjson_subset(document: Any) -> Any:
    """`document` as orjson writes it in RFC 8785's form (integral floats as integers), or None if it cannot."""
    integral = False
    pending = [document]
    while pending:
        value = pending.pop()
        kind = type(value)
        if kind is dict:
            if not all(type(key) is str and key.isascii() for key in value):
                return None
            pending.extend(value.values())
        elif kind is list:
            pending.extend(value)
        elif kind is float:
            if not math.isfinite(value) or abs(value) >= _SAFE_INTEGER:
                return None
            if value.is_integer():
                integral = True
            elif abs(value) < 1e-4:
                return None
        elif kind is int:
            if not -_SAFE_INTEGER <= value <= _SAFE_INTEGER:
                return None
        elif not (kind is str or kind is bool or value is None):
            return None
    return _integral_floats_as_integers(document) if integral else document


def _integral_floats_as_integers(value: Any) -> Any:
    kind = type(value)
    if kind is dict:
        return {key: _integral_floats_as_integers(member) for key, member in value.items()}
    if kind is list:
        return [_integral_floats_as_integers(element) for element in value]
    if kind is float and value.is_integer():
        return int(value)
    return value


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def canonical_sha256(document: Any) -> str:
    """SHA-256 (hex) of the canonical form of `document`."""
    return sha256_hex(canonical_json(document))


def record_document(*, patient: dict[str, Any], observations: list[dict[str, Any]]) -> dict[str, Any]:
    """A record's document: a collection Bundle of the patient and their observations, sorted by id.

    Observations without an id sort by their canonical form, so the document does not depend on the
    order of the entries in the ingested bundle.
    """
    ids = [str(observation.get("id", "")) for observation in observations]
    if len(set(ids)) == len(ids):
        ordered = [observation for _, observation in sorted(zip(ids, observations, strict=True), key=lambda p: p[0])]
    else:
        ordered = sorted(
            observations, key=lambda observation: (str(observation.get("id", "")), canonical_json(observation))
        )
    return {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": patient}, *({"resource": observation} for observation in ordered)],
    }
