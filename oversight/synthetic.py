"""A synthetic hospital month of access-log events with misuse injected, for the misuse detector's benchmark
and tests. Free of Django; numpy only, one random generator per purpose so that the same seed gives the same
natural events whatever is injected (a test compares a log with and without one injection).

The hospital:
- organisations, each with its own patient panel (patient p belongs to organisation p mod organisations);
- clinicians on day (07-19, 70%), evening (15-23, 18%) or night (23-07, 12%) shifts; day staff work 90% of
  weekdays and 15% of weekend days, evening staff 75% and 45%, night staff 70% of any day; weekend days are 30%
  quieter; 3% of a clinician's reads fall at any hour (late charting);
- a clinician's day: a list of about 24 distinct patients (a lognormal per clinician, a gamma-distributed
  busyness per day), 80% from their own caseload (150-450 patients of their organisation's panel), 15% from
  the rest of the panel, 5% from another organisation's (referrals); 1.3 reads per patient, and 4% of patients
  (inpatients) read 2 to about 8 times; one read is one batch of 1-6 records of one patient; 1.5% of records
  refused, and 1% of reads refused whole (a consent ended);
- emergency physicians (12%) declare about one emergency every four shifts, then read the patient 1-4 times
  under it; others almost never (0.2% of shifts);
- researchers (30%) run an analysis on 15-40% of their days: an explicit cohort of their usual size (a
  lognormal around 40-1,500 records) give or take 25%, one record_access event per record, batches of 500,
  20% refused (patients who did not consent); organisations run analyses too, and an auditor exports the log
  (actors the detector ignores).

Misuse is injected on the month's days only (the history before it is natural; DEFAULT_SCENARIOS: ten
clinician-days of each), on clinicians chosen by the injection's own generator, each on one clinician-day of a
distinct clinician, on day or evening staff so that the misuse falls within one calendar day:
- snooping: one patient of the organisation read 10-20 times in the shift, 1-3 records each;
- bulk_pull: a researcher's explicit cohort of 8-15 times their usual size;
- night_emergency: 3-6 emergency declarations between 00:30 and 05:00 by a clinician who is no emergency
  physician, each followed by 2-4 emergency reads;
- outside_patients: 60-90% of the patients of a working day taken from another organisation's panel (the
  number of reads unchanged).
"""

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from types import MappingProxyType
from typing import Any

import numpy as np

from oversight.detector import Alert, EventColumns

SCENARIOS: tuple[str, ...] = ("snooping", "bulk_pull", "night_emergency", "outside_patients")
DEFAULT_SCENARIOS: Mapping[str, int] = MappingProxyType(dict.fromkeys(SCENARIOS, 10))
# The reason an alert on an injected day should give.
EXPECTED_REASONS: Mapping[str, str] = MappingProxyType(
    {
        "snooping": "repeated_reads",
        "bulk_pull": "large_cohort",
        "night_emergency": "night_emergency_reads",
        "outside_patients": "outside_patients",
    }
)

DAY, EVENING, NIGHT = 0, 1, 2
SHIFT_START_HOUR = np.array([7, 15, 23])
SHIFT_HOURS = np.array([12, 8, 8])
WEEKDAY_WORK = np.array([0.9, 0.75, 0.7])
WEEKEND_WORK = np.array([0.15, 0.45, 0.7])

KINDS = ("record_read", "record_access", "emergency_declared", "export")
READ, ACCESS, DECLARED, EXPORT = range(4)
PURPOSES = (
    "treatment",
    "emergency",
    "research",
    "diagnostic-model:breast-cancer",
    "diagnostic-model:diabetes",
    "audit",
)
TREATMENT, EMERGENCY, RESEARCH, BREAST_CANCER, DIABETES, AUDIT = range(6)
DECISIONS = ("admit", "refuse", "declared", "exported")
ADMIT, REFUSE, DECLARED_DECISION, EXPORTED = range(4)
ANALYSIS_BATCH = 500


@dataclass(frozen=True)
class Injected:
    """One injected misuse: the scenario, the clinician, the (UTC) day."""

    scenario: str
    grantee: str
    day: date


@dataclass(frozen=True, eq=False)
class SyntheticMonth:
    """The events of `history_days` days of natural activity followed by the month (`days` days from `start`),
    the organisation of each clinician, and the misuse injected in the month."""

    events: EventColumns
    organisations: dict[str, str]
    injected: list[Injected]
    start: date
    days: int
    history_days: int

    @property
    def history_start(self) -> date:
        return self.start - timedelta(days=self.history_days)

    @property
    def end(self) -> date:
        return self.start + timedelta(days=self.days)


@dataclass(frozen=True, eq=False)
class _Staff:
    """The clinicians' fixed traits, one entry per clinician."""

    organisation: np.ndarray
    shift: np.ndarray
    emergency_physician: np.ndarray
    patients_per_day: np.ndarray
    researcher: np.ndarray
    analysis_rate: np.ndarray
    usual_cohort: np.ndarray
    caseload_start: np.ndarray
    caseload_size: np.ndarray


@dataclass(eq=False)
class _Events:
    """Events as integer columns: actor (a clinician's index, or an index past them), time (UTC seconds),
    codes into KINDS, PURPOSES, DECISIONS, patient (-1 for none), request and batch numbers (-1 for none)."""

    actor: list[np.ndarray] = field(default_factory=list)
    time: list[np.ndarray] = field(default_factory=list)
    kind: list[np.ndarray] = field(default_factory=list)
    purpose: list[np.ndarray] = field(default_factory=list)
    decision: list[np.ndarray] = field(default_factory=list)
    patient: list[np.ndarray] = field(default_factory=list)
    request: list[np.ndarray] = field(default_factory=list)
    batch: list[np.ndarray] = field(default_factory=list)
    numbers: int = 0

    def new_numbers(self, count: int) -> np.ndarray:
        """`count` request or batch numbers never used before."""
        numbers = np.arange(self.numbers, self.numbers + count, dtype=np.int64)
        self.numbers += count
        return numbers

    def add(self, **columns: Any) -> None:
        count = len(columns["time"])
        for name in ("actor", "time", "kind", "purpose", "decision", "patient", "request", "batch"):
            value = columns.get(name, -1)
            getattr(self, name).append(np.broadcast_to(np.asarray(value, dtype=np.int64), (count,)))

    def column(self, name: str) -> np.ndarray:
        return np.concatenate(getattr(self, name)) if getattr(self, name) else np.empty(0, dtype=np.int64)


@dataclass(frozen=True, eq=False)
class _Hospital:
    """What the generator draws from: the staff, the panels, the days, the shift-days worked."""

    staff: _Staff
    patients: int
    organisations: int
    first_day: date
    total_days: int
    history_days: int
    shift_clinician: np.ndarray  # (s,) the shift-days worked
    shift_day: np.ndarray  # (s,) day index from first_day

    def panel_size(self, organisation: np.ndarray) -> np.ndarray:
        return (self.patients - organisation + self.organisations - 1) // self.organisations

    def day_start(self, day: np.ndarray) -> np.ndarray:
        origin = int(datetime(self.first_day.year, self.first_day.month, self.first_day.day, tzinfo=UTC).timestamp())
        return origin + day.astype(np.int64) * 86_400

    def is_weekend(self, day: np.ndarray) -> np.ndarray:
        monday_first = (np.datetime64(self.first_day, "D") + day).astype("datetime64[D]").view("int64") + 3
        return monday_first % 7 >= 5

    def shift_seconds(self, rng: np.random.Generator, shift: np.ndarray, *, anytime: float) -> np.ndarray:
        """Seconds after midnight of the shift's first day: within the shift (busiest mid-shift), or with
        probability `anytime` at any hour of that day."""
        within = (SHIFT_START_HOUR[shift] + SHIFT_HOURS[shift] * rng.beta(2.0, 2.0, len(shift))) * 3600
        whenever = rng.uniform(0, 86_400, len(shift))
        return np.where(rng.random(len(shift)) < anytime, whenever, within).astype(np.int64)


def generate_month(
    *,
    clinicians: int = 200,
    patients: int = 20_000,
    days: int = 30,
    organisations: int = 4,
    seed: int = 0,
    scenarios: Mapping[str, int] = DEFAULT_SCENARIOS,
    start: date = date(2026, 11, 1),
    history_days: int = 28,
) -> SyntheticMonth:
    """A hospital's access log over `history_days` days before `start` and the month from it, with
    `scenarios[name]` clinician-days of each misuse injected in the month (see the module's docstring).
    With the defaults the month alone holds over 500,000 events."""
    natural = np.random.default_rng([seed, 0])
    injection = np.random.default_rng([seed, 1])
    hospital = _hospital(natural, clinicians, patients, organisations, start, days, history_days)
    events = _Events()
    visits = _treatment_reads(natural, hospital, events)
    _emergencies(natural, hospital, events)
    _analyses(natural, hospital, events)
    _other_actors(natural, hospital, events)
    injected = _inject(injection, hospital, events, visits, scenarios)
    grantees = [f"clinician:{index}" for index in range(clinicians)]
    return SyntheticMonth(
        events=_columns(events, hospital, grantees, seed),
        organisations={grantee: f"org:{hospital.staff.organisation[i]}" for i, grantee in enumerate(grantees)},
        injected=[Injected(scenario, grantees[clinician], day) for scenario, clinician, day in injected],
        start=start,
        days=days,
        history_days=history_days,
    )


def generate_small(*, seed: int = 0, scenarios: Mapping[str, int] = MappingProxyType({})) -> SyntheticMonth:
    """A small hospital for tests: 20 clinicians, 2,000 patients, two organisations, 16 days of history and 5
    scored days (about 40,000 events, generated in a tenth of a second)."""
    return generate_month(
        clinicians=20, patients=2_000, days=5, organisations=2, seed=seed, scenarios=scenarios, history_days=16
    )


def _hospital(
    rng: np.random.Generator, clinicians: int, patients: int, organisations: int, start: date, days: int, history: int
) -> _Hospital:
    panel = (patients - np.arange(organisations) + organisations - 1) // organisations
    organisation = np.arange(clinicians) % organisations
    staff = _Staff(
        organisation=organisation,
        shift=rng.choice(3, size=clinicians, p=[0.7, 0.18, 0.12]),
        emergency_physician=rng.random(clinicians) < 0.12,
        patients_per_day=rng.lognormal(np.log(24), 0.35, clinicians),
        researcher=rng.random(clinicians) < 0.3,
        analysis_rate=rng.uniform(0.15, 0.4, clinicians),
        usual_cohort=np.clip(rng.lognormal(np.log(250), 0.5, clinicians), 40, 1_500),
        caseload_start=rng.integers(0, panel[organisation]),
        caseload_size=np.minimum(rng.integers(150, 450, clinicians), panel[organisation]),
    )
    total = history + days
    clinician, day = (grid.ravel() for grid in np.meshgrid(np.arange(clinicians), np.arange(total), indexing="ij"))
    first_day = start - timedelta(days=history)
    sketch = _Hospital(staff, patients, organisations, first_day, total, history, clinician, day)
    work = np.where(sketch.is_weekend(day), WEEKEND_WORK[staff.shift[clinician]], WEEKDAY_WORK[staff.shift[clinician]])
    worked = rng.random(len(clinician)) < work
    return _Hospital(staff, patients, organisations, first_day, total, history, clinician[worked], day[worked])


@dataclass(frozen=True, eq=False)
class _Visits:
    """The patients each shift-day read: visits grouped by shift-day (`first[s]` to `first[s + 1]`), their
    patients (mutable: outside_patients replaces some), and each read event's visit."""

    patient: np.ndarray
    first: np.ndarray
    event_visit: np.ndarray
    part: int  # the read events' place in the events' column lists


def _treatment_reads(rng: np.random.Generator, hospital: _Hospital, events: _Events) -> _Visits:
    staff, shift_clinician = hospital.staff, hospital.shift_clinician
    busy = rng.gamma(8.0, 1 / 8, len(shift_clinician)) * np.where(hospital.is_weekend(hospital.shift_day), 0.7, 1.0)
    drawn_shift = np.repeat(
        np.arange(len(shift_clinician)), rng.poisson(staff.patients_per_day[shift_clinician] * busy)
    )
    drawn_patient = _visit_patients(rng, hospital, shift_clinician[drawn_shift])
    # A day's list holds each patient once (drawn twice, seen once): the visits in shift order.
    _, once = np.unique(drawn_shift * hospital.patients + drawn_patient, return_index=True)
    visit_shift, patient = drawn_shift[once], drawn_patient[once]
    visits_per_shift = np.bincount(visit_shift, minlength=len(shift_clinician))
    clinician = shift_clinician[visit_shift]
    count = len(visit_shift)
    reads_per_visit = 1 + rng.poisson(0.3, count) + (rng.random(count) < 0.04) * (1 + rng.poisson(1.5, count))
    read_visit = np.repeat(np.arange(count), reads_per_visit)
    read_shift = visit_shift[read_visit]
    read_time = hospital.day_start(hospital.shift_day[read_shift]) + hospital.shift_seconds(
        rng, staff.shift[shift_clinician[read_shift]], anytime=0.03
    )
    records = 1 + rng.binomial(5, 0.45, len(read_visit))
    refused_whole = rng.random(len(read_visit)) < 0.01
    event_read = np.repeat(np.arange(len(read_visit)), records)
    refused = refused_whole[event_read] | (rng.random(len(event_read)) < 0.015)
    numbers = events.new_numbers(len(read_visit))
    part = len(events.patient)
    events.add(
        actor=clinician[read_visit[event_read]],
        time=read_time[event_read],
        kind=READ,
        purpose=TREATMENT,
        decision=np.where(refused, REFUSE, ADMIT),
        patient=patient[read_visit[event_read]],
        request=numbers[event_read],
        batch=numbers[event_read],
    )
    first = np.concatenate([[0], np.cumsum(visits_per_shift)])
    return _Visits(patient, first, read_visit[event_read], part)


def _visit_patients(rng: np.random.Generator, hospital: _Hospital, clinician: np.ndarray) -> np.ndarray:
    """80% from the clinician's caseload, 15% from their organisation's panel, 5% from another's."""
    staff, organisations = hospital.staff, hospital.organisations
    organisation = staff.organisation[clinician]
    panel = hospital.panel_size(organisation)
    count = len(clinician)
    caseload = (staff.caseload_start[clinician] + rng.integers(0, staff.caseload_size[clinician])) % panel
    anyone = rng.integers(0, panel)
    other = (organisation + rng.integers(1, max(organisations, 2), count)) % organisations
    other_patient = other + organisations * rng.integers(0, hospital.panel_size(other))
    source = rng.random(count)
    return np.where(
        source < 0.8,
        organisation + organisations * caseload,
        np.where(source < 0.95, organisation + organisations * anyone, other_patient),
    )


def _emergencies(rng: np.random.Generator, hospital: _Hospital, events: _Events) -> None:
    staff, shift_clinician = hospital.staff, hospital.shift_clinician
    rate = np.where(staff.emergency_physician[shift_clinician], 0.25, 0.002)
    declarations = rng.poisson(rate)
    declaration_shift = np.repeat(np.arange(len(shift_clinician)), declarations)
    clinician = shift_clinician[declaration_shift]
    time = hospital.day_start(hospital.shift_day[declaration_shift]) + hospital.shift_seconds(
        rng, staff.shift[clinician], anytime=0.0
    )
    patient = rng.integers(0, hospital.patients, len(clinician))
    _declare(rng, events, clinician, time, patient, reads=1 + rng.poisson(1.2, len(clinician)))


def _declare(
    rng: np.random.Generator,
    events: _Events,
    clinician: np.ndarray,
    time: np.ndarray,
    patient: np.ndarray,
    *,
    reads: np.ndarray,
) -> None:
    """Emergency declarations at `time`, each followed within the hour by `reads` emergency reads of its
    patient (1-6 records each)."""
    declaration = events.new_numbers(len(clinician))
    events.add(
        actor=clinician,
        time=time,
        kind=DECLARED,
        purpose=EMERGENCY,
        decision=DECLARED_DECISION,
        patient=patient,
        request=declaration,
        batch=events.new_numbers(len(clinician)),
    )
    read_declaration = np.repeat(np.arange(len(clinician)), reads)
    read_time = time[read_declaration] + rng.integers(60, 3_600, len(read_declaration))
    records = 1 + rng.binomial(5, 0.45, len(read_declaration))
    event_read = np.repeat(np.arange(len(read_declaration)), records)
    events.add(
        actor=clinician[read_declaration[event_read]],
        time=read_time[event_read],
        kind=READ,
        purpose=EMERGENCY,
        decision=ADMIT,
        patient=patient[read_declaration[event_read]],
        request=declaration[read_declaration[event_read]],
        batch=events.new_numbers(len(read_declaration))[event_read],
    )


def _analyses(rng: np.random.Generator, hospital: _Hospital, events: _Events) -> None:
    staff, shift_clinician = hospital.staff, hospital.shift_clinician
    runs = staff.researcher[shift_clinician] & (rng.random(len(shift_clinician)) < staff.analysis_rate[shift_clinician])
    shift = np.flatnonzero(runs)
    clinician = shift_clinician[shift]
    size = np.maximum(10, np.round(staff.usual_cohort[clinician] * rng.lognormal(0.0, 0.25, len(shift))))
    time = hospital.day_start(hospital.shift_day[shift]) + hospital.shift_seconds(
        rng, staff.shift[clinician], anytime=0.0
    )
    _analyse(rng, hospital, events, clinician, time, size.astype(np.int64), organisation=staff.organisation[clinician])


def _analyse(
    rng: np.random.Generator,
    hospital: _Hospital,
    events: _Events,
    actor: np.ndarray,
    time: np.ndarray,
    size: np.ndarray,
    *,
    organisation: np.ndarray | None,
) -> None:
    """Analyses of explicit cohorts of `size` records each, from the organisation's panel (None: the whole
    hospital), one record_access event per record in batches of ANALYSIS_BATCH, 20% refused."""
    request = events.new_numbers(len(actor))
    purpose = rng.choice([RESEARCH, BREAST_CANCER, DIABETES], size=len(actor))
    event_analysis = np.repeat(np.arange(len(actor)), size)
    position = np.arange(len(event_analysis)) - np.repeat(np.cumsum(size) - size, size)
    chunks = (size + ANALYSIS_BATCH - 1) // ANALYSIS_BATCH
    first_batch = events.new_numbers(int(chunks.sum()))[np.cumsum(chunks) - chunks]
    if organisation is None:
        patient = rng.integers(0, hospital.patients, len(event_analysis))
    else:
        owner = organisation[event_analysis]
        patient = owner + hospital.organisations * rng.integers(0, hospital.panel_size(owner))
    events.add(
        actor=actor[event_analysis],
        time=time[event_analysis] + 20 * (position // ANALYSIS_BATCH),
        kind=ACCESS,
        purpose=purpose[event_analysis],
        decision=np.where(rng.random(len(event_analysis)) < 0.2, REFUSE, ADMIT),
        patient=patient,
        request=request[event_analysis],
        batch=first_batch[event_analysis] + position // ANALYSIS_BATCH,
    )


def _other_actors(rng: np.random.Generator, hospital: _Hospital, events: _Events) -> None:
    """Organisations' own analyses (a third of weekdays each) and an auditor's exports (two a day): actors
    other than clinicians, whom the detector ignores."""
    clinicians = len(hospital.staff.organisation)
    day = np.arange(hospital.total_days)
    organisation, org_day = (g.ravel() for g in np.meshgrid(np.arange(hospital.organisations), day, indexing="ij"))
    runs = ~hospital.is_weekend(org_day) & (rng.random(len(org_day)) < 0.33)
    time = hospital.day_start(org_day[runs]) + rng.integers(9 * 3600, 17 * 3600, int(runs.sum()))
    size = rng.integers(100, 400, int(runs.sum()))
    _analyse(rng, hospital, events, clinicians + organisation[runs], time, size, organisation=organisation[runs])
    export_day = np.repeat(day, 2)
    events.add(
        actor=clinicians + hospital.organisations,
        time=hospital.day_start(export_day) + rng.integers(8 * 3600, 18 * 3600, len(export_day)),
        kind=EXPORT,
        purpose=AUDIT,
        decision=EXPORTED,
        batch=events.new_numbers(len(export_day)),
    )


def _inject(
    rng: np.random.Generator, hospital: _Hospital, events: _Events, visits: _Visits, scenarios: Mapping[str, int]
) -> list[tuple[str, int, date]]:
    """Each scenario on `scenarios[name]` shift-days of distinct day or evening clinicians in the month."""
    staff = hospital.staff
    month_shift = np.flatnonzero(hospital.shift_day >= hospital.history_days)
    daytime = staff.shift != NIGHT
    visit_count = np.diff(visits.first)
    used: set[int] = set()
    injected: list[tuple[str, int, date]] = []
    for scenario, count in scenarios.items():
        if scenario not in SCENARIOS:
            raise ValueError(f"unknown scenario {scenario!r}")
        clinician_fits = daytime.copy()
        if scenario == "bulk_pull":
            clinician_fits &= staff.researcher
        if scenario == "night_emergency":
            clinician_fits &= ~staff.emergency_physician
        candidates = month_shift[clinician_fits[hospital.shift_clinician[month_shift]]]
        if scenario == "outside_patients":
            candidates = candidates[visit_count[candidates] >= 10]
        for shift in _distinct_clinicians(rng, candidates, hospital.shift_clinician, used, count, scenario):
            clinician = int(hospital.shift_clinician[shift])
            day = int(hospital.shift_day[shift])
            _INJECTIONS[scenario](rng, hospital, events, visits, shift)
            injected.append((scenario, clinician, hospital.first_day + timedelta(days=day)))
    return injected


def _distinct_clinicians(
    rng: np.random.Generator, candidates: np.ndarray, shift_clinician: np.ndarray, used: set[int], count: int, name: str
) -> list[int]:
    """`count` shift-days among `candidates`, each of a clinician not yet used (then marked used)."""
    chosen: list[int] = []
    for shift in rng.permutation(candidates):
        clinician = int(shift_clinician[shift])
        if clinician not in used:
            used.add(clinician)
            chosen.append(int(shift))
            if len(chosen) == count:
                return chosen
    raise ValueError(f"not enough clinicians to inject {count} x {name}")


def _snoop(rng: np.random.Generator, hospital: _Hospital, events: _Events, visits: _Visits, shift: int) -> None:
    clinician = int(hospital.shift_clinician[shift])
    organisation = int(hospital.staff.organisation[clinician])
    patient = organisation + hospital.organisations * int(rng.integers(0, hospital.panel_size(np.array(organisation))))
    reads = int(rng.integers(10, 21))
    time = _in_shift(rng, hospital, shift, reads)
    records = 1 + rng.binomial(2, 0.5, reads)
    event_read = np.repeat(np.arange(reads), records)
    numbers = events.new_numbers(reads)
    events.add(
        actor=clinician,
        time=time[event_read],
        kind=READ,
        purpose=TREATMENT,
        decision=ADMIT,
        patient=patient,
        request=numbers[event_read],
        batch=numbers[event_read],
    )


def _bulk_pull(rng: np.random.Generator, hospital: _Hospital, events: _Events, visits: _Visits, shift: int) -> None:
    clinician = int(hospital.shift_clinician[shift])
    size = round(float(hospital.staff.usual_cohort[clinician]) * rng.uniform(8, 15))
    _analyse(
        rng,
        hospital,
        events,
        np.array([clinician]),
        _in_shift(rng, hospital, shift, 1),
        np.array([size]),
        organisation=None,
    )


def _night_emergency(
    rng: np.random.Generator, hospital: _Hospital, events: _Events, visits: _Visits, shift: int
) -> None:
    clinician = int(hospital.shift_clinician[shift])
    declarations = int(rng.integers(3, 7))
    midnight = hospital.day_start(hospital.shift_day[[shift]])
    time = midnight + rng.integers(1_800, 5 * 3_600 - 3_600, declarations)
    patient = rng.integers(0, hospital.patients, declarations)
    _declare(rng, events, np.full(declarations, clinician), time, patient, reads=rng.integers(2, 5, declarations))


def _outside_patients(
    rng: np.random.Generator, hospital: _Hospital, events: _Events, visits: _Visits, shift: int
) -> None:
    clinician = int(hospital.shift_clinician[shift])
    organisation = int(hospital.staff.organisation[clinician])
    other = (organisation + int(rng.integers(1, max(hospital.organisations, 2)))) % hospital.organisations
    day_visits = np.arange(visits.first[shift], visits.first[shift + 1])
    taken = rng.permutation(day_visits)[: round(len(day_visits) * rng.uniform(0.6, 0.9))]
    visits.patient[taken] = other + hospital.organisations * rng.integers(
        0, hospital.panel_size(np.array(other)), len(taken)
    )
    events.patient[visits.part] = visits.patient[visits.event_visit]


def _in_shift(rng: np.random.Generator, hospital: _Hospital, shift: int, count: int) -> np.ndarray:
    clinician_shift = np.full(count, hospital.staff.shift[hospital.shift_clinician[shift]])
    return hospital.day_start(hospital.shift_day[[shift]]) + hospital.shift_seconds(rng, clinician_shift, anytime=0.0)


_INJECTIONS = {
    "snooping": _snoop,
    "bulk_pull": _bulk_pull,
    "night_emergency": _night_emergency,
    "outside_patients": _outside_patients,
}


def _columns(events: _Events, hospital: _Hospital, grantees: list[str], seed: int) -> EventColumns:
    """The string columns, events in time order. Pseudonyms are 64 hex digits, ids 32, as the platform's."""
    actors = np.array(
        [*grantees, *(f"org:{o}" for o in range(hospital.organisations)), "auditor:1"],
        dtype=str,
    )
    pseudonyms = np.array(
        [hashlib.sha256(f"synthetic:{seed}:{p}".encode()).hexdigest() for p in range(hospital.patients)] + [""]
    )
    time = events.column("time")
    order = np.argsort(time, kind="stable")
    request, batch = events.column("request")[order], events.column("batch")[order]
    ids = np.array([f"{number:032x}" for number in range(events.numbers)] + [""])
    return EventColumns(
        grantee=actors[events.column("actor")[order]],
        recorded_at=time[order].astype("datetime64[s]"),
        kind=np.array(KINDS)[events.column("kind")[order]],
        purpose=np.array(PURPOSES)[events.column("purpose")[order]],
        decision=np.array(DECISIONS)[events.column("decision")[order]],
        patient_pseudonym=pseudonyms[events.column("patient")[order]],
        request_id=ids[request],
        batch_id=ids[batch],
        unexplained=np.zeros(len(time), dtype=bool),
    )


def evaluate(alerts: Iterable[Alert], injected: Iterable[Injected]) -> dict[str, Any]:
    """Recall per scenario (an injected clinician-day with an alert is flagged; `with_reason` counts those whose
    alert gives the scenario's expected reason), and overall precision (an alert on a clinician-day with no
    injection is a false positive; 1.0 when there is no alert) and recall."""
    alerts = list(alerts)
    injected = list(injected)
    alerted = {(alert.grantee, alert.day): alert for alert in alerts}
    injected_days = {(item.grantee, item.day) for item in injected}
    scenarios: dict[str, dict[str, Any]] = {}
    for item in injected:
        row = scenarios.setdefault(item.scenario, {"injected": 0, "flagged": 0, "with_reason": 0})
        row["injected"] += 1
        alert = alerted.get((item.grantee, item.day))
        if alert is not None:
            row["flagged"] += 1
            row["with_reason"] += EXPECTED_REASONS[item.scenario] in {reason.code for reason in alert.reasons}
    for row in scenarios.values():
        row["recall"] = row["flagged"] / row["injected"]
    true_positives = sum(key in injected_days for key in alerted)
    return {
        "scenarios": scenarios,
        "alerts": len(alerted),
        "true_positives": true_positives,
        "false_positives": len(alerted) - true_positives,
        "precision": true_positives / len(alerted) if alerted else 1.0,
        "recall": true_positives / len(injected_days) if injected_days else 1.0,
    }
