"""The custodian's portal: upload a FHIR bundle and read its per-entry report (stored, refused: by entry index and
stable code, never values), the ingest history, and only custodians (and the superuser) get there."""

import re

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import override_settings
from django.urls import reverse

from records.models import IngestRun, Record
from records.services import record_ingest
from tests.clients import html_of, shown_text, signed_in
from tests.records.factories import UserFactory, bundle, encode, patient_with_observations

pytestmark = pytest.mark.django_db

INGEST = "records:ingest"
HISTORY = "records:ingest-history"
HTMX = {"HX-Request": "true"}


def upload(document_or_bytes, name: str = "bundle.json") -> dict:
    body = document_or_bytes if isinstance(document_or_bytes, bytes) else encode(document_or_bytes)
    return {"bundle": SimpleUploadedFile(name, body, content_type="application/fhir+json")}


def entries(html: str) -> list[tuple[str, str]]:
    return re.findall(r'<tr data-entry="(\d+)" data-status="([a-z_]+)">', html)


def test_a_stored_bundle_is_reported_entry_by_entry(custodian, ledger):
    document = bundle(
        *patient_with_observations(mrn="MRN-UP-1", values=(87.0, 91.5)),
        *patient_with_observations(mrn="MRN-UP-2", values=(55.5,), category_code="imaging"),
    )

    response = signed_in(custodian).post(reverse(INGEST), upload(document))

    html = html_of(response)
    assert response.status_code == 200
    assert 'data-outcome="stored"' in html
    assert entries(html) == [
        ("0", "patient"),
        ("1", "stored"),
        ("2", "stored"),
        ("3", "patient"),
        ("4", "stored"),
    ]
    assert Record.objects.count() == 2
    run = IngestRun.objects.get()
    assert (run.outcome, run.source, run.entries, run.records_new, run.actor) == ("stored", "portal", 5, 2, custodian)
    for value in ("MRN-UP-1", "87.0", "91.5", "55.5"):
        assert value not in shown_text(html)


def test_the_same_bundle_again_is_reported_unchanged(custodian, ledger):
    document = bundle(*patient_with_observations(mrn="MRN-UP-3"))
    client = signed_in(custodian)
    client.post(reverse(INGEST), upload(document))

    html = html_of(client.post(reverse(INGEST), upload(document)))

    assert entries(html) == [("0", "patient"), ("1", "unchanged")]


def test_a_refused_bundle_names_the_entry_and_the_code_and_stores_nothing(custodian, ledger):
    patient, observation = patient_with_observations(mrn="MRN-UP-4")
    observation["subject"] = {"reference": "Patient/not-in-this-bundle"}
    document = bundle(patient, observation)

    response = signed_in(custodian).post(reverse(INGEST), upload(document), headers=HTMX)

    html = html_of(response)
    assert response.status_code == 400
    assert 'data-outcome="refused"' in html
    code = re.search(r'<p class="alert" role="alert" data-error-code="([a-z_]+)">', html)
    assert code
    assert code.group(1) == "observation_subject_unknown"
    assert entries(html) == [("0", "not_stored"), ("1", "refused")]
    assert "resource.subject.reference" in html
    assert "MRN-UP-4" not in html
    assert "not-in-this-bundle" not in html
    assert Record.objects.count() == 0
    run = IngestRun.objects.get()
    assert (run.outcome, run.refusal_code) == ("refused", code.group(1))
    assert 'id="recent-uploads" hx-swap-oob="true"' in html  # the htmx answer refreshes the latest uploads


def test_a_file_that_is_not_json_is_refused_with_malformed_json(custodian, ledger):
    response = signed_in(custodian).post(reverse(INGEST), upload(b"\xff not json"))

    assert response.status_code == 400
    assert 'data-error-code="malformed_json"' in html_of(response)


def test_no_file_is_refused_with_a_clear_message_and_a_stable_code(custodian):
    response = signed_in(custodian).post(reverse(INGEST), {}, headers=HTMX)

    html = html_of(response)
    assert response.status_code == 400
    assert 'data-error-code="invalid_upload"' in html
    assert "Choose a bundle file to upload." in html
    assert not IngestRun.objects.exists()


@override_settings(INGEST_MAX_BYTES=100)
def test_a_file_over_the_limit_is_refused_413_before_it_is_read(custodian):
    response = signed_in(custodian).post(reverse(INGEST), upload(b"{" + b" " * 200 + b"}"))

    assert response.status_code == 413
    assert 'data-error-code="payload_too_large"' in html_of(response)
    assert not IngestRun.objects.exists()


def test_the_history_lists_every_ingest_newest_first_paginated_with_who_and_counts(custodian, ledger):
    api_user = UserFactory(username="ehr-integration")
    for index in range(27):
        record_ingest(raw_body=encode(bundle(*patient_with_observations(mrn=f"MRN-H-{index}"))), actor=api_user)
    client = signed_in(custodian)

    first = html_of(client.get(reverse(HISTORY)))
    second = html_of(client.get(reverse(HISTORY), {"page": 2}))

    assert len(re.findall(r"<tr data-run-id=", first)) == 25
    assert len(re.findall(r"<tr data-run-id=", second)) == 2
    assert "Page 1 of 2" in first
    assert "ehr-integration" in first
    assert "MRN-H-" not in first


def test_the_custodians_home_is_the_upload_page_with_the_latest_uploads(custodian, ledger):
    client = signed_in(custodian)
    client.post(reverse(INGEST), upload(bundle(*patient_with_observations(mrn="MRN-UP-5"))))

    home = client.get(reverse("home"))
    page = html_of(client.get(reverse(INGEST)))

    assert home.status_code == 302
    assert home["Location"] == reverse(INGEST)
    assert len(re.findall(r"<tr data-run-id=", page)) == 1
    assert f'href="{reverse(HISTORY)}"' in page
    assert 'hx-post="/records/ingest/"' in page


@pytest.mark.parametrize("who", ["patient_user", "clinician", "auditor"])
@pytest.mark.parametrize("page", [INGEST, HISTORY])
def test_the_custodians_pages_refuse_every_other_role(request, who, page):
    assert signed_in(request.getfixturevalue(who)).get(reverse(page)).status_code == 403


@pytest.mark.parametrize("who", ["patient_user", "clinician", "auditor"])
def test_another_role_cannot_upload(request, who, ledger):
    document = bundle(*patient_with_observations(mrn="MRN-UP-6"))

    response = signed_in(request.getfixturevalue(who)).post(reverse(INGEST), upload(document))

    assert response.status_code == 403
    assert Record.objects.count() == 0
    assert not IngestRun.objects.exists()
