"""The clinicians' analytics portal through Django's test client (the browser test is in tests/e2e/)."""

import re

import pytest
from django.test import Client
from django.urls import reverse

from analytics import views
from analytics.charts import histogram_svg
from analytics.diagnostic_models import breast_cancer_model
from analytics.models import AnalysisRequest, AnalysisStatus
from analytics.services import analysis_request_create
from tests.clients import html_of, signed_in
from tests.conftest import grant

VALID_PSEUDONYM = "cd" * 32


def stored_files(blob_dir):
    return sorted(p for p in blob_dir.rglob("*") if p.is_file()) if blob_dir.exists() else []


# --- who sees what -------------------------------------------------------------------------------


def _pages(analysis_id):
    return {
        "list": reverse("analytics:list"),
        "new": reverse("analytics:new"),
        "detail": reverse("analytics:detail", kwargs={"analysis_id": analysis_id}),
        "progress": reverse("analytics:progress", kwargs={"analysis_id": analysis_id}),
        "results": reverse("analytics:results", kwargs={"analysis_id": analysis_id}),
        "model-card": reverse("analytics:model-card", kwargs={"name": "breast-cancer"}),
    }


@pytest.mark.he
@pytest.mark.parametrize(
    ("who", "expected"),
    [
        ("patient_user", {"list": 403, "new": 403, "detail": 403, "progress": 403, "results": 403, "model-card": 200}),
        ("auditor", {"list": 403, "new": 403, "detail": 403, "progress": 403, "results": 403, "model-card": 200}),
        (
            "other_clinician",
            {"list": 200, "new": 200, "detail": 404, "progress": 404, "results": 404, "model-card": 200},
        ),
        ("clinician", {"list": 200, "new": 200, "detail": 200, "progress": 200, "results": 200, "model-card": 200}),
    ],
)
def test_each_role_reaches_exactly_its_pages(request, carols_request, who, expected):
    client = signed_in(request.getfixturevalue(who))
    for name, url in _pages(carols_request.id).items():
        response = client.get(url, headers={"HX-Request": "true"} if name in ("progress", "results") else {})
        assert response.status_code == expected[name], name
        if expected[name] != 200:
            assert str(carols_request.id) not in html_of(response)
            assert 'role="alert"' in html_of(response)


@pytest.mark.he
def test_anonymous_visitors_are_sent_to_sign_in(carols_request):
    for url in _pages(carols_request.id).values():
        response = Client().get(url)
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("login"))


@pytest.mark.he
@pytest.mark.he
def test_a_signed_out_poll_sends_the_whole_page_to_sign_in(carols_request):
    detail = reverse("analytics:detail", kwargs={"analysis_id": carols_request.id})
    progress = reverse("analytics:progress", kwargs={"analysis_id": carols_request.id})
    response = Client().get(progress, headers={"HX-Request": "true", "HX-Current-URL": f"http://testserver{detail}"})
    assert response.status_code == 200
    assert response["HX-Redirect"] == f"{reverse('login')}?next={detail}"


def test_another_clinicians_list_does_not_show_the_request(carols_request, other_clinician, clinician):
    assert str(carols_request.id) not in html_of(signed_in(other_clinician).get(reverse("analytics:list")))
    mine = html_of(signed_in(clinician).get(reverse("analytics:list")))
    assert f'data-analysis-id="{carols_request.id}"' in mine


def test_an_unknown_or_malformed_id_is_404(clinician, models_registered):
    client = signed_in(clinician)
    for analysis_id in ("not-a-uuid", "0" * 32):
        assert client.get(reverse("analytics:detail", kwargs={"analysis_id": analysis_id})).status_code == 404
    assert client.get(reverse("analytics:model-card", kwargs={"name": "no-such"})).status_code == 404


def test_clinicians_see_the_analyses_link_and_patients_do_not(clinician, patient_user, models_registered):
    link = f'href="{reverse("analytics:list")}"'
    assert link in html_of(signed_in(clinician).get(reverse("consent:granted-to-me")))
    assert link not in html_of(signed_in(patient_user).get(reverse("records:my-records")))


# --- the request form ----------------------------------------------------------------------------


def test_the_form_offers_registered_models_and_says_how_many_consented(cohort, clinician, models_registered, blob_dir):
    people = cohort(3)
    for user, patient, _ in people[:2]:
        grant(user, patient, clinician)

    html = html_of(signed_in(clinician).get(reverse("analytics:new")))

    assert '<option value="breast-cancer">' in html
    assert '<option value="diabetes-progression">' in html
    assert re.search(r'data-model="breast-cancer">.*?2 patients with a consent in force', html, re.S)
    assert re.search(r'data-model="diabetes-progression">.*?0 patients with a consent in force', html, re.S)
    assert '<label for="id_model">Diagnostic model</label>' in html
    assert '<label for="id_pseudonyms">Pseudonymous patient ids</label>' in html
    assert "csrfmiddlewaretoken" in html
    assert "python -m analytics.client" in html  # requester-held keys: the CLI's, not the form's
    assert 'name="key_mode"' not in html


@pytest.mark.parametrize(
    ("form", "field", "message"),
    [
        ({}, "model", "Choose a model."),
        ({"model": "no-such", "cohort_kind": "consented"}, "model", "Choose a model from the list."),
        ({"model": "breast-cancer", "cohort_kind": "explicit"}, "pseudonyms", "List at least one pseudonymous"),
        (
            {"model": "breast-cancer", "cohort_kind": "consented", "pseudonyms": VALID_PSEUDONYM},
            "pseudonyms",
            "You listed ids but chose everyone who consented",
        ),
        (
            {"model": "breast-cancer", "cohort_kind": "explicit", "pseudonyms": f"{VALID_PSEUDONYM}\nnot-an-id\nAB"},
            "pseudonyms",
            "Entries 2, 3 of your list are not pseudonymous ids",
        ),
    ],
)
def test_each_invalid_request_is_explained_by_its_field_and_nothing_is_stored(
    clinician, models_registered, blob_dir, form, field, message
):
    response = signed_in(clinician).post(reverse("analytics:new"), form)

    assert response.status_code == 400
    html = html_of(response)
    assert "The analysis was not requested." in html
    error = re.search(rf'<p class="field-error" id="id_{field}_error">(.*?)</p>', html, re.S)
    assert error is not None
    assert message in error.group(1)
    assert "not-an-id" not in error.group(1)
    assert AnalysisRequest.objects.count() == 0
    assert stored_files(blob_dir) == []


def test_a_cohort_over_the_limit_is_refused_by_the_service(clinician, models_registered, blob_dir, settings):
    settings.ANALYTICS_MAX_COHORT = 2
    ids = "\n".join(f"{i:064x}" for i in range(3))
    response = signed_in(clinician).post(
        reverse("analytics:new"), {"model": "breast-cancer", "cohort_kind": "explicit", "pseudonyms": ids}
    )
    assert response.status_code == 400
    assert "At most 2 patients per request." in html_of(response)
    assert AnalysisRequest.objects.count() == 0


def test_posting_without_the_csrf_token_is_refused(clinician, models_registered, blob_dir):
    client = Client(enforce_csrf_checks=True)
    client.force_login(clinician)
    response = client.post(reverse("analytics:new"), {"model": "breast-cancer", "cohort_kind": "consented"})
    assert response.status_code == 403
    assert AnalysisRequest.objects.count() == 0


# --- following a request -------------------------------------------------------------------------


@pytest.mark.he
def test_the_progress_panel_polls_while_queued_and_answers_204_when_nothing_changed(clinician, carols_request):
    client = signed_in(clinician)
    url = reverse("analytics:progress", kwargs={"analysis_id": carols_request.id})

    detail = html_of(client.get(reverse("analytics:detail", kwargs={"analysis_id": carols_request.id})))
    assert 'hx-trigger="every 1s"' in detail
    assert 'aria-live="polite"' in detail
    assert "Reload this page" in detail  # without JavaScript
    assert 'id="results-pending"' in detail
    assert 'hx-trigger="analysis-finished from:body"' in detail

    panel = client.get(url, headers={"HX-Request": "true"})
    assert panel.status_code == 200
    seen = re.search(r"\?seen=([^\"]+)\"", html_of(panel)).group(1)
    assert client.get(url, {"seen": seen}, headers={"HX-Request": "true"}).status_code == 204
    # Without htmx the panel's address is the request's page.
    assert client.get(url).status_code == 302


@pytest.mark.he
@pytest.mark.django_db(transaction=True)
def test_a_request_from_the_form_completes_and_its_page_shows_the_results(
    consented, clinician, models_registered, blob_dir, eager
):
    people = consented(5, not_consenting=1)
    client = signed_in(clinician)

    response = client.post(reverse("analytics:new"), {"model": "breast-cancer", "cohort_kind": "consented"})

    analysis = AnalysisRequest.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("analytics:detail", kwargs={"analysis_id": analysis.id})
    assert analysis.status == AnalysisStatus.COMPLETED
    page = client.get(response["Location"])
    html = html_of(page)
    assert page.status_code == 200
    rows = re.findall(r'<tr data-record-id="([^"]+)">', html)
    assert sorted(rows) == sorted(str(record.id) for _, _, record in people[:4])
    assert 'data-status="completed"' in html
    assert 'hx-trigger="every' not in html  # no polling once finished
    assert breast_cancer_model().sha256 in html  # the result page cites the model hash
    svg = re.search(r"<svg class=\"chart\".*?</svg>", html, re.S).group(0)
    assert 'role="img"' in svg
    assert f'<title id="histogram-{analysis.id}-title">Distribution of breast-cancer scores</title>' in svg
    assert "Histogram of 4 scores from 0 to 1 in 10 bins" in svg
    assert svg.count('<rect class="bar"') == 10
    assert 'data-summary="count">4<' in html
    for _, patient, _ in people[:4]:
        assert patient.pseudonym in html
    assert people[4][1].pseudonym not in html
    # The progress panel, polled once more, tells the page to load the results.
    panel = client.get(
        reverse("analytics:progress", kwargs={"analysis_id": analysis.id}), headers={"HX-Request": "true"}
    )
    assert panel["HX-Trigger"] == "analysis-finished"
    results = client.get(
        reverse("analytics:results", kwargs={"analysis_id": analysis.id}), headers={"HX-Request": "true"}
    )
    assert len(re.findall(r"<tr data-record-id=", html_of(results))) == 4


@pytest.mark.he
@pytest.mark.django_db(transaction=True)
def test_results_are_paged(cohort, clinician, models_registered, blob_dir, eager, monkeypatch):
    monkeypatch.setattr(views, "RESULT_ROWS_PER_PAGE", 2)
    people = cohort(3)
    for user, patient, _ in people:
        grant(user, patient, clinician)
    analysis = analysis_request_create(requester=clinician, model_name="breast-cancer", cohort_kind="consented")
    url = reverse("analytics:detail", kwargs={"analysis_id": analysis.id})
    client = signed_in(clinician)

    first, second = html_of(client.get(url)), html_of(client.get(url, {"page": 2}))

    assert len(re.findall(r"<tr data-record-id=", first)) == 2
    assert len(re.findall(r"<tr data-record-id=", second)) == 1
    assert "Page 2 of 2" in second


@pytest.mark.he
@pytest.mark.django_db(transaction=True)
def test_a_failed_request_says_why_in_words_and_by_code(
    clinician, models_registered, blob_dir, ledger_gone_after_consent
):
    ledger_gone_after_consent()
    analysis = analysis_request_create(requester=clinician, model_name="breast-cancer", cohort_kind="consented")

    html = html_of(signed_in(clinician).get(reverse("analytics:detail", kwargs={"analysis_id": analysis.id})))

    assert 'data-status="failed"' in html
    assert 'data-failure-code="ledger_unavailable"' in html
    assert "The ledger could not confirm consent and integrity, so nothing was computed." in html
    assert "A failed analysis shows no results." in html
    assert 'hx-trigger="every' not in html


def test_failure_messages_for_partial_and_unknown_failures():
    assert views.failure_message("ledger_unavailable", scored=3) == (
        "The ledger could not confirm consent and integrity, so the analysis stopped after 3 records. "
        "A failed analysis shows no results: request it again."
    )
    assert "refused to record the access" in views.failure_message("ledger_rejected_invalid_event", scored=0)
    assert views.failure_message("something_new", scored=0) == views.FAILURE_MESSAGE_DEFAULT


@pytest.mark.he
def test_a_requester_held_request_shows_progress_but_never_decrypts(
    clinician, models_registered, blob_dir, queued, monkeypatch
):
    from analytics.he import TenSEALEngine

    keys = TenSEALEngine().keygen()
    analysis = analysis_request_create(
        requester=clinician,
        model_name="breast-cancer",
        cohort_kind="consented",
        key_mode="requester",
        public_context=keys.public,
    )
    AnalysisRequest.objects.filter(pk=analysis.pk).update(status=AnalysisStatus.COMPLETED)

    def must_not_open(**kwargs):
        raise AssertionError("the portal tried to open a secret context")

    monkeypatch.setattr("analytics.selectors.secret_context_open", must_not_open)
    html = html_of(signed_in(clinician).get(reverse("analytics:detail", kwargs={"analysis_id": analysis.id})))

    assert 'id="results-held"' in html
    assert "the platform cannot read its results" in html


# --- model card and chart ------------------------------------------------------------------------


def test_the_model_card_shows_features_metrics_hash_and_anchor(clinician, models_registered, ledger):
    model = models_registered["breast-cancer"]

    html = html_of(signed_in(clinician).get(reverse("analytics:model-card", kwargs={"name": "breast-cancer"})))

    assert f'<code class="sha" data-model-sha256>{model.sha256}</code>' in html
    assert f'<code class="tx" data-anchor-tx>{model.anchor_tx_id}</code>' in html
    assert f"<span data-anchor-block>{ledger.locate(model.anchor_tx_id).block_number}</span>" in html
    assert html.count('<td data-label="Code">') == 30
    assert "Nucleus radius (mean distance from centre to perimeter), mean" in html
    assert re.search(r'<tr data-metric="accuracy"><td>Accuracy</td><td>0\.\d+</td>', html)
    assert "Running the breast-cancer diagnostic model" in html


def test_the_histogram_is_accessible_svg_with_escaped_text():
    bins = [{"from": i / 4, "to": (i + 1) / 4, "count": c} for i, c in enumerate([1, 0, 3, 2])]

    svg = str(histogram_svg(bins, chart_id="h1", title="<script>x</script>", x_label="P & Q", threshold=0.5))

    assert svg.startswith('<svg class="chart" id="h1"')
    assert 'role="img" aria-labelledby="h1-title h1-desc"' in svg
    assert "<script>" not in svg
    assert '<title id="h1-title">&lt;script&gt;x&lt;/script&gt;</title>' in svg
    assert "0.25 to 0.5: 0; 0.5 to 0.75: 3" in svg
    assert svg.count('<rect class="bar"') == 4
    assert "<title>0.5 to 0.75: 3 records</title>" in svg
    assert 'class="threshold"' in svg
    assert "P &amp; Q" in svg
    assert str(histogram_svg([], chart_id="h2", title="t", x_label="x")) == ""
