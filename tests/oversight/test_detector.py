"""The misuse detector's core, without Django: each injected misuse flagged with its reason on a small generated
hospital (and the same log without it not flagged), unexplained accesses, the features against a plain per-event
computation, the forest scored as scikit-learn scores it, the weights hash and the payload, the reasons' words."""

from collections import defaultdict
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pytest
from sklearn.ensemble import IsolationForest

from oversight.detector import (
    FEATURES,
    OWN_FEATURES,
    REASON_CODES,
    EventColumns,
    MisuseDetector,
    _Forest,
    clinician_days,
    reason_text,
)
from oversight.synthetic import EXPECTED_REASONS, SCENARIOS, generate_month, generate_small

# The small hospital is noisier than the benchmark's month (two weeks of history, twenty clinicians); with this
# seed each scenario's injection is flagged. The benchmark measures the rates.
SEED = 2


@pytest.fixture(scope="module")
def clean():
    """The small hospital with nothing injected, its clinician-days, and a detector fitted on its history."""
    hospital = generate_small(seed=SEED)
    days = clinician_days(hospital.events, hospital.organisations)
    detector = MisuseDetector().fit(days.during(hospital.history_start, hospital.start))
    return hospital, days, detector


def month_alerts(detector, hospital):
    days = clinician_days(hospital.events, hospital.organisations)
    return {(a.grantee, a.day): a for a in detector.score(days.during(hospital.start, hospital.end))}


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_an_injected_misuse_is_flagged_with_its_reason_and_not_without_it(clean, scenario):
    hospital, _, detector = clean
    injected_hospital = generate_small(seed=SEED, scenarios={scenario: 1})
    (injected,) = injected_hospital.injected
    history = clinician_days(injected_hospital.events, injected_hospital.organisations).during(
        injected_hospital.history_start, injected_hospital.start
    )
    assert MisuseDetector().fit(history).weights_sha256 == detector.weights_sha256  # the same history

    alerts = month_alerts(detector, injected_hospital)
    alert = alerts[(injected.grantee, injected.day)]
    assert EXPECTED_REASONS[scenario] in [reason.code for reason in alert.reasons]
    assert alert.score >= detector.threshold
    assert (injected.grantee, injected.day) not in month_alerts(detector, hospital)
    assert all(alert.reasons for alert in alerts.values())


def test_snooping_reads_as_one_patient_read_many_times_against_the_usual(clean):
    _, _, detector = clean
    hospital = generate_small(seed=SEED, scenarios={"snooping": 1})
    (injected,) = hospital.injected
    reason = next(
        r
        for r in month_alerts(detector, hospital)[(injected.grantee, injected.day)].reasons
        if r.code == "repeated_reads"
    )
    assert reason.value >= 10
    assert reason.usual <= 4
    assert reason.text == f"Read one patient's records {int(reason.value)} times in a day, usual {int(reason.usual)}"


def test_an_unexplained_access_is_an_alert_by_itself_on_an_ordinary_day(clean):
    hospital, _, detector = clean
    events = hospital.events
    in_month = (events.recorded_at >= np.datetime64(hospital.start)) & (events.kind == "record_read")
    target = np.flatnonzero(in_month & (events.decision == "admit") & np.char.startswith(events.grantee, "clinician:"))[
        0
    ]
    grantee, day = str(events.grantee[target]), events.recorded_at[target].astype("datetime64[D]").item()
    assert (grantee, day) not in month_alerts(detector, hospital)
    unexplained = events.unexplained.copy()
    unexplained[target] = True
    marked = replace(hospital, events=replace(events, unexplained=unexplained))

    alert = month_alerts(detector, marked)[(grantee, day)]
    first = alert.reasons[0]
    assert (first.code, first.value, first.text) == ("unexplained_access", 1.0, "1 access with no valid explanation")


def test_a_tiny_regular_history_still_flags_a_night_of_snooping():
    """Two clinicians reading two or three of their five patients once a day in office hours for three weeks (what
    a new platform holds), then one reads a patient fifteen times in a night."""
    start = datetime(2026, 11, 9, tzinfo=UTC)
    rows = []
    for offset in range(21):
        for shift, clinician in enumerate(("clinician:a", "clinician:b")):
            for index in range(2 + offset % 2):
                at = start + timedelta(days=offset, hours=9 + 2 * index + shift)
                patient = f"{clinician}-patient-{(offset + index) % 5}"
                rows.append(read_row(clinician, patient, at, f"read-{offset}-{shift}-{index}"))
    night = start + timedelta(days=21, hours=2)
    rows += [
        read_row("clinician:a", "clinician:a-patient-0", night + timedelta(minutes=3 * i), f"n{i}") for i in range(15)
    ]
    days = clinician_days(EventColumns.from_rows(rows), {"clinician:a": "org:1", "clinician:b": "org:1"})
    detector = MisuseDetector().fit(days.during(date(2026, 11, 9), date(2026, 11, 30)))

    (alert,) = detector.score(days.during(date(2026, 11, 30), date(2026, 12, 1)))
    assert (alert.grantee, alert.day) == ("clinician:a", date(2026, 11, 30))
    texts = {reason.code: reason.text for reason in alert.reasons}
    assert texts["repeated_reads"] == "Read one patient's records 15 times in a day, usual 1"
    assert texts["off_hours"] == "100% of activity in hours this clinician rarely works, usual 0%"


def read_row(grantee, patient, at, batch):
    return event(
        grantee, at.isoformat().replace("+00:00", "Z"), "record_read", patient_pseudonym=patient, batch_id=batch
    )


def event(grantee, at, kind, **fields):
    """An access event as the ledger answers it (a read for treatment, admitted, unless `fields` say otherwise)."""
    return {"grantee": grantee, "recorded_at": at, "kind": kind, "purpose": "treatment", "decision": "admit", **fields}


# --- features: numpy against a plain loop over the events ---------------------------------------------


def naive_days(events, organisations, tz_offset_hours):
    """The clinician-days computed one event at a time with dicts and sets."""
    days = defaultdict(
        lambda: {
            "volume": 0,
            "patients": set(),
            "reads": 0,
            "refused_reads": 0,
            "declarations": 0,
            "unexplained": 0,
            "actions": {},
            "emergency": {},
            "read_batches": defaultdict(set),
            "cohorts": defaultdict(int),
        }
    )
    for i in range(len(events)):
        grantee, kind = str(events.grantee[i]), str(events.kind[i])
        unexplained = bool(events.unexplained[i])
        acting = kind in ("record_access", "record_read", "emergency_declared")
        if not grantee.startswith("clinician:") or not (acting or unexplained):
            continue
        moment = events.recorded_at[i].astype(datetime) + timedelta(hours=tz_offset_hours)
        day = days[(grantee, moment.date())]
        patient, batch = str(events.patient_pseudonym[i]), str(events.batch_id[i]) or f"#{i}"
        day["unexplained"] += unexplained
        if kind in ("record_access", "record_read"):
            day["volume"] += 1
            if patient:
                day["patients"].add(patient)
        if kind == "record_read":
            day["reads"] += 1
            day["refused_reads"] += str(events.decision[i]) == "refuse"
            if patient:
                day["read_batches"][patient].add(batch)
            if str(events.purpose[i]) == "emergency":
                day["emergency"][batch] = moment.hour
        if kind == "emergency_declared":
            day["declarations"] += 1
        if kind == "record_access":
            day["cohorts"][str(events.request_id[i])] += 1
        if acting:
            day["actions"].setdefault(batch, moment.hour)
    return days


def test_features_computed_with_numpy_equal_a_plain_loop_over_the_events():
    hospital = generate_small(seed=SEED, scenarios=dict.fromkeys(SCENARIOS, 1))
    emergency = {"purpose": "emergency", "patient_pseudonym": "p-x", "request_id": "e1"}
    extra = EventColumns.from_rows(
        [
            event("clinician:0", "2026-11-02T23:30:00Z", "emergency_declared", decision="declared", **emergency),
            event("clinician:0", "2026-11-02T23:40:00+00:00", "record_read", batch_id="b-e1", **emergency),
            event("clinician:0", "2026-11-02T22:10:00Z", "record_read", batch_id="b-e2", **emergency),
            event(
                "clinician:0", "2026-11-02T22:10:00Z", "record_read", batch_id="b-e2", decision="refuse", **emergency
            ),
            event("clinician:0", "2026-11-02T12:00:00Z", "export", purpose="audit", unexplained=True),
            event(
                "org:0", "2026-11-02T12:00:00Z", "record_access", patient_pseudonym="p-y", request_id="r", batch_id="b"
            ),
            event("auditor:1", "2026-11-02T12:00:00Z", "record_read"),
            event("clinician:99", datetime(2026, 11, 3, 1, tzinfo=UTC), "record_read", decision="refuse", batch_id=""),
        ]
    )
    events = EventColumns.concatenate([hospital.events, extra])
    for tz_offset_hours in (0, 2):
        days = clinician_days(events, hospital.organisations, tz_offset_hours=tz_offset_hours)
        expected = naive_days(events, hospital.organisations, tz_offset_hours)
        assert sorted(zip(days.grantee.tolist(), days.day.tolist(), strict=True)) == sorted(expected)
        for row, (grantee, day) in enumerate(zip(days.grantee.tolist(), days.day.tolist(), strict=True)):
            plain = expected[(grantee, day)]
            emergency_hours = list(plain["emergency"].values())
            own = {
                "volume": plain["volume"],
                "distinct_patients": len(plain["patients"]),
                "refusal_ratio": plain["refused_reads"] / plain["reads"] if plain["reads"] else 0.0,
                "emergency_declarations": plain["declarations"],
                "emergency_reads": len(emergency_hours),
                "night_emergency_reads": sum(hour >= 22 or hour < 6 for hour in emergency_hours),
                "max_reads_of_one_patient": max((len(b) for b in plain["read_batches"].values()), default=0),
                "largest_cohort": max(plain["cohorts"].values(), default=0),
                "unexplained": plain["unexplained"],
                "refused_reads": plain["refused_reads"],
            }
            assert dict(zip(OWN_FEATURES, days.own[row].tolist(), strict=True)) == pytest.approx(own), (grantee, day)
            hours = np.bincount(list(plain["actions"].values()), minlength=24)
            assert days.hour_actions[row].tolist() == hours.tolist()
            assert sorted(days.read_patient[days.read_row == row].tolist()) == sorted(plain["read_batches"])
        assert days.organisation[days.grantee == "clinician:99"].tolist() == ["clinician:99"]


def test_history_relative_features_equal_a_plain_computation():
    hospital = generate_small(seed=SEED, scenarios=dict.fromkeys(SCENARIOS, 1))
    days = clinician_days(hospital.events, hospital.organisations)
    history, month = days.during(hospital.history_start, hospital.start), days.during(hospital.start, hospital.end)
    detector = MisuseDetector().fit(history)
    features = detector.features(month)

    before = hospital.events.recorded_at < np.datetime64(hospital.start)
    plain = naive_days(hospital.events.take(before), hospital.organisations, 0)
    hours_of = defaultdict(lambda: np.zeros(24, dtype=np.int64))
    read_by = defaultdict(set)
    for (grantee, _), day in plain.items():
        for hour in day["actions"].values():
            hours_of[grantee][hour] += 1
        read_by[hospital.organisations.get(grantee, grantee)].update(day["read_batches"])
    for row in range(len(month)):
        grantee = str(month.grantee[row])
        hours = hours_of[grantee]
        usual = (
            [sum(hours[(hour + step) % 24] for step in (-1, 0, 1)) >= 0.01 * hours.sum() for hour in range(24)]
            if hours.sum() >= 50
            else [7 <= hour < 19 for hour in range(24)]
        )
        actions = month.hour_actions[row]
        off = sum(actions[hour] for hour in range(24) if not usual[hour])
        assert features[row, FEATURES.index("off_hours_share")] == pytest.approx(
            off / actions.sum() if actions.sum() else 0
        )
        patients = month.read_patient[month.read_row == row].tolist()
        outside = sum(p not in read_by[str(month.organisation[row])] for p in patients)
        share = outside / len(patients) if patients else 0.0
        assert features[row, FEATURES.index("outside_share")] == pytest.approx(share)


# --- the model: forest, hash, payload ---------------------------------------------------------------------


def test_the_forest_is_scored_as_scikit_learn_scores_it():
    rng = np.random.default_rng(0)
    samples = np.abs(rng.standard_t(3, size=(600, 6)))
    forest = IsolationForest(n_estimators=50, random_state=0).fit(samples)
    probe = np.abs(rng.standard_t(3, size=(300, 6))) * 2
    assert np.allclose(_Forest.of(forest).scores(probe), -forest.score_samples(probe), rtol=1e-12, atol=0)


def test_the_weights_hash_is_deterministic_and_changes_with_the_history(clean):
    hospital, days, detector = clean
    history = days.during(hospital.history_start, hospital.start)
    again = MisuseDetector().fit(history)
    assert again.weights_sha256 == detector.weights_sha256
    assert again.dumps() == detector.dumps()
    assert len(detector.weights_sha256) == 64
    assert detector.version == f"{MisuseDetector.VERSION}-{detector.weights_sha256[:12]}"

    one_day_less = days.during(hospital.history_start + timedelta(days=1), hospital.start)
    assert MisuseDetector().fit(one_day_less).weights_sha256 != detector.weights_sha256
    other = generate_small(seed=SEED + 1)
    other_days = clinician_days(other.events, other.organisations).during(other.history_start, other.start)
    assert MisuseDetector().fit(other_days).weights_sha256 != detector.weights_sha256


def test_a_payload_loads_back_the_same_model_and_a_tampered_one_is_refused(clean):
    hospital, days, detector = clean
    data = detector.dumps()
    loaded = MisuseDetector.loads(data)
    assert loaded.weights_sha256 == detector.weights_sha256
    assert loaded.version == detector.version
    assert loaded.threshold == detector.threshold
    month = days.during(hospital.start, hospital.end)
    assert np.array_equal(loaded.features(month), detector.features(month))
    marked = generate_small(seed=SEED, scenarios={"night_emergency": 1})
    assert month_alerts(loaded, marked) == month_alerts(detector, marked)

    changed = bytearray(data)
    changed[-5] ^= 0x01  # a bit of the last array (the forest's path lengths)
    with pytest.raises(ValueError, match="SHA-256"):
        MisuseDetector.loads(bytes(changed))
    with pytest.raises(ValueError, match="SHA-256"):
        MisuseDetector.loads(data.replace(b'"threshold":', b'"threshold":1', 1))
    with pytest.raises(ValueError, match="not a misuse detector"):
        MisuseDetector.loads(b"\x80\x04pickle")
    with pytest.raises(ValueError, match="not fitted"):
        MisuseDetector().dumps()


# --- words -----------------------------------------------------------------------------------------------


def test_reasons_read_in_plain_words_with_the_usual_value():
    assert reason_text("night_emergency_reads", 14, 0) == "14 emergency reads in a night, usual 0"
    assert reason_text("max_reads_of_one_patient", 12, 1) == "Read one patient's records 12 times in a day, usual 1"
    assert reason_text("largest_cohort", 4800, 300) == "A cohort of 4,800 records, usual 300"
    assert (
        reason_text("outside_share", 0.61, 0.02)
        == "61% of patients outside the organisation's usual patients, usual 2%"
    )
    assert reason_text("unexplained", 3, 0) == "3 accesses with no valid explanation"
    assert reason_text("emergency_declarations", 4, 0.4) == "4 emergency declarations in a day, usual 0"
    assert reason_text("volume", 1234.6, 80.5) == "1,235 records accessed in a day, usual 81"
    assert set(REASON_CODES) == {
        "volume",
        "distinct_patients",
        "refusal_ratio",
        "off_hours",
        "emergency_declarations",
        "night_emergency_reads",
        "repeated_reads",
        "large_cohort",
        "outside_patients",
        "unexplained_access",
    }


def test_the_default_month_holds_half_a_million_events_in_the_month_itself():
    hospital = generate_month()
    in_month = hospital.events.recorded_at >= np.datetime64(hospital.start)
    assert in_month.sum() >= 500_000
    assert {i.scenario for i in hospital.injected} == set(SCENARIOS)
    assert len({(i.grantee, i.day) for i in hospital.injected}) == len(hospital.injected) == 40
