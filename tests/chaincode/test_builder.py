"""The peer's external builder for chaincode as a service (chaincode/builder/bin): POSIX sh, run here
with the sh the peer image has, on the directory layout a Fabric peer hands it."""

import json
import subprocess
from pathlib import Path

import pytest

BUILDER = Path(__file__).resolve().parents[2] / "chaincode" / "builder" / "bin"


def run(step: str, *directories: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["sh", str(BUILDER / step), *map(str, directories)], capture_output=True, text=True, timeout=30, check=False
    )


@pytest.fixture
def package(tmp_path):
    """A ccaas package as the peer unpacks it: source (code.tar.gz's content) and metadata folders."""
    source, metadata = tmp_path / "source", tmp_path / "metadata"
    source.mkdir()
    metadata.mkdir()
    (source / "connection.json").write_text(
        json.dumps({"address": "chaincode:9999", "dial_timeout": "10s", "tls_required": False})
    )
    (metadata / "metadata.json").write_text('{\n  "type" : "ccaas",\n  "label": "health_1.0"\n}')
    return source, metadata


def test_every_step_is_an_executable_posix_script():
    for step in ("detect", "build", "release"):
        path = BUILDER / step
        assert path.stat().st_mode & 0o111, step
        assert path.read_text().startswith("#!/bin/sh\n"), step
        assert subprocess.run(["sh", "-n", str(path)], check=False).returncode == 0, step


def test_detect_claims_ccaas_packages_only(package, tmp_path):
    source, metadata = package
    assert run("detect", source, metadata).returncode == 0
    (metadata / "metadata.json").write_text('{"type":"golang","label":"other"}')
    assert run("detect", source, metadata).returncode == 1
    (metadata / "metadata.json").unlink()
    assert run("detect", source, metadata).returncode == 1


def test_build_then_release_give_the_peer_the_service_address(package, tmp_path):
    source, metadata = package
    indexes = source / "META-INF" / "statedb" / "couchdb" / "indexes"
    indexes.mkdir(parents=True)
    (indexes / "by-patient.json").write_text("{}")
    output, release = tmp_path / "output", tmp_path / "release"
    output.mkdir()
    release.mkdir()

    assert run("build", source, metadata, output).returncode == 0
    assert run("release", output, release).returncode == 0

    served = json.loads((release / "chaincode" / "server" / "connection.json").read_text())
    assert served["address"] == "chaincode:9999"
    assert (release / "statedb" / "couchdb" / "indexes" / "by-patient.json").exists()


def test_build_refuses_a_package_without_a_usable_connection_json(package, tmp_path):
    source, metadata = package
    output = tmp_path / "output"
    (source / "connection.json").write_text('{"dial_timeout": "10s"}')
    refused = run("build", source, metadata, output)
    assert refused.returncode != 0
    assert 'has no "address"' in refused.stderr
    (source / "connection.json").unlink()
    refused = run("build", source, metadata, output)
    assert refused.returncode != 0
    assert "connection.json not found" in refused.stderr


def test_release_fails_when_build_did_not_run(tmp_path):
    (tmp_path / "output").mkdir()
    assert run("release", tmp_path / "output", tmp_path / "release").returncode != 0
