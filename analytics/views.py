"""The clinicians' analytics portal: request an analysis, follow its progress, read its results; model cards.

Server-rendered; htmx only enhances: while a request is queued or running, its progress panel asks for
itself again every second and stops once the request is completed or failed, when the results panel
loads in place. Without JavaScript the page says how to follow the progress (reload), and everything
else works. Writes go through analytics.services, reads through analytics.selectors; who may see what
is decided in analytics.api (the same rules as the API).

Results are decrypted here, in the web process, only when their page is shown (portal-held keys);
requests with requester-held keys show the progress only: the platform cannot read their results.
"""

import re
from dataclasses import dataclass
from typing import Any

import structlog
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from analytics.access import analysis_of_requester, user_may_read_model_cards, user_may_request_analyses
from analytics.charts import histogram_svg
from analytics.forms import AnalysisRequestForm
from analytics.models import FINISHED, AnalysisRequest, AnalysisStatus, CohortKind, KeyMode
from analytics.selectors import (
    ModelCard,
    Progress,
    Results,
    analyses_of,
    analysis_progress,
    analysis_results,
    diagnostic_model_card,
    diagnostic_model_get,
    diagnostic_models_latest,
)
from analytics.services import analysis_request_cancel, analysis_request_create
from chaincode.vocabulary import REASON_LABELS
from consent.selectors import consents_granted_to, consents_with_effective_status
from health_platform.errors import Conflict, NotFound, PermissionDenied, ValidationFailed
from health_platform.portal import object_panel, object_view, refused
from health_platform.roles import model_steward_actor
from health_platform.wording import failure_words

log = structlog.get_logger(__name__)

RESULT_ROWS_PER_PAGE = 100
PSEUDONYM = re.compile(r"[0-9a-f]{64}")
LIST_PER_PAGE = 25
FINISHED_EVENT = "analysis-finished"

# What a clinician reads for a failed request's code.
FAILURE_MESSAGES: dict[str, str] = {
    "ledger_unavailable": "The ledger could not confirm consent and integrity, so nothing was computed.",
}
FAILURE_MESSAGE_REJECTED = "The ledger refused to record the access, so nothing was computed."
FAILURE_MESSAGE_DEFAULT = "The analysis stopped before it was complete, so nothing more was computed."

METRIC_LABELS: dict[str, str] = {
    "accuracy": "Accuracy",
    "roc_auc": "Area under the ROC curve",
    "r2": "R² (coefficient of determination)",
    "mae": "Mean absolute error",
    "test_records": "Records in the test split",
    "train_records": "Records in the training split",
    "validation_records": "Records held out to validate (federated training)",
}


@dataclass(frozen=True)
class ProgressView:
    """A request's progress as the panel shows it."""

    analysis: AnalysisRequest
    progress: Progress
    refusals: list[tuple[str, str, int]]
    finished: bool
    percent: int | None
    failure_message: str

    @property
    def fingerprint(self) -> str:
        """Changes whenever anything the panel shows changes: a poll that sees the same gets 204, no swap."""
        p = self.progress
        return f"{p.status}-{p.total}-{p.gated}-{p.admitted}-{p.refused}-{p.scored}-{p.batches_done}-{p.batches}"


def failure_message(code: str, *, scored: int) -> str:
    """What a clinician reads for a failed request (its code is shown beside it)."""
    message = failure_words(
        code, FAILURE_MESSAGES, rejected=FAILURE_MESSAGE_REJECTED, otherwise=FAILURE_MESSAGE_DEFAULT
    )
    if scored:
        # Batches scored before the failure were gated and logged; the portal still shows no partial results.
        message = (
            message.split(", so ")[0] + f", so the analysis stopped after {scored} record{'' if scored == 1 else 's'}. "
            "A failed analysis shows no results: request it again."
        )
    return message


def progress_view(analysis: AnalysisRequest) -> ProgressView:
    progress = analysis_progress(request=analysis)
    finished = progress.status in FINISHED
    done = progress.scored + progress.refused
    percent = None
    if progress.total:
        percent = min(100, round(100 * done / progress.total))
    elif progress.status == AnalysisStatus.COMPLETED:
        percent = 100
    return ProgressView(
        analysis=analysis,
        progress=progress,
        refusals=sorted(
            ((reason, REASON_LABELS.get(reason, reason.replace("_", " ")), count))
            for reason, count in progress.refusals.items()
        ),
        finished=finished,
        percent=percent,
        failure_message=failure_message(progress.failure_code, scored=progress.scored)
        if progress.status == AnalysisStatus.FAILED
        else "",
    )


# --- pages ---------------------------------------------------------------------------------------


@login_required
@require_GET
def analysis_list(request: HttpRequest) -> HttpResponse:
    """The clinician's own requests, newest first."""
    if not user_may_request_analyses(request.user):
        return _forbidden(request, "This page is for clinicians.")
    page = Paginator(analyses_of(user=request.user), LIST_PER_PAGE).get_page(request.GET.get("page"))
    rows = [progress_view(analysis) for analysis in page.object_list]
    return render(request, "analytics/list.html", {"page": page, "rows": rows})


@login_required
@require_http_methods(["GET", "POST"])
def analysis_new(request: HttpRequest) -> HttpResponse:
    """The request form; on success, the new request's page, where its progress shows."""
    if not user_may_request_analyses(request.user):
        return _forbidden(request, "This page is for clinicians.")
    cards = [diagnostic_model_card(model=model) for model in diagnostic_models_latest()]
    if request.method == "GET":
        return _render_selected(request, cards)
    # (A body over DATA_UPLOAD_MAX_MEMORY_SIZE is refused with 400 by Django before this view runs.)
    form = AnalysisRequestForm(request.POST, cards=cards)
    if not form.is_valid():
        return _render_new(request, form, cards, status=400)
    kind = form.cleaned_data["cohort_kind"]
    try:
        analysis = analysis_request_create(
            requester=request.user,
            model_name=form.cleaned_data["model"],
            cohort_kind=kind,
            pseudonyms=form.cleaned_data["pseudonym_list"] if kind == CohortKind.EXPLICIT else None,
            key_mode=KeyMode.PORTAL,
        )
    except (ValidationFailed, Conflict) as error:
        form.add_service_error(error)
        return _render_new(request, form, cards, status=409 if isinstance(error, Conflict) else 400)
    except PermissionDenied as error:
        if error.code == "grantee_inactive":
            return _forbidden(request, error.message)
        return _forbidden(request, "Your account is not registered as a clinician who can request analyses.")
    return redirect("analytics:detail", analysis_id=analysis.pk)


def _render_selected(request: HttpRequest, cards: list[ModelCard]) -> HttpResponse:
    """The request form, pre-filled with the patients selected on "Consents granted to me" (`?patient=<64-char
    pseudonym>`, repeated; `?model=<name>`): their full ids, so that nobody copies them. A selection that is not
    pseudonymous ids is answered 400 `invalid_selection`, naming the entries, never their values."""
    selected = list(dict.fromkeys(value.strip().lower() for value in request.GET.getlist("patient")))
    model = request.GET.get("model", "")
    if not selected and not model:
        return _render_new(request, AnalysisRequestForm(cards=cards), cards)
    initial: dict[str, Any] = {"model": model}
    if selected:
        initial.update(cohort_kind=CohortKind.EXPLICIT, pseudonyms="\n".join(selected))
    form = AnalysisRequestForm(initial=initial, cards=cards)
    wrong = [index for index, value in enumerate(selected) if not PSEUDONYM.fullmatch(value)]
    if wrong:
        form = AnalysisRequestForm(cards=cards)
        entries = ", ".join(str(index + 1) for index in wrong)
        one = len(wrong) == 1
        message = f"Selected entr{'y' if one else 'ies'} {entries} {'is' if one else 'are'} not a pseudonymous id."
        return _render_new(request, form, cards, status=400, selection_error=("invalid_selection", message))
    return _render_new(request, form, cards, selected=len(selected))


def _own_analysis(request: HttpRequest, analysis_id: str) -> AnalysisRequest | HttpResponse:
    if not user_may_request_analyses(request.user):
        return _forbidden(request, "This page is for clinicians.")
    try:
        return analysis_of_requester(user=request.user, analysis_id=analysis_id)
    except NotFound:
        log.info("analytics_portal_analysis_not_found", user_id=request.user.pk)
        return _not_found(request, "There is no such analysis among yours.")


@login_required
@require_GET
@object_view(_own_analysis)
def analysis_detail(request: HttpRequest, analysis: AnalysisRequest) -> HttpResponse:
    """A request: what was asked, its progress and, once completed with portal-held keys, its results."""
    context: dict[str, Any] = {
        "analysis": analysis,
        "live": progress_view(analysis),
        "card": diagnostic_model_card(model=analysis.model),
    }
    context.update(_results_context(request, analysis))
    return render(request, "analytics/detail.html", context)


@login_required
@require_POST
@object_view(_own_analysis)
def analysis_cancel(request: HttpRequest, analysis: AnalysisRequest) -> HttpResponse:
    """Cancel the analysis (a button on its page); back to the page, which says what became of it."""
    try:
        analysis_request_cancel(requester=request.user, request=analysis)
    except Conflict:
        messages.info(request, "The analysis had already finished; nothing was cancelled.")
    else:
        messages.success(request, "The analysis is cancelled: nothing more of it will be computed.")
    return redirect("analytics:detail", analysis_id=analysis.pk)


@object_panel(_own_analysis, page=lambda analysis: reverse("analytics:detail", args=[analysis.pk]))
def analysis_progress_panel(request: HttpRequest, analysis: AnalysisRequest) -> HttpResponse:
    """The progress panel alone, for htmx polling. Once finished it tells the page to load the results."""
    live = progress_view(analysis)
    if not live.finished and request.GET.get("seen") == live.fingerprint:
        return HttpResponse(status=204)  # nothing new: htmx keeps the panel (and screen readers stay quiet)
    response = render(request, "analytics/_progress.html", {"analysis": analysis, "live": live})
    if live.finished:
        response["HX-Trigger"] = FINISHED_EVENT
    return response


@object_panel(_own_analysis, page=lambda analysis: f"{reverse('analytics:detail', args=[analysis.pk])}#results")
def analysis_results_panel(request: HttpRequest, analysis: AnalysisRequest) -> HttpResponse:
    """The results panel alone (loaded in place when the request finishes)."""
    context = {"analysis": analysis, "live": progress_view(analysis), **_results_context(request, analysis)}
    return render(request, "analytics/_results.html", context)


@login_required
@require_GET
def model_card(request: HttpRequest, name: str) -> HttpResponse:
    """A model card: what the model reads, how it was tested, and its weights' hash on the ledger."""
    if not user_may_read_model_cards(request.user):
        return _forbidden(
            request, "Model cards are for signed-in patients, clinicians, auditors, custodians and model stewards."
        )
    model = diagnostic_model_get(name=name, version=request.GET.get("version"))
    if model is None:
        return _not_found(request, "There is no such model.")
    card = diagnostic_model_card(model=model)
    metrics = [(code, METRIC_LABELS.get(code, code), value) for code, value in card.metrics.items()]
    # A trained model's steward is linked back to the run that trained it (the run's page is theirs alone).
    own_run = bool(card.lineage) and card.lineage.get("steward") == model_steward_actor(request.user)
    terms = sorted((name.replace("_", " "), value) for name, value in card.lineage.get("hyperparameters", {}).items())
    context = {"card": card, "metrics": metrics, "own_run": own_run, "lineage_terms": terms}
    return render(request, "analytics/model_card.html", context)


# --- helpers -------------------------------------------------------------------------------------


def _results_context(request: HttpRequest, analysis: AnalysisRequest) -> dict[str, Any]:
    """Decrypts the scores (portal mode, completed requests): only here, only when the page is shown."""
    if analysis.status != AnalysisStatus.COMPLETED or analysis.key_mode != KeyMode.PORTAL:
        return {"results": None}
    results: Results = analysis_results(request=analysis, viewer=request.user)
    log.info("analysis_results_read", request_id=str(analysis.pk), user_id=request.user.pk, rows=len(results.rows))
    rows = sorted(results.rows, key=lambda row: row.score, reverse=True)
    page = Paginator(rows, RESULT_ROWS_PER_PAGE).get_page(request.GET.get("page"))
    logistic = results.kind == "logistic"
    card = diagnostic_model_card(model=analysis.model)
    x_label = f"Probability of {card.positive_label}" if logistic else "Predicted value"
    chart = histogram_svg(
        results.histogram(),
        chart_id=f"histogram-{analysis.pk}",
        title=f"Distribution of {results.model_name} scores",
        x_label=x_label,
        threshold=0.5 if logistic else None,
        threshold_label="threshold 0.5" if logistic else "",
    )
    summary = results.summary()
    return {
        "results": results,
        "card": card,
        "summary": summary,
        "label_counts": sorted(summary.get("labels", {}).items()),
        "result_page": page,
        "chart": chart,
        "histogram": results.histogram(),
        "score_label": x_label,
        "logistic": logistic,
    }


def _render_new(
    request: HttpRequest,
    form: AnalysisRequestForm,
    cards: list[ModelCard],
    status: int = 200,
    *,
    selected: int = 0,
    selection_error: tuple[str, str] | None = None,
) -> HttpResponse:
    consented = _consented_patients_by_purpose(request.user)
    models = [(card, consented.get(card.purpose, 0)) for card in cards if card.available]
    context = {
        "form": form,
        "models": models,
        "max_cohort": f"{settings.ANALYTICS_MAX_COHORT:,}",
        "selected": selected,
        "selection_error": selection_error,
    }
    return render(request, "analytics/new.html", context, status=status)


def _consented_patients_by_purpose(user: Any) -> dict[str, int]:
    """How many patients' consents in force name the user (or their organisation), per purpose.

    From the consent mirror, for orientation only: the ledger decides, record by record, when each batch runs.
    """
    patients: dict[str, set[Any]] = {}
    for consent in consents_with_effective_status(consents_granted_to(user=user), "active"):
        for purpose in consent.purposes:
            patients.setdefault(purpose, set()).add(consent.patient_id)
    return {purpose: len(ids) for purpose, ids in patients.items()}


def _forbidden(request: HttpRequest, message: str) -> HttpResponse:
    return refused(request, message, status=403, base="analytics/base.html")


def _not_found(request: HttpRequest, message: str) -> HttpResponse:
    back = (reverse("analytics:list"), "Go to your analyses") if user_may_request_analyses(request.user) else None
    return refused(request, message, status=404, base="analytics/base.html", back=back)
