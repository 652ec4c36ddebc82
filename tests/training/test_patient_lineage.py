"""A patient's "Models my records trained" (page and API) with the inclusion proof of each record, the training-set
index they read, and `manage.py verify_model_lineage`, over a real federated run (Flower over TLS, CKKS sums) on the
embedded ledger."""

import importlib
import json
import sqlite3
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.apps import apps
from django.core.management import CommandError, call_command
from django.urls import reverse

from analytics.models import DiagnosticModel
from health_platform import bootstrap
from records.codes import BREAST_CANCER_DATASET, load_dataset
from tests.clients import api_as, signed_in
from tests.records.factories import UserFactory
from tests.signing import revoke_signed
from tests.training.factories import TrainingRunFactory
from training.lineage import index_rows
from training.models import TrainingRun, TrainingSetEntry, TrainingStatus
from training.selectors import training_record_proof_document

pytestmark = [pytest.mark.he, pytest.mark.slow]

backfill = importlib.import_module("training.migrations.0003_training_set_entries")
REPOSITORY = Path(__file__).resolve().parents[2]


def proof_url(run, person) -> str:
    return reverse("training:my-model-proof", kwargs={"run_id": run.pk, "record_id": person.record.pk})


def offline_check(document_bytes: bytes, folder: Path) -> subprocess.CompletedProcess:
    """The platform's offline checker, as a patient runs it: python -m chaincode.merkle verify proof.json."""
    path = folder / "proof.json"
    path.write_bytes(document_bytes)
    return subprocess.run(
        [sys.executable, "-m", "chaincode.merkle", "verify", str(path)],
        cwd=REPOSITORY,
        capture_output=True,
        text=True,
        timeout=60,
    )


def verify_model_lineage(*arguments: str) -> tuple[int, str, str]:
    """Run the command: (exit code, what it printed, the error's line or "")."""
    out = StringIO()
    try:
        call_command("verify_model_lineage", *arguments, stdout=out)
    except CommandError as error:
        return error.returncode, out.getvalue(), str(error)
    return 0, out.getvalue(), ""


# --- the index ---------------------------------------------------------------------------------------------


def test_a_completed_run_indexes_each_record_at_its_leaf_position_with_its_consent(small_breast_cancer_run):
    run, everyone = small_breast_cancer_run
    entries = list(run.entries.order_by("position"))
    assert len(entries) == 6
    assert {str(e.record_id) for e in entries} == {str(p.record.pk) for p in everyone[:6]}
    for entry in entries:
        proof = training_record_proof_document(run=run, record_id=str(entry.record_id))
        assert proof["index"] == entry.position
        kept = next(e for org in run.manifest.values() for e in org if e["record_id"] == str(entry.record_id))
        assert (entry.record_version, entry.consent_id, entry.split) == (
            kept["version"],
            kept["consent_id"],
            kept["split"],
        )
        assert entry.organisation in run.manifest


def test_the_backfill_migration_indexes_the_runs_completed_before_it_and_no_other(small_breast_cancer_run, steward):
    run, _ = small_breast_cancer_run
    expected = sorted(TrainingSetEntry.objects.filter(run=run).values_list("record_id", "position", "consent_id"))
    TrainingSetEntry.objects.all().delete()
    unfinished = TrainingRunFactory(steward=steward, status=TrainingStatus.FAILED, manifest=run.manifest)
    backfill.index_completed_runs(apps, None)
    assert sorted(TrainingSetEntry.objects.filter(run=run).values_list("record_id", "position", "consent_id")) == (
        expected
    )
    assert not TrainingSetEntry.objects.filter(run=unfinished).exists()
    backfill.index_completed_runs(apps, None)  # again: nothing doubled
    assert TrainingSetEntry.objects.count() == len(index_rows(run.manifest)) == 6


# --- the patient's page and API ------------------------------------------------------------------------------


def test_the_patient_sees_the_model_their_record_trained_without_any_clinical_value(small_breast_cancer_run):
    run, everyone = small_breast_cancer_run
    alice, bob, never_consented = everyone[0], everyone[1], everyone[6]
    page = signed_in(alice.user).get(reverse("training:my-models"))
    html = page.content.decode()
    assert page.status_code == 200
    assert "Models my records trained" in html
    assert f'data-run-id="{run.pk}"' in html
    assert f'data-model="breast-cancer@{run.model_version}"' in html
    entry = run.entries.get(record=alice.record)
    assert f'data-record-id="{alice.record.pk}" data-split="{entry.split}" data-consent-status="active"' in html
    assert "Imaging" in html
    assert f"version {entry.record_version}" in html
    assert f'data-consent-id="{entry.consent_id}"' in html
    assert run.lineage_tx_id in html
    assert proof_url(run, alice) in html
    assert "python -m chaincode.merkle verify proof.json" in html
    assert str(bob.record.pk) not in html  # only their own records
    for value in load_dataset(BREAST_CANCER_DATASET).data[alice.row][:5]:
        assert f"{value:g}" not in html  # no clinical value of theirs
    nothing = signed_in(never_consented.user).get(reverse("training:my-models"))
    assert nothing.status_code == 200
    assert 'id="no-trained-models"' in nothing.content.decode()


def test_a_revoked_training_consent_shows_as_since_revoked(small_breast_cancer_run):
    run, everyone = small_breast_cancer_run
    alice = everyone[0]
    from consent.models import Consent

    revoke_signed(
        actor=alice.user, consent=Consent.objects.get(consent_id=run.entries.get(record=alice.record).consent_id)
    )
    html = signed_in(alice.user).get(reverse("training:my-models")).content.decode()
    assert 'data-consent-status="revoked"' in html
    assert "Since revoked" in html
    listed = api_as(alice.user).get("/api/training/my-models/").json()
    assert listed["models"][0]["records"][0]["consent_status"] == "revoked"


def test_the_downloaded_proof_verifies_offline_and_a_tampered_or_foreign_one_does_not(
    small_breast_cancer_run, tmp_path
):
    run, everyone = small_breast_cancer_run
    alice, bob = everyone[0], everyone[4]
    answer = signed_in(alice.user).get(proof_url(run, alice))
    assert answer.status_code == 200
    assert answer["Content-Type"] == "application/json"
    assert answer["Content-Disposition"] == (
        f'attachment; filename="training-proof-breast-cancer-{run.model_version}-{alice.record.pk}.json"'
    )
    document = json.loads(answer.content)
    lineage = bootstrap.contracts().read_training_run(str(run.pk))
    assert (document["root"], document["size"]) == (lineage.training_set_root, lineage.record_count)
    assert document["about"]["lineage_tx_id"] == lineage.tx_id
    checked = offline_check(answer.content, tmp_path)
    assert checked.returncode == 0, checked.stderr
    assert "The proof holds" in checked.stdout

    # The same proof with another record's id (Bob's, in the same training set) does not hold.
    forged = {**document, "leaf": {**document["leaf"], "record_id": str(bob.record.pk)}}
    assert offline_check(json.dumps(forged).encode(), tmp_path).returncode == 1
    # Nor with another anchored hash.
    other_hash = {**document, "leaf": {**document["leaf"], "sha256": "0" * 64}}
    assert offline_check(json.dumps(other_hash).encode(), tmp_path).returncode == 1
    # Bob's proof is not Alice's to download: as if it did not exist.
    assert signed_in(alice.user).get(proof_url(run, bob)).status_code == 404
    assert api_as(alice.user).get(f"/api/training/my-models/{run.pk}/{bob.record.pk}/proof/").status_code == 404


def test_the_api_lists_the_patients_models_and_proofs_and_refuses_staff(small_breast_cancer_run, steward, tmp_path):
    run, everyone = small_breast_cancer_run
    alice, bob = everyone[0], everyone[4]
    listed = api_as(alice.user).get("/api/training/my-models/")
    assert listed.status_code == 200
    (model,) = listed.json()["models"]
    assert (model["run_id"], model["model"], model["lineage_tx_id"]) == (
        str(run.pk),
        f"breast-cancer@{run.model_version}",
        run.lineage_tx_id,
    )
    assert [r["record_id"] for r in model["records"]] == [str(alice.record.pk)]
    assert set(model["records"][0]) == {
        "record_id",
        "category",
        "category_label",
        "version",
        "split",
        "consent_id",
        "consent_status",
        "consent_revoked_at",
    }
    proof = api_as(alice.user).get(f"/api/training/my-models/{run.pk}/{alice.record.pk}/proof/")
    assert proof.status_code == 200
    assert offline_check(proof.content, tmp_path).returncode == 0
    missing = api_as(bob.user).get(f"/api/training/my-models/{run.pk}/{alice.record.pk}/proof/")
    assert (missing.status_code, missing.json()["code"]) == (404, "not_found")
    refused = api_as(steward).get("/api/training/my-models/")
    assert (refused.status_code, refused.json()["code"]) == (403, "permission_denied")
    assert signed_in(steward).get(reverse("training:my-models")).status_code == 403


def test_no_proof_is_given_when_the_kept_training_set_no_longer_gives_the_ledgers_root(small_breast_cancer_run):
    run, everyone = small_breast_cancer_run
    alice = everyone[0]
    organisation = next(
        org for org, entries in run.manifest.items() if entries[-1]["record_id"] != str(alice.record.pk)
    )
    run.manifest[organisation][-1]["sha256"] = "1" * 64
    TrainingRun.objects.filter(pk=run.pk).update(manifest=run.manifest)
    answer = api_as(alice.user).get(f"/api/training/my-models/{run.pk}/{alice.record.pk}/proof/")
    assert (answer.status_code, answer.json()["code"]) == (409, "lineage_mismatch")
    assert signed_in(alice.user).get(proof_url(run, alice)).status_code == 409


# --- manage.py verify_model_lineage ---------------------------------------------------------------------------


def test_verify_model_lineage_agrees_for_a_clean_run_by_name_or_run_id(small_breast_cancer_run):
    run, _ = small_breast_cancer_run
    code, printed, _ = verify_model_lineage(f"breast-cancer@{run.model_version}")
    assert code == 0, printed
    assert "OK" in printed
    assert "6 records of 2 organisations" in printed
    code, printed, _ = verify_model_lineage(str(run.pk), "--json")
    assert code == 0
    result = json.loads(printed)
    assert result["ok"] is True
    assert result["differences"] == []
    assert result["records_differing"] == {}
    assert result["lineage_tx_id"] == run.lineage_tx_id


def test_verify_model_lineage_names_an_edited_manifest_entry(small_breast_cancer_run):
    run, _ = small_breast_cancer_run
    organisation = sorted(run.manifest)[1]
    edited = run.manifest[organisation][0]
    edited["sha256"] = "2" * 64
    TrainingRun.objects.filter(pk=run.pk).update(manifest=run.manifest)
    code, printed, _ = verify_model_lineage(str(run.pk), "--json")
    assert code == 1
    result = json.loads(printed)
    assert result["ok"] is False
    assert "training_set_root" in result["differences"]
    assert f"{organisation}.training_set_root" in result["differences"]
    assert "anchors.training_set_root" not in result["differences"]  # the ledger's anchors still give its root
    assert result["records_differing"] == {
        organisation: [{"record_id": edited["record_id"], "version": edited["version"], "anchor": "differs"}]
    }
    code, printed, _ = verify_model_lineage(f"breast-cancer@{run.model_version}")
    assert code == 1
    assert f"{organisation} record {edited['record_id']}" in printed


def test_verify_model_lineage_names_a_record_whose_anchor_on_the_ledger_differs(small_breast_cancer_run, ledger):
    run, everyone = small_breast_cancer_run
    bob = everyone[4]
    organisation, kept = next(
        (org, e) for org, entries in run.manifest.items() for e in entries if e["record_id"] == str(bob.record.pk)
    )
    with sqlite3.connect(ledger.path) as connection:
        rows = connection.execute("SELECT key, value FROM state").fetchall()
        changed = 0
        for key, value in rows:
            text = bytes(value).decode("utf-8", "replace")
            if (
                "anchor" in bytes(key).decode("utf-8", "replace")
                and kept["record_id"] in text
                and kept["sha256"] in text
            ):
                connection.execute(
                    "UPDATE state SET value = ? WHERE key = ?", (text.replace(kept["sha256"], "3" * 64).encode(), key)
                )
                changed += 1
    assert changed == 1
    assert bootstrap.contracts().read_anchor(kept["record_id"]).sha256 == "3" * 64
    code, printed, _ = verify_model_lineage(str(run.pk))
    assert code == 1
    assert (
        f"{organisation} record {kept['record_id']} version {kept['version']}: its anchor on the ledger differs"
        in printed
    )
    assert "field anchors.training_set_root" in printed
    assert f"field anchors.{organisation}.training_set_root" in printed
    assert "field training_set_root\n" not in printed  # the manifest still gives the ledger's lineage


def test_verify_model_lineage_names_a_registry_whose_weights_differ(small_breast_cancer_run):
    run, _ = small_breast_cancer_run
    DiagnosticModel.objects.filter(name=run.model_name, version=run.model_version).update(sha256="4" * 64)
    code, printed, _ = verify_model_lineage(str(run.pk))
    assert code == 1
    assert "field model_registry.sha256" in printed


@pytest.mark.parametrize(
    ("model", "code", "error"),
    [
        ("breast-cancer@run-000000000000", 3, "unknown_model"),
        ("breast-cancer@1", 3, "unknown_model"),  # a catalogue model: no training run, no lineage
        ("00000000-0000-4000-8000-000000000000", 3, "unknown_model"),
        ("breast-cancer", 4, "invalid_model"),
        ("@", 4, "invalid_model"),
        ("x" * 200 + "@1", 4, "invalid_model"),
        ("bad\x00name@1", 4, "invalid_model"),
    ],
)
def test_verify_model_lineage_refuses_an_unknown_or_malformed_model_with_its_code(db, ledger, model, code, error):
    exit_code, printed, problem = verify_model_lineage(model)
    assert (exit_code, printed) == (code, "")
    assert problem.startswith(f"{error}:")


def test_a_staff_user_of_no_patient_sees_no_page(db):
    clinician = UserFactory(username="dr-nobody")
    assert signed_in(clinician).get(reverse("training:my-models")).status_code == 403
