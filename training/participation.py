"""This instance's organisation taking part in a run another instance's model steward federates: the deployment of
one platform instance per organisation, each with its own database, record keys and workers, sharing the ledger.

1. The steward's instance sends a signed invitation (training.peers; the API: training.federation_api): the run's id
   and attempt, the organisation it invites, the model family, the public terms, the run's PUBLIC CKKS context, the
   aggregator's address and the run's certificate authority. `participation_accept` checks every field and keeps it
   (idempotent on run and attempt); a custodian worker takes it (training.tasks).
2. `participation_run`: the organisation's custodian offers its own records (training.selectors, the records of the
   organisations this instance hosts), and its Flower client takes part in every round exactly as a client hosted
   by the steward's instance does (training.local: gated and logged here, on the shared ledger, with purpose
   training:<family>; the update encrypted with the public context before it leaves).
3. At the end the steward's instance reads `participation_outcome` with a signed request: the counts and the
   manifest's leaves (record id, version, anchored hash, consent id, pseudonym, split): what the lineage's roots are
   computed over, never a record's content, a feature or a label.
"""

import base64
import binascii
import re
import uuid
from datetime import timedelta
from typing import Any

import structlog
from cryptography import x509
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from analytics.selectors import declared_model_of_family
from analytics.services import blob_store
from chaincode.vocabulary import training_purpose
from consent.selectors import consents_revoked_among
from health_platform import bootstrap
from health_platform.errors import Conflict, NotFound, ValidationFailed
from records.selectors import records_erased_among
from training import maths
from training.federation import FederationFailed, participate
from training.labels import demo_label_source
from training.lineage import index_rows, lineage_roots
from training.local import OrganisationRecords, RunPlan
from training.models import ParticipationStatus, TrainingParticipation, TrainingSetEntry
from training.rounds import failure_code
from training.selectors import training_candidates_offered
from training.terms import MAX_ROUNDS, MAX_TARGET_BOUND, MAX_VALIDATION_FRACTION, finite_number

log = structlog.get_logger(__name__)

MAX_CONTEXT_BYTES = 2 * 1024 * 1024  # the platform's public context for sums is ~400 KB
MAX_AUTHORITY_BYTES = 8 * 1024
MAX_ATTEMPT = 10_000
INVITATION_FIELDS = frozenset(
    {
        "run_id",
        "attempt",
        "organisation",
        "model_family",
        "kind",
        "feature_codes",
        "rounds",
        "validation_fraction",
        "target_bound",
        "public_context",
        "aggregator",
        "authority",
        "token",
    }
)
_ADDRESS = re.compile(r"\A(?P<host>[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?):(?P<port>[0-9]{1,5})\Z")


def _refuse(field: str, message: str, code: str) -> ValidationFailed:
    return ValidationFailed(message, code=code, detail={"field": field})


def _whole(value: object, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def invitation_check(invitation: object) -> dict[str, Any]:
    """An invitation's fields, each checked (its type, its range, its format) and the model it names compared with
    this instance's declaration of the family; ValidationFailed with a stable code and the field's name otherwise.
    Nothing is stored here."""
    if not isinstance(invitation, dict):
        raise ValidationFailed("An invitation is a JSON object.", code="malformed_request")
    unknown, missing = set(invitation) - INVITATION_FIELDS, INVITATION_FIELDS - set(invitation)
    if unknown:
        raise ValidationFailed("Unknown fields.", code="unknown_fields", detail={"fields": sorted(unknown)[:20]})
    if missing:
        raise ValidationFailed("Fields are missing.", code="missing_fields", detail={"fields": sorted(missing)})
    try:
        run_id = uuid.UUID(str(invitation["run_id"])) if isinstance(invitation["run_id"], str) else None
    except ValueError:
        run_id = None
    if run_id is None:
        raise _refuse("run_id", "run_id must be a UUID.", "invalid_run_id")
    if not _whole(invitation["attempt"], 0, MAX_ATTEMPT):
        raise _refuse("attempt", f"attempt must be a whole number from 0 to {MAX_ATTEMPT}.", "invalid_attempt")
    organisation = invitation["organisation"]
    if not isinstance(organisation, str) or organisation not in settings.TRAINING_HOSTED_ORGANISATIONS:
        raise _refuse("organisation", "This instance does not host that organisation.", "organisation_not_hosted")
    family = invitation["model_family"]
    spec = declared_model_of_family(family=family) if isinstance(family, str) else None
    if spec is None:
        raise _refuse("model_family", "No model of this family is declared here.", "unknown_model")
    if invitation["kind"] != spec.kind or invitation["feature_codes"] != list(spec.feature_codes):
        raise _refuse("model_family", "The family's model is declared otherwise here.", "model_mismatch")
    rounds = invitation["rounds"]
    if not _whole(rounds, 1, MAX_ROUNDS) or (spec.kind == maths.LINEAR and rounds != 1):
        raise _refuse("rounds", f"rounds must be a whole number from 1 to {MAX_ROUNDS}.", "invalid_rounds")
    fraction = invitation["validation_fraction"]
    if not finite_number(fraction) or not 0 <= float(fraction) <= MAX_VALIDATION_FRACTION:
        raise _refuse(
            "validation_fraction",
            f"validation_fraction must be a number from 0 to {MAX_VALIDATION_FRACTION}.",
            "invalid_validation_fraction",
        )
    bound = invitation["target_bound"]
    if bound is not None and (not finite_number(bound) or not 0 < float(bound) <= MAX_TARGET_BOUND):
        raise _refuse("target_bound", "target_bound must be null or a positive number.", "invalid_dp_target_bound")
    return {
        "run_id": run_id,
        "attempt": invitation["attempt"],
        "organisation": organisation,
        "model_family": family,
        "terms": {"rounds": rounds, "validation_fraction": float(fraction), "target_bound": bound},
        "public_context": _context(invitation["public_context"]),
        "aggregator": _aggregator(invitation["aggregator"]),
        "authority": _authority(invitation["authority"]),
        "token": _token(invitation["token"]),
    }


_TOKEN = re.compile(r"\A[A-Za-z0-9_-]{32,128}\Z")


def _token(text: object) -> str:
    if not isinstance(text, str) or not _TOKEN.match(text):
        raise _refuse("token", "token must be 32 to 128 URL-safe characters.", "invalid_token")
    return text


def _context(text: object) -> bytes:
    if not isinstance(text, str) or len(text) > MAX_CONTEXT_BYTES * 4 // 3 + 4:
        raise _refuse("public_context", "public_context must be base64 of a CKKS context.", "invalid_context")
    try:
        context = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise _refuse("public_context", "public_context must be base64 of a CKKS context.", "invalid_context") from None
    if not context:
        raise _refuse("public_context", "public_context must be base64 of a CKKS context.", "invalid_context")
    return context


def _aggregator(text: object) -> str:
    match = _ADDRESS.match(text) if isinstance(text, str) else None
    if match is None or not 1 <= int(match["port"]) <= 65535:
        raise _refuse("aggregator", "aggregator must be host:port.", "invalid_aggregator")
    return str(text)


def _authority(text: object) -> str:
    if not isinstance(text, str) or len(text) > MAX_AUTHORITY_BYTES:
        raise _refuse("authority", "authority must be one PEM certificate.", "invalid_authority")
    try:
        certificate = x509.load_pem_x509_certificate(text.encode("ascii"))
        constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints).value
    except (ValueError, UnicodeEncodeError, x509.ExtensionNotFound):
        raise _refuse("authority", "authority must be one PEM certificate.", "invalid_authority") from None
    if not constraints.ca:
        raise _refuse("authority", "authority must be a certificate authority's certificate.", "invalid_authority")
    return text


def participation_keep(*, steward_organisation: str, invitation: object) -> tuple[TrainingParticipation, bool]:
    """Keep a checked invitation from the peer `steward_organisation` (who signed it): (the participation, whether it
    is new; training.services queues a new one's work). The same run and attempt again answers the one kept; from
    another peer it is Conflict invitation_conflict."""
    checked = invitation_check(invitation)
    existing = TrainingParticipation.objects.filter(run_id=checked["run_id"], attempt=checked["attempt"]).first()
    if existing is not None:
        return _same_inviter(existing, steward_organisation), False
    try:
        with transaction.atomic():
            participation = TrainingParticipation.objects.create(
                run_id=checked["run_id"],
                attempt=checked["attempt"],
                steward_organisation=steward_organisation,
                organisation=checked["organisation"],
                model_family=checked["model_family"],
                terms=checked["terms"],
                public_context_key=blob_store().put(checked["public_context"]),
                aggregator=checked["aggregator"],
                authority=checked["authority"],
                token=checked["token"],
            )
    except IntegrityError:  # the same invitation, accepted at the same moment by another web worker
        existing = TrainingParticipation.objects.get(run_id=checked["run_id"], attempt=checked["attempt"])
        return _same_inviter(existing, steward_organisation), False
    log.info(
        "training_participation_accepted",
        run_id=str(participation.run_id),
        attempt=participation.attempt,
        steward_organisation=steward_organisation,
        organisation=participation.organisation,
    )
    return participation, True


def _same_inviter(participation: TrainingParticipation, steward_organisation: str) -> TrainingParticipation:
    if participation.steward_organisation != steward_organisation:
        raise Conflict("Another organisation's instance sent this run's invitation.", code="invitation_conflict")
    return participation


def participation_get(*, steward_organisation: str, run_id: object, attempt: object) -> TrainingParticipation:
    """The participation the peer `steward_organisation` invited; NotFound otherwise (another peer's, or none)."""
    try:
        key = uuid.UUID(str(run_id))
        number = int(str(attempt)) if str(attempt).isdigit() and len(str(attempt)) <= 6 else -1
    except ValueError:
        raise NotFound("No such invitation.") from None
    participation = TrainingParticipation.objects.filter(run_id=key, attempt=number).first()
    if participation is None or participation.steward_organisation != steward_organisation:
        raise NotFound("No such invitation.")  # another peer's: not shown to exist
    return participation


def participation_outcome(participation: TrainingParticipation) -> dict[str, Any]:
    """What the steward's instance reads: the status and, once completed, the counts, the manifest's leaves and the
    standing of what it used NOW, from this instance's own mirror: the consents of its leaves since revoked and its
    records since erased (ids only), which the steward's instance counts against the model (training.retirement)."""
    done = participation.status == ParticipationStatus.COMPLETED
    leaves = participation.manifest if done else []
    standing = {
        "revoked_consents": sorted(consents_revoked_among(consent_ids=[leaf["consent_id"] for leaf in leaves])),
        "erased_records": sorted(records_erased_among(record_ids=[leaf["record_id"] for leaf in leaves])),
    }
    return {
        "standing": standing,
        "run_id": str(participation.run_id),
        "attempt": participation.attempt,
        "organisation": participation.organisation,
        "status": participation.status,
        "failure_code": participation.failure_code,
        "offered": participation.offered,
        "counts": participation.counts if done else {},
        "round_counts": participation.round_counts if done else {},
        "manifest": participation.manifest if done else [],
    }


def participation_run(*, participation_id: int) -> TrainingParticipation | None:
    """Take part in the run (once: a second delivery finds it taken and returns): offer this organisation's records,
    run its Flower client through every round and the validation, keep its counts and manifest. Its failure is kept
    as a code the steward's instance reads (ledger_unavailable: the ledger did not answer here; the steward's instance
    then tries the run again with a new invitation)."""
    claimed = TrainingParticipation.objects.filter(pk=participation_id, status=ParticipationStatus.QUEUED).update(
        status=ParticipationStatus.RUNNING, claimed_at=timezone.now()
    )
    if not claimed:
        return None
    participation = TrainingParticipation.objects.get(pk=participation_id)
    newer = TrainingParticipation.objects.filter(run_id=participation.run_id, attempt__gt=participation.attempt)
    if newer.exists():  # the run was tried again since: this attempt's aggregator is gone
        TrainingParticipation.objects.filter(pk=participation.pk).update(
            status=ParticipationStatus.FAILED, failure_code="superseded", finished_at=timezone.now()
        )
        return None
    trainer, failure = None, ""
    try:
        trainer = _trainer(participation)
        participate(
            trainer=trainer,
            address=participation.aggregator,
            authority=participation.authority.encode(),
            token=participation.token,
        )
    except FederationFailed as error:
        failure = failure_code(error)
    if not failure and not (trainer is not None and trainer.validated):
        failure = "federation_unfinished"  # the aggregator ended the run early (another organisation failed)
    participation.status = ParticipationStatus.FAILED if failure else ParticipationStatus.COMPLETED
    participation.failure_code = failure
    if trainer is not None:
        participation.counts = trainer.counts
        participation.round_counts = {str(index): count for index, count in trainer.round_counts.items()}
        participation.manifest = list(trainer.used.values())
    participation.finished_at = timezone.now()
    with transaction.atomic():  # a completed participation always has its training-set index
        participation.save()
        if not failure:
            rows = index_rows({participation.organisation: participation.manifest})
            TrainingSetEntry.objects.bulk_create(
                [TrainingSetEntry(participation=participation, **row) for row in rows], batch_size=1000
            )
    log.info(
        "training_participation_finished",
        run_id=str(participation.run_id),
        attempt=participation.attempt,
        status=participation.status,
        failure_code=failure,
    )
    return participation


def _trainer(participation: TrainingParticipation) -> OrganisationRecords:
    """The organisation's trainer over the records its custodian offers the run's family now."""
    spec = declared_model_of_family(family=participation.model_family)
    if spec is None:  # checked when accepted; a catalogue changed since
        raise FederationFailed("unknown_model")
    offered = training_candidates_offered(family=participation.model_family).get(participation.organisation, [])
    participation.offered = len(offered)
    terms = participation.terms
    plan = RunPlan(
        run_id=str(participation.run_id),
        kind=spec.kind,
        purpose=training_purpose(participation.model_family),
        spec=spec,
        validation_fraction=float(terms["validation_fraction"]),
        target_bound=terms.get("target_bound"),
    )
    labels = demo_label_source(
        dataset=spec.dataset, feature_codes=spec.feature_codes, kind=spec.kind, positive_label=spec.positive_label
    )
    public = blob_store().get(participation.public_context_key)
    return OrganisationRecords(plan, participation.organisation, list(offered), public, labels)


def participations_lineage_confirm() -> int:
    """Find on the ledger the lineage of every run with a completed participation that has none yet, and keep it
    (model, its version, the lineage's transaction) on the participation whose leaves are exactly this organisation's
    part of it: its training-set root and count. From then this instance's patients see the model their records
    trained, with a proof against that root (training.selectors). A lineage not written yet (the steward's instance
    has not published it) is looked for again by the next sweep. Another completed attempt of the same run (the
    steward's instance tried again after it: its lineage is over the attempt that won) is closed, superseded; with no
    attempt matching, the mismatch is logged and nothing is shown. One ledger read per run. Returns how many were
    confirmed. Run by the beat's standing sweep (training.tasks)."""
    waiting: dict[Any, list[TrainingParticipation]] = {}
    for participation in TrainingParticipation.objects.filter(status=ParticipationStatus.COMPLETED, lineage_tx_id=""):
        waiting.setdefault(participation.run_id, []).append(participation)
    confirmed = 0
    for run_id, attempts in waiting.items():
        lineage = bootstrap.contracts().read_training_run(str(run_id))
        if lineage is None:
            continue
        matching = [attempt for attempt in attempts if _part_matches(lineage, attempt)]
        if not matching:
            log.error("training_participation_lineage_mismatch", run_id=str(run_id))
            continue
        declared = declared_model_of_family(family=lineage.model_family)
        TrainingParticipation.objects.filter(pk=matching[-1].pk).update(
            model_name=declared.name if declared is not None else lineage.model_family,
            model_version=lineage.model_version,
            lineage_tx_id=lineage.tx_id or "",
            lineage_block=lineage.block_number,
        )
        TrainingParticipation.objects.filter(pk__in=[a.pk for a in attempts if a.pk != matching[-1].pk]).update(
            status=ParticipationStatus.FAILED, failure_code="superseded"
        )
        confirmed += 1
    return confirmed


def _part_matches(lineage: Any, participation: TrainingParticipation) -> bool:
    """Whether the lineage's part for the participation's organisation is exactly the leaves it kept."""
    part = next((o for o in lineage.organisations if o.organisation == participation.organisation), None)
    [kept], _ = lineage_roots({participation.organisation: participation.manifest})
    if part is None:
        return False
    return (part.training_set_root, part.record_count) == (kept.training_set_root, kept.record_count)


def participations_abandoned_close(*, older_than: timedelta) -> int:
    """Close the participations no worker will finish: taken longer ago than `older_than` (the task's hard time limit
    and a margin: the worker that took it is dead) or never taken in that time (its message was lost). Failed,
    worker_lost or not_taken: the steward's instance has long since invited a new attempt (it reads a participation
    that does not move as unreachable), so nothing is sent again here. Returns how many were closed. Run by the
    beat's standing sweep (training.tasks)."""
    cutoff = timezone.now() - older_than
    lost = TrainingParticipation.objects.filter(status=ParticipationStatus.RUNNING, claimed_at__lt=cutoff).update(
        status=ParticipationStatus.FAILED, failure_code="worker_lost", finished_at=timezone.now()
    )
    untaken = TrainingParticipation.objects.filter(status=ParticipationStatus.QUEUED, created_at__lt=cutoff).update(
        status=ParticipationStatus.FAILED, failure_code="not_taken", finished_at=timezone.now()
    )
    if lost or untaken:
        log.warning("training_participations_abandoned", worker_lost=lost, not_taken=untaken)
    return lost + untaken
