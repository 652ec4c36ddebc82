"""The features of a record, kept from ingest: what an analysis uses, without reopening the whole record.

At ingest every numeric Observation value under a known feature coding (records.codes) is read from the
record's canonical form once, and kept beside the record sealed under the record keys (AES-256-GCM):

    plaintext       the record's SHA-256 (32 bytes) || a random salt (16 bytes) || the features, RFC 8785 JSON
    digest          SHA-256(salt || features): anchored on the ledger with the record's own hash
    associated data the record id, version and key id, and the SHA-256 of the record's stored ciphertext

so the features are bound three ways. To the ledger: the gate sends the digest of the features it is about to
use, and the ledger refuses (hash_mismatch) unless the version's anchor holds that digest, so features rewritten
by someone holding the record key are refused as a rewritten record is. To the record as stored: a record whose
ciphertext was changed in any way (one bit flipped, or re-sealed with other content) no longer lets its features
open, and is refused as before. And to the record's anchored hash, sealed inside, which the gate sends instead of
the row's column. The salt keeps the digest of a few measurements from being guessed off the ledger.

A version ingested before features were kept has none (its anchor has no digest): the analysis opens the record,
as it always did.

Reading features from a bundle: decoded against a schema of just the fields that matter (entry[].resource:
resourceType, code.coding[].system and .code, valueQuantity.value); msgspec skips the rest without building Python
objects for it. A feature is recognised under each coding the code map gives it (the project's code in the
project's system, its LOINC code in LOINC's); a code without its system names nothing. A value counts if it is a
finite int or float (not a bool, not a string); when several Observations carry one feature, the last one counts.
"""

import hashlib
import math
import os
from dataclasses import dataclass
from typing import Any

import msgspec

from records.canonical import canonical_json
from records.codes import FEATURE_CODES_BY_CODING, FEATURE_SYSTEM
from records.crypto import RecordCipher
from records.errors import CiphertextInvalid

SALT_BYTES = 16
RECORD_HASH_BYTES = 32


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


_bundle_decoder = msgspec.json.Decoder(_Bundle)
_features_decoder = msgspec.json.Decoder(dict[str, float])


def bundle_features(canonical: bytes) -> dict[str, float] | None:
    """Feature code -> value for every feature the bundle's Observations carry; None when the bytes are not
    JSON or a kept field has another shape than FHIR gives it (damaged content: never scored on a guess)."""
    try:
        bundle = _bundle_decoder.decode(canonical)
    except msgspec.DecodeError:
        return None
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
            feature = _feature_of(coding.system, coding.code)
            if feature is not None:
                found[feature] = number
    return found


def _feature_of(system: Any, code: Any) -> str | None:
    if type(system) is not str or type(code) is not str:
        return None
    if system == FEATURE_SYSTEM:
        return code
    known = FEATURE_CODES_BY_CODING.get((system, code))
    return known.code if known is not None else None


def features_vector(features: dict[str, float], codes: tuple[str, ...]) -> list[float] | None:
    """The values of `codes`, in that order; None if any is missing."""
    try:
        return [features[code] for code in codes]
    except KeyError:
        return None


def _associated_data(*, record_id: object, version: int, key_id: str, record_ciphertext: bytes) -> bytes:
    bound = hashlib.sha256(record_ciphertext).hexdigest()
    return f"health_platform/record-features/v1|{record_id}|{version}|{key_id}|{bound}".encode()


@dataclass(frozen=True)
class SealedFeatures:
    sealed: bytes
    digest: str


def features_seal(
    cipher: RecordCipher,
    *,
    features: dict[str, float],
    record_sha256: str,
    record_id: object,
    version: int,
    key_id: str,
    record_ciphertext: bytes,
) -> SealedFeatures:
    """Seal a version's features under `key_id`, the key its record was just sealed under (the active one),
    bound to its row, its anchored hash and its stored ciphertext."""
    salted = os.urandom(SALT_BYTES) + canonical_json(features)
    associated_data = _associated_data(
        record_id=record_id, version=version, key_id=key_id, record_ciphertext=record_ciphertext
    )
    used_key_id, sealed = cipher.encrypt(bytes.fromhex(record_sha256) + salted, associated_data=associated_data)
    if used_key_id != key_id:  # the associated data names the key id: they must agree
        raise RuntimeError("the record cipher's active key changed during encryption")
    return SealedFeatures(sealed, hashlib.sha256(salted).hexdigest())


@dataclass(frozen=True)
class OpenedFeatures:
    record_sha256: str
    """The record's hash as sealed with its features at ingest: what its anchor holds."""
    digest: str
    """SHA-256(salt || features), computed from what opened: what the anchor must hold."""
    features: dict[str, float]


def features_open(
    cipher: RecordCipher, *, sealed: bytes, record_id: object, version: int, key_id: str, record_ciphertext: bytes
) -> OpenedFeatures:
    """Open a version's sealed features; raises CiphertextInvalid if they, or the record's ciphertext they are
    bound to, are not what was written at ingest."""
    associated_data = _associated_data(
        record_id=record_id, version=version, key_id=key_id, record_ciphertext=record_ciphertext
    )
    plaintext = cipher.decrypt(sealed, key_id=key_id, associated_data=associated_data)
    salted = plaintext[RECORD_HASH_BYTES:]
    try:
        features = _features_decoder.decode(salted[SALT_BYTES:])
    except msgspec.DecodeError:
        raise CiphertextInvalid(key_id) from None
    return OpenedFeatures(plaintext[:RECORD_HASH_BYTES].hex(), hashlib.sha256(salted).hexdigest(), features)


def features_reseal(
    opening: RecordCipher,
    sealing: RecordCipher,
    *,
    sealed: bytes,
    record_id: object,
    version: int,
    key_id: str,
    record_ciphertext: bytes,
    new_record_ciphertext: bytes,
) -> bytes:
    """The same sealed features (record hash, salt and values unchanged, so their anchored digest still holds), sealed
    again under `sealing`'s active key beside the version's new record ciphertext: moving a version to another key.
    Raises CiphertextInvalid if they do not open as they are."""
    plaintext = opening.decrypt(
        sealed,
        key_id=key_id,
        associated_data=_associated_data(
            record_id=record_id, version=version, key_id=key_id, record_ciphertext=record_ciphertext
        ),
    )
    new_key_id = sealing.active_key_id
    associated_data = _associated_data(
        record_id=record_id, version=version, key_id=new_key_id, record_ciphertext=new_record_ciphertext
    )
    used_key_id, resealed = sealing.encrypt(plaintext, associated_data=associated_data)
    if used_key_id != new_key_id:
        raise RuntimeError("the record cipher's active key changed during encryption")
    return resealed
