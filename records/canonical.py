"""Canonical form and hash of a record: RFC 8785 (JSON Canonicalization Scheme) and SHA-256.

The hash is what the ledger anchors, so it must not depend on key order, whitespace or number
spelling in what a sender sent: RFC 8785 fixes all three.
"""

import hashlib
from typing import Any

import rfc8785


def canonical_json(document: Any) -> bytes:
    """The RFC 8785 serialisation of `document` (UTF-8 bytes)."""
    return rfc8785.dumps(document)


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
