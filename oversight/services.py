"""The misuse detector at work: score the access log from the ledger, raise alerts on the ledger, triage them.

A scoring run (periodic, OVERSIGHT_SCORE_SECONDS, and on demand):
1. reads the access events of the history window and the days to score FROM THE LEDGER (QueryAccessEvents by time),
   not from the mirror: the detector judges what the ledger holds;
2. marks each admitted access whose explanation does not check out (`explanations_check`): a read for treatment or
   an analysis's access whose consent is unknown, names another patient or another grantee, or does not cover its
   purpose; an emergency read whose declaration is unknown, is another clinician's or patient's, or was over. Each
   such event is an alert by itself ("unexplained_access");
3. fits the detector (oversight.detector) on the history's clinician-days (OVERSIGHT_HISTORY_DAYS before the days
   scored; with fewer than two, on the days scored, and then it raises only the accesses with no valid
   explanation), keeps the fitted arrays in a file whose SHA-256 is the weights hash, anchors that hash on the ledger
   (AnchorModel "misuse-detector", the version) before any alert cites it;
4. scores the days and raises the new alerts in ONE ledger transaction (RaiseAlerts: each alert's reason codes, score
   and the detector's version and hash, logged as access events), then mirrors them here with the reasons in words.

Ids are derived, so a run repeated (the beat, a retry after a crash between the ledger and the database) raises
nothing twice: an alert's id is the clinician and the day's, the run's id its alerts'. A clinician-day is alerted
once, by the first run that flags it.
"""

import hashlib
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import structlog
from django.conf import settings
from django.db import transaction

from audit.services import logged_batch_mirror, verdict_note_open, verdict_record
from care.models import EmergencyDeclaration
from chaincode.validation import format_timestamp
from chaincode.vocabulary import ALERT_VERDICTS, EMERGENCY
from consent.models import Consent
from health_platform import bootstrap
from health_platform.errors import NotFound, ValidationFailed
from health_platform.models import ClinicianProfile
from ledger.contracts import AlertRequest
from oversight.detector import ClinicianDays, EventColumns, MisuseDetector, clinician_days
from oversight.models import DETECTOR_NAME, Alert, Detector

log = structlog.get_logger(__name__)

LEDGER_PAGE = 10_000
EARLIEST = date(2000, 1, 1)
MIN_HISTORY = 2  # clinician-days: what the detector needs to learn from at the least
UNEXPLAINED = "unexplained_access"
TRIAGE_NOTE = "alert-triage-note"
ALERT_NAMESPACE = uuid.UUID("5f0c1d2e-7a1b-4c3d-9e8f-0a1b2c3d4e5f")


@dataclass
class ScoringRun:
    """What one run did: the days it scored, the detector it fitted (None when there was nothing to fit on), the
    alerts it raised (new ones only) and where on the ledger."""

    scored_from: date
    scored_until: date  # exclusive
    events: int = 0
    detector: Detector | None = None
    alerts: list[Alert] = field(default_factory=list)
    tx_id: str | None = None
    skipped: str = ""  # why nothing was scored


def misuse_score(*, until: date | None = None, days: int = 2) -> ScoringRun:
    """Score the `days` days before `until` against the history before them; by default yesterday and today so far
    (UTC), so that a night's misuse is flagged within the hour. A day already alerted is not alerted again."""
    end = scoring_window_check(until=until, days=days)
    start = end - timedelta(days=days)
    history_start = start - timedelta(days=int(settings.OVERSIGHT_HISTORY_DAYS))
    run = ScoringRun(scored_from=start, scored_until=end)
    rows = list(_ledger_events(_midnight(history_start), _midnight(end)))
    run.events = len(rows)
    if not rows:
        run.skipped = "no_events"
        return run
    for row, unexplained in zip(rows, explanations_check(rows), strict=True):
        row["unexplained"] = unexplained
    every = clinician_days(
        EventColumns.from_rows(rows), _organisations(), tz_offset_hours=settings.OVERSIGHT_UTC_OFFSET_HOURS
    )
    history, scored = every.during(history_start, start), every.during(start, end)
    if not len(scored):
        run.skipped = "no_activity"
        return run
    thin = len(history) < MIN_HISTORY
    if thin and not scored.column("unexplained").any():
        run.skipped = "no_history"
        return run
    if thin:
        # Too little history to say what is usual, but an access with no valid explanation is an alert by itself:
        # the detector that cites it is fitted on the days scored (a one-day log counted twice), and it raises
        # only what needs no history.
        history, history_start = _at_least_two(every), start
    fitted = MisuseDetector().fit(history)
    run.detector = _detector_kept(fitted, history, history_start, start if not thin else end)
    scores = fitted.score(scored)
    if thin:
        scores = [alert for alert in scores if any(r.code == UNEXPLAINED for r in alert.reasons)]
    found = [a for a in scores if not Alert.objects.filter(grantee_id=a.grantee, day=a.day).exists()]
    if found:
        run.alerts, run.tx_id = _alerts_raised(found, run.detector)
    log.info(
        "misuse_scored",
        scored_from=str(start),
        scored_until=str(end),
        events=run.events,
        clinician_days=len(scored),
        detector=run.detector.version,
        alerts=len(run.alerts),
        tx_id=run.tx_id,
    )
    return run


def scoring_window_check(*, until: date | None, days: int) -> date:
    """The end (exclusive) of the days to score: `until` (default tomorrow), refused when it is not between 2000 and
    tomorrow or `days` not 1 to 31 (nothing the ledger could hold)."""
    tomorrow = datetime.now(UTC).date() + timedelta(days=1)
    if not isinstance(days, int) or not 1 <= days <= 31:
        raise ValidationFailed("Score 1 to 31 days at a time.", code="invalid_days", detail={"field": "days"})
    if until is not None and not EARLIEST <= until <= tomorrow:
        raise ValidationFailed(
            f"Score days from {EARLIEST} up to today.", code="invalid_until", detail={"field": "until"}
        )
    return until or tomorrow


def alert_triage(*, auditor: Any, alert_id: str, verdict: str, note: str) -> Alert:
    """An auditor's verdict (confirmed, dismissed) on an alert with a note, once: on the ledger, then here."""
    alert = alert_get(alert_id=alert_id)
    return verdict_record(
        alert,
        auditor=auditor,
        verdict=verdict,
        note=note,
        verdicts=ALERT_VERDICTS,
        purpose=TRIAGE_NOTE,
        already="already_triaged",
        submit=lambda reviewer, digest: bootstrap.contracts().triage_alert(
            alert_id=str(alert.id), reviewer=reviewer, verdict=verdict, note_sha256=digest
        ),
    )


def alert_get(*, alert_id: Any) -> Alert:
    try:
        return Alert.objects.select_related("detector", "judged_by").get(pk=uuid.UUID(str(alert_id)))
    except (ValueError, Alert.DoesNotExist):
        raise NotFound("No such alert.") from None


def triage_note_open(alert: Alert) -> str:
    return verdict_note_open(alert, purpose=TRIAGE_NOTE)


def explanations_check(rows: list[dict[str, Any]]) -> list[bool]:
    """Per event: True when it was admitted and what it names as its explanation does not check out (see the module
    docstring); refusals and events that need no explanation are False."""
    consent_ids = {r["consent_id"] for r in rows if r.get("consent_id")}
    consents = {c.consent_id: c for c in Consent.objects.filter(consent_id__in=consent_ids).select_related("patient")}
    declaration_ids = {r["request_id"] for r in rows if r.get("purpose") == EMERGENCY and r.get("request_id")}
    declarations = {str(d.id): d for d in _declarations(declaration_ids)}
    organisations = _organisations()
    return [_unexplained(row, consents, declarations, organisations.get(row.get("grantee") or "", "")) for row in rows]


# --- helpers ------------------------------------------------------------------------------------


def _unexplained(
    row: dict[str, Any], consents: dict[str, Consent], declarations: dict[str, Any], organisation: str
) -> bool:
    if row.get("decision") != "admit" or row.get("kind") not in ("record_read", "record_access"):
        return False
    if row.get("purpose") == EMERGENCY:
        declaration = declarations.get(row.get("request_id") or "")
        if declaration is None:
            return True
        moment = _moment(row["recorded_at"])
        return not (
            declaration.grantee_id == row.get("grantee")
            and declaration.patient.pseudonym == row.get("patient_pseudonym")
            and declaration.declared_at <= moment < declaration.expires_at + timedelta(minutes=1)
        )
    consent = consents.get(row.get("consent_id") or "")
    if consent is None:
        # An analysis logged before its events named their consent: its request explains it.
        return not (row.get("kind") == "record_access" and row.get("request_id") and not row.get("consent_id"))
    return not (
        consent.patient.pseudonym == row.get("patient_pseudonym")
        and consent.grantee in {row.get("grantee"), organisation}
        and row.get("purpose") in consent.purposes
    )


def _declarations(ids: set[str]) -> Iterable[Any]:
    valid = []
    for value in ids:
        try:
            valid.append(uuid.UUID(value))
        except ValueError:
            continue
    return EmergencyDeclaration.objects.filter(pk__in=valid).select_related("patient")


def _ledger_events(since: str, until: str) -> Iterator[dict[str, Any]]:
    contracts = bootstrap.contracts()
    bookmark = ""
    while True:
        page = contracts.query_access_events(limit=LEDGER_PAGE, bookmark=bookmark, since=since, until=until)
        yield from page.events
        bookmark = page.bookmark
        if not bookmark:
            return


def _organisations() -> dict[str, str]:
    """Each clinician's ledger id -> their organisation's (their own when they have none)."""
    profiles = ClinicianProfile.objects.select_related("organisation")
    return {p.grantee_id: p.organisation.grantee_id if p.organisation else p.grantee_id for p in profiles}


def _at_least_two(days: ClinicianDays) -> ClinicianDays:
    """`days`, or its one day counted twice (the detector learns from two clinician-days at the least)."""
    return days if len(days) >= MIN_HISTORY else days.take(np.zeros(MIN_HISTORY, dtype=np.int64))


def _detector_kept(fitted: MisuseDetector, history: ClinicianDays, start: date, end: date) -> Detector:
    """The fitted detector as a file and a row, its hash anchored on the ledger (the same hash again: the same row)."""
    known = Detector.objects.filter(weights_sha256=fitted.weights_sha256).first()
    if known is not None:
        return known
    payload = fitted.dumps()
    folder = Path(settings.VAR_DIR) / "oversight" / "detectors"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{fitted.weights_sha256}.bin"
    path.write_bytes(payload)
    anchor = bootstrap.contracts().anchor_model(
        name=DETECTOR_NAME, version=fitted.version, sha256=fitted.weights_sha256
    )
    detector, _ = Detector.objects.get_or_create(
        weights_sha256=fitted.weights_sha256,
        defaults={
            "version": fitted.version,
            "fitted_at": datetime.now(UTC),
            "history_from": start,
            "history_until": end,
            "clinician_days": len(history),
            "file": str(path),
            "tx_id": anchor.tx_id,
            "block_number": anchor.block_number,
        },
    )
    log.info("misuse_detector_anchored", version=detector.version, tx_id=anchor.tx_id)
    return detector


def detector_load(detector: Detector) -> MisuseDetector:
    """The exact fitted detector an alert cites, from its file (refused if its hash is not the anchored one)."""
    loaded = MisuseDetector.loads(Path(detector.file).read_bytes())
    if loaded.weights_sha256 != detector.weights_sha256:
        raise ValueError("the detector's file does not hash to its anchored weights")
    return loaded


def _alerts_raised(found: list[Any], detector: Detector) -> tuple[list[Alert], str | None]:
    """Raise the alerts the ledger does not hold yet (one transaction) and mirror them; an alert the ledger already
    holds (this database lost its row: a restore, a crash between the two) is mirrored from the ledger instead of
    raised again, so that a run never fails on a clinician-day alerted before."""
    contracts = bootstrap.contracts()
    alert_ids = [str(uuid.uuid5(ALERT_NAMESPACE, f"{alert.grantee}|{alert.day.isoformat()}")) for alert in found]
    held = {alert_id: contracts.read_alert(alert_id) for alert_id in alert_ids}
    recovered = [
        _alert_recovered(alert, held[alert_id])
        for alert, alert_id in zip(found, alert_ids, strict=True)
        if held[alert_id]
    ]
    fresh = [alert for alert, alert_id in zip(found, alert_ids, strict=True) if not held[alert_id]]
    if not fresh:
        return [row for row in recovered if row is not None], None
    made, tx_id = _alerts_written(fresh, detector)
    return made + [row for row in recovered if row is not None], tx_id


def _alert_recovered(alert: Any, held: Any) -> Alert | None:
    """The row of an alert the ledger holds, from the ledger's entry (None when its detector is unknown here)."""
    detector = Detector.objects.filter(weights_sha256=held.detector_sha256).first()
    if detector is None:
        log.warning("alert_on_ledger_not_mirrored", alert_id=held.alert_id, detector=held.detector_version)
        return None
    row, _ = Alert.objects.get_or_create(
        id=uuid.UUID(held.alert_id),
        defaults={
            "grantee_id": held.grantee,
            "day": date.fromisoformat(held.day),
            "score": Decimal(held.score),
            "reasons": [r.__dict__ for r in alert.reasons if r.code in held.reasons],
            "detector": detector,
            "run_id": "",
            "raised_at": _moment(held.raised_at),
            "tx_id": held.tx_id,
            "block_number": bootstrap.contracts().block_of(held.tx_id),
        },
    )
    return row


def _alerts_written(found: list[Any], detector: Detector) -> tuple[list[Alert], str]:
    requests = [
        AlertRequest(
            alert_id=str(uuid.uuid5(ALERT_NAMESPACE, f"{alert.grantee}|{alert.day.isoformat()}")),
            grantee=alert.grantee,
            day=alert.day.isoformat(),
            score=f"{alert.score:.6f}",
            reasons=sorted({reason.code for reason in alert.reasons}),
        )
        for alert in found
    ]
    run_id = hashlib.sha256("|".join(sorted(r.alert_id for r in requests)).encode()).hexdigest()[:32]
    logged = bootstrap.contracts().raise_alerts(
        run_id=run_id,
        detector_name=DETECTOR_NAME,
        detector_version=detector.version,
        detector_sha256=detector.weights_sha256,
        alerts=requests,
    )
    with transaction.atomic():
        logged_batch_mirror(logged)
        made = [
            Alert.objects.get_or_create(
                id=uuid.UUID(request.alert_id),
                defaults={
                    "grantee_id": alert.grantee,
                    "day": alert.day,
                    "score": Decimal(request.score),
                    "reasons": [reason.__dict__ for reason in alert.reasons],
                    "detector": detector,
                    "run_id": run_id,
                    "raised_at": _moment(logged.recorded_at),
                    "tx_id": logged.tx_id,
                    "block_number": logged.block_number,
                },
            )[0]
            for alert, request in zip(found, requests, strict=True)
        ]
    return made, logged.tx_id


def _midnight(day: date) -> str:
    return format_timestamp(datetime(day.year, day.month, day.day, tzinfo=UTC))


def _moment(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
