"""Merkle trees (chaincode.merkle): Certificate Transparency's reference vectors, the properties every proof must
have, the canonical leaves and the offline checker a patient runs."""

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chaincode import merkle
from chaincode.merkle import (
    MalformedProof,
    consent_leaf,
    inclusion_proof,
    merkle_root,
    proof_document,
    training_set_leaf,
    verify_document,
    verify_inclusion,
)

REPO = Path(__file__).resolve().parents[2]

# RFC 6962's reference tree, as Certificate Transparency's own tests hold it (certificate-transparency-go, merkle
# tests): eight leaves, the root of each prefix of 1..8 leaves, and four audit paths (leaf index, tree size, path).
CT_LEAVES = [bytes.fromhex(h) for h in ("", "00", "10", "2021", "3031", "40414243", "5051525354555657",
                                         "606162636465666768696a6b6c6d6e6f")]  # fmt: skip
CT_ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
CT_PATHS = [
    (0, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (5, 8, ["bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
    (2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (1, 5, ["6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
]  # fmt: skip
EMPTY_ROOT = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

leaf_lists = st.lists(st.binary(max_size=40), min_size=1, max_size=70)


def test_the_roots_of_rfc_6962s_reference_tree_match_for_every_size_and_the_empty_tree():
    assert merkle_root([]).hex() == EMPTY_ROOT
    for size in range(1, 9):
        assert merkle_root(CT_LEAVES[:size]).hex() == CT_ROOTS[size - 1], size


@pytest.mark.parametrize(("index", "size", "path"), CT_PATHS)
def test_the_audit_paths_of_rfc_6962s_reference_tree_match_and_verify(index, size, path):
    leaves, root = CT_LEAVES[:size], bytes.fromhex(CT_ROOTS[size - 1])

    assert [sibling.hex() for sibling in inclusion_proof(leaves, index)] == path
    assert verify_inclusion(leaves[index], index, size, [bytes.fromhex(h) for h in path], root)


def test_a_one_leaf_tree_is_proved_by_an_empty_path_and_the_empty_tree_proves_nothing():
    assert inclusion_proof([b"only"], 0) == []
    assert verify_inclusion(b"only", 0, 1, [], merkle_root([b"only"]))
    assert not verify_inclusion(b"only", 0, 0, [], bytes.fromhex(EMPTY_ROOT))
    assert not verify_inclusion(b"", 0, 0, [], bytes.fromhex(EMPTY_ROOT))
    with pytest.raises(IndexError):
        inclusion_proof([], 0)


def test_a_leaf_never_passes_for_a_node():
    """Without the 0x00 / 0x01 prefixes, the two children of a node would prove their concatenation a leaf."""
    left, right = merkle.leaf_hash(b"a"), merkle.leaf_hash(b"b")
    assert merkle_root([left + right]) != merkle_root([b"a", b"b"])
    assert not verify_inclusion(left + right, 0, 1, [], merkle_root([b"a", b"b"]))


@settings(max_examples=60, deadline=None)
@given(leaves=leaf_lists)
def test_every_leafs_proof_verifies(leaves):
    root = merkle_root(leaves)
    for index, leaf in enumerate(leaves):
        assert verify_inclusion(leaf, index, len(leaves), inclusion_proof(leaves, index), root)


@settings(max_examples=60, deadline=None)
@given(leaves=leaf_lists, data=st.data())
def test_a_proof_fails_for_a_changed_leaf_another_index_another_size_or_another_root(leaves, data):
    size, root = len(leaves), merkle_root(leaves)
    index = data.draw(st.integers(0, size - 1))
    proof = inclusion_proof(leaves, index)
    changed = data.draw(st.binary(max_size=40).filter(lambda leaf: leaf != leaves[index]))
    assert not verify_inclusion(changed, index, size, proof, root)
    for other in {index - 1, index + 1, index ^ 1, index ^ 2} - {index}:
        # Another index fails unless that index holds an equal leaf with an identical path (equal neighbours).
        if 0 <= other < size and not (leaves[other] == leaves[index] and inclusion_proof(leaves, other) == proof):
            assert not verify_inclusion(leaves[index], other, size, proof, root), other
    # Twice or half the size changes the path's shape, so the proof fails (as Certificate Transparency's own tests
    # probe it). A neighbouring size may share the shape (leaf 0 of 3 leaves and of 4): the proof alone does not
    # bind the size, which is why the lineage on the ledger records each tree's count beside its root.
    for other_size in {size * 2, size // 2} - {size}:
        if other_size > index:
            assert not verify_inclusion(leaves[index], index, other_size, proof, root), other_size
    assert not verify_inclusion(leaves[index], index, size, proof, hashlib.sha256(root).digest())
    if proof:
        assert not verify_inclusion(leaves[index], index, size, proof[:-1], root)
        assert not verify_inclusion(leaves[index], index, size, [*proof, root], root)
        flipped = bytes([proof[0][0] ^ 8]) + proof[0][1:]
        assert not verify_inclusion(leaves[index], index, size, [flipped, *proof[1:]], root)


@settings(max_examples=60, deadline=None)
@given(leaves=st.lists(st.binary(max_size=40), min_size=1, max_size=40, unique=True), outsider=st.binary(max_size=40))
def test_a_leaf_not_in_the_set_is_proved_at_no_index_by_any_members_proof(leaves, outsider):
    if outsider in leaves:
        return
    root = merkle_root(leaves)
    for index in range(len(leaves)):
        assert not verify_inclusion(outsider, index, len(leaves), inclusion_proof(leaves, index), root)


def test_training_set_and_consent_leaves_are_canonical_and_never_pass_for_each_other():
    sha = "ab" * 32
    assert training_set_leaf("rec-1", 2, sha) == b'["training-set-entry/v1","rec-1",2,"' + sha.encode() + b'"]'
    assert consent_leaf("cns-1", sha) == b'["consent-entry/v1","cns-1","' + sha.encode() + b'"]'
    assert training_set_leaf("rec-1", 2, sha) != training_set_leaf("rec-1", 3, sha)
    assert consent_leaf("rec-1", sha) != training_set_leaf("rec-1", 1, sha)
    for bad in (lambda: training_set_leaf("rec 1", 1, sha), lambda: training_set_leaf("rec-1", 0, sha),
                lambda: training_set_leaf("rec-1", True, sha), lambda: training_set_leaf("rec-1", 1, "AB" * 32),
                lambda: consent_leaf("cns-1", "short")):  # fmt: skip
        with pytest.raises(MalformedProof):
            bad()


def _run_set() -> tuple[list[dict], list[bytes]]:
    fields = [
        {"kind": "training-set-entry/v1", "record_id": f"rec-{n}", "version": 1 + n % 3, "sha256": f"{n:064x}"}
        for n in range(11)
    ]
    return fields, [merkle.leaf_from_fields(entry) for entry in fields]


def test_a_proof_document_verifies_and_fails_once_its_leaf_or_root_is_changed():
    fields, leaves = _run_set()
    document = proof_document(leaf=fields[6], leaves=leaves, index=6, about={"run_id": "run-1"})
    assert json.loads(json.dumps(document)) == document
    assert (document["root"], document["size"]) == (merkle_root(leaves).hex(), 11)
    assert verify_document(document)
    assert not verify_document({**document, "leaf": {**fields[6], "version": fields[6]["version"] + 1}})
    assert not verify_document({**document, "leaf": fields[7]})
    assert not verify_document({**document, "root": merkle_root(leaves[:10]).hex()})
    with pytest.raises(MalformedProof):
        proof_document(leaf=fields[5], leaves=leaves, index=6)
    for malformed in ({**document, "format": "other"}, {**document, "index": -1}, {**document, "proof": "ab"},
                      {**document, "extra": 1}, {**document, "leaf": {**fields[6], "kind": "record"}},
                      {**document, "about": ["run-1"]}, [document]):  # fmt: skip
        with pytest.raises(MalformedProof):
            verify_document(malformed)


def test_the_offline_checker_says_whether_a_downloaded_proof_holds(tmp_path):
    fields, leaves = _run_set()
    good = proof_document(leaf=fields[3], leaves=leaves, index=3, about={"model": "breast-cancer@3"})
    files = {
        "good": good,
        "forged": {**good, "leaf": {**fields[3], "record_id": "rec-99"}},
        "broken": {"format": "something else"},
    }
    answers = {}
    for name, document in files.items():
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(document))
        done = subprocess.run(
            [sys.executable, "-m", "chaincode.merkle", "verify", str(path)],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=False,
        )
        answers[name] = (done.returncode, done.stdout + done.stderr)
    assert [code for code, _ in answers.values()] == [0, 1, 2]
    assert "The proof holds" in answers["good"][1]
    assert "model breast-cancer@3" in answers["good"][1]
    assert "does NOT hold" in answers["forged"][1]
    assert "cannot check this proof" in answers["broken"][1]


def test_the_checker_runs_as_a_lone_copy_of_the_module_with_the_standard_library_only(tmp_path):
    """What the README tells a patient: a copy of chaincode/merkle.py alone checks a proof (no platform, no
    third-party package: run with -I -S, so neither the project nor site-packages is importable)."""
    fields, leaves = _run_set()
    proof = tmp_path / "proof.json"
    proof.write_text(json.dumps(proof_document(leaf=fields[0], leaves=leaves, index=0)))
    copy = tmp_path / "merkle.py"
    copy.write_bytes((REPO / "chaincode" / "merkle.py").read_bytes())

    done = subprocess.run(
        [sys.executable, "-I", "-S", str(copy), "verify", str(proof)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert (done.returncode, "The proof holds" in done.stdout) == (0, True), done.stderr
