"""Reads: which records a user sees, which versions analytics may use, and the integrity check.

Pending versions (not yet anchored on the ledger) are never returned for analysis: nothing proves
their hash to anyone but us.
"""

import hashlib
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar
from uuid import UUID

import structlog
from django.db.models import Exists, OuterRef, Prefetch, QuerySet, Subquery

from health_platform import bootstrap
from health_platform.errors import NotFound, PermissionDenied
from health_platform.selectors import one_of, values_among
from health_platform.wording import unit_words
from ledger import LedgerError
from records.access import user_may_read_all_record_metadata, user_may_read_own_records, user_owns_record
from records.codes import FEATURE_CODES_BY_CODING
from records.crypto import patient_pseudonym, record_open
from records.errors import CiphertextInvalid
from records.features import OpenedFeatures, bundle_features, features_open, features_vector
from records.models import AnchorState, ErasureState, IngestRun, Patient, PatientIdentifier, Record, RecordVersion
from records.patient_keys import ERASED_KEY_ID, WrappedDataKey, record_keys

log = structlog.get_logger(__name__)

_Opened = TypeVar("_Opened")


def patient_of(user: Any) -> Patient | None:
    """The Patient linked to `user` if the user holds the patient role, else None."""
    if not user_may_read_own_records(user):
        return None
    return getattr(user, "patient", None)


# --- versions -----------------------------------------------------------------------------------


def record_latest_anchored_version(*, record: Record) -> RecordVersion | None:
    """The newest version whose hash is on the ledger; None while only pending versions exist."""
    return record.versions.filter(anchor_state=AnchorState.ANCHORED).order_by("-version").first()


def record_versions_usable_for_analysis(
    *, categories: Iterable[str] | None = None, record_ids: Iterable[UUID | str] | None = None
) -> QuerySet[RecordVersion]:
    """Per record, its newest anchored version (pending versions are never included).

    A record whose newest version is still pending is analysed at its newest anchored version,
    which is also the one the ledger's ReadAnchor answers with.
    """
    newer_anchored = RecordVersion.objects.filter(
        record=OuterRef("record"), anchor_state=AnchorState.ANCHORED, version__gt=OuterRef("version")
    )
    versions = (
        RecordVersion.objects.filter(anchor_state=AnchorState.ANCHORED)
        .exclude(Exists(newer_anchored))
        .select_related("record", "record__patient")
        .order_by("record__created_at", "record_id")
    )
    if categories is not None:
        versions = versions.filter(record__category__in=list(categories))
    if record_ids is not None:
        versions = versions.filter(record_id__in=list(record_ids))
    return versions


def record_versions_anchorable(
    *, record_ids: Iterable[UUID] | None = None, exclude_ids: Iterable[int] = (), limit: int
) -> list[RecordVersion]:
    """Pending versions that may be anchored now: per record, its lowest pending version, each with `later_pending`
    (whether its record has a later version pending, which this one's anchoring makes anchorable).

    The anchor contract takes a record's versions in order and at most one per record per
    transaction, so a record's next pending version waits until this one is anchored. A patient whose erasure
    has begun has nothing anchored any more (records.erasure deletes their pending versions).
    """
    pending = RecordVersion.objects.filter(record=OuterRef("record"), anchor_state=AnchorState.PENDING)
    versions = (
        RecordVersion.objects.filter(anchor_state=AnchorState.PENDING, record__patient__erasure__isnull=True)
        .exclude(Exists(pending.filter(version__lt=OuterRef("version"))))
        .annotate(later_pending=Exists(pending.filter(version__gt=OuterRef("version"))))
        .exclude(pk__in=list(exclude_ids))
        .select_related("record__patient")
        .order_by("created_at", "pk")
    )
    if record_ids is not None:
        versions = versions.filter(record_id__in=list(record_ids))
    return list(versions[:limit])


# --- who sees which records ---------------------------------------------------------------------


def records_visible_to(*, user: Any) -> QuerySet[Record]:
    """The records `user` may list: all (metadata) for auditors and custodians, own for patients.

    Raises PermissionDenied for everyone else (clinicians never read records directly). Each
    record carries `latest_version_number` and `latest_anchor_state` annotations and its versions.
    """
    if user_may_read_all_record_metadata(user):
        records = Record.objects.all()
    elif user_may_read_own_records(user):
        records = Record.objects.filter(patient__user=user)
    else:
        raise PermissionDenied("Clinicians and users without a role do not read records directly.")
    latest = RecordVersion.objects.filter(record=OuterRef("pk")).order_by("-version")
    return (
        records.select_related("patient")
        .annotate(
            latest_version_number=Subquery(latest.values("version")[:1]),
            latest_anchor_state=Subquery(latest.values("anchor_state")[:1]),
        )
        .prefetch_related(Prefetch("versions", queryset=RecordVersion.objects.defer("ciphertext").order_by("version")))
        .order_by("created_at", "id")
    )


def record_get_visible(*, user: Any, record_id: UUID | str) -> Record:
    """The record if `user` may see it; NotFound otherwise, so that existence is not revealed."""
    try:
        return records_visible_to(user=user).get(pk=record_id)
    except (Record.DoesNotExist, ValueError, TypeError):
        raise NotFound("No such record.") from None


def record_shows_clinical_content(*, user: Any, record: Record) -> bool:
    """Only the patient the record belongs to reads its content; everyone else reads metadata."""
    return user_owns_record(user, record)


def patient_records(*, patient: Any) -> QuerySet[Record]:
    """A patient's own records, with their versions, for the portal."""
    return (
        Record.objects.filter(patient=patient)
        .select_related("patient")
        .prefetch_related(Prefetch("versions", queryset=RecordVersion.objects.order_by("version")))
        .order_by("category")
    )


# --- content ------------------------------------------------------------------------------------


def record_version_plaintext(*, record_version: RecordVersion) -> bytes:
    """The canonical (RFC 8785) bytes of a version; raises CiphertextInvalid if it does not open.

    For the owning patient's view and for analytics only: callers check access first. An erased version (its
    tombstone) opens nothing.
    """
    if record_version.key_id == ERASED_KEY_ID:
        raise CiphertextInvalid(ERASED_KEY_ID)
    return record_open(
        record_keys(),
        ciphertext=bytes(record_version.ciphertext),
        record_id=record_version.record_id,
        version=record_version.version,
        key_id=record_version.key_id,
        encoding=record_version.content_encoding,
    )


# What the gate is sent for a version whose ciphertext does not open: never an anchor, so the ledger refuses it.
NO_CONTENT_HASH = "0" * 64


def content_sha256(plaintext: bytes) -> str:
    """The SHA-256 of stored content. What is stored is the RFC 8785 canonical form itself, so hashing the
    bytes gives the anchored hash without canonicalising again; content that is not byte-identical to
    what was anchored (re-serialised, edited) fails the comparison, which is the safe direction."""
    return hashlib.sha256(plaintext).hexdigest()


def record_version_document(*, record_version: RecordVersion) -> dict[str, Any]:
    """The decrypted FHIR Bundle (collection) of a version."""
    return json.loads(record_version_plaintext(record_version=record_version))


def bundle_observation_rows(*, bundle: dict[str, Any]) -> list[dict[str, Any]]:
    """The observations of a decrypted Bundle as rows to display: label, value, unit in words, codes, time."""
    rows = []
    for entry in bundle.get("entry", []):
        resource = entry.get("resource", {})
        if resource.get("resourceType") != "Observation":
            continue
        code = resource.get("code", {})
        coding: dict[str, Any] = next(iter(code.get("coding", [])), {})
        known = FEATURE_CODES_BY_CODING.get((coding.get("system", ""), coding.get("code", "")))
        quantity = resource.get("valueQuantity") or {}
        rows.append(
            {
                "label": coding.get("display")
                or code.get("text")
                or (known.display if known else coding.get("code", "")),
                "code": coding.get("code", ""),
                "value": quantity.get("value", resource.get("valueString", "")),
                "unit": unit_words(str(quantity.get("unit", ""))),
                "unit_code": str(quantity.get("unit", "")),
                "effective": resource.get("effectiveDateTime", ""),
            }
        )
    return rows


@dataclass(frozen=True)
class RecordContent:
    """A record, its latest version and that version's decrypted Bundle (None: no version, or it did not open)."""

    record: Record
    version: RecordVersion | None
    document: dict[str, Any] | None


def patient_record_contents(*, patient: Patient) -> list[RecordContent]:
    """The patient's records, each with its latest version decrypted, as the patient's record page shows them.

    For the owning patient only (the FHIR API's Patient/$everything): callers check that `patient` is the user's
    own (patient_of) first. A version whose ciphertext does not open is logged and given as document None."""
    contents = []
    for record in patient_records(patient=patient):
        versions = list(record.versions.all())
        latest = versions[-1] if versions else None
        document = None
        if latest is not None and latest.key_id != ERASED_KEY_ID:  # an erased version: nothing to open, quietly
            try:
                document = record_version_document(record_version=latest)
            except CiphertextInvalid:
                log.warning("record_content_unreadable", record_id=str(record.pk), version=latest.version)
        contents.append(RecordContent(record=record, version=latest, document=document))
    return contents


# --- the ledger ---------------------------------------------------------------------------------


class IntegrityReason:
    OK = "ok"
    CIPHERTEXT_INVALID = "ciphertext_invalid"
    HASH_MISMATCH_LOCAL = "hash_mismatch_local"
    NOT_ANCHORED = "not_anchored"
    NO_ANCHOR = "no_anchor"
    HASH_MISMATCH = "hash_mismatch"
    LEDGER_UNAVAILABLE = "ledger_unavailable"


@dataclass(frozen=True)
class IntegrityResult:
    ok: bool
    reason: str
    record_id: UUID
    version: int
    sha256: str
    """The hash stored with the version."""
    recomputed_sha256: str | None = None
    ledger_sha256: str | None = None
    tx_id: str | None = None
    block_number: int | None = None
    anchored_at: str | None = None


def record_integrity_check(*, record_version: RecordVersion) -> IntegrityResult:
    """Check a version end to end: it decrypts, its content hashes to its stored hash, and that
    hash is the one anchored on the ledger for this record and version.

    Reasons, in the order checked: ciphertext_invalid, hash_mismatch_local, not_anchored (still
    pending), ledger_unavailable (fail closed), no_anchor, hash_mismatch; "ok" when all hold.
    """
    base = {
        "record_id": record_version.record_id,
        "version": record_version.version,
        "sha256": record_version.sha256,
        "tx_id": record_version.anchor_tx_id or None,
        "block_number": record_version.anchor_block,
    }

    def result(reason: str, **fields: Any) -> IntegrityResult:
        if reason != IntegrityReason.OK:
            log.info(
                "record_integrity_failed",
                record_id=str(record_version.record_id),
                version=record_version.version,
                reason=reason,
            )
        return IntegrityResult(ok=reason == IntegrityReason.OK, reason=reason, **{**base, **fields})

    try:
        plaintext = record_version_plaintext(record_version=record_version)
    except CiphertextInvalid:
        return result(IntegrityReason.CIPHERTEXT_INVALID)
    recomputed = content_sha256(plaintext)
    if recomputed != record_version.sha256:
        return result(IntegrityReason.HASH_MISMATCH_LOCAL, recomputed_sha256=recomputed)
    if record_version.anchor_state != AnchorState.ANCHORED:
        return result(IntegrityReason.NOT_ANCHORED, recomputed_sha256=recomputed)
    try:
        found = bootstrap.contracts().anchor_at_version(str(record_version.record_id), record_version.version)
    except LedgerError:
        return result(IntegrityReason.LEDGER_UNAVAILABLE, recomputed_sha256=recomputed)
    if found.anchor is None:
        return result(IntegrityReason.NO_ANCHOR, recomputed_sha256=recomputed)
    fields = {
        "recomputed_sha256": recomputed,
        "ledger_sha256": found.anchor.sha256,
        "tx_id": found.anchor.tx_id or base["tx_id"],
        "anchored_at": found.anchor.anchored_at,
    }
    if found.anchor.sha256 != recomputed:
        return result(IntegrityReason.HASH_MISMATCH, **fields)
    return result(IntegrityReason.OK, **fields)


@dataclass(frozen=True)
class RecordWithIntegrity:
    record: Record
    latest: RecordVersion | None
    integrity: "IntegrityResult | None"


def patient_records_with_integrity(*, patient: Any) -> list[RecordWithIntegrity]:
    """The patient's records, each with its latest version and a live integrity check on the ledger."""
    rows = []
    for record in patient_records(patient=patient):
        versions = list(record.versions.all())
        latest = versions[-1] if versions else None
        integrity = record_integrity_check(record_version=latest) if latest else None
        rows.append(RecordWithIntegrity(record=record, latest=latest, integrity=integrity))
    return rows


@dataclass(frozen=True)
class VersionContent:
    version_id: int
    record_id: UUID
    category: str
    patient_pseudonym: str
    plaintext: bytes | None
    """The canonical bytes; None when the ciphertext does not open (tampered, moved, unknown key)."""


def record_versions_contents(*, version_ids: list[int]) -> Iterator[VersionContent]:
    """The decrypted content of many versions, one query, opened one at a time (missing ids left out).

    For the analytics custodian only, which has checked the request: it reads thousands of records per
    batch, so rows are fetched as values, not model instances, and streamed: a caller that keeps what
    it needs of each plaintext (a hash, a few values) never holds a batch's plaintexts at once (5,000
    bundles are about 85 MB). Versions come in the database's order, not the order of `version_ids`.
    """
    rows = RecordVersion.objects.filter(pk__in=version_ids).values_list(
        "pk",
        "record_id",
        "version",
        "key_id",
        "content_encoding",
        "ciphertext",
        "record__category",
        "record__patient__pseudonym",
    )
    cipher = record_keys()
    for pk, record_id, version, key_id, encoding, ciphertext, category, pseudonym in _keyed_chunks(
        rows, lambda chunk: cipher.load(row[3] for row in chunk), chunk_size=1000
    ):
        where = {"record_id": record_id, "version": version, "key_id": key_id}
        plaintext = _opened(
            record_open,
            cipher,
            event="record_ciphertext_invalid",
            **where,
            ciphertext=bytes(ciphertext),
            encoding=encoding,
        )
        yield VersionContent(pk, record_id, category, pseudonym, plaintext)


def _keyed_chunks(
    rows: QuerySet[Any, Any], open_keys: Callable[[list[Any]], object], *, chunk_size: int
) -> Iterator[Any]:
    """`rows` streamed a chunk at a time, `open_keys` given each chunk first: the data keys its versions name made
    to open, by one query (RecordKeys.load) or from the chunk itself (RecordKeys.adopt)."""
    chunk: list[Any] = []
    for row in rows.iterator(chunk_size=chunk_size):
        chunk.append(row)
        if len(chunk) == chunk_size:
            open_keys(chunk)
            yield from chunk
            chunk = []
    open_keys(chunk)
    yield from chunk


def _wrapped_keys(chunk: list[Any]) -> Iterator[tuple[str, WrappedDataKey | None]]:
    """Each row's key id (its 4th value) and its patient's data key, from the row's last four values (patient id,
    data key id, wrapping key id, wrapped key; the data key's None when the patient has none)."""
    for row in chunk:
        key_id, (patient_id, pk, wrap_key_id, wrapped) = row[3], row[-4:]
        yield key_id, None if pk is None else WrappedDataKey(pk, patient_id, wrap_key_id, bytes(wrapped))


def _opened(
    open_it: Callable[..., _Opened], cipher: Any, *, event: str, record_id: UUID, version: int, **sealed: Any
) -> _Opened | None:
    """What `open_it` (record_open, features_open) opens of a version, or None (logged as `event`, by ids only)
    when it does not open. An erased version opens nothing, quietly: the gate refuses it as erased."""
    if sealed.get("key_id") == ERASED_KEY_ID:
        return None
    try:
        return open_it(cipher, record_id=record_id, version=version, **sealed)
    except CiphertextInvalid:
        log.warning(event, record_id=str(record_id), version=version)
        return None


@dataclass(frozen=True)
class VersionFeatures:
    version_id: int
    record_id: UUID
    category: str
    patient_pseudonym: str
    opened: OpenedFeatures | None
    """None when the features, or the record's ciphertext they are bound to, are not what ingest wrote."""

    def vector(self, codes: tuple[str, ...]) -> list[float] | None:
        """The values of a model's feature `codes`, in that order; None if any is missing or nothing opened."""
        return None if self.opened is None else features_vector(self.opened.features, codes)


def content_features(plaintext: bytes, codes: tuple[str, ...]) -> list[float] | None:
    """The values of `codes` in a record's canonical bundle, in that order; None if any is missing or the content
    is damaged (records.features says which codings name a feature and which values count)."""
    features = bundle_features(plaintext)
    return None if features is None else features_vector(features, codes)


def record_versions_features(*, version_ids: list[int]) -> tuple[list[VersionFeatures], list[int]]:
    """The features kept at ingest of many versions, opened (records.features), in one query; and the ids of the
    versions that keep none (ingested before features were kept), whose content the caller opens instead.

    For the analytics custodian only, which has checked the request. The record's ciphertext is read to check
    the features' binding to it, never opened. Missing ids are left out of both.
    """
    rows = RecordVersion.objects.filter(pk__in=one_of(version_ids)).values_list(
        "pk",
        "record_id",
        "version",
        "key_id",
        "ciphertext",
        "features",
        "record__category",
        "record__patient__pseudonym",
        "record__patient_id",
        "record__patient__data_key__id",
        "record__patient__data_key__wrap_key_id",
        "record__patient__data_key__wrapped_key",
    )
    cipher = record_keys()
    cipher.forget_after_erasures()
    found, without = [], []
    for row in _keyed_chunks(rows, lambda chunk: cipher.adopt(_wrapped_keys(chunk)), chunk_size=2000):
        pk, record_id, version, key_id, ciphertext, sealed, category, pseudonym = row[:8]
        if not sealed and key_id != ERASED_KEY_ID:
            without.append(pk)
            continue
        where = {"record_id": record_id, "version": version, "key_id": key_id}
        sealed_pair: dict[str, Any] = {"sealed": bytes(sealed), "record_ciphertext": bytes(ciphertext)}
        opened = _opened(features_open, cipher, event="record_features_invalid", **where, **sealed_pair)
        found.append(VersionFeatures(pk, record_id, category, pseudonym, opened))
    return found, without


def record_version_numbers(*, version_ids: list[int]) -> dict[int, int]:
    """Each version's number within its record (the version a training set's leaf names), by version id."""
    return dict(RecordVersion.objects.filter(pk__in=version_ids).values_list("pk", "version"))


def ingest_runs() -> QuerySet[IngestRun]:
    """Every ingest kept in the history (stored and refused), newest first, with who sent it."""
    return IngestRun.objects.select_related("actor").order_by("-created_at", "id")


def patient_by_identifier(*, system: str, value: str) -> Patient | None:
    """The ingested patient one of whose identifiers is system|value (found by its keyed hash), or None."""
    known = PatientIdentifier.objects.filter(pseudonym=patient_pseudonym(f"{system}|{value}")).select_related("patient")
    identifier = known.first()
    return identifier.patient if identifier is not None else None


def records_erased_among(*, record_ids: Iterable[str]) -> set[str]:
    """Which of `record_ids` belong to a patient whose erasure is on the ledger (the gate refuses them from then), as
    text, in one query per health_platform.selectors.IN_LIST_CHUNK ids."""
    erased = Record.objects.filter(patient__erasure__state__in=(ErasureState.ON_LEDGER, ErasureState.DONE))
    return {str(record_id) for record_id in values_among(erased, "pk", record_ids)}
