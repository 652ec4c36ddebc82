"""The model steward's training portal: request a training run, follow its rounds, read what it left.

Built like the clinicians' analytics portal (analytics.views) and on its partials: the same base, status badge and
pager, and the same progress mechanism: while a run is queued or running its progress panel asks for itself every
second (htmx), gets 204 when nothing changed, and stops once the run has completed or failed. Without JavaScript the
page says to reload. Writes go through training.services, reads through training.selectors; who may see what is
decided in training.access (the API's rules too).

And the patient's "Models my records trained": each model a completed training run produced from their records,
which records (never a clinical value), how they were used, the consent that admitted them and whether it has since
been revoked; and, per record, the inclusion proof to download and check offline (python -m chaincode.merkle verify).
"""

import json
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import structlog
from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods

from analytics.selectors import declared_model_families
from chaincode.vocabulary import CATEGORIES
from health_platform.errors import ApplicationError, NotFound, PermissionDenied, ValidationFailed
from health_platform.portal import object_panel, object_view, refused
from health_platform.wording import failure_words
from records.selectors import patient_of
from training.access import user_may_request_training, user_may_see_models_trained_on_own_records
from training.forms import KIND_EXPLANATIONS, TrainingRunForm
from training.models import TrainingRun
from training.selectors import (
    RunOverview,
    models_trained_on_patient,
    training_candidates_offered,
    training_record_proof_for_patient,
    training_run_get,
    training_run_overview,
    training_runs_of_steward,
)
from training.services import DEFAULT_RIDGE, DEFAULT_ROUNDS, training_run_request

log = structlog.get_logger(__name__)

LIST_PER_PAGE = 25
FINISHED_EVENT = "training-run-finished"
BASE = "analytics/base.html"
STEWARDS_ONLY = "This page is for model stewards."

# What a steward reads for a failed run's code (the code is shown beside it).
FAILURE_MESSAGES: dict[str, str] = {
    "ledger_unavailable": "The ledger did not answer, so no record was used and no lineage was written.",
    "no_admitted_records": "The ledger admitted none of the records offered: no model was trained.",
    "organisation_failed": "An organisation could not compute its update, so the run stopped before its end.",
    "organisation_missing": "An organisation did not answer a round, so the run stopped before its end.",
    "federation_error": "The federation between the organisations broke off, so the run stopped before its end.",
    "aggregator_unreachable": "The organisations could not reach the aggregator: no round ran.",
    "aggregator_failed": "The aggregator stopped during the run, so the run stopped before its end.",
    "context_not_keyless": "The aggregator was handed a key that could decrypt and refused to start: no round ran.",
    # One platform instance per organisation (training.invitations)
    "organisation_unreachable": "Another organisation's platform did not answer before the run's deadline: no model "
    "was trained.",
    "organisation_unknown": "A client that is not one of the run's organisations sent an update; it was not summed "
    "and the run stopped.",
    "invitation_refused": "Another organisation's platform refused the run's invitation (its code is in its log).",
    "peer_outcome_invalid": "Another organisation's platform sent back a training set that is not one: no lineage "
    "was written.",
    "peer_not_configured": "An organisation invited to the run is no longer among this platform's peers.",
}
FAILURE_MESSAGE_REJECTED = "The ledger refused the run's lineage, so no model was registered."
FAILURE_MESSAGE_DEFAULT = "The run stopped before its end: no model was registered."


@dataclass(frozen=True)
class FamilyChoice:
    """A model family as the request form offers it: what it learns, its defaults, and what is offered for it."""

    family: str
    kind: str
    category_label: str
    explanation: str
    default_rounds: int
    default_ridge: float
    offered_records: int
    invited: int  # other organisations' platform instances, invited when the run starts (they count their own)
    organisations: int


# --- pages ---------------------------------------------------------------------------------------


@login_required
@require_GET
def training_run_list(request: HttpRequest) -> HttpResponse:
    """The steward's own runs, newest first."""
    if not user_may_request_training(request.user):
        return _forbidden(request)
    page = Paginator(training_runs_of_steward(steward=request.user), LIST_PER_PAGE).get_page(request.GET.get("page"))
    return render(request, "training/list.html", {"page": page})


@login_required
@require_http_methods(["GET", "POST"])
def training_run_new(request: HttpRequest) -> HttpResponse:
    """The request form; on success, the new run's page, where its rounds show as they are opened."""
    if not user_may_request_training(request.user):
        return _forbidden(request)
    families = declared_model_families()
    if request.method == "GET":
        return _render_new(request, TrainingRunForm(families=families), families)
    form = TrainingRunForm(request.POST, families=families)
    if not form.is_valid():
        return _render_new(request, form, families, status=400)
    try:
        run = training_run_request(steward=request.user, **form.cleaned_data)
    except ValidationFailed as error:
        form.add_service_error(error)
        return _render_new(request, form, families, status=400)
    except PermissionDenied:
        return _forbidden(request)
    return redirect("training:detail", run_id=run.pk)


def _own_run(request: HttpRequest, run_id: str) -> TrainingRun | HttpResponse:
    if not user_may_request_training(request.user):
        return _forbidden(request)
    try:
        return training_run_get(viewer=request.user, run_id=run_id)
    except NotFound:
        log.info("training_portal_run_not_found", user_id=request.user.pk)
        back = (reverse("training:list"), "Go to your training runs")
        return refused(request, "There is no such training run among yours.", status=404, base=BASE, back=back)


@login_required
@require_GET
@object_view(_own_run)
def training_run_detail(request: HttpRequest, run: TrainingRun) -> HttpResponse:
    """A run: what was asked, its rounds as they are opened, its organisations' counts, and once completed its
    lineage and a link to the trained model's card."""
    overview = training_run_overview(run=run)
    return render(request, "training/detail.html", {"run": run, "live": _live(overview)})


@object_panel(_own_run, page=lambda run: reverse("training:detail", args=[run.pk]))
def training_run_progress_panel(request: HttpRequest, run: TrainingRun) -> HttpResponse:
    """The progress panel alone, for htmx polling: 204 while nothing changed; once finished, the whole panel."""
    live = _live(training_run_overview(run=run))
    if not live.overview.finished and request.GET.get("seen") == live.overview.fingerprint:
        return HttpResponse(status=204)
    response = render(request, "training/_progress.html", {"run": run, "live": live})
    if live.overview.finished:
        response["HX-Trigger"] = FINISHED_EVENT
    return response


# --- helpers -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LiveRun:
    """A run's progress as its panel shows it."""

    overview: RunOverview
    rounds_done: int
    failure_message: str


def _live(overview: RunOverview) -> LiveRun:
    run = overview.run
    return LiveRun(
        overview=overview,
        rounds_done=len(overview.rounds),
        failure_message=failure_words(
            run.failure_code, FAILURE_MESSAGES, rejected=FAILURE_MESSAGE_REJECTED, otherwise=FAILURE_MESSAGE_DEFAULT
        )
        if run.status == "failed"
        else "",
    )


def _render_new(
    request: HttpRequest, form: TrainingRunForm, families: dict[str, Any], status: int = 200
) -> HttpResponse:
    choices = []
    for family, spec in families.items():
        offered = training_candidates_offered(family=family)
        choices.append(
            FamilyChoice(
                family=family,
                kind=spec.kind,
                category_label=CATEGORIES.get(spec.category, spec.category),
                explanation=KIND_EXPLANATIONS.get(spec.kind, ""),
                default_rounds=DEFAULT_ROUNDS[spec.kind],
                default_ridge=DEFAULT_RIDGE[spec.kind],
                offered_records=sum(len(ids) for ids in offered.values()),
                organisations=len(offered),
                invited=len(settings.TRAINING_FEDERATION_PEERS),
            )
        )
    return render(request, "training/new.html", {"form": form, "families": choices}, status=status)


def _forbidden(request: HttpRequest) -> HttpResponse:
    return refused(request, STEWARDS_ONLY, status=403, base=BASE)


PATIENT_BASE = "consent/base.html"


@login_required
@require_GET
def my_models(request: HttpRequest) -> HttpResponse:
    """The models the signed-in patient's records trained, newest first."""
    if not user_may_see_models_trained_on_own_records(request.user):
        return refused(request, "This page is for patients.", status=403, base=PATIENT_BASE)
    patient = patient_of(request.user)
    return render(
        request, "training/my_models.html", {"models": models_trained_on_patient(patient=patient), "patient": patient}
    )


@login_required
@require_GET
def my_model_proof(request: HttpRequest, run_id: UUID, record_id: UUID) -> HttpResponse:
    """The inclusion proof of one of the patient's records in a run's training set, as a JSON file."""
    if not user_may_see_models_trained_on_own_records(request.user):
        return refused(request, "This page is for patients.", status=403, base=PATIENT_BASE)
    back = (reverse("training:my-models"), "Models my records trained")
    try:
        document = training_record_proof_for_patient(
            patient=patient_of(request.user), run_id=run_id, record_id=record_id
        )
    except ApplicationError as error:
        return refused(request, error.message, status=error.status, base=PATIENT_BASE, back=back)
    return proof_download(document)


def proof_download(document: dict) -> HttpResponse:
    """A proof document as an attachment named after the model and the record it proves."""
    response = HttpResponse(json.dumps(document, indent=2, sort_keys=True) + "\n", content_type="application/json")
    name = f"training-proof-{document['about']['model'].replace('@', '-')}-{document['leaf']['record_id']}.json"
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response
