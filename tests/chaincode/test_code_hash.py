"""The chaincode's content hash (chaincode/code_hash.py): what the lifecycle pins, the same in Python and in
network/env.sh's POSIX version, changed by one byte of code and by nothing else; and the chaincode server
refuses a package id whose label does not carry its own hash."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from chaincode.code_hash import PACKAGE_DIRECTORY, code_hash, label_problem, short_hash
from chaincode.server import ServerConfig

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def copy(tmp_path) -> Path:
    target = tmp_path / "chaincode"
    shutil.copytree(PACKAGE_DIRECTORY, target, ignore=shutil.ignore_patterns("__pycache__"))
    return target


def shell_hash(directory: Path) -> str:
    """network/env.sh's CHAINCODE_CODE_HASH for a chaincode folder."""
    result = subprocess.run(
        ["sh", "-c", '. "$1/network/env.sh" && printf %s "$CHAINCODE_CODE_HASH"', "sh", str(REPO)],
        env={"PATH": "/usr/bin:/bin", "CHAINCODE_DIR": str(directory), "NETWORK_SCRIPTS_DIR": str(REPO / "network")},
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout


def test_the_hash_is_sha256_hex_and_the_shell_computes_the_same(copy):
    assert re.fullmatch(r"[0-9a-f]{64}", code_hash())
    assert code_hash(copy) == code_hash()
    assert shell_hash(copy) == code_hash()


def test_one_byte_changes_the_hash_and_caches_and_other_files_do_not(copy):
    original = code_hash(copy)
    (copy / "__pycache__").mkdir(exist_ok=True)
    (copy / "__pycache__" / "server.cpython-311.py").write_text("cached")
    (copy / "notes.txt").write_text("not code")
    assert code_hash(copy) == original
    assert shell_hash(copy) == original
    server = copy / "server.py"
    server.write_bytes(server.read_bytes() + b" ")
    assert code_hash(copy) != original
    assert shell_hash(copy) == code_hash(copy)


def test_python_m_chaincode_code_hash_prints_it():
    result = subprocess.run(
        [sys.executable, "-m", "chaincode.code_hash"], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == code_hash()


def test_a_label_must_end_in_the_short_hash():
    full = code_hash()
    assert label_problem(f"health_{short_hash(full)}:{'a' * 64}", full) is None
    assert label_problem(f"health_{'0' * 16}:{'a' * 64}", full)
    assert label_problem(f"health_1.0:{'a' * 64}", full)
    assert label_problem(f"{short_hash(full)}:{'a' * 64}", full)


def test_the_server_refuses_a_package_id_without_its_code_hash():
    mismatched = {"CHAINCODE_SERVER_ADDRESS": "127.0.0.1:0", "CHAINCODE_TLS_DISABLED": "true"}
    with pytest.raises(ValueError, match=short_hash(code_hash())):
        ServerConfig.from_environment({**mismatched, "CHAINCODE_ID": f"health_{'0' * 16}:{'a' * 64}"})
    accepted = ServerConfig.from_environment({**mismatched, "CHAINCODE_ID": f"health_{short_hash(code_hash())}:ab"})
    assert accepted.chaincode_id.endswith(":ab")


def test_python_m_chaincode_server_exits_non_zero_on_a_mismatched_package_id():
    result = subprocess.run(
        [sys.executable, "-m", "chaincode.server"],
        cwd=REPO,
        env={
            "PATH": "/usr/bin:/bin",
            "CHAINCODE_SERVER_ADDRESS": "127.0.0.1:0",
            "CHAINCODE_ID": f"health_1.0:{'a' * 64}",
            "CHAINCODE_TLS_DISABLED": "true",
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "does not carry this chaincode's code hash" in result.stderr
    assert "chaincode_server_started" not in result.stdout + result.stderr
