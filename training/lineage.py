"""A training run's lineage from its manifest: the Merkle roots the ledger holds (chaincode.merkle), and the
inclusion proofs handed out later. Free of Django.

The manifest is what the platform keeps of a run: per organisation ("org:<slug>"), the ordered entries of the record
versions it trained on, each {record_id, version, sha256 (the anchored hash the gate matched), consent_id,
patient_pseudonym, split ("train" or "validation")}. From it:
- an organisation's training-set leaves: its entries in order; its consent leaves: each consent once, in the order
  of its first record;
- the overall trees: the organisations' leaves one after the other, organisations in the order of their ids (the
  order the ledger sorts them in).
Every record the run read and used is in the training set, the held-out ones too: they were used, to validate.
"""

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chaincode import merkle

PACKAGE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Roots:
    organisation: str
    training_set_root: str
    consent_root: str
    record_count: int
    consent_count: int


def record_leaves(entries: Sequence[Mapping[str, Any]]) -> list[bytes]:
    return [merkle.training_set_leaf(e["record_id"], e["version"], e["sha256"]) for e in entries]


def consent_leaves(entries: Sequence[Mapping[str, Any]]) -> list[bytes]:
    seen: dict[str, bytes] = {}
    for entry in entries:
        seen.setdefault(entry["consent_id"], merkle.consent_leaf(entry["consent_id"], entry["patient_pseudonym"]))
    return list(seen.values())


def _roots(organisation: str, records: list[bytes], consents: list[bytes]) -> Roots:
    return Roots(
        organisation,
        merkle.merkle_root(records).hex(),
        merkle.merkle_root(consents).hex(),
        len(records),
        len(consents),
    )


def lineage_roots(manifest: Mapping[str, Sequence[Mapping[str, Any]]]) -> tuple[list[Roots], Roots]:
    """Each organisation's roots and counts, and the overall ones (organisation "" in the result)."""
    parts, all_records, all_consents = [], [], []
    for organisation in sorted(manifest):
        records, consents = record_leaves(manifest[organisation]), consent_leaves(manifest[organisation])
        parts.append(_roots(organisation, records, consents))
        all_records += records
        all_consents += consents
    return parts, _roots("", all_records, all_consents)


def overall_entries(manifest: Mapping[str, Sequence[Mapping[str, Any]]]) -> list[tuple[str, Mapping[str, Any]]]:
    """(organisation, entry) for every entry of the manifest, in the order of the overall training-set tree's leaves:
    an entry's index in this list is its leaf index, the position its inclusion proof names."""
    return [(organisation, entry) for organisation in sorted(manifest) for entry in manifest[organisation]]


def index_rows(manifest: Mapping[str, Sequence[Mapping[str, Any]]]) -> list[dict[str, Any]]:
    """The manifest as the rows of the training-set index (training.models.TrainingSetEntry, less the run): what the
    index and its backfill migration both write."""
    return [
        {
            "record_id": entry["record_id"],
            "record_version": entry["version"],
            "position": position,
            "organisation": organisation,
            "consent_id": entry["consent_id"],
            "split": entry["split"],
        }
        for position, (organisation, entry) in enumerate(overall_entries(manifest))
    ]


def training_record_proof(
    manifest: Mapping[str, Sequence[Mapping[str, Any]]], *, record_id: str, about: Mapping[str, str]
) -> dict[str, Any] | None:
    """The inclusion proof of `record_id` in the run's overall training set (None if the run did not use it)."""
    entries = [entry for _, entry in overall_entries(manifest)]
    for index, entry in enumerate(entries):
        if entry["record_id"] == record_id:
            leaf = {
                "kind": merkle.TRAINING_SET_ENTRY,
                "record_id": entry["record_id"],
                "version": entry["version"],
                "sha256": entry["sha256"],
            }
            return merkle.proof_document(leaf=leaf, leaves=record_leaves(entries), index=index, about=about)
    return None


def trainer_sha256() -> str:
    """The trainer's code hash: SHA-256 over the training package's source files (migrations aside), each as its
    path relative to the package, a NUL, its bytes and a NUL, in path order."""
    digest = hashlib.sha256()
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        if relative.startswith("migrations/"):
            continue
        digest.update(relative.encode() + b"\x00" + path.read_bytes() + b"\x00")
    return digest.hexdigest()
