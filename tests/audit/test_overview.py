"""The auditor's home: the state of the access log as server-drawn charts and figures, and the verify-a-copy form
(the portal's face of POST /api/audit/verify/): ok, or problems named by event id; completeness checked or not."""

import re

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from audit.models import AuditExport
from audit.selectors import audit_export_manifest
from tests.audit.test_api import access_log, exported, run_export  # noqa: F401 (fixtures)
from tests.clients import html_of, signed_in

pytestmark = pytest.mark.django_db

OVERVIEW = "audit:overview"
VERIFY = "audit:verify"
HTMX = {"HX-Request": "true"}


def upload(content: bytes, name: str = "copy.csv") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, content, content_type="application/octet-stream")


def manifest_of(export_id: str) -> SimpleUploadedFile:
    import json

    manifest = audit_export_manifest(export=AuditExport.objects.get(pk=export_id))
    return upload(json.dumps(manifest).encode(), "copy.csv.manifest.json")


def test_the_overview_shows_figures_and_charts_of_the_log(access_log, auditor):  # noqa: F811
    response = signed_in(auditor).get(reverse(OVERVIEW))

    html = html_of(response)
    assert response.status_code == 200
    assert '<span class="figure" data-figure="events">3</span>' in html
    assert re.search(r'data-figure="height">\d+<', html)
    assert '<svg class="bars" id="events-per-day"' in html
    assert re.search(r"<desc id=\"events-per-day-desc\">[^<]*: 3 events", html)
    assert '<svg class="bars" id="refusals-by-reason"' in html
    assert "<script" not in html.split("</head>")[1]  # the charts are SVG drawn on the server


def test_the_overview_shows_the_latest_exports_and_the_last_verification(exported, auditor):  # noqa: F811
    export_id, _content = exported

    html = html_of(signed_in(auditor).get(reverse(OVERVIEW)))

    assert f'data-export-id="{export_id}"' in html
    assert 'data-figure="verification">Verified<' in html


def test_an_untouched_copy_with_its_manifest_verifies_completely(exported, auditor):  # noqa: F811
    export_id, content = exported

    response = signed_in(auditor).post(
        reverse(VERIFY), {"file": upload(content), "format": "csv", "manifest": manifest_of(export_id)}
    )

    html = html_of(response)
    assert response.status_code == 200
    assert 'data-ok="true" data-completeness-checked="true"' in html
    assert "The copy verifies" in html


def test_an_edited_copy_names_the_event_and_never_the_value(exported, auditor):  # noqa: F811
    export_id, content = exported
    edited = content.decode().replace("org:st-marys", "org:mallory-clinic").encode()

    response = signed_in(auditor).post(
        reverse(VERIFY), {"file": upload(edited), "format": "csv", "manifest": manifest_of(export_id)}, headers=HTMX
    )

    html = html_of(response)
    assert response.status_code == 200
    assert 'data-ok="false"' in html
    assert '<tr data-event-id="r2-e1" data-kind="changed">' in html
    assert "mallory" not in html


def test_without_a_manifest_completeness_is_said_not_checked(exported, auditor):  # noqa: F811
    _export_id, content = exported

    html = html_of(signed_in(auditor).post(reverse(VERIFY), {"file": upload(content), "format": "csv"}))

    assert 'data-ok="false" data-completeness-checked="false"' in html
    assert "<strong>not checked</strong> (no manifest)" in html


@pytest.mark.parametrize(
    ("fields", "status", "code"),
    [
        ({"format": "csv"}, 400, "validation_failed"),
        ({"format": "xml", "file": b"x"}, 400, "validation_failed"),
        ({"format": "json", "file": b"not json at all"}, 400, "invalid_export_file"),
        ({"format": "csv", "file": b"a,b\n", "manifest": b"{}"}, 400, "invalid_manifest"),
    ],
)
def test_a_copy_that_cannot_be_used_is_refused_with_a_stable_code(access_log, auditor, fields, status, code):  # noqa: F811
    body = {name: upload(value) if isinstance(value, bytes) else value for name, value in fields.items()}

    response = signed_in(auditor).post(reverse(VERIFY), body, headers=HTMX)

    assert response.status_code == status
    assert f'data-error-code="{code}"' in html_of(response)


def test_a_copy_over_the_limit_is_refused_413(access_log, auditor, settings):  # noqa: F811
    settings.AUDIT_VERIFY_MAX_BYTES = 10

    response = signed_in(auditor).post(reverse(VERIFY), {"file": upload(b"x" * 50), "format": "csv"})

    assert response.status_code == 413
    assert 'data-error-code="payload_too_large"' in html_of(response)


def test_the_auditors_home_is_the_overview(auditor):
    response = signed_in(auditor).get(reverse("home"))

    assert response.status_code == 302
    assert response["Location"] == reverse(OVERVIEW)


@pytest.mark.parametrize("who", ["patient_user", "clinician", "custodian"])
def test_the_overview_and_the_verify_form_are_only_for_auditors(request, who):
    client = signed_in(request.getfixturevalue(who))

    assert client.get(reverse(OVERVIEW)).status_code == 403
    assert client.post(reverse(VERIFY), {"format": "csv", "file": upload(b"a")}).status_code == 403
