"""The chaincode's content hash: what the Fabric lifecycle pins the chaincode definition to.

    python -m chaincode.code_hash [DIRECTORY]     prints the hash of DIRECTORY (default: this package)

The hash is SHA-256 over the package's Python files, sorted by their path relative to the package
folder (POSIX, byte order), each as one line `<sha256 of the file's bytes>  <path>\\n` -- exactly what
`sha256sum` prints, so that network/env.sh computes the same value with POSIX tools where Python is
not installed (Fabric's tools image). `__pycache__` folders are left out; nothing but `.py` counts.

network/fabric.sh labels each chaincode package `<name>_<first 16 hex digits>` and writes the whole
hash into the package's metadata, so a change of one byte of code is a new package, a new chaincode
version and a new lifecycle sequence that each organisation must approve again. The chaincode server
refuses to start under a package id whose label does not carry its own hash (`label_problem`).
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

PACKAGE_DIRECTORY = Path(__file__).resolve().parent
SHORT_LENGTH = 16


def code_files(directory: Path = PACKAGE_DIRECTORY) -> list[tuple[str, Path]]:
    """(relative POSIX path, file) of every .py file under `directory`, outside __pycache__, sorted by path."""
    found = [
        (path.relative_to(directory).as_posix(), path)
        for path in directory.rglob("*.py")
        if "__pycache__" not in path.relative_to(directory).parts and path.is_file()
    ]
    return sorted(found, key=lambda item: item[0].encode())


def code_hash(directory: Path = PACKAGE_DIRECTORY) -> str:
    """The content hash (64 hex digits) of the chaincode package in `directory`."""
    manifest = hashlib.sha256()
    for relative, path in code_files(directory):
        manifest.update(f"{hashlib.sha256(path.read_bytes()).hexdigest()}  {relative}\n".encode())
    return manifest.hexdigest()


def short_hash(full_hash: str) -> str:
    return full_hash[:SHORT_LENGTH]


def label_problem(chaincode_id: str, full_hash: str) -> str | None:
    """Why the package id `label:digest` does not name this code (None when its label is `<name>_<short hash>`)."""
    label = chaincode_id.partition(":")[0]
    name, separator, carried = label.rpartition("_")
    if not (name and separator) or carried != short_hash(full_hash):
        return (
            f"CHAINCODE_ID's label {label!r} does not carry this chaincode's code hash "
            f"{short_hash(full_hash)} (expected a label ending in _{short_hash(full_hash)}): "
            "the package the peers approved is not this code"
        )
    return None


def main(arguments: list[str]) -> int:
    directory = Path(arguments[0]) if arguments else PACKAGE_DIRECTORY
    if not directory.is_dir():
        print(f"code_hash: {directory} is not a folder", file=sys.stderr)
        return 2
    print(code_hash(directory))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
