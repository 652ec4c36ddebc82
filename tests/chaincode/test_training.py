"""The training lineage contract (chaincode.contracts.training, issue 18) through the ledger, as clients call it, on
every backend: a run's lineage written once, found by its weights, strictly validated; models retired and
reinstated on the ledger; a patient's inclusion proof checked against the root the ledger holds."""

import json
from typing import Any

import pytest

from chaincode import merkle
from ledger import ContractRejected
from tests.chaincode.conftest import digest, ident, pseudonym

STEWARD = "model-steward:u7"
FAMILY = "breast-cancer"


def records_of(organisation: str) -> list[tuple[str, int, str]]:
    """(record id, version, anchored hash) of the records each organisation trained on."""
    return {
        "org:st-marys": [(ident("rec-a1"), 1, digest(1)), (ident("rec-a2"), 2, digest(2))],
        "org:north": [(ident("rec-b1"), 1, digest(3))],
    }[organisation]


def consents_of(organisation: str) -> list[tuple[str, str]]:
    return {"org:st-marys": [(ident("c-a1"), pseudonym(1))], "org:north": [(ident("c-b1"), pseudonym(2))]}[organisation]


def training_leaves(organisation: str) -> list[bytes]:
    return [merkle.training_set_leaf(*record) for record in records_of(organisation)]


def consent_leaves(organisation: str) -> list[bytes]:
    return [merkle.consent_leaf(*consent) for consent in consents_of(organisation)]


ORGANISATIONS = ("org:north", "org:st-marys")


def lineage(run_id: str, weights: str, **overrides: Any) -> dict[str, Any]:
    """A run over two organisations' records, with roots computed as the platform computes them."""
    parts = [
        {
            "organisation": organisation,
            "training_set_root": merkle.merkle_root(training_leaves(organisation)).hex(),
            "consent_root": merkle.merkle_root(consent_leaves(organisation)).hex(),
            "record_count": len(records_of(organisation)),
            "consent_count": len(consents_of(organisation)),
        }
        for organisation in ORGANISATIONS
    ]
    every_record = [leaf for organisation in ORGANISATIONS for leaf in training_leaves(organisation)]
    every_consent = [leaf for organisation in ORGANISATIONS for leaf in consent_leaves(organisation)]
    return {
        "run_id": run_id,
        "model_family": FAMILY,
        "model_version": ident("3"),  # unique to the test: a Fabric ledger keeps every test's model anchors
        "steward": STEWARD,
        "organisations": parts,
        "training_set_root": merkle.merkle_root(every_record).hex(),
        "consent_root": merkle.merkle_root(every_consent).hex(),
        "record_count": len(every_record),
        "consent_count": len(every_consent),
        "trainer_sha256": digest(70),
        "hyperparameters": {"learning_rate": 0.1, "penalty": "l2", "fit_intercept": True, "max_iter": 25},
        "rounds": 2,
        "round_aggregates": [digest(80), digest(81)],
        "metrics": {"accuracy": 0.9736, "auc": "0.99"},
        "dp_epsilon": None,
        "dp_delta": None,
        "weights_sha256": weights,
        **overrides,
    }


def record(chain, run: dict[str, Any]):
    return chain.submit("training", "RecordTrainingRun", json.dumps(run))


def status_change(chain, function: str, weights: str, reason: str, revocations: int):
    body = {"weights_sha256": weights, "reason": reason, "revocations": revocations}
    return chain.submit("training", function, json.dumps(body)).json()


def test_a_runs_lineage_is_one_transaction_read_back_by_run_and_by_weights(chain):
    height = chain.height()
    receipt = record(chain, lineage(ident("run-1"), digest(90)))
    entry = receipt.json()

    assert chain.height() == height + 1
    assert (entry["tx_id"], entry["steward"], entry["record_count"], entry["consent_count"]) == (
        receipt.tx_id,
        STEWARD,
        3,
        2,
    )
    assert entry["submitted_by"]  # the submitting client's organisation (MSP), as the ledger sees it
    assert [part["organisation"] for part in entry["organisations"]] == ["org:north", "org:st-marys"]
    assert chain.evaluate("training", "ReadTrainingRun", ident("run-1")).json() == entry
    assert chain.evaluate("training", "ModelLineageByWeights", digest(90)).json() == entry


def test_numbers_are_kept_as_canonical_decimal_text_and_the_hyperparameters_as_canonical_json(chain):
    run = lineage(ident("run-1"), digest(90), dp_epsilon=1, dp_delta="1e-05", metrics={"accuracy": 0.50, "f1": "0.10"})
    entry = record(chain, run).json()

    assert entry["metrics"] == {"accuracy": "0.5", "f1": "0.1"}
    assert (entry["dp_epsilon"], entry["dp_delta"]) == ("1", "1e-05")
    assert entry["hyperparameters"] == '{"fit_intercept":true,"learning_rate":0.1,"max_iter":25,"penalty":"l2"}'


def test_the_same_run_again_answers_the_original_and_another_under_its_id_or_weights_is_refused(chain):
    first = record(chain, lineage(ident("run-1"), digest(90))).json()
    reordered = lineage(ident("run-1"), digest(90))
    reordered["organisations"].reverse()  # the same run: organisations are kept sorted by id

    assert record(chain, reordered).json() == first
    for run in (
        lineage(ident("run-1"), digest(90), rounds=1, round_aggregates=[digest(80)]),
        lineage(ident("run-1"), digest(91)),
        lineage(ident("run-2"), digest(90)),  # weights have one lineage
    ):
        with pytest.raises(ContractRejected) as refused:
            record(chain, run)
        assert refused.value.code == "already_exists"
    assert chain.evaluate("training", "ReadTrainingRun", ident("run-1")).json() == first


def test_a_model_version_anchored_with_other_weights_cannot_be_given_this_lineage(chain):
    family = f"bc-{ident('x')}".lower()[:40]
    chain.submit("anchors", "AnchorModel", family, ident("3"), digest(90))

    with pytest.raises(ContractRejected) as refused:
        record(chain, lineage(ident("run-1"), digest(91), model_family=family))
    assert refused.value.code == "weights_mismatch"
    assert record(chain, lineage(ident("run-1"), digest(90), model_family=family)).json()["model_family"] == family


def _oversize_hyperparameters() -> dict[str, str]:
    return {f"p{n}": "x" * 127 for n in range(32)}


@pytest.mark.parametrize(
    ("overrides", "code", "fragment"),
    [
        ({"diagnosis": "malignant"}, "invalid_argument", "unknown fields: diagnosis"),
        ({"model_family": "Breast Cancer"}, "invalid_argument", "run.model_family"),
        ({"model_family": "x" * 60}, "invalid_argument", "run.model_family"),
        ({"model_version": "3 beta"}, "invalid_argument", "run.model_version"),
        ({"steward": "clinician:alice"}, "invalid_argument", "run.steward must be 'model-steward:<id>'"),
        ({"trainer_sha256": "ABC"}, "invalid_argument", "run.trainer_sha256 must be 64"),
        ({"weights_sha256": digest(1).upper()}, "invalid_argument", "run.weights_sha256 must be 64"),
        ({"record_count": 4}, "inconsistent_counts", "run.record_count must be the sum"),
        ({"consent_count": 3}, "inconsistent_counts", "run.consent_count"),
        ({"record_count": True}, "invalid_argument", "run.record_count must be an integer"),
        ({"record_count": 3.0}, "invalid_argument", "run.record_count must be an integer"),
        ({"rounds": 3}, "invalid_argument", "one hash per round"),
        ({"round_aggregates": [digest(80)] * 1001}, "invalid_argument", "run.round_aggregates must be a list of at"),
        ({"rounds": 1001}, "invalid_argument", "run.rounds must be an integer from 1 to 1000"),
        ({"rounds": 0, "round_aggregates": []}, "invalid_argument", "run.rounds must be an integer from 1"),
        ({"round_aggregates": [digest(80), "x"]}, "invalid_argument", "run.round_aggregates[1]"),
        ({"metrics": {"accuracy": "NaN"}}, "invalid_argument", "run.metrics.accuracy must be a number"),
        ({"metrics": {"accuracy": [1]}}, "invalid_argument", "run.metrics.accuracy must be a number"),
        ({"metrics": {"Accuracy!": 1}}, "invalid_argument", "run.metrics name"),
        ({"metrics": {f"m{n}": 1 for n in range(33)}}, "invalid_argument", "at most 32 entries"),
        ({"hyperparameters": {"layers": [1, 2]}}, "invalid_argument", "run.hyperparameters.layers"),
        ({"hyperparameters": {"note": "a\nb"}}, "invalid_argument", "run.hyperparameters.note"),
        ({"hyperparameters": _oversize_hyperparameters()}, "invalid_argument", "larger than 4096 bytes"),
        ({"hyperparameters": {"huge": 2**60}}, "invalid_argument", "out of range"),
        ({"dp_delta": 1e-5}, "invalid_argument", "run.dp_delta is given without run.dp_epsilon"),
        ({"dp_epsilon": 0, "dp_delta": 0}, "invalid_argument", "run.dp_epsilon must be positive"),
        ({"dp_epsilon": 1.5}, "invalid_argument", "run.dp_delta must be a number in [0, 1)"),
        ({"dp_epsilon": 1.5, "dp_delta": 1}, "invalid_argument", "run.dp_delta must be a number in [0, 1)"),
        ({"organisations": []}, "invalid_argument", "run.organisations must not be empty"),
    ],
)
def test_a_malformed_run_is_refused_with_a_stable_code_and_writes_nothing(chain, overrides, code, fragment):
    height = chain.height()
    with pytest.raises(ContractRejected) as refused:
        record(chain, lineage(ident("run-1"), digest(90), **overrides))
    assert (refused.value.code, fragment in refused.value.message) == (code, True), refused.value.message
    assert "malignant" not in refused.value.message
    assert chain.height() == height


@pytest.mark.parametrize(
    ("change", "code", "fragment"),
    [
        ({"organisation": "clinician:alice"}, "invalid_argument", "run.organisations[0].organisation must be"),
        ({"consent_count": 2}, "inconsistent_counts", "run.organisations[0].consent_count must be from 1"),
        ({"record_count": 0, "consent_count": 0}, "invalid_argument", "training_set_root of an empty tree"),
        ({"extra": 1}, "invalid_argument", "run.organisations[0] has unknown fields: extra"),
        ({"left_out": ["hash_mismatch"]}, "invalid_argument", "run.organisations[0].left_out must be an object"),
        ({"left_out": {"Hash Mismatch": 1}}, "invalid_argument", "left_out names a reason that is not a code"),
        ({"left_out": {"hash_mismatch": 0}}, "invalid_argument", "left_out.hash_mismatch must be at least 1"),
        ({"left_out": {"hash_mismatch": True}}, "invalid_argument", "left_out.hash_mismatch must be an integer"),
        ({"left_out": {f"r{i}": 1 for i in range(33)}}, "invalid_argument", "at most 32 reasons"),
    ],
)
def test_a_malformed_organisation_is_refused(chain, change, code, fragment):
    run = lineage(ident("run-1"), digest(90))
    run["organisations"][0].update(change)
    with pytest.raises(ContractRejected) as refused:
        record(chain, run)
    assert (refused.value.code, fragment in refused.value.message) == (code, True), refused.value.message


def test_an_organisation_says_what_it_left_out_and_why_and_a_lineage_without_it_reads_as_before(chain):
    run = lineage(ident("run-1"), digest(90))
    run["organisations"][0]["left_out"] = {"no_label": 2, "hash_mismatch": 1}
    entry = record(chain, run).json()
    assert [part.get("left_out") for part in entry["organisations"]] == [
        {"hash_mismatch": 1, "no_label": 2},  # reasons in code order
        None,  # not said: an entry as written before the field existed
    ]
    assert chain.evaluate("training", "ReadTrainingRun", ident("run-1")).json() == entry


def test_the_same_organisation_twice_is_refused(chain):
    run = lineage(ident("run-1"), digest(90))
    run["organisations"][1]["organisation"] = run["organisations"][0]["organisation"]
    with pytest.raises(ContractRejected) as refused:
        record(chain, run)
    assert "must not name an organisation twice" in refused.value.message


def test_an_organisation_with_no_records_has_empty_trees(chain):
    run = lineage(ident("run-1"), digest(90))
    empty = merkle.merkle_root([]).hex()
    run["organisations"].append(
        {"organisation": "org:idle", "training_set_root": empty, "consent_root": empty, "record_count": 0,
         "consent_count": 0}
    )  # fmt: skip
    organisations = [part["organisation"] for part in record(chain, run).json()["organisations"]]
    assert organisations == ["org:idle", "org:north", "org:st-marys"]


def test_reads_of_what_is_not_there_are_not_found(chain):
    for function, argument in (("ReadTrainingRun", ident("run-x")), ("ModelLineageByWeights", digest(99))):
        with pytest.raises(ContractRejected) as refused:
            chain.evaluate("training", function, argument)
        assert refused.value.code == "not_found"
    with pytest.raises(ContractRejected) as refused:
        chain.evaluate("training", "ModelLineageByWeights", "not-a-hash")
    assert refused.value.code == "invalid_argument"


def test_a_model_is_retired_and_reinstated_on_the_ledger_each_change_once(chain):
    record(chain, lineage(ident("run-1"), digest(90)))
    assert chain.evaluate("training", "ReadModelStatus", digest(90)).json()["status"] == "active"

    retired = status_change(chain, "RetireModel", digest(90), "revocations_threshold", 37)
    assert (retired["status"], retired["reason"], retired["revocations"], retired["run_id"]) == (
        "retired",
        "revocations_threshold",
        37,
        ident("run-1"),
    )
    assert retired["changed_by"]
    assert status_change(chain, "RetireModel", digest(90), "revocations_threshold", 37) == retired
    for reason, count in (("revocations_threshold", 38), ("superseded", 37)):
        with pytest.raises(ContractRejected) as refused:
            status_change(chain, "RetireModel", digest(90), reason, count)
        assert refused.value.code == "already_retired"
    assert chain.evaluate("training", "ReadModelStatus", digest(90)).json() == retired

    reinstated = status_change(chain, "ReinstateModel", digest(90), "policy_changed", 40)
    assert (reinstated["status"], reinstated["revocations"]) == ("active", 40)
    assert status_change(chain, "ReinstateModel", digest(90), "policy_changed", 40) == reinstated
    with pytest.raises(ContractRejected) as refused:
        status_change(chain, "ReinstateModel", digest(90), "steward_decision", 40)
    assert refused.value.code == "not_retired"
    history = chain.evaluate("training", "ModelStatusHistory", digest(90)).json()
    assert [change["value"]["status"] for change in history] == ["retired", "active"]


def test_a_model_without_a_lineage_or_a_change_without_a_known_reason_is_refused(chain):
    record(chain, lineage(ident("run-1"), digest(90)))
    with pytest.raises(ContractRejected) as refused:
        status_change(chain, "RetireModel", digest(91), "revocations_threshold", 1)
    assert refused.value.code == "no_lineage"
    with pytest.raises(ContractRejected) as refused:
        status_change(chain, "ReinstateModel", digest(90), "policy_changed", 0)
    assert refused.value.code == "not_retired"
    for function, body in (
        ("RetireModel", {"weights_sha256": digest(90), "reason": "policy_changed", "revocations": 1}),
        ("ReinstateModel", {"weights_sha256": digest(90), "reason": "superseded", "revocations": 1}),
        ("RetireModel", {"weights_sha256": digest(90), "reason": "superseded", "revocations": -1}),
        ("RetireModel", {"weights_sha256": digest(90), "reason": "superseded"}),
    ):
        with pytest.raises(ContractRejected) as refused:
            chain.submit("training", function, json.dumps(body))
        assert refused.value.code == "invalid_argument"


def test_a_patients_inclusion_proof_holds_against_the_root_on_the_ledger_and_fails_for_a_record_not_in_it(chain):
    record(chain, lineage(ident("run-1"), digest(90)))
    on_ledger = chain.evaluate("training", "ModelLineageByWeights", digest(90)).json()
    part = next(part for part in on_ledger["organisations"] if part["organisation"] == "org:st-marys")
    record_id, version, sha256 = records_of("org:st-marys")[1]
    fields = {"kind": merkle.TRAINING_SET_ENTRY, "record_id": record_id, "version": version, "sha256": sha256}

    proof = merkle.proof_document(leaf=fields, leaves=training_leaves("org:st-marys"), index=1)
    assert (proof["root"], proof["size"]) == (part["training_set_root"], part["record_count"])
    assert merkle.verify_document(proof)
    outsider = {**fields, "record_id": ident("rec-never-used")}
    assert not merkle.verify_document({**proof, "leaf": outsider})
    consent = {"kind": merkle.CONSENT_ENTRY, "consent_id": ident("c-a1"), "patient_pseudonym": pseudonym(1)}
    consent_proof = merkle.proof_document(leaf=consent, leaves=consent_leaves("org:st-marys"), index=0)
    assert consent_proof["root"] == part["consent_root"]
    assert merkle.verify_document(consent_proof)
