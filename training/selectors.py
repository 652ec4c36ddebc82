"""Reads: the records each organisation offers a run, a steward's training runs, their lineage as the manifest
rebuilds it and as the ledger's anchors rebuild it, a patient's "models my records trained", and inclusion proofs."""

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db.models import Q, QuerySet
from django.utils import timezone

from analytics.selectors import declared_model_of_family, diagnostic_model_get
from chaincode.vocabulary import CATEGORIES, REASON_LABELS, training_purpose
from consent.models import Consent, ConsentStatus
from consent.selectors import (
    consents_listing,
    consents_of_patient,
    consents_revoked_among,
    consents_with_effective_status,
)
from health_platform import bootstrap
from health_platform.errors import Conflict, NotFound, ValidationFailed
from health_platform.models import Organisation
from health_platform.selectors import grantee_get
from ledger.contracts import TrainingRun as LedgerTrainingRun
from records.models import Patient
from records.selectors import record_versions_usable_for_analysis, records_erased_among
from training.access import user_may_read_training_run, user_may_request_training
from training.lineage import lineage_roots, overall_entries, training_record_proof
from training.models import (
    ParticipationStatus,
    TrainingParticipation,
    TrainingRound,
    TrainingRun,
    TrainingSetEntry,
    TrainingStatus,
)

# A patient's page lists at most this many of their training-set entries, newest run first.
MAX_ENTRIES_SHOWN = 500
NO_ANCHOR = "0" * 64  # stands for a missing anchor's hash when the roots are rebuilt from the ledger's anchors

# The words for why a record a run was offered was not used: the gate's refusals, and what made an admitted record
# unusable for training (training.local).
TRAINING_REASON_LABELS: dict[str, str] = {
    **REASON_LABELS,
    "no_label": "No training label is known for this record",
}


def training_candidates_offered(*, family: str) -> dict[str, list[int]]:
    """Per organisation ("org:<slug>", every organisation of the directory that offers any), the record versions its
    custodian offers a run training `family`: the current (newest anchored) version of each record of the family's
    data category whose patient holds, in the consent mirror, a live consent (granted, not revoked, in its period)
    naming that organisation for training:<family> and covering the category. Version ids in record order.

    Each record is offered by ONE organisation: a patient who consented to several is offered by the organisation
    of their EARLIEST live consent (granted first; ties by consent id), so that no record is trained on twice.
    This is the custodian's offer only, from a mirror that may be behind the ledger: the gate, asked when each
    round runs, remains the authority and refuses what the ledger no longer allows. Three queries whatever the
    number of patients. An unknown family is ValidationFailed unknown_model.

    Only the organisations this instance hosts (TRAINING_HOSTED_ORGANISATIONS; all when it names none) offer here:
    another organisation's records are in its own instance, which offers them when invited (training.participation)."""
    spec = declared_model_of_family(family=family)
    if spec is None:
        raise ValidationFailed("No model of this family is declared.", code="unknown_model", detail={"field": "family"})
    grantees = [organisation.grantee_id for organisation in Organisation.objects.order_by("slug")]
    hosted = settings.TRAINING_HOSTED_ORGANISATIONS
    if hosted:  # one platform instance per organisation: only the organisations whose records are here
        grantees = [grantee for grantee in grantees if grantee in hosted]
    live = consents_with_effective_status(Consent.objects.filter(grantee__in=grantees), "active")
    live = consents_listing(live, field="purposes", code=training_purpose(family))
    live = consents_listing(live, field="categories", code=spec.category)
    offered_by: dict[Any, str] = {}
    for patient_id, grantee in live.order_by("granted_at", "consent_id").values_list("patient_id", "grantee"):
        offered_by.setdefault(patient_id, grantee)
    versions = record_versions_usable_for_analysis(categories=[spec.category]).filter(
        record__patient_id__in=live.values("patient_id")
    )
    offered: dict[str, list[int]] = {}
    for version_id, patient_id in versions.values_list("pk", "record__patient_id"):
        organisation = offered_by.get(patient_id)  # None: consented between the two queries; next run offers it
        if organisation is not None:
            offered.setdefault(organisation, []).append(version_id)
    return dict(sorted(offered.items()))


def training_runs_of_steward(*, steward: Any) -> QuerySet[TrainingRun]:
    """The runs `steward` asked for, newest first (none for anyone who is not a model steward)."""
    if not user_may_request_training(steward):
        return TrainingRun.objects.none()
    return TrainingRun.objects.filter(steward=steward).prefetch_related("rounds")


def training_run_get(*, viewer: Any, run_id: Any) -> TrainingRun:
    """A run its steward may read; NotFound for anyone else (another steward's run is not shown to exist) and for an
    id that is not a UUID."""
    try:
        key = uuid.UUID(str(run_id))
    except ValueError:
        raise NotFound("No such training run.") from None
    run = TrainingRun.objects.filter(pk=key).first()
    if run is None or not user_may_read_training_run(viewer, run):
        raise NotFound("No such training run.")
    return run


@dataclass(frozen=True)
class OrganisationCounts:
    """What became of the records an organisation offered a run (so far: its last round's gate)."""

    organisation: str
    offered: int
    admitted: int
    refused: dict[str, int]
    skipped: dict[str, int]

    @property
    def reasons(self) -> list[tuple[str, str, int]]:
        """(code, words, count) of every refusal and skip, in code order."""
        return [
            (code, TRAINING_REASON_LABELS.get(code, code.replace("_", " ")), count)
            for code, count in sorted({**self.refused, **self.skipped}.items())
        ]


@dataclass(frozen=True)
class RunOverview:
    """A run as its page and its API show it: its rounds so far, its organisations' counts, and once completed the
    lineage the model registry keeps beside the trained model (as the ledger's RecordTrainingRun returned it)."""

    run: TrainingRun
    rounds: list[TrainingRound]
    organisations: list[OrganisationCounts]
    lineage: dict[str, Any] | None

    @property
    def finished(self) -> bool:
        return self.run.status in (TrainingStatus.COMPLETED, TrainingStatus.FAILED)

    @property
    def fingerprint(self) -> str:
        """Changes whenever anything the progress panel shows changes (a poll that sees the same gets 204)."""
        admitted = "-".join(f"{o.admitted}/{sum(o.refused.values())}" for o in self.organisations)
        return f"{self.run.status}-{len(self.rounds)}-{admitted}"


def training_run_overview(*, run: TrainingRun) -> RunOverview:
    """The run's rounds, its organisations' counts (every organisation it was offered records by, in id order) and,
    once completed, its lineage."""
    organisations = [
        OrganisationCounts(
            organisation=organisation,
            # an invited organisation's offer is counted by its own instance (training.participation)
            offered=int(counts.get("offered", len(run.organisations.get(organisation, [])))),
            admitted=int(counts.get("admitted", 0)),
            refused=dict(counts.get("refused", {})),
            skipped=dict(counts.get("skipped", {})),
        )
        for organisation in sorted({*run.organisations, *run.invited})
        for counts in [run.organisation_counts.get(organisation, {})]
    ]
    lineage = None
    if run.status == TrainingStatus.COMPLETED:
        model = diagnostic_model_get(name=run.model_name, version=run.model_version)
        lineage = dict(model.lineage) if model is not None and model.lineage else None
    return RunOverview(run=run, rounds=list(run.rounds.order_by("index")), organisations=organisations, lineage=lineage)


LINEAGE_ROOT_FIELDS = ("training_set_root", "consent_root", "record_count", "consent_count")


def training_run_lineage_differences(*, run: TrainingRun) -> list[str]:
    """What differs between the lineage on the ledger and the one rebuilt from the run's kept manifest: the names of
    the fields (per organisation: "org:<slug>.<field>") whose values are not equal; and between the ledger and the
    run's model: its weights hash as the run, the model registry ("model_registry.sha256") and the ledger's own
    index by weights ("model_lineage_by_weights") know it. Empty: they agree."""
    contracts = bootstrap.contracts()
    on_ledger = contracts.read_training_run(str(run.pk))
    if on_ledger is None:
        return ["run"]
    differences = lineage_root_differences(run.manifest, on_ledger)
    if on_ledger.weights_sha256 != run.weights_sha256:
        differences.append("weights_sha256")
    if on_ledger.model_version != run.model_version:
        differences.append("model_version")
    registered = diagnostic_model_get(name=run.model_name, version=run.model_version) if run.model_name else None
    if registered is None or registered.sha256 != on_ledger.weights_sha256:
        differences.append("model_registry.sha256")
    by_weights = contracts.model_lineage_by_weights(on_ledger.weights_sha256)
    if by_weights is None or by_weights.run_id != str(run.pk):
        differences.append("model_lineage_by_weights")
    return differences


def lineage_root_differences(
    manifest: Mapping[str, Sequence[Mapping[str, Any]]], on_ledger: LedgerTrainingRun, *, prefix: str = ""
) -> list[str]:
    """The roots and counts, overall and per organisation, in which `manifest` and the ledger's lineage differ, each
    named "<prefix><field>" or "<prefix>org:<slug>.<field>" ("<prefix>organisations": not the same organisations)."""
    parts, overall = lineage_roots(manifest)
    differences = [prefix + name for name in LINEAGE_ROOT_FIELDS if getattr(overall, name) != getattr(on_ledger, name)]
    ledger_parts = {part.organisation: part for part in on_ledger.organisations}
    if set(ledger_parts) != {part.organisation for part in parts}:
        differences.append(f"{prefix}organisations")
    for part in parts:
        kept = ledger_parts.get(part.organisation)
        differences += [
            f"{prefix}{part.organisation}.{name}"
            for name in LINEAGE_ROOT_FIELDS
            if kept is not None and getattr(part, name) != getattr(kept, name)
        ]
    return differences


def training_record_proof_document(*, run: TrainingRun, record_id: str) -> dict[str, Any] | None:
    """The inclusion proof of a record in the run's training set, against the overall root on the ledger (None if
    the run did not use it)."""
    about = {"run_id": str(run.pk), "model": f"{run.model_name}@{run.model_version}"}
    if run.lineage_tx_id:
        about["lineage_tx_id"] = run.lineage_tx_id
    if run.lineage_block is not None:
        about["lineage_block"] = str(run.lineage_block)
    return training_record_proof(run.manifest, record_id=record_id, about=about)


# --- a patient's "models my records trained" ------------------------------------------------------------------


@dataclass(frozen=True)
class RecordTrainedOn:
    """One of the patient's record versions in a run's training set: never a clinical value."""

    record_id: str
    category: str
    category_label: str
    version: int
    split: str  # "train" or "validation" (held out to measure the model)
    consent_id: str
    consent_status: str  # "active", "revoked", or "unknown" (the consent is not in this platform's mirror)
    consent_revoked_at: datetime | None


@dataclass(frozen=True)
class ModelTrainedOnMine:
    """A completed run whose training set holds records of the patient, and the model it produced."""

    run_id: str
    model_name: str
    model_version: str
    finished_at: datetime | None
    lineage_tx_id: str
    lineage_block: int | None
    records: list[RecordTrainedOn] = field(default_factory=list)
    # The organisation whose part of the training set the patient's records are in, when the run was federated by
    # another organisation's platform instance (their proofs lead to this organisation's root); "" for a run of this
    # instance (proofs to the overall root).
    part_of: str = ""
    part_of_name: str = ""  # that organisation's name in this instance's directory

    @property
    def model(self) -> str:
        return f"{self.model_name}@{self.model_version}"


def models_trained_on_patient(*, patient: Patient | None) -> list[ModelTrainedOnMine]:
    """The completed runs that used `patient`'s records (newest first), each with which records, how (trained or
    validated) and the consent that admitted them, with that consent's status now. Read from the training-set index
    (no manifest is scanned); at most MAX_ENTRIES_SHOWN entries."""
    if patient is None:
        return []
    entries = list(
        _entries_shown()
        .filter(record__patient=patient)
        .select_related("run", "participation", "record")
        .order_by("-run__finished_at", "-participation__finished_at", "run_id", "participation_id", "position")[
            :MAX_ENTRIES_SHOWN
        ]
    )
    consents = {
        consent.consent_id: consent
        for consent in consents_of_patient(patient=patient).filter(consent_id__in={e.consent_id for e in entries})
    }
    models: dict[Any, ModelTrainedOnMine] = {}
    for entry in entries:
        run = _run_or_participation(entry)
        run_id = run.run_id if isinstance(run, TrainingParticipation) else run.pk
        shown = models.setdefault(
            run_id,
            ModelTrainedOnMine(
                run_id=str(run_id),
                model_name=run.model_name,
                model_version=run.model_version,
                finished_at=run.finished_at,
                lineage_tx_id=run.lineage_tx_id,
                lineage_block=run.lineage_block,
                part_of=run.organisation if isinstance(run, TrainingParticipation) else "",
                part_of_name=_organisation_name(run.organisation) if isinstance(run, TrainingParticipation) else "",
            ),
        )
        consent = consents.get(entry.consent_id)
        revoked = consent is not None and consent.status == ConsentStatus.REVOKED
        shown.records.append(
            RecordTrainedOn(
                record_id=str(entry.record_id),
                category=entry.record.category,
                category_label=CATEGORIES.get(entry.record.category, entry.record.category),
                version=entry.record_version,
                split=entry.split,
                consent_id=entry.consent_id,
                consent_status="unknown" if consent is None else consent.status,
                consent_revoked_at=consent.revoked_at if consent is not None and revoked else None,
            )
        )
    return list(models.values())


def _organisation_name(grantee_id: str) -> str:
    grantee = grantee_get(grantee_id=grantee_id)
    return grantee.display_name if grantee is not None else grantee_id


def _run_or_participation(entry: TrainingSetEntry) -> TrainingRun | TrainingParticipation:
    source = entry.run or entry.participation
    assert source is not None  # a constraint: one or the other
    return source


def _entries_shown() -> QuerySet[TrainingSetEntry]:
    """The index entries a patient is shown: of completed runs of this instance, and of this instance's completed
    part in another instance's run once its lineage on the ledger is confirmed (training.participation)."""
    of_runs = Q(run__status=TrainingStatus.COMPLETED)
    of_participations = Q(participation__status=ParticipationStatus.COMPLETED) & ~Q(participation__lineage_tx_id="")
    return TrainingSetEntry.objects.filter(of_runs | of_participations)


def training_record_proof_for_patient(*, patient: Patient | None, run_id: Any, record_id: Any) -> dict[str, Any]:
    """The inclusion proof of the patient's record in a completed run's training set, once its root and size are
    the ones the ledger holds for the run. NotFound for a run or record that is not theirs (another patient's is not
    shown to exist); Conflict lineage_mismatch when the kept manifest no longer gives the ledger's root."""
    try:
        run_id, record_id = uuid.UUID(str(run_id)), uuid.UUID(str(record_id))
    except ValueError:
        raise NotFound("No model was trained on this record of yours.") from None
    entry = (
        _entries_shown()
        .filter(Q(run_id=run_id) | Q(participation__run_id=run_id), record_id=record_id, record__patient=patient)
        .select_related("run", "participation")
        .first()
        if patient is not None
        else None
    )
    if entry is None:
        raise NotFound("No model was trained on this record of yours.")
    on_ledger = bootstrap.contracts().read_training_run(str(run_id))
    if entry.run is not None:
        document = training_record_proof_document(run=entry.run, record_id=str(record_id))
        expected = None if on_ledger is None else (on_ledger.training_set_root, on_ledger.record_count)
    else:  # this instance's part of another instance's run: against its organisation's root on the ledger
        document = _participation_proof_document(_run_or_participation(entry), str(record_id))
        part = next(
            (o for o in (on_ledger.organisations if on_ledger else ()) if o.organisation == entry.organisation), None
        )
        expected = None if part is None else (part.training_set_root, part.record_count)
    if document is None or expected is None or (document["root"], document["size"]) != expected:
        raise Conflict(
            "The training set kept for this model no longer matches its lineage on the ledger: no proof is given.",
            code="lineage_mismatch",
        )
    return document


def _participation_proof_document(participation: Any, record_id: str) -> dict[str, Any] | None:
    """The inclusion proof of a record in this instance's organisation's part of another instance's run: against
    that organisation's training-set root, which the run's lineage on the ledger lists among its organisations'."""
    about = {
        "run_id": str(participation.run_id),
        "model": f"{participation.model_name}@{participation.model_version}",
        "organisation": participation.organisation,
        "root_of": "the organisation's training set (the lineage's organisations[].training_set_root)",
        "lineage_tx_id": participation.lineage_tx_id,
    }
    if participation.lineage_block is not None:
        about["lineage_block"] = str(participation.lineage_block)
    return training_record_proof({participation.organisation: participation.manifest}, record_id=record_id, about=about)


# --- verifying a model's lineage ------------------------------------------------------------------------------


@dataclass(frozen=True)
class LineageVerification:
    """A run's lineage checked three ways: the ledger's roots against the kept manifest's, against the roots rebuilt
    from the ledger's own anchors ("anchors.<field>"), and the model's weights hash across the run, the registry and
    the ledger. `records_differing`: per organisation, the records whose anchor is not the hash the run used."""

    run_id: str
    model: str
    lineage_tx_id: str
    records_checked: int
    organisations: list[str]
    differences: list[str]
    records_differing: dict[str, list[dict[str, Any]]]

    @property
    def ok(self) -> bool:
        return not self.differences and not self.records_differing

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "run_id": self.run_id,
            "model": self.model,
            "lineage_tx_id": self.lineage_tx_id,
            "records_checked": self.records_checked,
            "organisations": self.organisations,
            "differences": self.differences,
            "records_differing": self.records_differing,
        }


def training_run_for_model(*, model: str) -> TrainingRun:
    """The completed run that produced `model`: "name@version", or the run's id. ValidationFailed invalid_model for
    anything else; NotFound unknown_model when no completed run produced it (a catalogue model has no lineage)."""
    model = model.strip()
    try:
        runs = TrainingRun.objects.filter(pk=uuid.UUID(model))
    except ValueError:
        name, at, version = model.partition("@")
        if not (at and name and version) or len(model) > 100 or "\x00" in model:
            raise ValidationFailed(
                "Name the model as name@version or by its training run's id.", code="invalid_model"
            ) from None
        runs = TrainingRun.objects.filter(model_name=name, model_version=version)
    run = runs.filter(status=TrainingStatus.COMPLETED).first()
    if run is None:
        raise NotFound("No completed training run produced this model.", code="unknown_model")
    return run


def training_run_verify(*, run: TrainingRun) -> LineageVerification:
    """Check a completed run's lineage (see LineageVerification): the ledger is read for the run's lineage, the
    model's, and the anchor of every record version in the kept manifest (one read per record)."""
    verified = LineageVerification(
        run_id=str(run.pk),
        model=f"{run.model_name}@{run.model_version}",
        lineage_tx_id=run.lineage_tx_id,
        records_checked=sum(len(entries) for entries in run.manifest.values()),
        organisations=sorted(run.manifest),
        differences=[],
        records_differing={},
    )
    try:
        differences, differing = _lineage_and_anchor_differences(run)
    except (KeyError, TypeError, ValueError):  # MalformedProof is a ValueError: a leaf the manifest cannot make
        differences, differing = ["manifest"], {}
    return replace(verified, differences=differences, records_differing=differing)


def _lineage_and_anchor_differences(run: TrainingRun) -> tuple[list[str], dict[str, list[dict[str, Any]]]]:
    contracts = bootstrap.contracts()
    differences = training_run_lineage_differences(run=run)
    as_anchored: dict[str, list[dict[str, Any]]] = {organisation: [] for organisation in run.manifest}
    differing: dict[str, list[dict[str, Any]]] = {}
    for organisation, entry in overall_entries(run.manifest):
        anchor = contracts.anchor_at_version(entry["record_id"], int(entry["version"])).anchor
        anchored = NO_ANCHOR if anchor is None else anchor.sha256
        if anchored != entry["sha256"]:
            differing.setdefault(organisation, []).append(
                {
                    "record_id": entry["record_id"],
                    "version": entry["version"],
                    "anchor": "missing" if anchor is None else "differs",
                }
            )
        as_anchored[organisation].append({**entry, "sha256": anchored})
    on_ledger = contracts.read_training_run(str(run.pk))
    if on_ledger is not None:
        differences += lineage_root_differences(as_anchored, on_ledger, prefix="anchors.")
    return differences, differing


@dataclass(frozen=True)
class SinceTrained:
    """What has become of a trained model's training set since its run: of the consents that admitted its records,
    how many the patients have revoked; of its records, how many have been erased; and the consents withdrawn
    either way (revoked, or that admitted a record since erased), which the retirement policy counts.

    Expired consents are not counted: the patient agreed to the training for the consent's period, and the run
    used the records within it. A revocation withdraws that agreement; an erasure withdraws the record itself."""

    records: int
    consents: int
    revoked_consents: int
    erased_records: int
    withdrawn_consents: int
    counted_at: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def trained_model_since_trained(
    *, run: TrainingRun, elsewhere: Mapping[str, tuple[set[str], set[str]]] | None = None
) -> SinceTrained:
    """Count a completed run's manifest against the consent mirror and the erasures: a bounded number of queries,
    one per health_platform.selectors.IN_LIST_CHUNK consent ids and one per as many record ids. `elsewhere`: what
    the instances of the run's invited organisations say of their own leaves (organisation -> (consents revoked,
    records erased): training.invitations), which this instance's mirror does not hold."""
    entries = [entry for organisation in sorted(run.manifest) for entry in run.manifest[organisation]]
    consent_of = {entry["record_id"]: entry["consent_id"] for entry in entries}
    consents = set(consent_of.values())
    revoked = consents_revoked_among(consent_ids=sorted(consents))
    erased = records_erased_among(record_ids=list(consent_of))
    for their_revoked, their_erased in (elsewhere or {}).values():
        revoked |= their_revoked & consents
        erased |= their_erased & set(consent_of)
    return SinceTrained(
        records=len(consent_of),
        consents=len(consents),
        revoked_consents=len(revoked),
        erased_records=len(erased),
        withdrawn_consents=len(revoked | {consent_of[record_id] for record_id in erased}),
        counted_at=timezone.now().isoformat(),
    )
