"""Misuse detection over the access log: each clinician's day scored against their own past.

The access log says who touched which patient's records, when, for what and with which answer. From it,
`clinician_days` makes one row of features per (clinician, day); `MisuseDetector.fit` learns from a history of
such rows what is usual for each clinician and for their organisation; `MisuseDetector.score` turns the days
after that history into alerts, each with the reasons a person can check ("14 emergency reads in a night,
usual 0").

Why an isolation forest over per-clinician robust baselines:
- There are no labels: misuse is rare and nobody marks it, so the model is unsupervised. scikit-learn's
  IsolationForest needs no labels, fits a month of clinician-days in under a second, is deterministic for a
  fixed random_state, and judges a day on all its features at once.
- It is fitted on the features expressed relative to each clinician's own baseline, so a busy ward clinician
  and a part-time researcher are measured on one scale, "how far above what this person usually does": per
  feature, the rise beyond NOTABLE_DEVIATION robust spreads (0 below it: a quiet day is no misuse), a share's
  rise weighted by how many events it rests on, and, as one more column, the day's largest rise, without which
  a forest over many mostly-zero columns barely isolates a day that is extreme on one of them only.
- A forest's score says how unusual a day is, not why. The baselines (median and robust spread per clinician
  and feature, floored per feature: `RULES`) give each alert its reasons, in the feature's own unit against
  the clinician's own usual value; being medians, a misuse in the history does not become the usual.
- A day is an alert when BOTH hold: the forest ranks it among the most unusual days of the history (its score
  reaches the THRESHOLD_QUANTILE quantile of the history's scores), and at least one feature deviates strongly
  from the clinician's baseline (a reason). An alert is thus never a bare score, and a strong deviation on a
  day the forest finds ordinary (one of a kind the history shows often) raises nothing. Any event the caller
  found no valid explanation for makes its day an alert by itself ("unexplained_access"). The benchmark
  (benchmarks/misuse_detection.py) reports the rule with and without the forest's gate.
- pyod is not a dependency; its detectors would not say why either.

What must hold:
- Score days AFTER the history the detector was fitted on (deployment: fit on the past 28 days, score
  yesterday). A day inside the history is scored against a baseline that already contains it.
- The fitted model is plain arrays (the forest's trees, the baselines, the usual hours, the organisations'
  patients) scored by this module, not a pickled estimator: `dumps` writes them in a canonical, deterministic
  layout, `weights_sha256` is the SHA-256 of exactly those bytes, and `loads` refuses a payload whose hash
  differs from the one it carries. The trees are scored as scikit-learn scores them (the tests compare).
- Features are computed with numpy over whole columns (no Python loop per event): a month of 500,000 events
  becomes features in seconds.

Features of a clinician-day (`FEATURES`); the day and hours are local (UTC + tz_offset_hours). An action is one
ledger batch: one read (a page view of one patient's records), one emergency declaration, or one chunk of an
analysis.
- volume: record_access and record_read events (one per record touched).
- distinct_patients: patients whose records were read or accessed.
- refusal_ratio: share of the day's record_read events the gate refused (reads only: an analysis's refusals
  are the consent gate filtering its cohort, not a clinician probing records).
- off_hours_share: share of the day's actions in hours the clinician's history rarely uses (an hour is usual
  when at least 1% of their past actions fall within an hour of it; with fewer than 50 past actions, 07-19).
- emergency_declarations: emergency_declared events.
- emergency_reads: reads under an emergency declaration (purpose "emergency"); for the forest only.
- night_emergency_reads: those between 22:00 and 06:00.
- max_reads_of_one_patient: the most reads (distinct read batches) of one patient's records that day.
- largest_cohort: the most records one analysis request touched that day (its record_access events); its
  usual value is the clinician's median over days with an analysis.
- outside_share: share of the patients read (record_read) that day whom no clinician of the organisation read
  in the history; in the history itself, whom it read on no other day. Reads only: an analysis's cohort
  legitimately spans the consenting patients of the whole platform, and its size is watched by
  largest_cohort.
- unexplained: events the caller found no valid explanation for; each makes the day an alert.
"""

import dataclasses
import hashlib
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, ClassVar

import numpy as np
from sklearn.ensemble import IsolationForest

VERSION = "misuse-detector-1"

CLINICIAN_PREFIX = "clinician:"
RECORD_ACCESS = "record_access"
RECORD_READ = "record_read"
EMERGENCY_DECLARED = "emergency_declared"
EMERGENCY_PURPOSE = "emergency"
REFUSE = "refuse"

FEATURES: tuple[str, ...] = (
    "volume",
    "distinct_patients",
    "refusal_ratio",
    "off_hours_share",
    "emergency_declarations",
    "emergency_reads",
    "night_emergency_reads",
    "max_reads_of_one_patient",
    "largest_cohort",
    "outside_share",
    "unexplained",
)
# The features that need no history: ClinicianDays.own holds them in this order; the last is the support of
# refusal_ratio (refused reads), not a feature.
OWN_FEATURES: tuple[str, ...] = (
    "volume",
    "distinct_patients",
    "refusal_ratio",
    "emergency_declarations",
    "emergency_reads",
    "night_emergency_reads",
    "max_reads_of_one_patient",
    "largest_cohort",
    "unexplained",
    "refused_reads",
)
# The forest sees every feature but `unexplained`, which is a rule of its own.
FOREST_FEATURES: tuple[str, ...] = FEATURES[:-1]

NIGHT_HOURS: tuple[int, ...] = (22, 23, 0, 1, 2, 3, 4, 5)
FALLBACK_USUAL_HOURS: tuple[int, ...] = tuple(range(7, 19))
USUAL_HOUR_SHARE = 0.01
MIN_USUAL_HOURS_ACTIONS = 50
MIN_BASELINE_DAYS = 5
STRONG_DEVIATION = 4.0
NOTABLE_DEVIATION = 1.0
DEVIATION_CAP = 1000.0
THRESHOLD_QUANTILE = 0.95
N_ESTIMATORS = 200
MAX_SAMPLES = 256
RANDOM_STATE = 0
MAD_TO_SIGMA = 1.4826


@dataclass(frozen=True)
class Rule:
    """How one feature is judged against a clinician's baseline.

    A reason needs a robust z-score of at least STRONG_DEVIATION, an excess over the usual value of at least
    `min_excess` (in the feature's unit) and, for a share, at least `min_support` events behind it, so that a
    quiet clinician's day of three reads is not "67% off hours". `code` is None for a feature only the forest
    sees.

    The spread (1.4826 x the median absolute deviation, the standard deviation of a normal sample) is never
    below `floor`, nor `relative_floor` times the usual value, nor `occasional_floor` times the median of the
    days on which the feature was not zero (an emergency physician's emergencies: zero most days, several on
    some), nor `cohort_floor` times the clinician's usual cohort (a day with an analysis of their usual size
    is no deviation in volume or patients)."""

    code: str | None
    floor: float
    relative_floor: float
    min_excess: float
    min_support: float = 0.0
    occasional_floor: float = 0.0
    cohort_floor: float = 0.0


RULES: dict[str, Rule] = {
    "volume": Rule("volume", floor=10, relative_floor=0.25, min_excess=50, cohort_floor=1),
    "distinct_patients": Rule("distinct_patients", floor=3, relative_floor=0.25, min_excess=15, cohort_floor=1),
    "refusal_ratio": Rule("refusal_ratio", floor=0.05, relative_floor=0, min_excess=0.25, min_support=20),
    "off_hours_share": Rule("off_hours", floor=0.05, relative_floor=0, min_excess=0.3, min_support=5),
    "emergency_declarations": Rule(
        "emergency_declarations", floor=0.5, relative_floor=0.25, min_excess=3, occasional_floor=1
    ),
    "emergency_reads": Rule(None, floor=1, relative_floor=0.25, min_excess=0, occasional_floor=1),
    "night_emergency_reads": Rule(
        "night_emergency_reads", floor=1, relative_floor=0.25, min_excess=5, occasional_floor=1
    ),
    "max_reads_of_one_patient": Rule("repeated_reads", floor=1, relative_floor=0.25, min_excess=7),
    "largest_cohort": Rule("large_cohort", floor=20, relative_floor=0.5, min_excess=100),
    "outside_share": Rule("outside_patients", floor=0.05, relative_floor=0, min_excess=0.3, min_support=5),
    "unexplained": Rule("unexplained_access", floor=1, relative_floor=0, min_excess=1),
}
REASON_CODES: tuple[str, ...] = tuple(rule.code for rule in RULES.values() if rule.code is not None)


@dataclass(frozen=True, eq=False)
class EventColumns:
    """Access-log events as columns: one array per field, all of the same length.

    grantee, kind, purpose, decision, patient_pseudonym, request_id and batch_id are strings ("" for none);
    recorded_at is datetime64[s] in UTC; unexplained is bool (the caller found no valid explanation for this
    admitted event)."""

    grantee: np.ndarray
    recorded_at: np.ndarray
    kind: np.ndarray
    purpose: np.ndarray
    decision: np.ndarray
    patient_pseudonym: np.ndarray
    request_id: np.ndarray
    batch_id: np.ndarray
    unexplained: np.ndarray

    STRING_FIELDS: ClassVar[tuple[str, ...]] = (
        "grantee",
        "kind",
        "purpose",
        "decision",
        "patient_pseudonym",
        "request_id",
        "batch_id",
    )

    def __post_init__(self) -> None:
        lengths = {len(getattr(self, name)) for name in (*self.STRING_FIELDS, "recorded_at", "unexplained")}
        if len(lengths) != 1:
            raise ValueError(f"event columns of different lengths: {sorted(lengths)}")

    def __len__(self) -> int:
        return len(self.grantee)

    @classmethod
    def from_rows(cls, rows: Iterable[Mapping[str, Any]]) -> "EventColumns":
        """Columns from event dicts as the ledger answers them (recorded_at a datetime or an ISO 8601 string;
        a missing or None field is "" or False)."""
        rows = list(rows)
        strings = {name: np.array([str(row.get(name) or "") for row in rows], dtype=str) for name in cls.STRING_FIELDS}
        recorded_at = np.array([_utc_seconds(row["recorded_at"]) for row in rows], dtype="datetime64[s]")
        unexplained = np.array([bool(row.get("unexplained")) for row in rows], dtype=bool)
        return cls(recorded_at=recorded_at, unexplained=unexplained, **strings)

    @classmethod
    def concatenate(cls, parts: Iterable["EventColumns"]) -> "EventColumns":
        parts = list(parts)
        names = (*cls.STRING_FIELDS, "recorded_at", "unexplained")
        return cls(**{name: np.concatenate([getattr(part, name) for part in parts]) for name in names})

    def take(self, rows: np.ndarray) -> "EventColumns":
        """The events at `rows` (indices or a boolean mask)."""
        names = (*self.STRING_FIELDS, "recorded_at", "unexplained")
        return EventColumns(**{name: getattr(self, name)[rows] for name in names})


def _utc_seconds(moment: datetime | str) -> np.datetime64:
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return np.datetime64(moment, "s")


@dataclass(frozen=True, eq=False)
class ClinicianDays:
    """One row per (clinician, local day) with activity: the features that need no history (`own`, columns in
    OWN_FEATURES order) and what the history-relative ones are computed from: the actions per local hour, and
    the distinct (row, patient) pairs of the day's reads."""

    grantee: np.ndarray  # (n,) str
    day: np.ndarray  # (n,) datetime64[D], local
    organisation: np.ndarray  # (n,) str
    own: np.ndarray  # (n, len(OWN_FEATURES)) float64
    hour_actions: np.ndarray  # (n, 24) int64
    read_row: np.ndarray  # (m,) int64: the row of each distinct (row, patient read) pair
    read_patient: np.ndarray  # (m,) str

    def __len__(self) -> int:
        return len(self.grantee)

    def column(self, name: str) -> np.ndarray:
        return self.own[:, OWN_FEATURES.index(name)]

    def take(self, rows: np.ndarray) -> "ClinicianDays":
        """The rows at `rows` (indices or a boolean mask), with their read pairs."""
        indices = np.arange(len(self))[rows]
        renumber = np.full(len(self), -1, dtype=np.int64)
        renumber[indices] = np.arange(len(indices))
        kept = renumber[self.read_row] >= 0
        return ClinicianDays(
            grantee=self.grantee[indices],
            day=self.day[indices],
            organisation=self.organisation[indices],
            own=self.own[indices],
            hour_actions=self.hour_actions[indices],
            read_row=renumber[self.read_row[kept]],
            read_patient=self.read_patient[kept],
        )

    def during(self, start: date, end: date) -> "ClinicianDays":
        """The rows of the days from `start` up to, not including, `end`."""
        return self.take((self.day >= np.datetime64(start, "D")) & (self.day < np.datetime64(end, "D")))


def clinician_days(
    events: EventColumns, organisations: Mapping[str, str], *, tz_offset_hours: int = 0
) -> ClinicianDays:
    """The features of every (clinician, local day) the events show activity on.

    Only clinicians' events count ("clinician:..." grantees), and of them record_access, record_read and
    emergency_declared events, and any event marked unexplained. A clinician missing from `organisations` is an
    organisation of their own. Local time is UTC + tz_offset_hours (a fixed offset)."""
    grantee_values, grantee_code = np.unique(events.grantee, return_inverse=True)
    is_clinician = np.strings.startswith(grantee_values.astype(str), CLINICIAN_PREFIX)[grantee_code]
    is_access = events.kind == RECORD_ACCESS
    is_read = events.kind == RECORD_READ
    is_declared = events.kind == EMERGENCY_DECLARED
    kept = np.flatnonzero(is_clinician & (is_access | is_read | is_declared | events.unexplained.astype(bool)))
    is_access, is_read, is_declared = is_access[kept], is_read[kept], is_declared[kept]

    local = events.recorded_at[kept].astype("datetime64[s]") + np.timedelta64(int(tz_offset_hours) * 3600, "s")
    day = local.astype("datetime64[D]")
    hour = ((local - day) // np.timedelta64(1, "h")).astype(np.int64)
    day_number = day.astype(np.int64)
    first_day = int(day_number.min()) if len(kept) else 0
    span = int(day_number.max()) - first_day + 1 if len(kept) else 1
    row_keys, row = np.unique(grantee_code[kept] * span + (day_number - first_day), return_inverse=True)
    rows = len(row_keys)

    def per_row(weights: np.ndarray) -> np.ndarray:
        return np.bincount(row, weights=weights.astype(np.float64), minlength=rows)

    read_events = per_row(is_read)
    refused_reads = per_row(is_read & (events.decision[kept] == REFUSE))
    patient = events.patient_pseudonym[kept]
    patients, patient_code = np.unique(patient, return_inverse=True)
    touched = (is_access | is_read) & (patient != "")
    first_event, hour_actions = _actions(row, hour, events.batch_id[kept], is_access | is_read | is_declared, rows)
    emergency_reads, night_emergency_reads = _emergency_reads(
        row, hour, first_event, is_read & (events.purpose[kept] == EMERGENCY_PURPOSE), rows
    )
    read_first = first_event[(is_read & (patient != ""))[first_event]]
    width = max(len(patients), 1)
    read_pairs, reads_per_pair = np.unique(row[read_first] * width + patient_code[read_first], return_counts=True)
    read_pair_row = read_pairs // width
    own = np.column_stack(
        [
            per_row(is_access | is_read),
            np.bincount(np.unique(row[touched] * width + patient_code[touched]) // width, minlength=rows),
            np.divide(refused_reads, read_events, out=np.zeros(rows), where=read_events > 0),
            per_row(is_declared),
            emergency_reads,
            night_emergency_reads,
            _max_per_row(read_pair_row, reads_per_pair, rows),
            _largest_cohort(row, events.request_id[kept], is_access, rows),
            per_row(events.unexplained[kept].astype(bool)),
            refused_reads,
        ]
    ).astype(np.float64)
    organisation_of = np.array([organisations.get(str(g), str(g)) for g in grantee_values], dtype=str)
    return ClinicianDays(
        grantee=grantee_values[row_keys // span].astype(str),
        day=(row_keys % span + first_day).astype("datetime64[D]"),
        organisation=organisation_of[row_keys // span] if rows else np.array([], dtype=str),
        own=own.reshape(rows, len(OWN_FEATURES)),
        hour_actions=hour_actions,
        read_row=read_pair_row.astype(np.int64),
        read_patient=patients[read_pairs % width].astype(str),
    )


def _actions(
    row: np.ndarray, hour: np.ndarray, batch_id: np.ndarray, is_action: np.ndarray, rows: int
) -> tuple[np.ndarray, np.ndarray]:
    """The first event of each action (a batch; an action event with no batch is an action of its own), and the
    actions per row and hour. The events of a batch share its time."""
    action_events = np.flatnonzero(is_action)
    batch = batch_id[action_events]
    code = np.empty(len(action_events), dtype=np.int64)
    with_batch = batch != ""
    _, code[with_batch] = np.unique(batch[with_batch], return_inverse=True)
    alone = np.flatnonzero(~with_batch)
    code[alone] = int(with_batch.sum()) + np.arange(len(alone))
    _, first = np.unique(row[action_events] * max(len(code), 1) + code, return_index=True)
    first_event = action_events[first]
    counts = np.bincount(row[first_event] * 24 + hour[first_event], minlength=rows * 24)
    return first_event, counts.reshape(rows, 24).astype(np.int64)


def _emergency_reads(
    row: np.ndarray, hour: np.ndarray, first_event: np.ndarray, is_emergency_read: np.ndarray, rows: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the reads under an emergency declaration, and those at night."""
    reads = first_event[is_emergency_read[first_event]]
    at_night = np.isin(hour[reads], NIGHT_HOURS)
    return np.bincount(row[reads], minlength=rows), np.bincount(row[reads[at_night]], minlength=rows)


def _largest_cohort(row: np.ndarray, request_id: np.ndarray, is_access: np.ndarray, rows: int) -> np.ndarray:
    """Per row, the most record_access events one request made."""
    access = np.flatnonzero(is_access)
    _, request = np.unique(request_id[access], return_inverse=True)
    width = max(len(access), 1)
    keys, sizes = np.unique(row[access] * width + request, return_counts=True)
    return _max_per_row(keys // width, sizes, rows)


def _max_per_row(row: np.ndarray, value: np.ndarray, rows: int) -> np.ndarray:
    out = np.zeros(rows, dtype=np.float64)
    np.maximum.at(out, row, value.astype(np.float64))
    return out


@dataclass(frozen=True)
class Reason:
    """Why a day was flagged: a feature's value that day against the clinician's usual value, in words."""

    code: str
    value: float
    usual: float
    text: str


@dataclass(frozen=True)
class Alert:
    """A clinician-day the detector flags: the forest's anomaly score (0 to 1) and at least one reason, the
    strongest deviation first."""

    grantee: str
    day: date
    score: float
    reasons: tuple[Reason, ...]


def reason_text(feature: str, value: float, usual: float) -> str:
    """The plain-language sentence of a reason on `feature` (one of FEATURES), with the clinician's usual value."""
    match feature:
        case "volume":
            return f"{_whole(value)} records accessed in a day, usual {_whole(usual)}"
        case "distinct_patients":
            return f"Records of {_whole(value)} patients in a day, usual {_whole(usual)}"
        case "refusal_ratio":
            return f"{_percent(value)} of reads refused, usual {_percent(usual)}"
        case "off_hours_share":
            return f"{_percent(value)} of activity in hours this clinician rarely works, usual {_percent(usual)}"
        case "emergency_declarations":
            return f"{_whole(value)} emergency declarations in a day, usual {_whole(usual)}"
        case "night_emergency_reads":
            return f"{_whole(value)} emergency reads in a night, usual {_whole(usual)}"
        case "max_reads_of_one_patient":
            return f"Read one patient's records {_whole(value)} times in a day, usual {_whole(usual)}"
        case "largest_cohort":
            return f"A cohort of {_whole(value)} records, usual {_whole(usual)}"
        case "outside_share":
            return f"{_percent(value)} of patients outside the organisation's usual patients, usual {_percent(usual)}"
        case "unexplained":
            return f"{_whole(value)} access{'' if _whole(value) == '1' else 'es'} with no valid explanation"
    raise ValueError(f"no reason is given on {feature!r}")


def _whole(value: float) -> str:
    return f"{math.floor(value + 0.5):,}"


def _percent(share: float) -> str:
    return f"{math.floor(100 * share + 0.5)}%"


@dataclass(frozen=True, eq=False)
class _Forest:
    """An isolation forest as arrays: every tree's nodes concatenated, children as global node indices (-1 at a
    leaf), and at each node the path length a sample ending there gets (its depth plus the average path length
    of the training samples left in it), as scikit-learn computes it."""

    roots: np.ndarray  # (trees,) int64
    left: np.ndarray  # (nodes,) int64
    right: np.ndarray  # (nodes,) int64
    feature: np.ndarray  # (nodes,) int64, -2 at a leaf
    threshold: np.ndarray  # (nodes,) float64
    path_length: np.ndarray  # (nodes,) float64
    max_samples: int

    @classmethod
    def of(cls, forest: IsolationForest) -> "_Forest":
        roots, lefts, rights, features, thresholds, path_lengths = [], [], [], [], [], []
        offset = 0
        for estimator in forest.estimators_:
            tree = estimator.tree_
            left = tree.children_left.astype(np.int64)
            right = tree.children_right.astype(np.int64)
            depth = np.zeros(tree.node_count, dtype=np.float64)
            for node in range(tree.node_count):  # children always come after their parent
                if left[node] >= 0:
                    depth[left[node]] = depth[right[node]] = depth[node] + 1
            roots.append(offset)
            lefts.append(np.where(left >= 0, left + offset, -1))
            rights.append(np.where(right >= 0, right + offset, -1))
            features.append(tree.feature.astype(np.int64))
            thresholds.append(tree.threshold.astype(np.float64))
            path_lengths.append(depth + average_path_length(tree.n_node_samples))
            offset += tree.node_count
        return cls(
            roots=np.array(roots, dtype=np.int64),
            left=np.concatenate(lefts),
            right=np.concatenate(rights),
            feature=np.concatenate(features),
            threshold=np.concatenate(thresholds),
            path_length=np.concatenate(path_lengths),
            max_samples=int(forest.max_samples_),
        )

    def scores(self, samples: np.ndarray) -> np.ndarray:
        """The anomaly score of each sample, in (0, 1], higher the more isolated: 2^(-mean path / c(max_samples)),
        what IsolationForest.score_samples returns negated. Samples are compared as float32, as scikit-learn's
        trees compare them."""
        samples = samples.astype(np.float32).astype(np.float64)
        count = len(samples)
        node = np.repeat(self.roots[:, None], count, axis=1)
        sample = np.broadcast_to(np.arange(count), node.shape)
        while True:
            feature = self.feature[node]
            inner = feature >= 0
            if not inner.any():
                break
            goes_left = samples[sample, np.where(inner, feature, 0)] <= self.threshold[node]
            node = np.where(inner, np.where(goes_left, self.left[node], self.right[node]), node)
        mean_path = self.path_length[node].mean(axis=0)
        return 2.0 ** (-mean_path / average_path_length(np.array([self.max_samples]))[0])


def average_path_length(samples: np.ndarray) -> np.ndarray:
    """c(n): the average path length of an unsuccessful search in a binary search tree of n samples (0 for
    n <= 1, 1 for n = 2), the normaliser of the isolation forest's paths."""
    samples = np.asarray(samples, dtype=np.float64)
    out = np.where(samples == 2, 1.0, 0.0)
    many = samples > 2
    out[many] = 2.0 * (np.log(samples[many] - 1.0) + np.euler_gamma) - 2.0 * (samples[many] - 1.0) / samples[many]
    return out


@dataclass(frozen=True, eq=False)
class _Baselines:
    """What is usual for each clinician. Rows follow `clinicians` (sorted); columns follow FEATURES."""

    clinicians: tuple[str, ...]
    active_days: np.ndarray  # (k,) int64: days of history each clinician has
    usual: np.ndarray  # (k, F) float64: median (largest_cohort: over days with an analysis)
    spread: np.ndarray  # (k, F) float64: robust spread, floored
    population_usual: np.ndarray  # (F,) for a clinician with fewer than MIN_BASELINE_DAYS days of history
    population_spread: np.ndarray  # (F,)
    usual_hours: np.ndarray  # (k, 24) bool

    def index(self, grantee: np.ndarray) -> np.ndarray:
        """Each row's clinician, or -1 for one the history did not hold."""
        position = {clinician: index for index, clinician in enumerate(self.clinicians)}
        values, inverse = np.unique(grantee, return_inverse=True)
        return np.array([position.get(str(value), -1) for value in values], dtype=np.int64)[inverse]

    def of_rows(self, grantee: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each row's usual values and spreads: its clinician's, or the population's for a clinician with fewer
        than MIN_BASELINE_DAYS days of history."""
        index = self.index(grantee)
        own = index >= 0
        own[own] = self.active_days[index[own]] >= MIN_BASELINE_DAYS
        usual = np.tile(self.population_usual, (len(grantee), 1))
        spread = np.tile(self.population_spread, (len(grantee), 1))
        usual[own] = self.usual[index[own]]
        spread[own] = self.spread[index[own]]
        return usual, spread

    def deviation(self, grantee: np.ndarray, values: np.ndarray) -> np.ndarray:
        """Robust z-scores against each row's baseline; a day without an analysis has no cohort deviation."""
        usual, spread = self.of_rows(grantee)
        deviation = (values - usual) / spread
        cohort = FEATURES.index("largest_cohort")
        deviation[values[:, cohort] == 0, cohort] = 0.0
        return deviation


@dataclass(frozen=True, eq=False)
class _Familiarity:
    """Whom each organisation's clinicians read in the history: the patients read (sorted), the organisations
    (sorted), and the (organisation, patient) pairs as sorted keys: organisation x len(patients) + patient."""

    patients: np.ndarray  # (p,) str, sorted
    organisations: tuple[str, ...]
    organisation_pairs: np.ndarray  # (o,) int64, sorted

    @classmethod
    def of(cls, history: ClinicianDays) -> "_Familiarity":
        patients, patient_index = np.unique(history.read_patient, return_inverse=True)
        organisations, organisation_index = np.unique(history.organisation, return_inverse=True)
        return cls(
            patients=patients.astype(str),
            organisations=tuple(str(o) for o in organisations),
            organisation_pairs=np.unique(organisation_index[history.read_row] * max(len(patients), 1) + patient_index),
        )

    def usual_patients(self, days: ClinicianDays) -> tuple[np.ndarray, np.ndarray]:
        """For each read pair of `days`, whether its organisation's clinicians read the patient in the history;
        for each row, whether its organisation has a history at all."""
        position = np.searchsorted(self.patients, days.read_patient)
        known_patient = position < len(self.patients)
        known_patient[known_patient] = self.patients[position[known_patient]] == days.read_patient[known_patient]
        index_of = {organisation: index for index, organisation in enumerate(self.organisations)}
        organisation = np.array([index_of.get(str(o), -1) for o in days.organisation], dtype=np.int64)
        pair_organisation = organisation[days.read_row]
        usual = known_patient & (pair_organisation >= 0)
        keys = pair_organisation[usual] * max(len(self.patients), 1) + position[usual]
        usual[usual] = _contains(self.organisation_pairs, keys)
        return usual, organisation >= 0


def _contains(sorted_keys: np.ndarray, keys: np.ndarray) -> np.ndarray:
    position = np.searchsorted(sorted_keys, keys)
    found = position < len(sorted_keys)
    found[found] = sorted_keys[position[found]] == keys[found]
    return found


@dataclass(frozen=True, eq=False)
class _Model:
    """Everything that decides a score."""

    baselines: _Baselines
    familiarity: _Familiarity
    forest: _Forest
    threshold: float


# The arrays of a payload, in this order: (name, dtype), the dtype little-endian and explicit.
_ARRAYS: tuple[tuple[str, str], ...] = (
    ("active_days", "<i8"),
    ("usual", "<f8"),
    ("spread", "<f8"),
    ("population_usual", "<f8"),
    ("population_spread", "<f8"),
    ("usual_hours", "|u1"),
    ("familiarity.organisation_pairs", "<i8"),
    ("forest.roots", "<i8"),
    ("forest.left", "<i8"),
    ("forest.right", "<i8"),
    ("forest.feature", "<i8"),
    ("forest.threshold", "<f8"),
    ("forest.path_length", "<f8"),
)
_MAGIC = b"health-platform misuse detector\n"


def _constants() -> dict[str, Any]:
    """The code's settings that decide a score: a payload fitted under other ones is refused."""
    return {
        "version": VERSION,
        "features": list(FEATURES),
        "forest_features": list(FOREST_FEATURES),
        "rules": {name: dataclasses.asdict(rule) for name, rule in RULES.items()},
        "night_hours": list(NIGHT_HOURS),
        "fallback_usual_hours": list(FALLBACK_USUAL_HOURS),
        "usual_hour_share": USUAL_HOUR_SHARE,
        "min_usual_hours_actions": MIN_USUAL_HOURS_ACTIONS,
        "min_baseline_days": MIN_BASELINE_DAYS,
        "strong_deviation": STRONG_DEVIATION,
        "notable_deviation": NOTABLE_DEVIATION,
        "deviation_cap": DEVIATION_CAP,
        "threshold_quantile": THRESHOLD_QUANTILE,
    }


def _array(model: _Model, name: str) -> np.ndarray:
    part, _, attribute = name.rpartition(".")
    holder: Any = {"forest": model.forest, "familiarity": model.familiarity, "": model.baselines}[part]
    return np.asarray(getattr(holder, attribute))


def _payload(model: _Model) -> bytes:
    """The canonical bytes of a model: a JSON header (sorted keys, no spaces, one line) naming the settings,
    the threshold, the clinicians, the organisations, the patients and each array's dtype and shape, a newline,
    then the arrays' bytes in _ARRAYS order. The same model always gives the same bytes."""
    arrays = [np.ascontiguousarray(_array(model, name), dtype=dtype) for name, dtype in _ARRAYS]
    header = {
        "constants": _constants(),
        "threshold": model.threshold,
        "max_samples": model.forest.max_samples,
        "clinicians": list(model.baselines.clinicians),
        "organisations": list(model.familiarity.organisations),
        "patients": [str(patient) for patient in model.familiarity.patients],
        "arrays": [[name, dtype, list(array.shape)] for (name, dtype), array in zip(_ARRAYS, arrays, strict=True)],
    }
    text = json.dumps(header, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return text.encode() + b"\n" + b"".join(array.tobytes() for array in arrays)


def _model_of(payload: bytes) -> _Model:
    text, _, data = payload.partition(b"\n")
    header = json.loads(text)
    if header["constants"] != json.loads(json.dumps(_constants())):
        raise ValueError("the payload was fitted by another version or settings of the detector")
    arrays: dict[str, np.ndarray] = {}
    offset = 0
    for (name, dtype), (stored_name, stored_dtype, shape) in zip(_ARRAYS, header["arrays"], strict=True):
        if (name, dtype) != (stored_name, stored_dtype):
            raise ValueError(f"unexpected array {stored_name!r} in the payload")
        size = int(np.prod(shape)) * np.dtype(dtype).itemsize
        arrays[name] = np.frombuffer(data, dtype=dtype, count=int(np.prod(shape)), offset=offset).reshape(shape)
        offset += size
    if offset != len(data):
        raise ValueError("the payload's arrays do not match its header")
    forest = _Forest(
        roots=arrays["forest.roots"].astype(np.int64),
        left=arrays["forest.left"].astype(np.int64),
        right=arrays["forest.right"].astype(np.int64),
        feature=arrays["forest.feature"].astype(np.int64),
        threshold=arrays["forest.threshold"].astype(np.float64),
        path_length=arrays["forest.path_length"].astype(np.float64),
        max_samples=int(header["max_samples"]),
    )
    baselines = _Baselines(
        clinicians=tuple(header["clinicians"]),
        active_days=arrays["active_days"].astype(np.int64),
        usual=arrays["usual"].astype(np.float64),
        spread=arrays["spread"].astype(np.float64),
        population_usual=arrays["population_usual"].astype(np.float64),
        population_spread=arrays["population_spread"].astype(np.float64),
        usual_hours=arrays["usual_hours"].astype(bool),
    )
    familiarity = _Familiarity(
        patients=np.array(header["patients"], dtype=str),
        organisations=tuple(header["organisations"]),
        organisation_pairs=arrays["familiarity.organisation_pairs"].astype(np.int64),
    )
    return _Model(
        baselines=baselines,
        familiarity=familiarity,
        forest=forest,
        threshold=float(header["threshold"]),
    )


class MisuseDetector:
    """Fitted on a history of clinician-days, flags the days after it that deviate from each clinician's own
    baseline (see the module's docstring for the rule). Deterministic: the same history gives the same model,
    the same `weights_sha256`."""

    VERSION: ClassVar[str] = VERSION

    def __init__(self) -> None:
        self._model: _Model | None = None
        self._payload: bytes | None = None

    @property
    def model(self) -> _Model:
        if self._model is None:
            raise ValueError("the detector is not fitted")
        return self._model

    @property
    def threshold(self) -> float:
        """The forest score a day must reach: its THRESHOLD_QUANTILE quantile over the history's days."""
        return self.model.threshold

    @property
    def weights_sha256(self) -> str:
        """SHA-256 (hex) of the canonical payload: the trees, the baselines, the usual hours, the organisations'
        patients, the threshold, the feature names, the settings and the version."""
        if self._payload is None:
            self._payload = _payload(self.model)
        return hashlib.sha256(self._payload).hexdigest()

    @property
    def version(self) -> str:
        return f"{VERSION}-{self.weights_sha256[:12]}"

    def dumps(self) -> bytes:
        """The fitted model as bytes (no pickle): a magic line, the payload's SHA-256, a newline, the payload."""
        if self._payload is None:
            self._payload = _payload(self.model)
        return _MAGIC + self.weights_sha256.encode() + b"\n" + self._payload

    @classmethod
    def loads(cls, data: bytes) -> "MisuseDetector":
        """The detector `dumps` wrote. ValueError for anything else, and for a payload whose SHA-256 is not the
        one it carries (changed after it was written)."""
        if not data.startswith(_MAGIC):
            raise ValueError("not a misuse detector's payload")
        carried, _, payload = data[len(_MAGIC) :].partition(b"\n")
        if hashlib.sha256(payload).hexdigest().encode() != carried:
            raise ValueError("the payload's SHA-256 differs from the one it carries")
        detector = cls()
        detector._model = _model_of(payload)
        detector._payload = payload
        return detector

    def fit(self, history: ClinicianDays) -> "MisuseDetector":
        """Learn each clinician's baseline, usual hours and their organisation's patients from `history`, then
        the forest over the history's days relative to those baselines, and the threshold."""
        if len(history) < 2:
            raise ValueError("the history holds fewer than two clinician-days")
        values, support = _history_features(history)
        clinicians, clinician_of_row = np.unique(history.grantee, return_inverse=True)
        population_usual, population_spread = _baseline(values, cohort_fallback=None)
        cohort_fallback = (
            population_usual[FEATURES.index("largest_cohort")],
            population_spread[FEATURES.index("largest_cohort")],
        )
        usual = np.empty((len(clinicians), len(FEATURES)))
        spread = np.empty((len(clinicians), len(FEATURES)))
        for index in range(len(clinicians)):
            usual[index], spread[index] = _baseline(values[clinician_of_row == index], cohort_fallback=cohort_fallback)
        hours = np.zeros((len(clinicians), 24), dtype=np.int64)
        np.add.at(hours, clinician_of_row, history.hour_actions)
        baselines = _Baselines(
            clinicians=tuple(str(c) for c in clinicians),
            active_days=np.bincount(clinician_of_row, minlength=len(clinicians)).astype(np.int64),
            usual=usual,
            spread=spread,
            population_usual=population_usual,
            population_spread=population_spread,
            usual_hours=_usual_hours(hours),
        )
        samples = _forest_samples(baselines.deviation(history.grantee, values), support)
        forest = IsolationForest(
            n_estimators=N_ESTIMATORS, max_samples=min(MAX_SAMPLES, len(samples)), random_state=RANDOM_STATE
        ).fit(samples)
        trees = _Forest.of(forest)
        self._model = _Model(
            baselines=baselines,
            familiarity=_Familiarity.of(history),
            forest=trees,
            threshold=float(np.quantile(trees.scores(samples), THRESHOLD_QUANTILE)),
        )
        self._payload = None
        return self

    def features(self, days: ClinicianDays) -> np.ndarray:
        """The (n, len(FEATURES)) feature matrix of days after the history, relative to it where it must be."""
        return self._features(days)[0]

    def _features(self, days: ClinicianDays) -> tuple[np.ndarray, np.ndarray]:
        model = self.model
        index = model.baselines.index(days.grantee)
        known = index >= 0
        hours = np.tile(_fallback_hours_mask(), (len(days), 1))
        hours[known] = model.baselines.usual_hours[index[known]]
        usual_patient, known_organisation = model.familiarity.usual_patients(days)
        return _assemble(days, hours, usual_patient, known_organisation)

    def score(self, days: ClinicianDays, *, forest_gate: bool = True) -> list[Alert]:
        """The alerts among `days` (days after the history), in row order: a day whose forest score reaches the
        threshold and that has at least one strong deviation, or that has unexplained events. `forest_gate=False`
        drops the first condition (the reasons alone: what the benchmark compares the rule with)."""
        model = self.model
        values, support = self._features(days)
        deviation = model.baselines.deviation(days.grantee, values)
        scores = model.forest.scores(_forest_samples(deviation, support))
        usual, _ = model.baselines.of_rows(days.grantee)
        strong = _strong(values, usual, deviation, support)
        unexplained = values[:, FEATURES.index("unexplained")]
        gate = scores >= model.threshold if forest_gate else np.ones(len(days), dtype=bool)
        flagged = (gate & strong.any(axis=1)) | (unexplained > 0)
        return [
            Alert(
                grantee=str(days.grantee[row]),
                day=days.day[row].item(),
                score=float(scores[row]),
                reasons=_reasons(values[row], usual[row], deviation[row], strong[row]),
            )
            for row in np.flatnonzero(flagged)
        ]


def _fallback_hours_mask() -> np.ndarray:
    mask = np.zeros(24, dtype=bool)
    mask[list(FALLBACK_USUAL_HOURS)] = True
    return mask


def _usual_hours(hour_actions: np.ndarray) -> np.ndarray:
    """Per row of action counts by hour: the hours within an hour of which at least USUAL_HOUR_SHARE of the
    actions fall; the fallback hours for fewer than MIN_USUAL_HOURS_ACTIONS actions."""
    smoothed = hour_actions + np.roll(hour_actions, 1, axis=1) + np.roll(hour_actions, -1, axis=1)
    total = hour_actions.sum(axis=1, keepdims=True)
    usual = smoothed >= USUAL_HOUR_SHARE * total
    usual[total[:, 0] < MIN_USUAL_HOURS_ACTIONS] = _fallback_hours_mask()
    return usual


def _history_features(history: ClinicianDays) -> tuple[np.ndarray, np.ndarray]:
    """The history's features, each day judged against the REST of the history: its clinician's usual hours
    without that day's actions, the patients its organisation read on some other day. So a day of the history
    looks as a day after it would, and the baselines learn what scoring will see."""
    clinicians, clinician_of_row = np.unique(history.grantee, return_inverse=True)
    hours = np.zeros((len(clinicians), 24), dtype=np.int64)
    np.add.at(hours, clinician_of_row, history.hour_actions)
    usual_hours = _usual_hours(hours[clinician_of_row] - history.hour_actions)
    _, organisation_of_row = np.unique(history.organisation, return_inverse=True)
    usual_patient = _read_on_another_day(history, organisation_of_row)
    return _assemble(history, usual_hours, usual_patient, np.ones(len(history), dtype=bool))


def _read_on_another_day(history: ClinicianDays, group_of_row: np.ndarray) -> np.ndarray:
    """For each read pair: whether the row's group (its organisation) read the patient on another day of the
    history."""
    _, patient = np.unique(history.read_patient, return_inverse=True)
    day_number = history.day.astype(np.int64)
    first_day = int(day_number.min())
    span = int(day_number.max()) - first_day + 1
    group_patient = group_of_row[history.read_row].astype(np.int64) * max(int(patient.max(initial=0)) + 1, 1) + patient
    seen = np.unique(group_patient * span + (day_number[history.read_row] - first_day))
    pairs, days_seen = np.unique(seen // span, return_counts=True)
    return days_seen[np.searchsorted(pairs, group_patient)] >= 2


def _assemble(
    days: ClinicianDays,
    usual_hours: np.ndarray,
    usual_patient: np.ndarray,
    known_organisation: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """The feature matrix (columns in FEATURES order) and the support matrix (the count behind a share; inf
    for a feature that is no share). An organisation with no history has no usual patients to be outside of:
    its outside share is 0."""
    rows = len(days)
    actions = days.hour_actions.sum(axis=1).astype(np.float64)
    off_hours = (days.hour_actions * ~usual_hours).sum(axis=1).astype(np.float64)
    patients_read = np.bincount(days.read_row, minlength=rows).astype(np.float64)
    outside = np.bincount(days.read_row, weights=(~usual_patient).astype(np.float64), minlength=rows)
    outside[~known_organisation] = 0.0
    own = {name: days.own[:, index] for index, name in enumerate(OWN_FEATURES)}
    columns = {
        **own,
        "off_hours_share": np.divide(off_hours, actions, out=np.zeros(rows), where=actions > 0),
        "outside_share": np.divide(outside, patients_read, out=np.zeros(rows), where=patients_read > 0),
    }
    values = np.column_stack([columns[name] for name in FEATURES]).reshape(rows, len(FEATURES))
    support = np.full((rows, len(FEATURES)), np.inf)
    support[:, FEATURES.index("refusal_ratio")] = own["refused_reads"]
    support[:, FEATURES.index("off_hours_share")] = off_hours
    support[:, FEATURES.index("outside_share")] = outside
    return values, support


def _baseline(values: np.ndarray, *, cohort_fallback: tuple[float, float] | None) -> tuple[np.ndarray, np.ndarray]:
    """Median and robust spread of each feature over `values` (one row per day), the spread floored by each
    rule. largest_cohort is judged over the days with an analysis; with none, `cohort_fallback` (the
    population's) stands in."""
    usual = np.median(values, axis=0)
    spread = MAD_TO_SIGMA * np.median(np.abs(values - usual), axis=0)
    cohort = FEATURES.index("largest_cohort")
    cohorts = values[values[:, cohort] > 0, cohort]
    if len(cohorts):
        usual[cohort] = np.median(cohorts)
        spread[cohort] = MAD_TO_SIGMA * np.median(np.abs(cohorts - usual[cohort]))
    elif cohort_fallback is not None:
        usual[cohort], spread[cohort] = cohort_fallback
    occasional = np.array(
        [np.median(column[column > 0]) if (column > 0).any() else 0.0 for column in values.T], dtype=np.float64
    )
    floors = np.max(
        [
            [RULES[name].floor for name in FEATURES],
            [RULES[name].relative_floor * usual[index] for index, name in enumerate(FEATURES)],
            [RULES[name].occasional_floor * occasional[index] for index, name in enumerate(FEATURES)],
            [RULES[name].cohort_floor * usual[cohort] for name in FEATURES],
        ],
        axis=0,
    )
    return usual, np.maximum(spread, floors)


def _forest_samples(deviation: np.ndarray, support: np.ndarray) -> np.ndarray:
    """What the forest sees: how far each feature rose beyond NOTABLE_DEVIATION robust spreads (0 below: an
    ordinary day's noise, and a quiet day, are no misuse), capped; a share's rise counts in proportion to its
    support up to the rule's min_support (one read at noon on a night nurse's day off is "100% off hours")."""
    columns = [FEATURES.index(name) for name in FOREST_FEATURES]
    minimum_support = np.array([max(RULES[name].min_support, 1.0) for name in FOREST_FEATURES])
    confidence = np.minimum(1.0, support[:, columns] / minimum_support)
    rises = np.clip((deviation[:, columns] - NOTABLE_DEVIATION) * confidence, 0.0, DEVIATION_CAP)
    return np.column_stack([rises, rises.max(axis=1, initial=0.0)])


def _strong(values: np.ndarray, usual: np.ndarray, deviation: np.ndarray, support: np.ndarray) -> np.ndarray:
    """(n, F) bool: the features that deviate strongly enough to be a reason (unexplained is a rule apart)."""
    minimum_excess = np.array([RULES[name].min_excess for name in FEATURES])
    minimum_support = np.array([RULES[name].min_support for name in FEATURES])
    has_reason = np.array([RULES[name].code is not None and name != "unexplained" for name in FEATURES])
    return (
        has_reason & (deviation >= STRONG_DEVIATION) & (values - usual >= minimum_excess) & (support >= minimum_support)
    )


def _reasons(values: np.ndarray, usual: np.ndarray, deviation: np.ndarray, strong: np.ndarray) -> tuple[Reason, ...]:
    """A day's reasons, the strongest deviation first, one per code (the strongest); unexplained events first."""
    ranked: list[tuple[float, Reason]] = []
    unexplained = float(values[FEATURES.index("unexplained")])
    if unexplained > 0:
        text = reason_text("unexplained", unexplained, 0.0)
        ranked.append((math.inf, Reason("unexplained_access", unexplained, 0.0, text)))
    for column in np.flatnonzero(strong):
        feature = FEATURES[column]
        code = RULES[feature].code
        assert code is not None
        value, usual_value = float(values[column]), float(usual[column])
        ranked.append(
            (float(deviation[column]), Reason(code, value, usual_value, reason_text(feature, value, usual_value)))
        )
    ranked.sort(key=lambda pair: -pair[0])
    reasons: dict[str, Reason] = {}
    for _, reason in ranked:
        reasons.setdefault(reason.code, reason)
    return tuple(reasons.values())
