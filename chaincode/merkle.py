"""Merkle trees with inclusion proofs, as Certificate Transparency builds them (RFC 6962 section 2.1; RFC 9162
section 2.1). Free of Django and of anything outside the standard library: the chaincode, the ledger, the apps and
a patient's own machine all run this one module.

    python -m chaincode.merkle verify proof.json     says whether an inclusion proof the platform handed out holds

Hashing: a leaf is SHA-256(0x00 || leaf bytes), an interior node SHA-256(0x01 || left || right); a tree of n > 1
leaves splits at k, the largest power of two smaller than n (the left subtree is always full). The empty tree's
root is SHA-256 of nothing. The two prefixes keep a leaf from passing for a node (second-preimage resistance).

What a training run's lineage commits to (issue 18), per organisation and overall:
- the training set: one leaf per record version used, `training_set_leaf(record_id, version, sha256)`, the
  anchored hash of the version the run read;
- the consents that admitted them: one leaf per consent, `consent_leaf(consent_id, patient_pseudonym)`.
Leaves are canonical JSON arrays headed by their kind, so that an entry of one kind never passes for the other
and anyone can rebuild a leaf's bytes from the fields a proof document shows. The order of the leaves is the
caller's to fix (the training manifest keeps it); a proof names its leaf's index.

A proof document (`proof_document`) is what a patient downloads: the leaf's fields, its index, the tree's size,
the proof's hashes and the root, and what the root is the root of (a run, a model version, an organisation).
`verify_document` rebuilds the leaf from its fields and checks the path to the root; comparing the root with the
one on the ledger (ReadTrainingRun, ModelLineageByWeights) is what makes the proof mean something, and so is
comparing the size with the count the ledger records beside the root: the path alone does not bind the tree's size
(leaf 0 of a tree of 3 leaves and of one of 4 have paths of the same shape).
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"
HASH_SIZE = 32
PROOF_FORMAT = "health-platform/merkle-inclusion-proof/v1"
TRAINING_SET_ENTRY = "training-set-entry/v1"
CONSENT_ENTRY = "consent-entry/v1"
# A proof has one hash per level: 64 levels cover any tree a ledger will ever commit to.
MAX_PROOF_LENGTH = 64
MAX_TREE_SIZE = 2**63

_HEX_HASH = re.compile(r"[0-9a-f]{64}")
_IDENTIFIER = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")


class MalformedProof(ValueError):
    """A proof document or leaf whose shape is wrong (as opposed to a well-formed proof that does not hold)."""


def leaf_hash(leaf: bytes) -> bytes:
    return hashlib.sha256(LEAF_PREFIX + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(NODE_PREFIX + left + right).digest()


def _split(size: int) -> int:
    """k, the largest power of two smaller than `size` (> 1): where RFC 6962 splits a tree of `size` leaves."""
    return 1 << ((size - 1).bit_length() - 1)


def _root_of_hashes(hashes: Sequence[bytes]) -> bytes:
    if not hashes:
        return hashlib.sha256(b"").digest()
    if len(hashes) == 1:
        return hashes[0]
    k = _split(len(hashes))
    return node_hash(_root_of_hashes(hashes[:k]), _root_of_hashes(hashes[k:]))


def _path(index: int, hashes: Sequence[bytes]) -> list[bytes]:
    if len(hashes) <= 1:
        return []
    k = _split(len(hashes))
    if index < k:
        return [*_path(index, hashes[:k]), _root_of_hashes(hashes[k:])]
    return [*_path(index - k, hashes[k:]), _root_of_hashes(hashes[:k])]


def merkle_root(leaves: Sequence[bytes]) -> bytes:
    """The Merkle tree hash (MTH) of `leaves`, each the leaf's bytes (hashed here, with the leaf prefix)."""
    return _root_of_hashes([leaf_hash(leaf) for leaf in leaves])


def inclusion_proof(leaves: Sequence[bytes], index: int) -> list[bytes]:
    """The audit path (RFC 6962 PATH) of leaf `index` among `leaves`: the sibling hashes from the leaf up."""
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(leaves):
        raise IndexError(f"leaf index {index!r} is not in a tree of {len(leaves)} leaves")
    return _path(index, [leaf_hash(leaf) for leaf in leaves])


def verify_inclusion(leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes) -> bool:
    """Whether `proof` shows `leaf` (its bytes) at `index` in a tree of `size` leaves whose root is `root`.

    RFC 9162 section 2.1.3.2: the path is walked from the leaf up, each hash on the left or the right as the
    index's bits and the tree's shape say; the proof must be used whole, and must end exactly at the root."""
    if any(isinstance(value, bool) or not isinstance(value, int) for value in (index, size)):
        return False
    if not 0 <= index < size or len(proof) > MAX_PROOF_LENGTH:
        return False
    if any(not isinstance(sibling, bytes) or len(sibling) != HASH_SIZE for sibling in proof):
        return False
    position, last, running = index, size - 1, leaf_hash(leaf)
    for sibling in proof:
        if last == 0:
            return False  # the proof is longer than the tree is deep
        if position & 1 or position == last:
            running = node_hash(sibling, running)
            while not position & 1 and position != 0:
                position, last = position >> 1, last >> 1
        else:
            running = node_hash(running, sibling)
        position, last = position >> 1, last >> 1
    return last == 0 and running == root


# --- canonical leaves -------------------------------------------------------------------------------------


def _canonical(values: list[Any]) -> bytes:
    return json.dumps(values, separators=(",", ":"), ensure_ascii=True).encode()


def _identifier(value: Any, field: str) -> str:
    if not isinstance(value, str) or not _IDENTIFIER.fullmatch(value):
        raise MalformedProof(f"{field} must be 1-128 characters of letters, digits and . _ : -")
    return value


def _hex_hash(value: Any, field: str) -> str:
    if not isinstance(value, str) or not _HEX_HASH.fullmatch(value):
        raise MalformedProof(f"{field} must be 64 lowercase hex characters")
    return value


def training_set_leaf(record_id: str, version: int, sha256: str) -> bytes:
    """The leaf of one record version in a training set: its id, version and the SHA-256 anchored for it."""
    if isinstance(version, bool) or not isinstance(version, int) or not 1 <= version < 2**31:
        raise MalformedProof("version must be a positive integer")
    return _canonical([TRAINING_SET_ENTRY, _identifier(record_id, "record_id"), version, _hex_hash(sha256, "sha256")])


def consent_leaf(consent_id: str, patient_pseudonym: str) -> bytes:
    """The leaf of one consent that admitted records to a training set: its id and its patient's pseudonym."""
    return _canonical(
        [CONSENT_ENTRY, _identifier(consent_id, "consent_id"), _hex_hash(patient_pseudonym, "patient_pseudonym")]
    )


_LEAF_FIELDS: dict[str, tuple[str, ...]] = {
    TRAINING_SET_ENTRY: ("record_id", "version", "sha256"),
    CONSENT_ENTRY: ("consent_id", "patient_pseudonym"),
}


def leaf_from_fields(fields: Mapping[str, Any]) -> bytes:
    """A leaf's bytes from the fields a proof document shows: {"kind", and the kind's own fields}."""
    kind = fields.get("kind") if isinstance(fields, Mapping) else None
    if kind not in _LEAF_FIELDS:
        raise MalformedProof(f"leaf.kind must be one of: {', '.join(sorted(_LEAF_FIELDS))}")
    if set(fields) != {"kind", *_LEAF_FIELDS[kind]}:
        raise MalformedProof(f"a {kind} leaf has exactly the fields kind, {', '.join(_LEAF_FIELDS[kind])}")
    if kind == TRAINING_SET_ENTRY:
        return training_set_leaf(fields["record_id"], fields["version"], fields["sha256"])
    return consent_leaf(fields["consent_id"], fields["patient_pseudonym"])


# --- proof documents --------------------------------------------------------------------------------------

_DOCUMENT_FIELDS = {"format", "leaf", "index", "size", "proof", "root", "about"}


def proof_document(
    *, leaf: Mapping[str, Any], leaves: Sequence[bytes], index: int, about: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """The JSON document that proves the leaf with fields `leaf` is leaf `index` of `leaves` (whose root the
    ledger holds). `about` says what the root is the root of (run id, model, organisation...): shown, not checked."""
    if leaf_from_fields(leaf) != leaves[index]:
        raise MalformedProof("the leaf's fields are not the leaf at this index")
    return {
        "format": PROOF_FORMAT,
        "leaf": dict(leaf),
        "index": index,
        "size": len(leaves),
        "proof": [sibling.hex() for sibling in inclusion_proof(leaves, index)],
        "root": merkle_root(leaves).hex(),
        "about": dict(about or {}),
    }


def verify_document(document: Any) -> bool:
    """Whether a proof document holds: its leaf, rebuilt from the fields shown, is at its index in a tree of its
    size with its root. Raises MalformedProof for a document that is not one (wrong format, fields or types)."""
    if not isinstance(document, dict) or document.get("format") != PROOF_FORMAT:
        raise MalformedProof(f"not a proof document (format must be {PROOF_FORMAT})")
    if not {"format", "leaf", "index", "size", "proof", "root"} <= set(document) <= _DOCUMENT_FIELDS:
        raise MalformedProof(f"a proof document has the fields {', '.join(sorted(_DOCUMENT_FIELDS))}")
    index, size, proof = document["index"], document["size"], document["proof"]
    for name, value in (("index", index), ("size", size)):
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < MAX_TREE_SIZE:
            raise MalformedProof(f"{name} must be a non-negative integer")
    if not isinstance(proof, list) or len(proof) > MAX_PROOF_LENGTH:
        raise MalformedProof(f"proof must be a list of at most {MAX_PROOF_LENGTH} hashes")
    about = document.get("about", {})
    if not isinstance(about, dict) or not all(isinstance(v, str) for v in [*about, *about.values()]):
        raise MalformedProof("about must be an object of texts")
    siblings = [bytes.fromhex(_hex_hash(sibling, "proof[]")) for sibling in proof]
    root = bytes.fromhex(_hex_hash(document["root"], "root"))
    return verify_inclusion(leaf_from_fields(document["leaf"]), index, size, siblings, root)


def main(arguments: list[str]) -> int:
    """`verify PROOF.json`: prints whether the proof holds; exit 0 if it does, 1 if not, 2 for unusable input."""
    if len(arguments) != 2 or arguments[0] != "verify":
        print("usage: python -m chaincode.merkle verify PROOF.json", file=sys.stderr)
        return 2
    try:
        document = json.loads(Path(arguments[1]).read_text(encoding="utf-8"))
        holds = verify_document(document)
    except (OSError, ValueError) as problem:  # MalformedProof and JSON errors are ValueErrors
        print(f"cannot check this proof: {problem}", file=sys.stderr)
        return 2
    about = ", ".join(f"{name} {value}" for name, value in sorted((document.get("about") or {}).items()))
    where = f" ({about})" if about else ""
    if holds:
        print(f"The proof holds: leaf {document['index']} of {document['size']} under root {document['root']}{where}.")
        return 0
    print(f"The proof does NOT hold: this leaf is not shown to be under root {document['root']}{where}.")
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
