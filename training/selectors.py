"""Reads: the records each organisation offers a run, a steward's training runs, their lineage as the manifest
rebuilds it, and inclusion proofs."""

import uuid
from dataclasses import dataclass
from typing import Any

from django.db.models import QuerySet

from analytics.selectors import declared_model_of_family, diagnostic_model_get
from chaincode.vocabulary import REASON_LABELS, training_purpose
from consent.models import Consent
from consent.selectors import consents_listing, consents_with_effective_status
from health_platform import bootstrap
from health_platform.errors import NotFound, ValidationFailed
from health_platform.models import Organisation
from records.selectors import record_versions_usable_for_analysis
from training.access import user_may_read_training_run, user_may_request_training
from training.lineage import lineage_roots, training_record_proof
from training.models import TrainingRound, TrainingRun, TrainingStatus

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
    number of patients. An unknown family is ValidationFailed unknown_model."""
    spec = declared_model_of_family(family=family)
    if spec is None:
        raise ValidationFailed("No model of this family is declared.", code="unknown_model", detail={"field": "family"})
    grantees = [organisation.grantee_id for organisation in Organisation.objects.order_by("slug")]
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
            offered=len(run.organisations.get(organisation, [])),
            admitted=int(run.organisation_counts.get(organisation, {}).get("admitted", 0)),
            refused=dict(run.organisation_counts.get(organisation, {}).get("refused", {})),
            skipped=dict(run.organisation_counts.get(organisation, {}).get("skipped", {})),
        )
        for organisation in sorted(run.organisations)
    ]
    lineage = None
    if run.status == TrainingStatus.COMPLETED:
        model = diagnostic_model_get(name=run.model_name, version=run.model_version)
        lineage = dict(model.lineage) if model is not None and model.lineage else None
    return RunOverview(run=run, rounds=list(run.rounds.order_by("index")), organisations=organisations, lineage=lineage)


def training_run_lineage_differences(*, run: TrainingRun) -> list[str]:
    """What differs between the lineage on the ledger and the one rebuilt from the run's kept manifest: the names of
    the fields (per organisation: "org:<slug>.<field>") whose values are not equal. Empty: they agree."""
    on_ledger = bootstrap.contracts().read_training_run(str(run.pk))
    if on_ledger is None:
        return ["run"]
    parts, overall = lineage_roots(run.manifest)
    fields = ("training_set_root", "consent_root", "record_count", "consent_count")
    differences = [name for name in fields if getattr(overall, name) != getattr(on_ledger, name)]
    ledger_parts = {part.organisation: part for part in on_ledger.organisations}
    if set(ledger_parts) != {part.organisation for part in parts}:
        differences.append("organisations")
    for part in parts:
        kept = ledger_parts.get(part.organisation)
        differences += [
            f"{part.organisation}.{name}"
            for name in fields
            if kept is not None and getattr(part, name) != getattr(kept, name)
        ]
    return differences


def training_record_proof_document(*, run: TrainingRun, record_id: str) -> dict[str, Any] | None:
    """The inclusion proof of a record in the run's training set, against the overall root on the ledger (None if
    the run did not use it)."""
    about = {"run_id": str(run.pk), "model": f"{run.model_name}@{run.model_version}"}
    return training_record_proof(run.manifest, record_id=record_id, about=about)
