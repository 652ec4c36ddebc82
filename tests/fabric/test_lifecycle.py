"""The chaincode's code is pinned by the lifecycle, on the running network: a copy of chaincode/ with one
byte changed is a new package, a new version and the next sequence; approved by the hospital alone (the
research organisation's approval still names the old code), Fabric refuses to commit it, and the channel
keeps the definition both organisations approved."""

import shutil

import pytest

from chaincode.code_hash import PACKAGE_DIRECTORY, code_hash, short_hash
from tests.fabric.network import FabricNetwork

pytestmark = pytest.mark.fabric


def test_changed_code_approved_by_one_organisation_only_is_not_committed(fabric_network: FabricNetwork, tmp_path):
    changed = tmp_path / "chaincode"
    shutil.copytree(PACKAGE_DIRECTORY, changed, ignore=shutil.ignore_patterns("__pycache__"))
    (changed / "errors.py").write_bytes((changed / "errors.py").read_bytes() + b"#")
    old, new = short_hash(code_hash()), short_hash(code_hash(changed))
    assert old != new
    before = fabric_network.run("committed")
    assert before.returncode == 0, before.stderr
    assert f"Version: {old}, Sequence: 1," in before.stdout

    with_changed_code = {"CHAINCODE_DIR": str(changed)}
    approved = fabric_network.run("approve", "hospital", environment=with_changed_code)
    assert approved.returncode == 0, approved.stderr
    assert f"approving health version {new} sequence 2 for HospitalMSP" in approved.stderr
    package = fabric_network.directory / "orgs" / "hospital" / "chaincode" / f"health_{new}.id"
    assert package.read_text().startswith(f"health_{new}:")

    refused = fabric_network.run("commit", environment=with_changed_code)
    assert refused.returncode != 0
    assert "HospitalMSP=true ResearchMSP=false" in refused.stderr
    # Fabric's own refusal: the research peer will not endorse a definition its organisation did not approve.
    assert "not agreed to by this org (ResearchMSP)" in refused.stderr, refused.stderr

    after = fabric_network.run("committed")
    assert f"Version: {old}, Sequence: 1," in after.stdout
    assert "HospitalMSP: true, ResearchMSP: true" in after.stdout
