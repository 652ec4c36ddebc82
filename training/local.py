"""One organisation's step of a training round, on its own records only (its custodian's database, its own workers
in a deployment of one platform instance per organisation).

Each round it gates its record versions with the purpose training:<family> through the platform's one gate
(analytics: CheckAccessBatch, at the moment of the round), logs every record's decision with ONE access-log
transaction per batch (kind record_access, request_id the run's id), and computes its update on the admitted
records only: the features kept at ingest (integrity-checked by the gate's features hash), clipped to the family's
documented range as an analysis clips them, and their labels (training.labels). The update is encrypted with the
steward's PUBLIC context before it leaves: nothing in plaintext goes to the aggregator.

Records are held out for validation by a hash of (run, record): the same split whichever round reads them.
"""

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import structlog
from django.conf import settings

from analytics.selectors import LinearModel
from analytics.services import homomorphic_engine, record_access_events, records_gate
from audit.services import access_batch_log
from records.selectors import record_version_numbers
from training import maths
from training.labels import LabelSource

log = structlog.get_logger(__name__)

TRAIN, VALIDATION = "train", "validation"


@dataclass(frozen=True)
class RunPlan:
    """What every organisation knows of a run: all public."""

    run_id: str
    kind: str
    purpose: str  # training:<family>
    spec: LinearModel  # the family's declared model: its feature codes, their documented range, its category
    validation_fraction: float
    target_bound: float | None = None  # under differential privacy, a linear family's targets are clipped to ±this

    @property
    def scaling(self) -> maths.Scaling:
        return maths.Scaling.of_range(self.spec.feature_min, self.spec.feature_max)


def held_out(run_id: str, record_id: str, fraction: float) -> bool:
    """Whether a record validates rather than trains, in this run: a fixed share, by a hash of (run, record)."""
    digest = hashlib.sha256(f"{run_id}|{record_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") < fraction * 2**64


@dataclass
class OrganisationRecords:
    """An organisation's trainer (training.federation.OrganisationTrainer) over its `version_ids`."""

    plan: RunPlan
    organisation: str  # its grantee id, "org:<slug>": who the patients consented to
    version_ids: list[int]
    public_context: bytes
    labels: LabelSource
    used: dict[str, dict[str, Any]] = field(default_factory=dict)  # record id -> manifest entry, first use first
    counts: dict[str, Any] = field(default_factory=dict)  # the last round's: admitted, refused, skipped
    log_tx_ids: list[str] = field(default_factory=list)
    round_counts: dict[int, int] = field(default_factory=dict)  # round -> the records its update covered
    validated: bool = False  # it sent its validation statistics: the federation's last step
    _validation: tuple[np.ndarray, np.ndarray] | None = None
    # A version never changes (a new reading is a new version) and the gate admits it only while its features match
    # their anchored hash: its number and its label are read once, in the first round that admits it.
    _version_numbers: dict[int, int] = field(default_factory=dict)
    _labels: dict[int, float | None] = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"OrganisationRecords(organisation={self.organisation!r}, candidates={len(self.version_ids)})"

    def fit(self, round_index: int, scaled_weights: np.ndarray) -> tuple[list[bytes], int]:
        entries, features, targets = self._admitted(round_index)
        design = self.plan.scaling.design(features) if entries else np.zeros((0, len(scaled_weights)))
        train = np.asarray([entry["split"] == TRAIN for entry in entries], dtype=bool)
        self._validation = (design[~train], targets[~train])
        if self.plan.kind == maths.LINEAR:
            bound = self.plan.target_bound  # under differential privacy: bounds one record's update (maths)
            update = maths.linear_statistics(
                design[train], targets[train] if bound is None else np.clip(targets[train], -bound, bound)
            )
        else:
            update = maths.newton_statistics(design[train], targets[train], scaled_weights)
        self.round_counts[round_index] = int(train.sum())
        return self._encrypt(update), self.round_counts[round_index]

    def validate(self, scaled_weights: np.ndarray) -> tuple[list[bytes], int]:
        if self._validation is None:
            raise RuntimeError("validation before any round")
        design, targets = self._validation
        statistics = self._encrypt(maths.validation_statistics(self.plan.kind, design, targets, scaled_weights))
        self.validated = True
        return statistics, len(targets)

    def _encrypt(self, values: np.ndarray) -> list[bytes]:
        engine = homomorphic_engine()
        chunks, start = [], 0
        for size in maths.chunk_sizes(len(values), engine.slots):
            chunks.append(engine.encrypt_vector(self.public_context, values[start : start + size].tolist()))
            start += size
        return chunks

    def _admitted(self, round_index: int) -> tuple[list[dict[str, Any]], np.ndarray, np.ndarray]:
        """Gate and log the organisation's records for this round, batch by batch; the admitted ones' manifest
        entries, clipped features and labels."""
        plan, entries, rows, labels = self.plan, [], [], []
        refused: Counter[str] = Counter()
        skipped: Counter[str] = Counter()
        size = settings.ANALYTICS_BATCH_SIZE
        for start in range(0, len(self.version_ids), size):
            chunk = self.version_ids[start : start + size]
            gated = records_gate(
                version_ids=chunk, spec=plan.spec, grantee=self.organisation, organisation=None, purpose=plan.purpose
            )
            events = record_access_events(
                gated.decisions,
                grantee=self.organisation,
                purpose=plan.purpose,
                request_id=plan.run_id,
                model_hash=None,
                event_scope=f"{plan.run_id}:{round_index}",
            )
            if events:
                batch_id = f"{plan.run_id}:{self.organisation}:{round_index}:{start // size}"
                self.log_tx_ids.append(access_batch_log(batch_id=batch_id, events=events).tx_id)
            refused.update(gated.refusals)
            self._read_version_numbers(chunk)
            for decision in gated.decisions:
                if decision["decision"] != "admit":
                    continue
                version_id = decision["version_id"]
                reading = gated.readings[version_id]
                if reading.features is None:
                    skipped["missing_features"] += 1
                    continue
                if version_id not in self._labels:
                    self._labels[version_id] = self.labels(tuple(reading.features))
                label = self._labels[version_id]
                if label is None:
                    skipped["no_label"] += 1
                else:
                    entries.append(self._entry(decision, self._version_numbers[version_id]))
                    rows.append(reading.features)
                    labels.append(label)
        self.counts = {"admitted": len(entries), "refused": dict(refused), "skipped": dict(skipped)}
        log.info(
            "training_round_gated",
            run_id=plan.run_id,
            organisation=self.organisation,
            round=round_index,
            admitted=len(entries),
            refused=dict(refused),
            skipped=dict(skipped),
        )
        features = plan.spec.clip(np.asarray(rows, dtype=float))[0] if rows else np.zeros((0, 0))
        return entries, features, np.asarray(labels, dtype=float)

    def _read_version_numbers(self, version_ids: list[int]) -> None:
        unread = [version_id for version_id in version_ids if version_id not in self._version_numbers]
        if unread:
            self._version_numbers.update(record_version_numbers(version_ids=unread))

    def _entry(self, decision: dict[str, Any], version: int) -> dict[str, Any]:
        record_id = decision["record_id"]
        if record_id not in self.used:
            fraction = self.plan.validation_fraction
            self.used[record_id] = {
                "record_id": record_id,
                "version": version,
                "sha256": decision["sha256"],
                "consent_id": decision["consent_id"],
                "patient_pseudonym": decision["patient_pseudonym"],
                "split": VALIDATION if held_out(self.plan.run_id, record_id, fraction) else TRAIN,
            }
        return self.used[record_id]
