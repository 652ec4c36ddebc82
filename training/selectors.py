"""Reads: a steward's training runs, their lineage as the manifest rebuilds it, and inclusion proofs."""

from dataclasses import asdict, dataclass
from typing import Any

from django.db.models import QuerySet
from django.utils import timezone

from consent.selectors import consents_revoked_among
from health_platform import bootstrap
from health_platform.errors import NotFound
from records.selectors import records_erased_among
from training.access import user_may_read_training_run, user_may_request_training
from training.lineage import lineage_roots, training_record_proof
from training.models import TrainingRun


def training_runs_of_steward(*, steward: Any) -> QuerySet[TrainingRun]:
    """The runs `steward` asked for, newest first (none for anyone who is not a model steward)."""
    if not user_may_request_training(steward):
        return TrainingRun.objects.none()
    return TrainingRun.objects.filter(steward=steward).prefetch_related("rounds")


def training_run_get(*, viewer: Any, run_id: Any) -> TrainingRun:
    """A run its steward may read; NotFound for anyone else (another steward's run is not shown to exist)."""
    run = TrainingRun.objects.filter(pk=run_id).first()
    if run is None or not user_may_read_training_run(viewer, run):
        raise NotFound("No such training run.")
    return run


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


def trained_model_since_trained(*, run: TrainingRun) -> SinceTrained:
    """Count a completed run's manifest against the consent mirror and the erasures: a bounded number of queries,
    one per health_platform.selectors.IN_LIST_CHUNK consent ids and one per as many record ids."""
    entries = [entry for organisation in sorted(run.manifest) for entry in run.manifest[organisation]]
    consent_of = {entry["record_id"]: entry["consent_id"] for entry in entries}
    consents = set(consent_of.values())
    revoked = consents_revoked_among(consent_ids=sorted(consents))
    erased = records_erased_among(record_ids=list(consent_of))
    return SinceTrained(
        records=len(consent_of),
        consents=len(consents),
        revoked_consents=len(revoked),
        erased_records=len(erased),
        withdrawn_consents=len(revoked | {consent_of[record_id] for record_id in erased}),
        counted_at=timezone.now().isoformat(),
    )
