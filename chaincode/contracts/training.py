"""Training lineage on the ledger (issue 18): what a model was trained on, under which consents, by which code, and
whether it still stands.

- `training_run/<run_id>`: the lineage of one training run, written in ONE transaction at the run's end
  (RecordTrainingRun): the model family and version label; per organisation the Merkle roots (chaincode.merkle)
  over its training set's (record id, version, anchored hash) and over the consents that admitted them, with their
  counts; the same overall; the trainer's code hash; the hyperparameters (canonical JSON text, bounded); the
  rounds and each round's aggregate hash; the validation metrics; the differential-privacy budget spent (or
  null); the resulting weights hash; the model steward who asked for it and the organisation (MSP) that submitted
  it. Numbers that are not counts are kept as decimal text (state holds no floats, chaincode.validation.decimal).
- `lineage_by_weights/<weights_sha256>`: the run that produced these weights: how the registry, which anchors a
  model by its weights hash, finds its lineage (ModelLineageByWeights). One lineage per weights hash.
- `model_status/<weights_sha256>`: whether the model is retired from new analyses (RetireModel, ReinstateModel),
  why (a reason code) and how many revocations counted against it then; its history is every change.

Written once: the same run, retirement or reinstatement again answers what is stored and writes nothing (a client
may retry); a different one under the same id is refused (already_exists). Where the model version is already
anchored (anchors.AnchorModel), the lineage must name the anchored weights. No health data: ids, pseudonymous
organisation ids, hashes, codes, counts and numbers.
"""

import math
import re
from typing import Any

from chaincode import merkle, state, validation
from chaincode.contracts.anchors import MODEL
from chaincode.contracts.directory import creator_msp
from chaincode.errors import AlreadyExists, ContractError, InvalidArgument, NotFound
from chaincode.library import Contract, TransactionContext
from chaincode.vocabulary import (
    REINSTATEMENT_REASONS,
    RETIREMENT_REASONS,
    TRAINING_PURPOSE_PREFIX,
    is_training_purpose,
)

RUN_KEY = "training_run"
BY_WEIGHTS_KEY = "lineage_by_weights"
STATUS_KEY = "model_status"
MAX_ORGANISATIONS = 64
MAX_ROUNDS = 1000
MAX_METRICS = 32
MAX_HYPERPARAMETERS = 32
MAX_HYPERPARAMETERS_BYTES = 4096
MAX_COUNT = 10**9  # records or consents in one tree
_RUN_FIELDS = {
    "run_id",
    "model_family",
    "model_version",
    "steward",
    "organisations",
    "training_set_root",
    "consent_root",
    "record_count",
    "consent_count",
    "trainer_sha256",
    "hyperparameters",
    "rounds",
    "round_aggregates",
    "metrics",
    "dp_epsilon",
    "dp_delta",
    "weights_sha256",
}
_ORGANISATION_FIELDS = {"organisation", "training_set_root", "consent_root", "record_count", "consent_count"}
# left_out (optional): the records the organisation offered that the run did not use, by reason (the gate's refusals,
# e.g. hash_mismatch or consent_revoked, and what made an admitted record unusable, e.g. no_label)
_ORGANISATION_OPTIONAL = {"left_out"}
MAX_LEFT_OUT_REASONS = 32
_STATUS_FIELDS = {"weights_sha256", "reason", "revocations"}
_NAME = re.compile(r"[a-z][a-z0-9_.-]{0,63}")
_TEXT_VALUE = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._:/+-]{0,127}")
_NUMBER_TEXT = re.compile(r"-?(0|[1-9][0-9]{0,15})(\.[0-9]{1,17})?([eE][-+]?[0-9]{1,3})?")


def _key(stub: Any, object_type: str, identifier: str) -> str:
    return stub.create_composite_key(object_type, [identifier])


async def _stored(stub: Any, object_type: str, identifier: str, missing: str) -> dict[str, Any]:
    """The entry under `object_type`/`identifier`; NotFound (saying `missing`) when there is none."""
    entry = await state.get_json(stub, _key(stub, object_type, identifier))
    if entry is None:
        raise NotFound(missing)
    return entry


class TrainingContract(Contract):
    Name = "training"

    def get_evaluate_transactions(self) -> list[str]:
        return ["ReadTrainingRun", "ModelLineageByWeights", "ReadModelStatus", "ModelStatusHistory"]

    async def RecordTrainingRun(self, ctx: TransactionContext, run_json: str) -> str:
        """Write a training run's lineage, once. Refused: a run id or weights hash that already has another lineage
        (already_exists), a model version anchored with other weights (weights_mismatch), counts that do not add
        up (inconsistent_counts), anything malformed (invalid_argument)."""
        stub = ctx.get_stub()
        asked = _run(validation.json_argument(run_json, "run", dict))
        key = _key(stub, RUN_KEY, asked["run_id"])
        by_weights = _key(stub, BY_WEIGHTS_KEY, asked["weights_sha256"])
        current, lineage = await state.get_json_many(stub, [key, by_weights])
        if current is not None:
            if any(current[name] != value for name, value in asked.items()):
                raise AlreadyExists("run.run_id already has a lineage with other values")
            return state.dumps(current).decode()
        if lineage is not None:
            raise AlreadyExists("run.weights_sha256 already has the lineage of another run")
        anchored = await state.get_json(
            stub, stub.create_composite_key(MODEL, [asked["model_family"], asked["model_version"]])
        )
        if anchored is not None and anchored["sha256"] != asked["weights_sha256"]:
            raise InvalidArgument("run.model_version is anchored with other weights", code="weights_mismatch")
        entry = {
            **asked,
            "submitted_by": creator_msp(stub),
            "recorded_at": state.tx_time_text(stub),
            "tx_id": stub.get_txid(),
        }
        await state.put_json(stub, key, entry)
        await state.put_json(stub, by_weights, {"run_id": asked["run_id"], "weights_sha256": asked["weights_sha256"]})
        return state.dumps(entry).decode()

    async def ReadTrainingRun(self, ctx: TransactionContext, run_id: str) -> str:
        validation.identifier(run_id, "run_id")
        return state.dumps(await _stored(ctx.get_stub(), RUN_KEY, run_id, "no training run with this id")).decode()

    async def ModelLineageByWeights(self, ctx: TransactionContext, weights_sha256: str) -> str:
        """The lineage of the run that produced these weights."""
        stub = ctx.get_stub()
        validation.sha256(weights_sha256, "weights_sha256")
        found = await _stored(stub, BY_WEIGHTS_KEY, weights_sha256, "no lineage for these weights")
        return state.dumps(await _stored(stub, RUN_KEY, found["run_id"], "no training run with this id")).decode()

    async def RetireModel(self, ctx: TransactionContext, retirement_json: str) -> str:
        """Retire a model with a lineage from new analyses: why, and how many revocations counted against it.
        Refused: a model already retired for another reason or count (already_retired), one without a lineage."""
        return await _change_status(ctx.get_stub(), retirement_json, "retirement", "retired", RETIREMENT_REASONS)

    async def ReinstateModel(self, ctx: TransactionContext, reinstatement_json: str) -> str:
        """Put a retired model back in use (why, and the revocation count then). Refused: a model not retired."""
        return await _change_status(
            ctx.get_stub(), reinstatement_json, "reinstatement", "active", REINSTATEMENT_REASONS
        )

    async def ReadModelStatus(self, ctx: TransactionContext, weights_sha256: str) -> str:
        """The model's standing: its last retirement or reinstatement, or active for a model never retired."""
        stub = ctx.get_stub()
        validation.sha256(weights_sha256, "weights_sha256")
        entry = await state.get_json(stub, _key(stub, STATUS_KEY, weights_sha256))
        return state.dumps(entry or _never_retired(weights_sha256)).decode()

    async def ModelStatusHistory(self, ctx: TransactionContext, weights_sha256: str) -> str:
        validation.sha256(weights_sha256, "weights_sha256")
        changes = await state.history(ctx.get_stub(), _key(ctx.get_stub(), STATUS_KEY, weights_sha256))
        return state.dumps(changes).decode()


def _never_retired(weights_sha256: str) -> dict[str, Any]:
    return {
        "weights_sha256": weights_sha256,
        "status": "active",
        "reason": None,
        "revocations": None,
        "changed_by": None,
        "changed_at": None,
        "tx_id": None,
    }


# The refusal of a change to a status the model is already in, for another reason or revocation count.
_ALREADY = {"retired": "already_retired", "active": "not_retired"}


async def _change_status(stub: Any, argument: str, field: str, status: str, reasons: dict[str, str]) -> str:
    """Move a model with a lineage to `status` (from the other one), once: the same change again answers the
    stored entry; a model already in `status` for another reason or count is refused."""
    asked = validation.json_argument(argument, field, dict)
    validation.only_fields(asked, field, _STATUS_FIELDS, _STATUS_FIELDS)
    weights = validation.sha256(asked["weights_sha256"], f"{field}.weights_sha256")
    reason = validation.code(asked["reason"], f"{field}.reason", reasons)
    revocations = _count(asked["revocations"], f"{field}.revocations")
    key = _key(stub, STATUS_KEY, weights)
    lineage, current = await state.get_json_many(stub, [_key(stub, BY_WEIGHTS_KEY, weights), key])
    if lineage is None:
        raise NotFound("no lineage for these weights", code="no_lineage")
    current = current or _never_retired(weights)
    if current["status"] == status:
        if (current["reason"], current["revocations"]) == (reason, revocations):
            return state.dumps(current).decode()
        raise ContractError(f"the model is already {status}, for another reason or count", code=_ALREADY[status])
    entry = {
        "weights_sha256": weights,
        "run_id": lineage["run_id"],
        "status": status,
        "reason": reason,
        "revocations": revocations,
        "changed_by": creator_msp(stub),
        "changed_at": state.tx_time_text(stub),
        "tx_id": stub.get_txid(),
    }
    await state.put_json(stub, key, entry)
    return state.dumps(entry).decode()


# --- validation ---------------------------------------------------------------------------------------------


def _run(run: dict[str, Any]) -> dict[str, Any]:
    """The run as stored: every field checked, numbers that are not counts as canonical decimal text, the
    organisations sorted by id, the hyperparameters as canonical JSON text."""
    validation.only_fields(run, "run", _RUN_FIELDS, _RUN_FIELDS)
    family = run["model_family"]
    if not isinstance(family, str) or not is_training_purpose(TRAINING_PURPOSE_PREFIX + family):
        raise InvalidArgument("run.model_family must be lower-case letters, digits and -, as in a purpose")
    organisations = sorted(
        (_organisation(item, f"run.organisations[{index}]") for index, item in enumerate(
            validation.object_list(run["organisations"], "run.organisations", MAX_ORGANISATIONS)
        )),
        key=lambda item: item["organisation"],
    )  # fmt: skip
    if len({item["organisation"] for item in organisations}) != len(organisations):
        raise InvalidArgument("run.organisations must not name an organisation twice")
    rounds = validation.positive_int(run["rounds"], "run.rounds", MAX_ROUNDS)
    aggregates = _hashes(run["round_aggregates"], "run.round_aggregates")
    if len(aggregates) != rounds:
        raise InvalidArgument("run.round_aggregates must hold one hash per round")
    epsilon = None if run["dp_epsilon"] is None else _number(run["dp_epsilon"], "run.dp_epsilon")
    delta = None if run["dp_delta"] is None else _number(run["dp_delta"], "run.dp_delta")
    _differential_privacy(epsilon, delta)
    checked: dict[str, Any] = {
        "run_id": validation.identifier(run["run_id"], "run.run_id"),
        "model_family": family,
        "model_version": validation.version_label(run["model_version"], "run.model_version"),
        "steward": validation.model_steward(run["steward"], "run.steward"),
        "organisations": organisations,
        "training_set_root": validation.sha256(run["training_set_root"], "run.training_set_root"),
        "consent_root": validation.sha256(run["consent_root"], "run.consent_root"),
        "record_count": _count(run["record_count"], "run.record_count"),
        "consent_count": _count(run["consent_count"], "run.consent_count"),
        "trainer_sha256": validation.sha256(run["trainer_sha256"], "run.trainer_sha256"),
        "hyperparameters": _hyperparameters(run["hyperparameters"], "run.hyperparameters"),
        "rounds": rounds,
        "round_aggregates": aggregates,
        "metrics": _metrics(run["metrics"], "run.metrics"),
        "dp_epsilon": epsilon,
        "dp_delta": delta,
        "weights_sha256": validation.sha256(run["weights_sha256"], "run.weights_sha256"),
    }
    if checked["record_count"] < 1:
        raise InvalidArgument("run.record_count must be at least 1: a model trained on nothing has no lineage")
    _tree_sizes(checked, "run")
    for total in ("record_count", "consent_count"):
        if checked[total] != sum(item[total] for item in organisations):
            raise InvalidArgument(f"run.{total} must be the sum of the organisations'", code="inconsistent_counts")
    return checked


EMPTY_ROOT = merkle.merkle_root([]).hex()


def _organisation(item: dict[str, Any], field: str) -> dict[str, Any]:
    """One organisation's part: its trees' roots and sizes. Every record admitted had a consent and every consent
    listed admitted a record, so there are no more consents than records, and none without records; an empty tree
    has the empty root."""
    validation.only_fields(item, field, _ORGANISATION_FIELDS | _ORGANISATION_OPTIONAL, _ORGANISATION_FIELDS)
    checked = {
        "organisation": validation.organisation(item["organisation"], f"{field}.organisation"),
        "training_set_root": validation.sha256(item["training_set_root"], f"{field}.training_set_root"),
        "consent_root": validation.sha256(item["consent_root"], f"{field}.consent_root"),
        "record_count": _count(item["record_count"], f"{field}.record_count"),
        "consent_count": _count(item["consent_count"], f"{field}.consent_count"),
    }
    if "left_out" in item:
        checked["left_out"] = _left_out(item["left_out"], f"{field}.left_out")
    _tree_sizes(checked, field)
    return checked


def _left_out(value: Any, field: str) -> dict[str, int]:
    """Reason code -> how many offered records were left out for it (reasons sorted; none with a count of 0)."""
    if not isinstance(value, dict) or len(value) > MAX_LEFT_OUT_REASONS:
        raise InvalidArgument(f"{field} must be an object of at most {MAX_LEFT_OUT_REASONS} reasons")
    checked = {}
    for reason in sorted(value):
        if not isinstance(reason, str) or not _NAME.fullmatch(reason):
            raise InvalidArgument(f"{field} names a reason that is not a code")
        checked[reason] = _count(value[reason], f"{field}.{reason}")
        if checked[reason] == 0:
            raise InvalidArgument(f"{field}.{reason} must be at least 1 (leave out a reason with none)")
    return checked


def _tree_sizes(part: dict[str, Any], field: str) -> None:
    records, consents = part["record_count"], part["consent_count"]
    if consents > records or (records > 0) != (consents > 0):
        raise InvalidArgument(
            f"{field}.consent_count must be from 1 to the record count (0 without records)", code="inconsistent_counts"
        )
    for tree, count in (("training_set_root", records), ("consent_root", consents)):
        if count == 0 and part[tree] != EMPTY_ROOT:
            raise InvalidArgument(f"{field}.{tree} of an empty tree must be the empty tree's root")


def _count(value: Any, field: str) -> int:
    """A count: an integer from 0 to MAX_COUNT (never a bool, never a float)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_COUNT:
        raise InvalidArgument(f"{field} must be an integer from 0 to {MAX_COUNT}")
    return value


def _number(value: Any, field: str) -> str:
    """A finite number, given as a JSON number or as decimal text, kept as canonical decimal text: an integer as
    itself, any other number as Python's shortest round-trip form (the same text on every endorser)."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise InvalidArgument(f"{field} must be a number")
    if isinstance(value, str):
        if not _NUMBER_TEXT.fullmatch(value):
            raise InvalidArgument(f"{field} must be a number")
        value = int(value) if re.fullmatch(r"-?[0-9]+", value) else float(value)
    if isinstance(value, int):
        if abs(value) >= 2**53:
            raise InvalidArgument(f"{field} is out of range")
        return str(value)
    if not math.isfinite(value):
        raise InvalidArgument(f"{field} must be a finite number")
    return repr(value)


def _hashes(value: Any, field: str) -> list[str]:
    if not isinstance(value, list) or len(value) > MAX_ROUNDS:
        raise InvalidArgument(f"{field} must be a list of at most {MAX_ROUNDS} hashes")
    return [validation.sha256(item, f"{field}[{index}]") for index, item in enumerate(value)]


def _names(value: Any, field: str, maximum: int) -> dict[str, Any]:
    if not isinstance(value, dict) or len(value) > maximum:
        raise InvalidArgument(f"{field} must be a JSON object of at most {maximum} entries")
    for name in value:
        validation.matching(_NAME, name, f"{field} name", "lower-case letters, digits and _ . -, at most 64")
    return value


def _metrics(value: Any, field: str) -> dict[str, str]:
    """Validation metrics: name -> number (as canonical decimal text)."""
    return {name: _number(number, f"{field}.{name}") for name, number in _names(value, field, MAX_METRICS).items()}


def _hyperparameters(value: Any, field: str) -> str:
    """The hyperparameters as canonical JSON text (sorted keys, no spaces): a flat object of names to finite numbers,
    short texts, booleans or null, at most MAX_HYPERPARAMETERS_BYTES once written. Kept as text, so that the state
    holds no float of its own; the text is the same on every endorser running this code."""
    checked: dict[str, Any] = {}
    for name, item in _names(value, field, MAX_HYPERPARAMETERS).items():
        if item is None or isinstance(item, bool):
            checked[name] = item
        elif isinstance(item, int | float):
            text = _number(item, f"{field}.{name}")
            checked[name] = int(text) if isinstance(item, int) else float(text)
        else:
            checked[name] = validation.matching(_TEXT_VALUE, item, f"{field}.{name}", "a number or a short text")
    text = state.dumps(checked).decode()
    if len(text) > MAX_HYPERPARAMETERS_BYTES:
        raise InvalidArgument(f"{field} is larger than {MAX_HYPERPARAMETERS_BYTES} bytes")
    return text


def _differential_privacy(epsilon: str | None, delta: str | None) -> None:
    """Either no differential privacy (both null), or a positive epsilon spent with a delta in [0, 1)."""
    if epsilon is None:
        if delta is not None:
            raise InvalidArgument("run.dp_delta is given without run.dp_epsilon")
        return
    if float(epsilon) <= 0:
        raise InvalidArgument("run.dp_epsilon must be positive")
    if delta is None or not 0 <= float(delta) < 1:
        raise InvalidArgument("run.dp_delta must be a number in [0, 1) when run.dp_epsilon is given")
