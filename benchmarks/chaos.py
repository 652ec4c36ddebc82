"""A chaos run: analyses, consents and exports for a set time while workers are killed and restarted and the
ledger goes away; then what must never happen, counted on the ledger and in the database.

    python -m benchmarks.chaos --minutes N [--seed S] [--broker filesystem|redis] [--json FILE]      (make chaos)

The platform runs as scripts/run.sh runs it, without the web server: the custodian worker and the compute worker
(two pool processes each; the compute one with no database and no key) and the beat, each under
health_platform.supervise, in a temporary folder of the run's own (SQLite database, embedded ledger, blob store,
broker folder, keys; the repository's .env is not read). seed_demo ingests --patients patients per dataset, three
in four of whom consent to the demo clinician.

Load, through the services, for --minutes: the demo clinician keeps --analyses analyses going (over everyone who
consented, or over a random list of patients; batches of 5 to 25 records, so that there are many), and cancels
one in eight a few seconds after asking; patients grant and revoke consents to the demo clinician; the demo
auditor asks for exports of the access log (a request's events, the last minutes', a patient's, or all).

Chaos, at random (every --chaos-every seconds on average): SIGKILL a pool process of the custodian or of the
compute worker (busy when it used CPU in the 0.2 s before, idle otherwise); SIGKILL a worker's main process or
the beat, which its supervisor starts again; SIGTERM a worker (a restart: warm shutdown, then its supervisor
starts it again); lock the embedded ledger from another process for 2 to 20 s (benchmarks.faults.LedgerLock).

Then load and chaos stop, and the run waits (at most --grace seconds) for what was asked to finish: each analysis
completed, failed or cancelled, each export written or failed, each batch's outcome logged on the ledger.

Must be zero (read from the ledger's access log and the database; see the functions below):
- duplicate events: an access or outcome event of one record in one analysis (or a batch's outcome, or an
  export's event) on the ledger more than once, in whichever batch;
- records scored twice: a record with more than one result (score ciphertext slot) in one analysis;
- records computed without an admitting gate: a record scored with no admit event on the ledger for it in its
  batch, or whose features were encrypted before that admit was recorded; and a batch outcome "computed" on the
  ledger with no access logged for the batch before it;
- records admitted under a revoked consent: a record scored on a consent the ledger says was revoked a second or
  more before the batch was gated (a revocation racing the gate by less is not counted).
The ledger's hash chain must verify, and nothing may be left unfinished.

Longest stall: the longest time during which work was pending (an analysis queued or running, an export pending,
an outcome not yet logged) and no worker made progress (no batch gated, logged, sent to compute or scored, no
analysis planned or finished, no outcome logged, no export finished), sampled every half second.

Exit status 1 if a must-be-zero figure is not zero, the ledger does not verify or work is left unfinished.
"""

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from benchmarks.common import Program, redis_server, report, setup_django, start_workers
from benchmarks.faults import LedgerLock, child_pids, cpu_ticks, running

# Variables the platform's settings read: none of the caller's may reach the run (their database, keys, broker).
PLATFORM_VARIABLE_PREFIXES = (
    "HEALTH_PLATFORM_",
    "DJANGO_",
    "DATABASE_",
    "CACHE_",
    "LEDGER_",
    "FABRIC_",
    "RECORD_",
    "PSEUDONYM_",
    "ANALYTICS_",
    "AUDIT_",
    "CELERY_",
    "ANCHOR_",
    "INGEST_",
    "REQUEST_",
)
CHAOS_ACTIONS = {  # action: weight
    "kill_custodian_pool_process": 3,
    "kill_compute_pool_process": 3,
    "kill_custodian_worker": 1,
    "kill_compute_worker": 1,
    "restart_custodian_worker": 1,
    "restart_compute_worker": 1,
    "kill_beat": 1,
    "lock_ledger": 2,
}
LEDGER_LOCK_SECONDS = (2.0, 20.0)
CANCEL_ONE_IN = 8
SAMPLE_SECONDS = 0.5
REVOCATION_RACE = timedelta(seconds=1)


# --- what must never happen, counted ------------------------------------------------------------------


@dataclass(frozen=True)
class ScoredChunk:
    """One result ciphertext of a scored batch: the records it scores, in order, and when its features were
    encrypted (the earliest time of its feature ciphertexts in the blob store; None if none is stored)."""

    record_ids: tuple[str, ...]
    encrypted_at: datetime | None


@dataclass(frozen=True)
class ScoredBatch:
    """A scored batch as the database holds it."""

    request_id: str
    index: int
    gate_at: datetime | None
    chunks: tuple[ScoredChunk, ...]
    # record id -> the consent the gate admitted it on, as the ledger names a consent: (patient pseudonym, consent id)
    consents: Mapping[str, tuple[str, str]] = field(default_factory=dict)


def _recorded_at(event: Mapping[str, Any]) -> datetime:
    return datetime.fromisoformat(str(event["recorded_at"]).replace("Z", "+00:00"))


def event_identity(event: Mapping[str, Any]) -> tuple[str, ...]:
    """What an event is about, whichever ledger batch holds it: a record's access or outcome in one request; else
    (a batch's outcome, an export) its event id, which the platform derives from the request and the batch."""
    if event.get("record_id"):
        return (str(event["kind"]), str(event.get("request_id") or ""), str(event["record_id"]))
    return (str(event["kind"]), str(event["event_id"]))


def duplicate_events(events: Iterable[Mapping[str, Any]]) -> int:
    """Events on the ledger beyond the first about the same thing (event_identity)."""
    seen = Counter(event_identity(event) for event in events)
    return sum(count - 1 for count in seen.values())


def records_scored_twice(batches: Iterable[ScoredBatch]) -> int:
    """Results beyond the first of one record in one request, across all its scored batches."""
    seen = Counter(
        (batch.request_id, record_id) for batch in batches for chunk in batch.chunks for record_id in chunk.record_ids
    )
    return sum(count - 1 for count in seen.values())


def computed_without_admitting_gate(batches: Iterable[ScoredBatch], events: Iterable[Mapping[str, Any]]) -> int:
    """Records scored without an admit event of theirs on the ledger in their batch's access log, or encrypted before
    that admit was recorded; plus the batch outcomes "computed" on the ledger with no access logged for the batch
    before them."""
    from analytics.pipeline import OUTCOME_COMPUTED, access_batch_id

    admitted: dict[tuple[str, str], datetime] = {}  # (ledger batch id, record id) -> when the admit was recorded
    access_logged: dict[str, datetime] = {}  # ledger batch id -> when its access events were recorded
    outcomes: list[Mapping[str, Any]] = []
    for event in events:
        if event["kind"] == "record_access":
            access_logged.setdefault(event["batch_id"], _recorded_at(event))
            if event["decision"] == "admit":
                admitted[(event["batch_id"], event["record_id"])] = _recorded_at(event)
        elif event["kind"] == "outcome" and not event.get("record_id") and event["decision"] == OUTCOME_COMPUTED:
            outcomes.append(event)
    found = 0
    for batch in batches:
        logged = access_batch_id(batch.request_id, batch.index)
        for chunk in batch.chunks:
            for record_id in chunk.record_ids:
                admit = admitted.get((logged, record_id))
                if admit is None or (chunk.encrypted_at is not None and chunk.encrypted_at < admit):
                    found += 1
    for outcome in outcomes:  # in the ledger batch <access batch id>:outcome (analytics.pipeline.outcome_batch_id)
        logged_at = access_logged.get(outcome["batch_id"].removesuffix(":outcome"))
        if logged_at is None or _recorded_at(outcome) < logged_at:
            found += 1
    return found


def admitted_under_revoked_consent(
    batches: Iterable[ScoredBatch], revoked_at: Mapping[tuple[str, str], datetime | None]
) -> int:
    """Records scored on a consent (the one the gate named) that `revoked_at` ((patient, consent id) -> when the
    ledger revoked it, None if it has not) says was revoked at least REVOCATION_RACE before the batch was gated."""
    found = 0
    for batch in batches:
        for chunk in batch.chunks:
            for record_id in chunk.record_ids:
                consent = batch.consents.get(record_id)
                revoked = revoked_at.get(consent) if consent else None
                if revoked is not None and batch.gate_at is not None and revoked <= batch.gate_at - REVOCATION_RACE:
                    found += 1
    return found


# --- reading what happened --------------------------------------------------------------------------------


def ledger_events(contracts: Any) -> list[dict[str, Any]]:
    """Every event of the ledger's access log, oldest first (all pages)."""
    events: list[dict[str, Any]] = []
    bookmark = ""
    while True:
        page = contracts.query_access_events(limit=10_000, bookmark=bookmark)
        events.extend(page.events)
        bookmark = page.bookmark
        if not bookmark:
            return events


def scored_batches(blob_dir: Path) -> list[ScoredBatch]:
    """Every scored batch of the database, with when its feature ciphertexts were written (file times)."""
    from analytics.models import AnalysisBatch, BatchStatus

    def written_at(keys: list[str]) -> datetime | None:
        times = []
        for key in keys:
            with contextlib.suppress(FileNotFoundError):
                times.append((blob_dir / key[:2] / key).stat().st_mtime_ns)
        return datetime.fromtimestamp(min(times) / 1e9, tz=UTC) if times else None

    batches = []
    rows = AnalysisBatch.objects.filter(status=BatchStatus.SCORED).values_list(
        "request_id", "index", "gate_at", "column_keys", "decisions"
    )
    for request_id, index, gate_at, column_keys, decisions in rows.iterator():
        chunks = tuple(ScoredChunk(tuple(c["record_ids"]), written_at(c["columns"])) for c in column_keys)
        consents = {
            d["record_id"]: (d["patient_pseudonym"], d["consent_id"])
            for d in decisions
            if d["decision"] == "admit" and d.get("consent_id")
        }
        batches.append(ScoredBatch(str(request_id), index, gate_at, chunks, consents))
    return batches


def consents_revoked_at(contracts: Any, consents: Iterable[tuple[str, str]]) -> dict[tuple[str, str], datetime | None]:
    """When the ledger revoked each consent, (patient pseudonym, consent id) (None: not revoked, or not on the
    ledger)."""
    found: dict[tuple[str, str], datetime | None] = {}
    for pseudonym, consent_id in sorted(set(consents)):
        consent = contracts.read_consent(pseudonym, consent_id, with_blocks=False)
        revoked = consent.revoked_at if consent is not None else None
        found[pseudonym, consent_id] = datetime.fromisoformat(revoked.replace("Z", "+00:00")) if revoked else None
    return found


def unfinished_work() -> dict[str, int]:
    """What was asked and is not done: analyses not finished, exports pending, outcomes not on the ledger, accesses
    on the ledger not yet in the audit mirror."""
    from analytics.models import FINISHED, AnalysisBatch, AnalysisRequest
    from analytics.pipeline import OUTCOME_CLAIM
    from audit.models import AuditExport, ExportStatus

    outcomes = AnalysisBatch.objects.exclude(outcome="")
    return {
        "analyses_not_finished": AnalysisRequest.objects.exclude(status__in=FINISHED).count(),
        "exports_pending": AuditExport.objects.filter(status=ExportStatus.PENDING).count(),
        "outcomes_not_logged": outcomes.filter(outcome_tx_id="").count()
        + outcomes.filter(outcome_tx_id__startswith=OUTCOME_CLAIM).count(),
        "accesses_not_mirrored": AnalysisBatch.objects.filter(access_mirror_pending=True).count(),
    }


def progress_marks() -> tuple[int, ...]:
    """Counts that only grow as the workers make progress: batches gated, logged, sent to compute and scored;
    analyses planned, completed and failed (cancelling is the load's, not progress); outcomes logged; exports
    finished."""
    from django.db.models import Count, Q

    from analytics.models import AnalysisBatch, AnalysisRequest, AnalysisStatus, BatchStatus
    from analytics.pipeline import OUTCOME_CLAIM
    from audit.models import AuditExport, ExportStatus

    batches = AnalysisBatch.objects.aggregate(
        gated=Count("pk", filter=Q(gate_at__isnull=False)),
        logged=Count("pk", filter=~Q(access_log_tx_id="")),
        sent=Count("pk", filter=Q(compute_sent_at__isnull=False)),
        scored=Count("pk", filter=Q(status=BatchStatus.SCORED)),
        outcomes=Count("pk", filter=~Q(outcome_tx_id="") & ~Q(outcome_tx_id__startswith=OUTCOME_CLAIM)),
    )
    requests = AnalysisRequest.objects.aggregate(
        planned=Count("pk", filter=Q(started_at__isnull=False)),
        ended=Count("pk", filter=Q(status__in=[AnalysisStatus.COMPLETED, AnalysisStatus.FAILED])),
    )
    exports = AuditExport.objects.exclude(status=ExportStatus.PENDING).count()
    return (*batches.values(), *requests.values(), exports)


# --- the run ----------------------------------------------------------------------------------------------


@dataclass
class Chaos:
    """Faults, at random: the actions taken (with when, in seconds from the start of the load) and how often."""

    programs: dict[str, Program]
    ledger_path: Path
    rng: random.Random
    mean_interval: float
    started: float
    done: Counter[str] = field(default_factory=Counter)
    timeline: list[tuple[float, str]] = field(default_factory=list)
    locked_seconds: float = 0.0
    _lock: LedgerLock | None = None
    _locked_from: float = 0.0
    _release_at: float = 0.0

    def run(self, stop: threading.Event) -> None:
        actions, weights = list(CHAOS_ACTIONS), list(CHAOS_ACTIONS.values())
        next_action = time.monotonic() + self.rng.expovariate(1 / self.mean_interval)
        while not stop.is_set():
            now = time.monotonic()
            if self._lock is not None and now >= self._release_at:
                self._release()
            if now >= next_action:
                action = self.rng.choices(actions, weights)[0]
                try:
                    self._act(action)
                except Exception as error:  # the run goes on; the failure is counted
                    self._note(f"{action} (failed: {type(error).__name__})")
                next_action = time.monotonic() + self.rng.expovariate(1 / self.mean_interval)
            stop.wait(0.1)
        self._release()

    def _note(self, what: str) -> None:
        self.done[what] += 1
        self.timeline.append((round(time.monotonic() - self.started, 1), what))

    def _worker_pid(self, name: str) -> int | None:
        """The program's running process under its supervisor (None while the supervisor starts it again)."""
        pids = [pid for pid in child_pids(self.programs[name].process.pid) if running(pid)]
        return pids[0] if pids else None

    def _act(self, action: str) -> None:
        if action == "lock_ledger":
            if self._lock is None:
                self._lock = LedgerLock(self.ledger_path)
                self._lock.take()
                self._release_at = time.monotonic() + self.rng.uniform(*LEDGER_LOCK_SECONDS)
                self._locked_from = time.monotonic()
                self._note(action)
            return
        verb, name = action.split("_")[:2]
        worker = self._worker_pid(name)
        if worker is None:
            self._note(f"{action} (skipped: not running)")
            return
        if action.endswith("pool_process"):
            before = {pid: cpu_ticks(pid) for pid in child_pids(worker) if running(pid)}
            if not before:
                self._note(f"{action} (skipped: no pool process)")
                return
            time.sleep(0.2)
            pid = self.rng.choice(sorted(before))
            busy = (cpu_ticks(pid) or 0) > (before[pid] or 0)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            self._note(f"{action} ({'busy' if busy else 'idle'})")
        else:
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker, signal.SIGKILL if verb == "kill" else signal.SIGTERM)
            self._note(action)

    def _release(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self.locked_seconds += time.monotonic() - self._locked_from
            self._lock = None


@dataclass
class StallWatch:
    """The longest time work was pending while no worker made progress (see the module's docstring), from samples:
    a stall starts at the first sample with work pending, or at a sample that sees progress with work still
    pending, and ends at the next sample that sees progress or nothing pending (so it is known to within the
    time between samples)."""

    started: float
    longest: float = 0.0
    longest_from: float = 0.0  # seconds after `started`
    _since: float | None = None
    _marks: tuple[int, ...] | None = None

    def observe(self, at: float, marks: tuple[int, ...], pending: bool) -> None:
        """One sample: `at` seconds after the start, the workers' progress_marks then, whether work was pending."""
        if self._since is not None and at - self._since > self.longest:
            self.longest, self.longest_from = at - self._since, self._since
        if not pending:
            self._since = None
        elif self._since is None or marks != self._marks:
            self._since = at
        self._marks = marks

    def run(self, stop: threading.Event) -> None:
        from django.db import connection

        try:
            while not stop.wait(SAMPLE_SECONDS):
                self.observe(time.monotonic() - self.started, progress_marks(), any(unfinished_work().values()))
        finally:
            connection.close()


class Load:
    """The users: the demo clinician's analyses, patients' consents and the demo auditor's exports, each a thread
    doing one thing after another until stopped. Outcomes are counted by name; errors by their class and code."""

    def __init__(self, rng: random.Random, analyses_at_once: int):
        from django.contrib.auth import get_user_model

        from analytics.models import DiagnosticModel
        from analytics.registry import model_spec
        from health_platform.management.commands.seed_demo import demo_consent_terms
        from records.models import Patient, Record

        users = get_user_model().objects
        self.rng = rng
        self.analyses_at_once = analyses_at_once
        self.clinician = users.get(username="demo-clinician")
        self.auditor = users.get(username="demo-auditor")
        self.grantee = self.clinician.clinician_profile.grantee_id
        self.counts: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.signer: Any = None  # the patients' software passkeys, made on first use
        self.models = sorted({model.name for model in DiagnosticModel.objects.all()})
        self.cohorts: dict[str, list[str]] = {}  # model -> every patient with a record it reads
        self.purposes: dict[str, list[str]] = {}  # category -> the purposes its patients consent to
        for model in DiagnosticModel.objects.all():
            records = Record.objects.filter(category=model_spec(model).category)
            self.cohorts[model.name] = sorted(records.values_list("patient__pseudonym", flat=True))
        for terms in demo_consent_terms().values():
            for purpose, category in terms:
                self.purposes.setdefault(category, []).append(purpose)
        self.patients = list(
            Patient.objects.filter(user__isnull=False).select_related("user").prefetch_related("records")
        )
        self.to_cancel: list[tuple[float, Any]] = []
        self._lock = threading.Lock()

    def threads(self, stop: threading.Event) -> list[threading.Thread]:
        steps = {"analyses": self.analysis_step, "consents": self.consent_step, "exports": self.export_step}
        return [
            threading.Thread(target=self._loop, args=(step, stop), name=name, daemon=True)
            for name, step in steps.items()
        ]

    def _loop(self, step: Callable[[], float], stop: threading.Event) -> None:
        from django.db import connection

        from health_platform.errors import ApplicationError
        from ledger import LedgerError

        try:
            while not stop.is_set():
                try:
                    pause = step()
                except (ApplicationError, LedgerError) as error:
                    self._count(self.errors, f"{type(error).__name__}: {error.code}")
                    pause = 0.5
                except Exception as error:  # counted by class only: a message might carry a value
                    self._count(self.errors, f"unexpected {type(error).__name__}")
                    pause = 1.0
                stop.wait(pause)
        finally:
            connection.close()

    def _count(self, counter: Counter[str], what: str) -> None:
        with self._lock:
            counter[what] += 1

    def analysis_step(self) -> float:
        from analytics.models import FINISHED, AnalysisRequest, CohortKind
        from analytics.services import analysis_request_cancel, analysis_request_create
        from health_platform.errors import Conflict

        now = time.monotonic()
        for due, request in [item for item in self.to_cancel if item[0] <= now]:
            self.to_cancel.remove((due, request))
            try:
                analysis_request_cancel(requester=self.clinician, request=request)
                self._count(self.counts, "analyses cancelled")
            except Conflict:
                self._count(self.counts, "cancels too late (finished)")
        if AnalysisRequest.objects.filter(requester=self.clinician).exclude(status__in=FINISHED).count() >= (
            self.analyses_at_once
        ):
            return 0.5
        model = self.rng.choice(self.models)
        if self.rng.random() < 0.5:
            kind, pseudonyms = CohortKind.CONSENTED, None
        else:
            cohort = self.cohorts[model]
            kind, pseudonyms = CohortKind.EXPLICIT, self.rng.sample(cohort, self.rng.randint(5, min(60, len(cohort))))
        request = analysis_request_create(
            requester=self.clinician,
            model_name=model,
            cohort_kind=kind,
            pseudonyms=pseudonyms,
            batch_size=self.rng.randint(5, 25),
        )
        self._count(self.counts, "analyses requested")
        if self.rng.randrange(CANCEL_ONE_IN) == 0:
            self.to_cancel.append((now + self.rng.uniform(0, 8), request))
        return 0.2

    def consent_step(self) -> float:
        from django.utils import timezone

        from consent.models import Consent, ConsentStatus
        from consent.services import consent_grant, consent_grant_document, consent_revoke, consent_revoke_document
        from health_platform import bootstrap
        from health_platform.software_passkey import SoftwareSigner
        from ledger import ContractRejected

        if self.signer is None:
            self.signer = SoftwareSigner(bootstrap.contracts(), rp_id="testserver", origin="http://testserver")
        patient = self.rng.choice(self.patients)
        try:
            passkey = self.signer.passkey(patient.pseudonym)
        except ContractRejected as refused:  # the demo data's key signed this patient's consents: recover, as a
            if refused.code != "keys_exist":  # patient who lost their passkeys would with the hospital
                raise
            bootstrap.contracts().recover_patient_keys(
                recovery_id=f"rcv-chaos-{self.rng.getrandbits(64):016x}",
                pseudonym=patient.pseudonym,
                custodian="custodian:chaos",
                reason="identity_reverified",
            )
            passkey = self.signer.passkey(patient.pseudonym)
        active = Consent.objects.filter(patient=patient, grantee=self.grantee, status=ConsentStatus.ACTIVE).first()
        if active is not None:
            revocation = consent_revoke_document(actor=patient.user, consent=active)
            consent_revoke(actor=patient.user, consent=active, document=revocation, signature=passkey.sign(revocation))
            self._count(self.counts, "consents revoked")
        else:
            categories = sorted({record.category for record in patient.records.all()})
            now = timezone.now()
            document = consent_grant_document(
                actor=patient.user,
                patient=patient,
                grantee_id=self.grantee,
                purposes=sorted({p for category in categories for p in self.purposes.get(category, [])}),
                categories=categories,
                valid_from=now,
                valid_until=now + timedelta(days=365),
            )
            consent_grant(actor=patient.user, patient=patient, document=document, signature=passkey.sign(document))
            self._count(self.counts, "consents granted")
        return self.rng.uniform(0.2, 1.0)

    def export_step(self) -> float:
        from django.utils import timezone

        from analytics.models import AnalysisRequest
        from audit.selectors import AccessEventFilters
        from audit.services import audit_export_create

        scope = self.rng.choices(["request", "recent", "patient", "all"], [4, 3, 2, 1])[0]
        filters = AccessEventFilters()
        if scope == "request":
            recent = list(AnalysisRequest.objects.order_by("-created_at").values_list("pk", flat=True)[:10])
            filters = AccessEventFilters(request_id=str(self.rng.choice(recent))) if recent else filters
        elif scope == "recent":
            filters = AccessEventFilters(since=timezone.now() - timedelta(minutes=2))
        elif scope == "patient":
            filters = AccessEventFilters(patient_pseudonym=self.rng.choice(self.patients).pseudonym)
        audit_export_create(requester=self.auditor, format=self.rng.choice(["csv", "json", "fhir"]), filters=filters)
        self._count(self.counts, "exports requested")
        return self.rng.uniform(5, 15)


def _isolate_environment(directory: str) -> None:
    """Nothing of the caller's platform settings reaches the run: its database, keys, broker or .env file."""
    for name in list(os.environ):
        if name.startswith(PLATFORM_VARIABLE_PREFIXES):
            del os.environ[name]
    os.environ["HEALTH_PLATFORM_VAR_DIR"] = directory
    os.environ["HEALTH_PLATFORM_ENV_FILE"] = os.path.join(directory, "no.env")  # none: the defaults, in the folder
    os.environ["DJANGO_SETTINGS_MODULE"] = "health_platform.settings"


def _seed(patients: int) -> None:
    from io import StringIO

    from django.core.management import call_command

    call_command("register_models", stdout=StringIO())
    call_command("seed_demo", patients=patients, stdout=StringIO())  # its printed passwords are not kept


def _wait_for_workers(programs: Mapping[str, Program], timeout: float = 120) -> None:
    """Each supervisor has its program running again (a worker killed last may be in its back-off)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(any(running(pid) for pid in child_pids(p.process.pid)) for p in programs.values()):
            return
        time.sleep(0.5)


def _analysis_figures() -> dict[str, Any]:
    from django.db.models import Count

    from analytics.models import AnalysisRequest, AnalysisStatus

    by_status = dict(AnalysisRequest.objects.values_list("status").annotate(n=Count("pk")))
    failures = dict(
        AnalysisRequest.objects.filter(status=AnalysisStatus.FAILED).values_list("failure_code").annotate(n=Count("pk"))
    )
    completed = AnalysisRequest.objects.filter(status=AnalysisStatus.COMPLETED)
    durations = [
        (finished - created).total_seconds()
        for created, finished in completed.values_list("created_at", "finished_at")
        if finished is not None
    ]
    return {
        "by_status": by_status,
        "failure_codes": failures,
        "completed_seconds_median": round(statistics.median(durations), 1) if durations else None,
        "completed_seconds_max": round(max(durations), 1) if durations else None,
    }


def _mirror_differences(events: list[dict[str, Any]]) -> dict[str, int]:
    from audit.models import AccessEvent

    on_ledger = {(e["batch_id"], int(e["position"])) for e in events}
    mirrored = set(AccessEvent.objects.values_list("batch_id", "position"))
    return {
        "mirror_rows_not_on_ledger": len(mirrored - on_ledger),
        "ledger_events_not_mirrored": len(on_ledger - mirrored),
    }


def _worker_log_errors(programs: Mapping[str, Program]) -> dict[str, int]:
    """ERROR lines in each program's log (a busy pool process killed is one: WorkerLostError)."""
    return {
        name: sum(" ERROR/" in line for line in p.log_path.read_text(errors="replace").splitlines())
        for name, p in programs.items()
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="how long load and chaos run")
    parser.add_argument("--seed", type=int, default=None, help="the random choices' seed (printed when not given)")
    parser.add_argument("--broker", choices=["filesystem", "redis"], default="filesystem")
    parser.add_argument("--patients", type=int, default=200, help="demo patients per dataset")
    parser.add_argument("--analyses", type=int, default=3, help="analyses kept going at once")
    parser.add_argument("--chaos-every", type=float, default=8.0, help="seconds between faults, on average")
    parser.add_argument("--grace", type=float, default=180.0, help="seconds to wait for the work to finish")
    parser.add_argument("--json", metavar="FILE", help="write the figures to FILE as JSON")
    parser.add_argument("--keep", action="store_true", help="keep the run's folder (logs, database, ledger)")
    arguments = parser.parse_args()
    seed = arguments.seed if arguments.seed is not None else random.SystemRandom().randrange(2**32)
    rng = random.Random(seed)

    directory = tempfile.mkdtemp(prefix="health-platform-chaos-")
    _isolate_environment(directory)
    passed = False
    load_average_at_start = os.getloadavg()
    with contextlib.ExitStack() as stack:
        if arguments.broker == "redis":
            os.environ["CELERY_BROKER_URL"] = stack.enter_context(redis_server(directory)).url
        print(f"==> chaos run, seed {seed}, {arguments.broker} broker, in {directory}", flush=True)
        setup_django(directory)
        _seed(arguments.patients)
        from django.conf import settings

        from health_platform import bootstrap

        programs = {p.name: p for p in start_workers(directory, supervised=True, beat=True)}
        for program in programs.values():
            stack.callback(program.stop)
        contracts = bootstrap.contracts()
        ledger_path = Path(settings.LEDGER_URL.removeprefix("embedded://"))

        started = time.monotonic()
        load = Load(random.Random(rng.random()), arguments.analyses)
        chaos = Chaos(programs, ledger_path, random.Random(rng.random()), arguments.chaos_every, started)
        stalls = StallWatch(started)
        stop_load, stop_watch = threading.Event(), threading.Event()
        threads = [
            *load.threads(stop_load),
            threading.Thread(target=chaos.run, args=(stop_load,), name="chaos"),
        ]
        watch = threading.Thread(target=stalls.run, args=(stop_watch,), name="stall watch")
        stack.callback(stop_watch.set)  # on the way out, whatever happened: the lock released, the threads ended
        stack.callback(stop_load.set)
        print(f"==> load and chaos for {arguments.minutes:g} minutes", flush=True)
        for thread in [*threads, watch]:
            thread.start()
        end = started + arguments.minutes * 60
        while time.monotonic() < end:
            time.sleep(min(30.0, max(0.0, end - time.monotonic())))
            _print_progress(started, load, chaos)
        stop_load.set()
        for thread in threads:
            thread.join()
        print("==> load and chaos stopped; waiting for the work asked for to finish", flush=True)
        _wait_for_workers(programs)
        grace_started = time.monotonic()
        while any(unfinished_work().values()) and time.monotonic() - grace_started < arguments.grace:
            time.sleep(1)
        waited = time.monotonic() - grace_started
        stop_watch.set()
        watch.join()

        print("==> counting, on the ledger and in the database", flush=True)
        events = ledger_events(contracts)
        batches = scored_batches(Path(settings.ANALYTICS_BLOB_DIR))
        revoked = consents_revoked_at(contracts, (consent for b in batches for consent in b.consents.values()))
        must_be_zero = {
            "duplicate_events": duplicate_events(events),
            "records_scored_twice": records_scored_twice(batches),
            "records_computed_without_admitting_gate": computed_without_admitting_gate(batches, events),
            "records_admitted_under_revoked_consent": admitted_under_revoked_consent(batches, revoked),
        }
        unfinished = unfinished_work()
        verified = contracts.verify().ok
        figures: dict[str, Any] = {
            "command": " ".join(["python -m benchmarks.chaos", *sys.argv[1:]]),
            "seed": seed,
            "broker": arguments.broker,
            "minutes": arguments.minutes,
            "patients_per_dataset": arguments.patients,
            "cpus": os.cpu_count(),
            "load_average_at_start": [round(x, 2) for x in load_average_at_start],
            "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
            "analyses": _analysis_figures(),
            "load": dict(sorted(load.counts.items())),
            "load_errors": dict(sorted(load.errors.items())),
            "exports": _export_figures(),
            "events_logged": dict(Counter(f"{e['kind']}:{e['decision']}" for e in events)),
            "events_logged_total": len(events),
            "records_scored": sum(len(c.record_ids) for b in batches for c in b.chunks),
            "must_be_zero": must_be_zero,
            "ledger_verified": verified,
            "unfinished_after_grace": unfinished,
            "grace_waited_seconds": round(waited, 1),
            "longest_stall": {
                "seconds": round(stalls.longest, 1),
                "from_second": round(stalls.longest_from, 1),
                "chaos_during": [
                    what
                    for at, what in chaos.timeline
                    if stalls.longest_from - 1 <= at <= stalls.longest_from + stalls.longest
                ],
            },
            "chaos": dict(sorted(chaos.done.items())),
            "ledger_locked_seconds": round(chaos.locked_seconds, 1),
            "access_log_mirror": _mirror_differences(events),
            "worker_log_error_lines": _worker_log_errors(programs),
        }
        passed = not any(must_be_zero.values()) and verified and not any(unfinished.values())
        figures["passed"] = passed
        _print_figures(figures)
        if arguments.json:
            Path(arguments.json).write_text(json.dumps(figures, indent=2, default=str) + "\n")
        print("==> stopping the workers", flush=True)
    if arguments.keep or not passed:
        print(f"==> logs, database and ledger kept in {directory}")
    else:
        shutil.rmtree(directory, ignore_errors=True)
    print(f"==> {'passed' if passed else 'FAILED'}")
    return 0 if passed else 1


def _export_figures() -> dict[str, Any]:
    from django.db.models import Count

    from audit.models import AuditExport, ExportStatus

    completed = AuditExport.objects.filter(status=ExportStatus.COMPLETED)
    return {
        "by_status": dict(AuditExport.objects.values_list("status").annotate(n=Count("pk"))),
        "completed_not_verified": sum(not v.get("ok") for v in completed.values_list("verification", flat=True)),
    }


def _print_progress(started: float, load: Load, chaos: Chaos) -> None:
    from django.db import connection
    from django.db.models import Count

    from analytics.models import AnalysisRequest

    by_status = dict(AnalysisRequest.objects.values_list("status").annotate(n=Count("pk")))
    connection.close()
    print(
        f"  {time.monotonic() - started:5.0f} s: analyses {by_status}; {sum(chaos.done.values())} faults; "
        f"{sum(load.errors.values())} load errors",
        flush=True,
    )


def _print_figures(figures: dict[str, Any]) -> None:
    analyses = figures["analyses"]["by_status"]
    stall = figures["longest_stall"]
    rows = [
        {"figure": "analyses completed", "value": analyses.get("completed", 0), "must be": ""},
        {"figure": "analyses failed", "value": analyses.get("failed", 0), "must be": ""},
        {"figure": "analyses cancelled", "value": analyses.get("cancelled", 0), "must be": ""},
        {"figure": "events logged on the ledger", "value": figures["events_logged_total"], "must be": ""},
        {"figure": "records scored", "value": figures["records_scored"], "must be": ""},
        *(
            {"figure": name.replace("_", " "), "value": value, "must be": "0"}
            for name, value in figures["must_be_zero"].items()
        ),
        {"figure": "ledger hash chain verified", "value": str(figures["ledger_verified"]), "must be": "True"},
        *(
            {"figure": f"{name.replace('_', ' ')} after grace", "value": value, "must be": "0"}
            for name, value in figures["unfinished_after_grace"].items()
        ),
        {"figure": "longest stall (s)", "value": stall["seconds"], "must be": ""},
        {"figure": "faults", "value": sum(figures["chaos"].values()), "must be": ""},
        {"figure": "ledger locked (s)", "value": figures["ledger_locked_seconds"], "must be": ""},
    ]
    report("chaos", rows)
    print(f"\nlongest stall: {stall['seconds']} s from second {stall['from_second']}")
    print(f"faults during it: {stall['chaos_during']}")
    print(f"faults: {figures['chaos']}")
    print(f"load: {figures['load']}; load errors: {figures['load_errors']}")
    print(f"analyses: {figures['analyses']}")
    print(f"exports: {figures['exports']}; events: {figures['events_logged']}")
    print(f"access-log mirror: {figures['access_log_mirror']}")
    print(f"ERROR lines in the workers' logs: {figures['worker_log_error_lines']}")
    print(f"load average at start {figures['load_average_at_start']}, at end {figures['load_average_at_end']}")


if __name__ == "__main__":
    sys.exit(main())
