"""Per-patient data keys: what seals a patient's record versions and features, so that erasing a patient is
destroying one key (and the ciphertexts), not finding every copy of their data.

    data key      32 random bytes per patient (records.models.PatientDataKey), never stored in the clear
    wrapped       AES-256-GCM under the master keyring's active key (RECORD_ENCRYPTION_KEYS / _ACTIVE_KEY), bound
                  by associated data to the patient id, the data key id and the wrapping key id
    key id        a version sealed under a data key names it "dk:<data key id hex>"; a version written before
                  per-patient keys names a master key id (no master key id holds a ":"), and opens under the
                  master keyring until `records_per_patient_keys` reseals it

Master key rotation is rewrapping (`patient_data_keys_rewrap`): the records stay as they are.

Unwrapped keys are kept in a bounded in-process LRU (RECORD_DATA_KEY_CACHE_SIZE), filled a chunk of versions at a
time in one query (`RecordKeys.load`), so that an analysis of 10,000 records does not unwrap 10,000 times per
batch. Erasure drops the key from the erasing process's cache at once; every other process drops its whole cache
the next time it loads keys after an erasure was completed (a count of completed erasures, read with the keys),
and what such a stale entry could open is gone from the database by then anyway.
"""

import os
import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from uuid import UUID

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.conf import settings

from health_platform.keyring import KEY_BYTES, NONCE_BYTES, CiphertextInvalid, Keyring
from records.crypto import record_cipher
from records.models import ErasureState, Patient, PatientDataKey, PatientErasure

DATA_KEY_PREFIX = "dk:"
ERASED_KEY_ID = "erased"
"""The key id of an erased version's tombstone: nothing is sealed under it, nothing opens."""


def data_key_id(data_key_pk: UUID) -> str:
    """The key id record versions sealed under this data key carry."""
    return f"{DATA_KEY_PREFIX}{data_key_pk.hex}"


def is_data_key_id(key_id: str) -> bool:
    return key_id.startswith(DATA_KEY_PREFIX)


def _wrap_associated_data(*, patient_id: object, data_key_pk: UUID, wrap_key_id: str) -> bytes:
    return f"health_platform/patient-data-key/v1|{patient_id}|{data_key_pk.hex}|{wrap_key_id}".encode()


def _wrap(raw: bytes, *, patient_id: object, data_key_pk: UUID) -> tuple[str, bytes]:
    master = record_cipher()
    wrap_key_id = master.active_key_id
    associated_data = _wrap_associated_data(patient_id=patient_id, data_key_pk=data_key_pk, wrap_key_id=wrap_key_id)
    used, wrapped = master.encrypt(raw, associated_data=associated_data)
    if used != wrap_key_id:  # the associated data names the key id: they must agree
        raise RuntimeError("the master keyring's active key changed during wrapping")
    return wrap_key_id, wrapped


def _unwrap(*, patient_id: object, data_key_pk: UUID, wrap_key_id: str, wrapped: bytes) -> bytes:
    associated_data = _wrap_associated_data(patient_id=patient_id, data_key_pk=data_key_pk, wrap_key_id=wrap_key_id)
    raw = record_cipher().decrypt(wrapped, key_id=wrap_key_id, associated_data=associated_data)
    if len(raw) != KEY_BYTES:
        raise CiphertextInvalid(wrap_key_id)
    return raw


class _DataKeyCache:
    """Key id -> AESGCM of an unwrapped data key, least recently used first out."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._keys: OrderedDict[str, AESGCM] = OrderedDict()
        self._erasures_seen = -1

    def get(self, key_id: str) -> AESGCM | None:
        with self._lock:
            aead = self._keys.get(key_id)
            if aead is not None:
                self._keys.move_to_end(key_id)
            return aead

    def put(self, key_id: str, aead: AESGCM) -> None:
        limit = max(int(settings.RECORD_DATA_KEY_CACHE_SIZE), 0)
        with self._lock:
            self._keys[key_id] = aead
            self._keys.move_to_end(key_id)
            while len(self._keys) > limit:
                self._keys.popitem(last=False)

    def missing(self, key_ids: Iterable[str]) -> list[str]:
        """The key ids not held; those held become the most recently used, so that putting the missing ones (a
        chunk's keys, loaded together) pushes out keys of earlier chunks, never the ones this chunk is about to use."""
        with self._lock:
            absent = []
            for key_id in key_ids:
                if key_id in self._keys:
                    self._keys.move_to_end(key_id)
                else:
                    absent.append(key_id)
            return absent

    def drop(self, key_id: str) -> None:
        with self._lock:
            self._keys.pop(key_id, None)

    def clear(self) -> None:
        with self._lock:
            self._keys.clear()

    def clear_after_erasures(self, completed: int) -> None:
        """Drop every key if an erasure was completed since the last look (in any process)."""
        with self._lock:
            if completed != self._erasures_seen:
                self._keys.clear()
                self._erasures_seen = completed

    def key_ids(self) -> list[str]:
        with self._lock:
            return list(self._keys)


_cache = _DataKeyCache()


@dataclass(frozen=True)
class WrappedDataKey:
    """A patient's data key as stored (records.models.PatientDataKey), read beside the versions it opens."""

    pk: UUID
    patient_id: UUID
    wrap_key_id: str
    wrapped: bytes


class RecordKeys:
    """The keyring every stored version opens under: its patient's data key ("dk:..." key ids, unwrapped on first
    use and cached) or, for a version written before per-patient keys, the master keyring. Satisfies
    health_platform.keyring.Keyring for opening; new versions are sealed with `PatientKeyring`."""

    @property
    def active_key_id(self) -> str:
        raise RuntimeError("versions are sealed under their patient's key: use patient_keyrings()")

    def encrypt(self, plaintext: bytes, *, associated_data: bytes) -> tuple[str, bytes]:
        raise RuntimeError("versions are sealed under their patient's key: use patient_keyrings()")

    def load(self, key_ids: Iterable[str]) -> dict[str, AESGCM]:
        """Unwrap, in one query, the data keys of `key_ids` not in the cache yet (master key ids are ignored), put
        them in the cache and return them (a cache smaller than a chunk's keys keeps only the last ones)."""
        self.forget_after_erasures()
        wanted = {UUID(hex=key_id[len(DATA_KEY_PREFIX) :]) for key_id in set(key_ids) if _parsable(key_id)}
        missing = _cache.missing(data_key_id(pk) for pk in wanted)
        if not missing:
            return {}
        rows = PatientDataKey.objects.filter(pk__in=[key_id[len(DATA_KEY_PREFIX) :] for key_id in missing])
        loaded = {}
        for pk, patient_id, wrap_key_id, wrapped in rows.values_list("pk", "patient_id", "wrap_key_id", "wrapped_key"):
            aead = _unwrapped_and_cached(WrappedDataKey(pk, patient_id, wrap_key_id, bytes(wrapped)))
            if aead is not None:
                loaded[data_key_id(pk)] = aead
        return loaded

    def forget_after_erasures(self) -> None:
        """Drop every cached key if an erasure was completed since the last look (one query): `load` does it first,
        and so does a caller that unwraps keys from rows it read itself (`adopt`)."""
        _cache.clear_after_erasures(PatientErasure.objects.filter(state=ErasureState.DONE).count())

    def adopt(self, wrapped: Iterable[tuple[str, "WrappedDataKey | None"]]) -> None:
        """Make the key ids open, each from its patient's wrapped data key read in the same query as its version (a
        join, instead of `load`'s query of its own): those held become the most recently used, then the others are
        unwrapped and cached, as `load` does for a chunk. A key id that is not its data key's, or a wrapped key that
        does not open, is left out; its version then does not open."""
        given = {key_id: data_key for key_id, data_key in wrapped if data_key is not None}
        for key_id in _cache.missing(given):
            if key_id == data_key_id(given[key_id].pk):
                _unwrapped_and_cached(given[key_id])

    def decrypt(self, ciphertext: bytes, *, key_id: str, associated_data: bytes) -> bytes:
        if not is_data_key_id(key_id):
            return record_cipher().decrypt(ciphertext, key_id=key_id, associated_data=associated_data)
        aead = _cache.get(key_id) or self.load([key_id]).get(key_id)
        if aead is None:
            raise CiphertextInvalid(key_id)
        return _aead_open(aead, ciphertext, key_id=key_id, associated_data=associated_data)


def _unwrapped_and_cached(data_key: WrappedDataKey) -> AESGCM | None:
    """The data key unwrapped and put in the cache; None for a wrapped key that does not open (its versions do not
    open either)."""
    try:
        raw = _unwrap(
            patient_id=data_key.patient_id,
            data_key_pk=data_key.pk,
            wrap_key_id=data_key.wrap_key_id,
            wrapped=data_key.wrapped,
        )
    except CiphertextInvalid:
        return None
    aead = AESGCM(raw)
    _cache.put(data_key_id(data_key.pk), aead)
    return aead


def _parsable(key_id: str) -> bool:
    if not is_data_key_id(key_id):
        return False
    try:
        UUID(hex=key_id[len(DATA_KEY_PREFIX) :])
    except ValueError:
        return False
    return True


def _aead_open(aead: AESGCM, ciphertext: bytes, *, key_id: str, associated_data: bytes) -> bytes:
    if len(ciphertext) < NONCE_BYTES + 16:
        raise CiphertextInvalid(key_id)
    try:
        return aead.decrypt(ciphertext[:NONCE_BYTES], ciphertext[NONCE_BYTES:], associated_data)
    except InvalidTag:
        raise CiphertextInvalid(key_id) from None


class PatientKeyring:
    """One patient's data key as a Keyring: new versions of theirs are sealed (and open) under it."""

    def __init__(self, key_id: str, aead: AESGCM):
        self._key_id, self._aead = key_id, aead

    @property
    def active_key_id(self) -> str:
        return self._key_id

    def encrypt(self, plaintext: bytes, *, associated_data: bytes) -> tuple[str, bytes]:
        nonce = os.urandom(NONCE_BYTES)
        return self._key_id, nonce + self._aead.encrypt(nonce, plaintext, associated_data)

    def decrypt(self, ciphertext: bytes, *, key_id: str, associated_data: bytes) -> bytes:
        if key_id != self._key_id:
            raise CiphertextInvalid(key_id)
        return _aead_open(self._aead, ciphertext, key_id=key_id, associated_data=associated_data)


def record_keys() -> RecordKeys:
    """The keyring stored versions open under (any patient's data key, or the master for legacy versions)."""
    return RecordKeys()


def patient_keyrings(*, patients: Iterable[Patient]) -> dict[UUID, Keyring]:
    """Each patient's data keyring, their data key made (random, wrapped, stored) where they have none yet.

    Call inside the transaction that stores what is sealed: a key made by a concurrent transaction for the same
    patient wins (one row per patient), and this one's is read back instead."""
    ids = list(dict.fromkeys(patient.pk for patient in patients))
    existing = set(PatientDataKey.objects.filter(patient_id__in=ids).values_list("patient_id", flat=True))
    fresh: dict[UUID, AESGCM] = {}
    made = []
    for patient_id in ids:
        if patient_id in existing:
            continue
        pk, raw = _new_data_key_pk(), AESGCM.generate_key(bit_length=KEY_BYTES * 8)
        wrap_key_id, wrapped = _wrap(raw, patient_id=patient_id, data_key_pk=pk)
        made.append(PatientDataKey(id=pk, patient_id=patient_id, wrap_key_id=wrap_key_id, wrapped_key=wrapped))
        fresh[pk] = AESGCM(raw)
    if made:
        PatientDataKey.objects.bulk_create(made, ignore_conflicts=True)
    keyrings: dict[UUID, Keyring] = {}
    rows = PatientDataKey.objects.filter(patient_id__in=ids).values_list(
        "pk", "patient_id", "wrap_key_id", "wrapped_key"
    )
    for pk, patient_id, stored_wrap_key_id, stored in rows:
        key_id = data_key_id(pk)
        aead = fresh.get(pk) or _cache.get(key_id)
        if aead is None:  # raises CiphertextInvalid for a stored key that does not unwrap: nothing is sealed under it
            aead = AESGCM(
                _unwrap(patient_id=patient_id, data_key_pk=pk, wrap_key_id=stored_wrap_key_id, wrapped=bytes(stored))
            )
        _cache.put(key_id, aead)
        keyrings[patient_id] = PatientKeyring(key_id, aead)
    return keyrings


def _new_data_key_pk() -> UUID:
    return UUID(bytes=os.urandom(16), version=4)


def patient_data_key_destroy(*, patient: Patient) -> bool:
    """Delete the patient's data key row and drop it from this process's cache; True if there was one."""
    found = list(PatientDataKey.objects.filter(patient=patient).values_list("pk", flat=True))
    for pk in found:
        _cache.drop(data_key_id(pk))
    PatientDataKey.objects.filter(patient=patient).delete()
    return bool(found)


def patient_data_keys_rewrap(*, limit: int) -> int:
    """Rewrap up to `limit` data keys wrapped under another master key than the active one; how many were.

    Master key rotation: the data keys are unwrapped under their old master key id and wrapped again under the
    active one; nothing they sealed changes. Each row is updated on its own: run again to continue."""
    active = record_cipher().active_key_id
    done = 0
    rows = PatientDataKey.objects.exclude(wrap_key_id=active).values_list(
        "pk", "patient_id", "wrap_key_id", "wrapped_key"
    )
    for pk, patient_id, wrap_key_id, wrapped in rows[:limit]:
        raw = _unwrap(patient_id=patient_id, data_key_pk=pk, wrap_key_id=wrap_key_id, wrapped=bytes(wrapped))
        new_wrap_key_id, rewrapped = _wrap(raw, patient_id=patient_id, data_key_pk=pk)
        done += PatientDataKey.objects.filter(pk=pk, wrap_key_id=wrap_key_id).update(
            wrap_key_id=new_wrap_key_id, wrapped_key=rewrapped
        )
    return done


def data_key_cache_clear() -> None:
    """Forget every unwrapped data key this process holds (after a master key is withdrawn, say)."""
    _cache.clear()


def cached_data_key_ids() -> list[str]:
    """The key ids of the unwrapped data keys this process holds, least recently used first."""
    return _cache.key_ids()
