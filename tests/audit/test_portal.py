"""The audit portal through Django's test client: the auditors' search, exports and ledger pages, and the
patients' "who used my data" (the browser test is tests/e2e/test_audit_portal.py)."""

import hashlib
import re

import pytest
from django.test import Client
from django.urls import reverse

from audit.models import AuditExport
from audit.selectors import audit_export_manifest
from audit.services import auditor_actor_id
from tests.audit.conftest import access_event, two_batches_logged
from tests.clients import html_of, signed_in


@pytest.fixture
def access_log(logged, patient_user, other_patient_user, clinician):
    """The patient's record used by Dr Carol (admitted) and refused to her organisation; the other
    patient's record used once. Returns {event_id: event}."""
    return two_batches_logged(
        logged,
        mine=patient_user.patient.pseudonym,
        theirs=other_patient_user.patient.pseudonym,
        grantee=clinician.clinician_profile.grantee_id,
    )


def shown_event_ids(response):
    return re.findall(r'<tr data-event-id="([^"]+)"', html_of(response))


def make_export(client, django_capture_on_commit_callbacks, **fields):
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("audit:exports"), {"format": "csv", **fields})
    assert response.status_code == 302, html_of(response)
    return AuditExport.objects.order_by("-created_at").first()


# --- who sees what -------------------------------------------------------------------------------


def _pages(export_id):
    """The audit pages by short name: the four of the log, and an export's three."""
    pages = {name: reverse(f"audit:{name}") for name in ("search", "exports", "ledger", "my-data")}
    for name in ("row", "download", "manifest"):
        pages[name] = reverse(f"audit:export-{name}", kwargs={"export_id": export_id})
    return pages


AUDITOR_PAGES_REFUSED = {"search": 403, "exports": 403, "row": 403, "download": 403, "manifest": 403, "ledger": 403}


@pytest.mark.parametrize(
    ("who", "expected"),
    [
        ("patient_user", {**AUDITOR_PAGES_REFUSED, "my-data": 200}),
        ("other_patient_user", {**AUDITOR_PAGES_REFUSED, "my-data": 200}),
        ("clinician", {**AUDITOR_PAGES_REFUSED, "my-data": 403}),
        ("custodian", {**AUDITOR_PAGES_REFUSED, "my-data": 403}),
        (
            "auditor",
            {
                "search": 200,
                "exports": 200,
                "row": 204,
                "download": 409,
                "manifest": 200,
                "ledger": 200,
                "my-data": 403,
            },
        ),
    ],
)
def test_each_role_reaches_exactly_its_pages(request, access_log, audit_user, who, expected):
    export = AuditExport.objects.create(requester=audit_user, actor_id=auditor_actor_id(audit_user), format="csv")
    client = signed_in(request.getfixturevalue(who))

    for name, url in _pages(export.pk).items():
        response = client.get(url, headers={"HX-Request": "true"} if name == "row" else {})
        assert response.status_code == expected[name], name
        if expected[name] == 403:
            assert 'role="alert"' in html_of(response)
            assert str(export.pk) not in html_of(response)
            assert access_log["r1-e2"]["patient_pseudonym"] not in html_of(response)


def test_anonymous_visitors_are_sent_to_sign_in(access_log, audit_user):
    export = AuditExport.objects.create(requester=audit_user, actor_id=auditor_actor_id(audit_user), format="csv")

    for url in _pages(export.pk).values():
        response = Client().get(url)
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("login"))
    exports = reverse("audit:exports")
    poll = Client().get(
        reverse("audit:export-row", kwargs={"export_id": export.pk}),
        headers={"HX-Request": "true", "HX-Current-URL": f"http://testserver{exports}"},
    )
    assert poll["HX-Redirect"] == f"{reverse('login')}?next={exports}"


def test_only_auditors_see_the_access_log_link_and_only_patients_the_my_data_link(
    access_log, auditor, patient_user, clinician
):
    log_link = f'href="{reverse("audit:search")}"'
    mine_link = f'href="{reverse("audit:my-data")}"'
    as_auditor = html_of(signed_in(auditor).get(reverse("audit:ledger")))
    as_patient = html_of(signed_in(patient_user).get(reverse("records:my-records")))
    as_clinician = html_of(signed_in(clinician).get(reverse("consent:granted-to-me")))

    assert log_link in as_auditor
    assert mine_link not in as_auditor
    assert mine_link in as_patient
    assert ">Who used my data</a>" in as_patient
    assert log_link not in as_patient
    assert log_link not in as_clinician
    assert mine_link not in as_clinician


def test_an_unknown_export_is_404(auditor):
    for export_id in ("not-an-id", "0" * 32):
        for name in ("download", "manifest"):
            assert signed_in(auditor).get(_pages(export_id)[name]).status_code == 404


# --- the search ----------------------------------------------------------------------------------


def test_the_search_lists_every_event_with_its_transaction_and_block_newest_first(access_log, auditor, ledger):
    response = signed_in(auditor).get(reverse("audit:search"))

    assert response.status_code == 200
    assert shown_event_ids(response) == ["r2-e1", "r1-e2", "r1-e1"]
    html = html_of(response)
    for header in ("Time", "Kind", "Decision", "Reason", "Patient", "Record", "Grantee", "Purpose", "Model"):
        assert f'<th scope="col">{header}</th>' in html
    assert '<th scope="col">Transaction</th>' in html
    assert '<th scope="col">Block</th>' in html
    row = re.search(r'<tr data-event-id="r2-e1".*?</tr>', html, re.S).group(0)
    assert "Consent revoked" in row
    assert "org:st-marys" in row
    tx_id = re.search(r'data-tx-id="([^"]+)"', row).group(1)
    assert f'data-block="{ledger.locate(tx_id).block_number}"' in row
    assert f'data-pseudonym="{access_log["r2-e1"]["patient_pseudonym"]}"' in row


def test_the_search_filters_and_offers_the_registered_models_by_name(access_log, auditor, models_registered):
    client = signed_in(auditor)
    breast_cancer = models_registered["breast-cancer"]

    page = html_of(client.get(reverse("audit:search")))
    refused = client.get(reverse("audit:search"), {"decision": "refuse"})
    of_patient = client.get(reverse("audit:search"), {"patient": access_log["r1-e2"]["patient_pseudonym"]})
    by_model = client.get(reverse("audit:search"), {"model": breast_cancer.sha256})

    assert f'<option value="{breast_cancer.sha256}">breast-cancer@{breast_cancer.version}</option>' in page
    assert shown_event_ids(refused) == ["r2-e1"]
    assert shown_event_ids(of_patient) == ["r1-e2"]
    assert shown_event_ids(by_model) == []
    assert "No event matches this search." in html_of(by_model)
    assert f'href="{reverse("audit:exports")}?decision=refuse" id="export-link"' in html_of(refused)


def test_a_bad_filter_shows_the_field_error_and_runs_no_search(access_log, auditor):
    response = signed_in(auditor).get(reverse("audit:search"), {"patient": "not-a-pseudonym", "since": "someday"})

    assert response.status_code == 400
    html = html_of(response)
    assert "The search was not run." in html
    assert "Enter a pseudonymous patient id" in html
    assert "Enter a date and time" in html
    assert shown_event_ids(response) == []


def test_the_search_pages_and_toggles_the_order(logged, auditor):
    logged("big", [access_event(f"e{n:03d}") for n in range(55)])
    client = signed_in(auditor)

    first = client.get(reverse("audit:search"))
    second = client.get(reverse("audit:search"), {"page": 2})
    oldest = client.get(reverse("audit:search"), {"ordering": "recorded_at"})

    assert shown_event_ids(first)[:2] == ["e054", "e053"]
    assert len(shown_event_ids(first)) == 50
    assert "Page 1 of 2" in html_of(first)
    assert shown_event_ids(second) == [f"e{n:03d}" for n in range(4, -1, -1)]
    assert shown_event_ids(oldest)[:2] == ["e000", "e001"]
    assert 'href="?ordering=recorded_at"' in html_of(first)
    assert "Show newest first" in html_of(oldest)


# --- exports -------------------------------------------------------------------------------------


def test_an_export_from_the_portal_carries_the_filters_and_completes_verified(
    access_log, auditor, export_dir, eager_tasks, django_capture_on_commit_callbacks
):
    client = signed_in(auditor)
    form = html_of(client.get(reverse("audit:exports"), {"decision": "refuse"}))
    assert '<input type="hidden" name="decision" value="refuse">' in form

    export = make_export(client, django_capture_on_commit_callbacks, decision="refuse", format="json")

    assert (export.status, export.format, export.filters) == ("completed", "json", {"decision": "refuse"})
    html = html_of(client.get(reverse("audit:exports")))
    row = re.search(rf'<tr id="export-{export.pk}".*?</tr>', html, re.S).group(0)
    assert 'data-status="completed"' in row
    assert "hx-get" not in row
    assert f'data-sha256="{export.sha256}"' in row
    assert "Verified against the ledger" in row
    assert f'data-log-tx-id="{export.log_tx_id}"' in row
    assert re.search(r"data-count>\s*1\s*<", row)
    download = client.get(reverse("audit:export-download", kwargs={"export_id": export.pk}))
    content = b"".join(download.streaming_content)
    manifest = client.get(reverse("audit:export-manifest", kwargs={"export_id": export.pk})).json()
    assert hashlib.sha256(content).hexdigest() == manifest["file"]["sha256"] == export.sha256
    assert download["Content-Disposition"] == f'attachment; filename="{manifest["file"]["name"]}"'
    assert manifest == audit_export_manifest(export=export)


def test_the_manifest_link_saves_it_where_verify_access_log_looks_for_it(
    access_log, auditor, export_dir, eager_tasks, django_capture_on_commit_callbacks
):
    client = signed_in(auditor)
    export = make_export(client, django_capture_on_commit_callbacks, format="fhir")

    html = html_of(client.get(reverse("audit:exports")))
    row = re.search(rf'<tr id="export-{export.pk}".*?</tr>', html, re.S).group(0)
    manifest = client.get(reverse("audit:export-manifest", kwargs={"export_id": export.pk}))

    sidecar = f"access-log-{export.pk}.ndjson.manifest.json"  # the file's name, plus .manifest.json
    assert manifest.json()["file"]["name"] + ".manifest.json" == sidecar
    assert f'download="{sidecar}"' in row
    assert manifest["Content-Disposition"] == f'inline; filename="{sidecar}"'


def test_a_pending_export_polls_until_it_is_done(
    access_log, auditor, export_dir, eager_tasks, django_capture_on_commit_callbacks
):
    client = signed_in(auditor)
    response = client.post(reverse("audit:exports"), {"format": "csv"})  # its task runs at a commit that never comes
    export = AuditExport.objects.get()
    row_url = reverse("audit:export-row", kwargs={"export_id": export.pk})

    page = html_of(client.get(response["Location"]))
    assert re.search(rf'<tr id="export-{export.pk}"[^>]*data-status="pending"\s+hx-get="{row_url}"', page)
    assert 'hx-trigger="every 1s"' in page
    assert client.get(row_url, headers={"HX-Request": "true"}).status_code == 204
    assert client.get(reverse("audit:export-download", kwargs={"export_id": export.pk})).status_code == 409

    from audit.exports import audit_export_run

    audit_export_run(export_id=str(export.pk))
    done = client.get(row_url, headers={"HX-Request": "true"})
    assert done.status_code == 200
    assert 'data-status="completed"' in html_of(done)
    assert "hx-get" not in html_of(done)
    assert "Download" in html_of(done)


def test_an_export_with_bad_filters_is_not_offered(access_log, auditor, export_dir):
    client = signed_in(auditor)

    shown = client.get(reverse("audit:exports"), {"since": "whenever"})
    posted = client.post(reverse("audit:exports"), {"format": "csv", "model": "f" * 64})
    no_format = client.post(reverse("audit:exports"), {})

    assert shown.status_code == 400
    assert 'id="filters-invalid"' in html_of(shown)
    assert 'id="export-form"' not in html_of(shown)
    assert posted.status_code == 400
    assert "Model: Choose one of the listed values." in html_of(posted)
    assert no_format.status_code == 400
    assert "Format: Choose a format." in html_of(no_format)
    assert AuditExport.objects.count() == 0


# --- the ledger view -----------------------------------------------------------------------------


def test_the_ledger_page_shows_recent_blocks_and_pages_back_without_payloads(access_log, logged, auditor, ledger):
    for number in range(10):
        logged(f"more-{number}", [access_event(f"more-{number}")])
    height = ledger.height()
    client = signed_in(auditor)

    newest = html_of(client.get(reverse("audit:ledger")))
    older = html_of(client.get(reverse("audit:ledger"), {"before": height - 10}))

    numbers = [int(n) for n in re.findall(r'data-block-number="(\d+)"', newest)]
    assert numbers == list(range(height - 1, height - 11, -1))
    top = ledger.block_summary(height - 1)
    assert top.hash in newest
    assert top.previous_hash in newest
    assert f'data-tx-id="{top.transactions[0].tx_id}"' in newest
    assert "AppendAccessEvents" in newest
    assert f'href="/audit/ledger/?before={height - 10}"' in newest
    assert re.findall(r'data-block-number="(\d+)"', older)[0] == str(height - 11)
    for event in access_log.values():
        assert event["patient_pseudonym"] not in newest + older
        assert event["event_id"] not in newest + older


# --- patients: who used my data ------------------------------------------------------------------


def test_my_data_shows_exactly_the_patients_events_with_names(access_log, patient_user, other_patient_user, clinician):
    mine = signed_in(patient_user).get(reverse("audit:my-data"))
    theirs = signed_in(other_patient_user).get(reverse("audit:my-data"))

    assert shown_event_ids(mine) == ["r2-e1", "r1-e1"]
    assert shown_event_ids(theirs) == ["r1-e2"]
    html = html_of(mine)
    assert "Dr Carol" in html
    assert "St Mary&#x27;s" in html  # the organisation's name from the directory
    assert "consent revoked" in html
    assert access_log["r1-e2"]["record_id"] not in html
    assert other_patient_user.patient.pseudonym not in html


@pytest.mark.he
@pytest.mark.django_db(transaction=True)
def test_after_an_analysis_each_patient_sees_who_used_their_record_and_why(mixed_analysis):
    analysis, _, people = mixed_analysis
    (admitted_user, _, admitted_record), (refused_user, _, refused_record) = people[0], people[1]

    admitted = signed_in(admitted_user).get(reverse("audit:my-data"))
    refused = signed_in(refused_user).get(reverse("audit:my-data"))

    assert admitted.status_code == 200
    for response, record, decision in ((admitted, admitted_record, "Allowed"), (refused, refused_record, "Refused")):
        html = html_of(response)
        rows = re.findall(r'<tr data-event-id="[^"]+".*?</tr>', html, re.S)
        assert len(rows) == 1
        assert str(record.id)[:10] in rows[0]
        assert decision in rows[0]
        assert "Dr Carol" in rows[0]
        assert f"breast-cancer@{analysis.model.version}" in rows[0]
        assert "Running the breast-cancer diagnostic model" in rows[0]
    assert "no consent" in html_of(refused)
    assert str(refused_record.id) not in html_of(admitted)
