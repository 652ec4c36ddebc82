"""Federated training end to end: two organisations, a real Flower server and two real Flower clients over TLS on
loopback, CKKS-encrypted updates summed by the aggregator, the steward's key opening the sums, the lineage on the
ledger, the trained model in the registry."""

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tenseal
from django.urls import reverse

from analytics.blobs import FileSystemBlobStore
from audit.models import AccessEvent
from chaincode import merkle
from health_platform import bootstrap
from tests.clients import signed_in
from tests.training_world import (
    admitted_training_rows,
    candidates,
    central_newton,
    dataset_features,
    malignant,
    mixed_breast_cancer_split,
)
from training import maths
from training.local import OrganisationRecords
from training.models import TrainingRound, TrainingStatus
from training.selectors import training_record_proof_document, training_run_lineage_differences
from training.services import training_run_execute, training_run_request

pytestmark = [pytest.mark.he, pytest.mark.slow]

ROUNDS = 4


@dataclass
class Watched:
    """What a test saw of a run from outside: the aggregator's process (its environment read while it listened, its
    report at the end) and what each organisation sent, per round."""

    aggregator: Any = None
    environment: dict[str, str] = field(default_factory=dict)
    sent: dict[int, list[list[bytes]]] = field(default_factory=dict)

    def saw(self, aggregator) -> None:
        self.aggregator = aggregator
        raw = Path(f"/proc/{aggregator.pid}/environ").read_bytes()
        self.environment = dict(item.split("=", 1) for item in raw.decode().split("\0") if item)


@pytest.fixture
def breast_cancer_run(people, organisations, steward, blob_dir, monkeypatch):
    """Twelve breast-cancer patients, six per organisation. At St Mary's, patient 0 consented only to RUNNING the
    model (diagnostic-model:breast-cancer), patient 1's record is tampered with; everyone else consented to
    training:breast-cancer with their own organisation. Returns (run, people, what was watched)."""
    everyone, split = mixed_breast_cancer_split(people, organisations, 12)
    run = training_run_request(
        steward=steward,
        family="breast-cancer",
        organisations=candidates(split),
        rounds=ROUNDS,
    )
    watched = Watched()
    fit = OrganisationRecords.fit

    def fit_and_keep(trainer, round_index, weights):
        ciphertexts, count = fit(trainer, round_index, weights)
        watched.sent.setdefault(round_index, []).append(list(ciphertexts))  # (Flower empties the list it sends)
        return ciphertexts, count

    monkeypatch.setattr(OrganisationRecords, "fit", fit_and_keep)
    run = training_run_execute(run_id=str(run.pk), observe=watched.saw)
    assert run.status == TrainingStatus.COMPLETED, run.failure_code
    return run, everyone, watched


def test_a_run_admits_only_records_with_an_active_training_consent_and_a_matching_anchor(breast_cancer_run):
    run, everyone, _ = breast_cancer_run
    st_marys, northgate = sorted(run.organisations, reverse=True)
    used = {entry["record_id"] for entries in run.manifest.values() for entry in entries}
    assert used == {str(p.record.id) for p in everyone[2:]}
    assert run.organisation_counts[st_marys] == {
        "admitted": 4,
        "refused": {"no_consent": 1, "hash_mismatch": 1},
        "skipped": {},
    }
    assert run.organisation_counts[northgate] == {"admitted": 6, "refused": {}, "skipped": {}}
    # the access log says why, for every round
    for person, reason in ((everyone[0], "no_consent"), (everyone[1], "hash_mismatch")):
        events = AccessEvent.objects.filter(request_id=str(run.pk), record_id=str(person.record.id))
        assert (
            sorted(events.values_list("decision", "reason", "purpose"))
            == [("refuse", reason, "training:breast-cancer")] * ROUNDS
        )


def test_every_batch_is_logged_in_one_transaction_per_organisation_and_round(breast_cancer_run):
    run, everyone, _ = breast_cancer_run
    events = AccessEvent.objects.filter(request_id=str(run.pk), kind="record_access")
    assert events.count() == len(everyone) * ROUNDS
    per_transaction = {}
    for tx_id, record_id in events.values_list("tx_id", "record_id"):
        per_transaction.setdefault(tx_id, set()).add(record_id)
    assert len(per_transaction) == 2 * ROUNDS
    assert sorted(len(records) for records in per_transaction.values()) == [6] * (2 * ROUNDS)
    assert set(events.values_list("grantee", flat=True)) == set(run.organisations)


def test_the_lineage_is_on_the_ledger_and_its_roots_are_the_manifests(breast_cancer_run):
    run, _, _ = breast_cancer_run
    lineage = bootstrap.contracts().read_training_run(str(run.pk))
    assert lineage is not None
    assert lineage.tx_id == run.lineage_tx_id
    assert lineage.weights_sha256 == run.weights_sha256
    assert (lineage.record_count, lineage.consent_count, lineage.rounds) == (10, 10, ROUNDS)
    assert list(lineage.round_aggregates) == list(
        TrainingRound.objects.filter(run=run).order_by("index").values_list("aggregate_sha256", flat=True)
    )
    entries = [entry for organisation in sorted(run.manifest) for entry in run.manifest[organisation]]
    leaves = [merkle.training_set_leaf(e["record_id"], e["version"], e["sha256"]) for e in entries]
    assert lineage.training_set_root == merkle.merkle_root(leaves).hex()
    by_organisation = {part.organisation: part for part in lineage.organisations}
    # the lineage says why the records offered and not used were left out
    st_marys, northgate = sorted(run.organisations, reverse=True)
    assert dict(by_organisation[st_marys].left_out) == {"hash_mismatch": 1, "no_consent": 1}
    assert dict(by_organisation[northgate].left_out) == {}
    for organisation, organisation_entries in run.manifest.items():
        consents = [merkle.consent_leaf(e["consent_id"], e["patient_pseudonym"]) for e in organisation_entries]
        assert by_organisation[organisation].consent_root == merkle.merkle_root(consents).hex()
    assert training_run_lineage_differences(run=run) == []
    run.manifest[sorted(run.manifest)[0]].pop()  # a manifest that lost a record no longer matches the ledger
    assert "training_set_root" in training_run_lineage_differences(run=run)


def test_an_inclusion_proof_verifies_and_fails_for_a_record_not_in_the_set(breast_cancer_run):
    run, everyone, _ = breast_cancer_run
    lineage = bootstrap.contracts().read_training_run(str(run.pk))
    proof = training_record_proof_document(run=run, record_id=str(everyone[5].record.id))
    assert merkle.verify_document(proof)
    assert (proof["root"], proof["size"]) == (lineage.training_set_root, lineage.record_count)
    assert training_record_proof_document(run=run, record_id=str(everyone[1].record.id)) is None
    forged = {**proof, "leaf": {**proof["leaf"], "record_id": str(everyone[1].record.id)}}
    assert not merkle.verify_document(forged)


def test_logistic_weights_meet_central_newton_on_the_same_admitted_records(breast_cancer_run):
    run, everyone, _ = breast_cancer_run
    spec = _trained(run)
    weights, bias = central_newton(run, everyone, spec, ROUNDS)
    assert np.max(np.abs(np.asarray(spec.weights) - weights)) < 1e-4
    assert abs(spec.bias - bias) < 1e-4


def test_the_aggregator_runs_apart_with_no_key_and_receives_only_each_organisations_ciphertexts(
    breast_cancer_run, blob_dir
):
    run, everyone, watched = breast_cancer_run
    # its own process, started with an environment of four variables: no database, no platform key, no secret
    assert watched.aggregator.pid != os.getpid()
    assert set(watched.environment) == {"PATH", "PYTHONPATH", "FLWR_TELEMETRY_ENABLED", "PYTHONUNBUFFERED"}
    # the context it was handed is parameters only: it can add, not decrypt, not even encrypt
    context = tenseal.context_from(FileSystemBlobStore(blob_dir).get(run.compute_context_key))
    assert not context.is_private()
    assert not context.has_public_key()
    # what reached it, round by round, is what the two organisations sent: CKKS ciphertexts, one update each
    report = watched.aggregator.report
    assert report.failure == ""
    assert [index for index, _ in report.received] == list(range(1, ROUNDS + 1))
    for index, digests in report.received:
        sent = watched.sent[index]
        assert len(sent) == 2
        assert sorted(digests) == sorted([hashlib.sha256(c).hexdigest() for c in update] for update in sent)
        for update in sent:
            for ciphertext in update:
                tenseal.ckks_vector_from(context, ciphertext)
    # encrypted under the steward's key: only that key opens one organisation's update, and it is exactly that
    # organisation's statistics
    from analytics.services import secret_context_open
    from training.rounds import vault_id

    secret = tenseal.context_from(
        secret_context_open(
            request_id=vault_id(run.pk), key_id=run.sealed_key_id, sealed=bytes(run.sealed_secret_context)
        )
    )
    opened = [np.asarray(tenseal.ckks_vector_from(secret, update[0]).decrypt()) for update in watched.sent[1]]
    spec = _trained(run)
    rows, labels = admitted_training_rows(run, everyone)
    design = maths.Scaling.of_range(spec.feature_min, spec.feature_max).design(dataset_features(rows))
    in_the_clear = maths.newton_statistics(design, malignant(labels), np.zeros(design.shape[1]))
    assert np.max(np.abs(sum(opened) - in_the_clear)) < 1e-6
    assert not np.allclose(opened[0], in_the_clear)  # neither organisation's update is the whole


def _trained(run):
    """The registered model the run produced, as analyses run it."""
    from analytics.models import DiagnosticModel
    from analytics.registry import model_spec

    return model_spec(DiagnosticModel.objects.get(name=run.model_name, version=run.model_version))


def test_the_model_card_says_what_each_organisation_left_out_and_why(breast_cancer_run, steward):
    run, _, _ = breast_cancer_run
    card = signed_in(steward).get(
        reverse("analytics:model-card", kwargs={"name": run.model_name}), {"version": run.model_version}
    )
    html = card.content.decode()
    assert card.status_code == 200
    assert '<td data-label="Left out" data-left-out>1 hash_mismatch, 1 no_consent</td>' in html  # St Mary's
    assert '<td data-label="Left out" data-left-out>none</td>' in html  # Northgate
