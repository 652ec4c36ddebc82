"""The audit API: who may call what, the search's filters and pages, exports end to end, verifying a copy,
and the ledger view; against the real embedded ledger, with the export task run eagerly at commit."""

import hashlib
import io
import json
from datetime import datetime, timedelta, timezone

import pytest

from audit.exports import rows_from_file
from audit.models import AuditExport, ExportStatus
from tests.audit.conftest import MODEL_B, access_event, two_batches_logged
from tests.clients import api_as

EVENTS = "/api/audit/events/"
EXPORTS = "/api/audit/exports/"
VERIFY = "/api/audit/verify/"
BLOCKS = "/api/audit/ledger/blocks/"
MODEL_A = "b" * 64


@pytest.fixture
def access_log(logged, patient_user, other_patient_user):
    """Two batches on the ledger: the patient's records used twice (admitted, refused), the other patient's once,
    by two clinicians under two models. Returns {event_id: event}."""
    return two_batches_logged(logged, mine=patient_user.patient.pseudonym, theirs=other_patient_user.patient.pseudonym)


def event_ids(response):
    return [event["event_id"] for event in response.json()["results"]]


def run_export(client, django_capture_on_commit_callbacks, **body):
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(EXPORTS, body, format="json")
    assert response.status_code == 202, response.content
    return response


# --- who may call what ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("who", "status", "code"),
    [
        ("anonymous", 401, "not_authenticated"),
        ("clinician", 403, "audit_forbidden"),
        ("custodian", 403, "audit_forbidden"),
        ("patient_user", 200, None),
        ("other_patient_user", 200, None),
        ("auditor", 200, None),
    ],
)
def test_events_are_searchable_by_auditors_and_by_patients_about_themselves_only(
    request, access_log, who, status, code
):
    user = None if who == "anonymous" else request.getfixturevalue(who)

    response = api_as(user).get(EVENTS)

    assert response.status_code == status
    if code:
        assert response.json()["code"] == code
        assert "r1-e1" not in response.content.decode()
        return
    expected = {
        "patient_user": {"r1-e1", "r2-e1"},
        "other_patient_user": {"r1-e2"},
        "auditor": set(access_log),
    }[who]
    assert set(event_ids(response)) == expected


def test_a_patient_cannot_reach_another_patients_events_by_filtering_for_them(
    access_log, patient_user, other_patient_user
):
    theirs = other_patient_user.patient.pseudonym

    for query in ({"patient": theirs}, {"request": "req-1"}, {"grantee": "clinician:alice"}):
        response = api_as(patient_user).get(EVENTS, query)
        assert response.status_code == 200
        assert "r1-e2" not in event_ids(response)
        assert theirs not in response.content.decode()


@pytest.mark.parametrize("who", ["anonymous", "patient_user", "clinician", "custodian"])
def test_only_auditors_reach_exports_verification_and_the_ledger(request, access_log, auditor, who):
    export = AuditExport.objects.create(requester=auditor, actor_id=f"auditor:u{auditor.pk}", format="csv")
    user = None if who == "anonymous" else request.getfixturevalue(who)
    client = api_as(user)
    calls = [
        client.get(EXPORTS),
        client.post(EXPORTS, {"format": "csv"}, format="json"),
        client.get(f"{EXPORTS}{export.pk}/"),
        client.get(f"{EXPORTS}{export.pk}/manifest/"),
        client.get(f"{EXPORTS}{export.pk}/file/"),
        client.post(VERIFY, {"format": "csv", "file": io.BytesIO(b"x")}, format="multipart"),
        client.get(BLOCKS),
    ]

    expected = (401, "not_authenticated") if user is None else (403, "audit_forbidden")
    for response in calls:
        assert (response.status_code, response.json()["code"]) == expected, response.request["PATH_INFO"]
        assert str(export.pk) not in response.content.decode()
    assert AuditExport.objects.count() == 1  # the refused POST created nothing


def test_exports_are_shared_by_the_audit_team_and_unknown_ids_are_404(access_log, auditor, audit_user):
    mine = run_export_pending(auditor)

    assert api_as(audit_user).get(f"{EXPORTS}{mine.pk}/").status_code == 200
    assert [e["id"] for e in api_as(audit_user).get(EXPORTS).json()["results"]] == [str(mine.pk)]
    for unknown in ("0" * 32, "00000000-0000-0000-0000-000000000000"):
        for suffix in ("", "manifest/", "file/"):
            response = api_as(auditor).get(f"{EXPORTS}{unknown}/{suffix}")
            assert (response.status_code, response.json()["code"]) == (404, "not_found")
    assert api_as(auditor).get(f"{EXPORTS}not-an-id/").status_code == 404


def run_export_pending(user, **filters):
    """An export created through the API whose task has not run (its commit never comes in this test)."""
    response = api_as(user).post(EXPORTS, {"format": "csv", **filters}, format="json")
    assert response.status_code == 202
    return AuditExport.objects.get(pk=response.json()["id"])


# --- the search ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({}, {"r1-e1", "r1-e2", "r2-e1"}),
        ({"patient": "PATIENT"}, {"r1-e1", "r2-e1"}),
        ({"grantee": "org:st-marys"}, {"r2-e1"}),
        ({"request": "req-1"}, {"r1-e1", "r1-e2"}),
        ({"model": MODEL_B}, {"r2-e1"}),
        ({"decision": "admit"}, {"r1-e1", "r1-e2"}),
        ({"decision": "refuse"}, {"r2-e1"}),
        ({"reason": "consent_revoked"}, {"r2-e1"}),
        ({"reason": "no_consent"}, set()),
        ({"kind": "record_access"}, {"r1-e1", "r1-e2", "r2-e1"}),
        ({"kind": "export"}, set()),
        ({"decision": "admit", "patient": "PATIENT"}, {"r1-e1"}),
    ],
)
def test_each_filter_selects_its_events(access_log, auditor, patient_user, query, expected):
    query = {k: patient_user.patient.pseudonym if v == "PATIENT" else v for k, v in query.items()}

    response = api_as(auditor).get(EVENTS, query)

    assert response.status_code == 200
    assert set(event_ids(response)) == expected


def test_the_time_range_is_since_inclusive_until_exclusive(access_log, auditor):
    events = api_as(auditor).get(EVENTS, {"ordering": "recorded_at"}).json()["results"]
    first_batch_at = events[0]["recorded_at"]
    second_batch_at = events[-1]["recorded_at"]
    assert first_batch_at < second_batch_at

    since = api_as(auditor).get(EVENTS, {"since": second_batch_at})
    until = api_as(auditor).get(EVENTS, {"until": second_batch_at})

    assert set(event_ids(since)) == {"r2-e1"}
    assert set(event_ids(until)) == {"r1-e1", "r1-e2"}


def test_a_time_with_any_offset_iso_8601_allows_is_read_as_its_instant(access_log, auditor):
    """PostgreSQL holds offsets up to ±15:59 only; ISO 8601 and Python allow ±23:59: the search reads the instant."""
    events = api_as(auditor).get(EVENTS, {"ordering": "recorded_at"}).json()["results"]
    second_batch_at = datetime.fromisoformat(events[-1]["recorded_at"].replace("Z", "+00:00"))
    far_east = second_batch_at.astimezone(timezone(timedelta(hours=22, minutes=48))).isoformat()

    assert set(event_ids(api_as(auditor).get(EVENTS, {"since": far_east}))) == {"r2-e1"}
    assert api_as(auditor).get(EVENTS, {"since": "0534-07-01T20:34:41+22:48"}).status_code == 200


def test_each_event_carries_all_its_fields_and_where_it_is_on_the_ledger(access_log, auditor, ledger):
    (event,) = api_as(auditor).get(EVENTS, {"request": "req-2"}).json()["results"]

    logged = access_log["r2-e1"]
    for name in ("event_id", "kind", "record_id", "patient_pseudonym", "grantee", "purpose", "request_id"):
        assert event[name] == logged[name]
    assert (event["model_hash"], event["decision"], event["reason"]) == (MODEL_B, "refuse", "consent_revoked")
    assert (event["batch_id"], event["position"]) == ("batch-2", 0)
    location = ledger.locate(event["tx_id"])
    assert location is not None
    assert event["block_number"] == location.block_number
    assert event["recorded_at"]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"patient": "Robert'); DROP TABLE"}, "patient"),
        ({"grantee": "mallory"}, "grantee"),
        ({"request": "<script>"}, "request"),
        ({"model": "abc123"}, "model"),
        ({"decision": "perhaps"}, "decision"),
        ({"reason": "felt-like-it"}, "reason"),
        ({"kind": "peek"}, "kind"),
        ({"since": "last-tuesday"}, "since"),
        ({"until": "2025-13-45T99:00:00Z"}, "until"),
        ({"until": "0001-01-01T00:00:00+22:48"}, "until"),  # before the first instant once in UTC
        ({"since": "2025-02-01T00:00:00Z", "until": "2025-01-01T00:00:00Z"}, "until"),
        ({"ordering": "patient_pseudonym"}, "ordering"),
    ],
)
def test_a_bad_filter_is_400_naming_the_field_without_echoing_the_value(access_log, auditor, query, field):
    response = api_as(auditor).get(EVENTS, query)

    body = response.json()
    assert (response.status_code, body["code"]) == (400, "validation_failed")
    assert set(body["detail"]) == {field}
    for value in query.values():
        assert value not in response.content.decode()


def test_events_come_in_pages_newest_first_unless_asked_oldest_first(logged, auditor):
    logged("big", [access_event(f"e{n:03d}", request_id="req-big") for n in range(60)])
    logged("late", [access_event("late-1")])

    first = api_as(auditor).get(EVENTS).json()
    second = api_as(auditor).get(EVENTS, {"page": 2}).json()
    oldest = api_as(auditor).get(EVENTS, {"ordering": "recorded_at"}).json()

    assert first["count"] == 61
    assert [e["event_id"] for e in first["results"][:3]] == ["late-1", "e059", "e058"]
    assert len(first["results"]) == 50
    assert first["next"].endswith("?page=2")
    assert [e["event_id"] for e in second["results"]] == [f"e{n:03d}" for n in range(10, -1, -1)]
    assert second["next"] is None
    assert [e["event_id"] for e in oldest["results"][:2]] == ["e000", "e001"]
    assert api_as(auditor).get(EVENTS, {"page": 9}).status_code == 404


# --- exports -------------------------------------------------------------------------------------


@pytest.mark.he
@pytest.mark.django_db(transaction=True)
def test_an_export_through_the_api_downloads_the_file_its_manifest_hashes_and_verifies(
    mixed_analysis, auditor, export_dir, django_capture_on_commit_callbacks
):
    analysis, expected, _ = mixed_analysis
    client = api_as(auditor)

    created = run_export(client, django_capture_on_commit_callbacks, format="csv", request=str(analysis.id))

    assert created["Location"] == f"{EXPORTS}{created.json()['id']}/"
    detail = client.get(created["Location"]).json()
    assert detail["status"] == "completed"
    assert detail["filters"] == {"request_id": str(analysis.id)}
    # the request's record accesses and the outcome of its one batch (computed)
    assert detail["count"] == len(expected) + 1
    assert detail["verification"] == {"ok": True, "checked": len(expected) + 1, "problem_count": 0, "chain_ok": True}
    assert detail["ledger"]["tx_id"]
    manifest = client.get(detail["links"]["manifest"]).json()
    download = client.get(detail["links"]["file"])
    assert download.status_code == 200
    content = b"".join(download.streaming_content)
    assert hashlib.sha256(content).hexdigest() == manifest["file"]["sha256"] == detail["sha256"]
    assert len(content) == manifest["file"]["bytes"]
    assert download["Content-Type"] == "text/csv"
    assert download["Content-Disposition"] == f'attachment; filename="{manifest["file"]["name"]}"'
    rows = list(rows_from_file(io.BytesIO(content), format="csv"))
    accesses = [row for row in rows if row["kind"] == "record_access"]
    assert {row["record_id"]: (row["decision"], row["reason"]) for row in accesses} == expected
    assert manifest["verification"]["ok"] is True
    assert manifest["ledger"]["tx_id"] == detail["ledger"]["tx_id"]


@pytest.mark.parametrize(("format", "media_type"), [("json", "application/json"), ("fhir", "application/fhir+ndjson")])
def test_each_format_downloads_with_its_media_type(
    access_log, auditor, export_dir, eager_tasks, django_capture_on_commit_callbacks, format, media_type
):
    created = run_export(api_as(auditor), django_capture_on_commit_callbacks, format=format, decision="refuse")

    download = api_as(auditor).get(created.json()["links"]["file"], HTTP_ACCEPT="text/csv")

    assert download.status_code == 200
    assert download["Content-Type"] == media_type
    content = b"".join(download.streaming_content)
    assert [row["event_id"] for row in rows_from_file(io.BytesIO(content), format=format)] == ["r2-e1"]


def test_a_pending_export_has_no_file_yet(access_log, auditor, export_dir):
    export = run_export_pending(auditor)
    assert export.status == ExportStatus.PENDING

    response = api_as(auditor).get(f"{EXPORTS}{export.pk}/file/", HTTP_ACCEPT="text/csv")

    assert (response.status_code, response.json()["code"]) == (409, "export_not_ready")
    assert api_as(auditor).get(f"{EXPORTS}{export.pk}/manifest/").json()["status"] == "pending"


def test_a_failed_export_has_no_file(
    access_log, auditor, export_dir, settings, eager_tasks, django_capture_on_commit_callbacks
):
    settings.LEDGER_URL = "embedded:///proc/health-platform-no-such-dir/ledger.sqlite3"
    settings.AUDIT_EXPORT_DEADLINE_SECONDS = 0  # no waiting for the ledger: the export fails at once

    created = run_export(api_as(auditor), django_capture_on_commit_callbacks, format="csv")

    detail = api_as(auditor).get(created["Location"]).json()
    assert (detail["status"], detail["failure_code"]) == ("failed", "ledger_unavailable")
    response = api_as(auditor).get(detail["links"]["file"])
    assert (response.status_code, response.json()["code"]) == (409, "export_not_ready")


def test_an_export_takes_the_searchs_filters_and_refuses_bad_ones(access_log, auditor, export_dir):
    bad_format = api_as(auditor).post(EXPORTS, {"format": "xlsx"}, format="json")
    bad_filter = api_as(auditor).post(EXPORTS, {"format": "csv", "since": "soon"}, format="json")

    assert (bad_format.status_code, bad_format.json()["code"]) == (400, "unknown_export_format")
    assert (bad_filter.status_code, bad_filter.json()["code"], list(bad_filter.json()["detail"])) == (
        400,
        "validation_failed",
        ["since"],
    )
    assert AuditExport.objects.count() == 0
    export = run_export_pending(auditor, decision="refuse", model=MODEL_B, since="2025-01-01T00:00:00Z")
    assert export.filters == {"decision": "refuse", "model_hash": MODEL_B, "since": "2025-01-01T00:00:00+00:00"}


# --- verifying a copy ----------------------------------------------------------------------------


@pytest.fixture
def exported(access_log, auditor, export_dir, eager_tasks, django_capture_on_commit_callbacks):
    """A completed CSV export of the whole log and its bytes."""
    created = run_export(api_as(auditor), django_capture_on_commit_callbacks, format="csv")
    export_id = created.json()["id"]
    content = b"".join(api_as(auditor).get(f"{EXPORTS}{export_id}/file/").streaming_content)
    return export_id, content


def verify(user, content, format="csv", **fields):
    upload = io.BytesIO(content)
    upload.name = f"copy.{format}"
    return api_as(user).post(VERIFY, {"file": upload, "format": format, **fields}, format="multipart")


def test_an_untouched_copy_verifies_and_matches_its_export(exported, auditor):
    export_id, content = exported

    body = verify(auditor, content, export=export_id).json()

    assert (body["ok"], body["checked"], body["problem_count"]) == (True, 3, 0)
    assert (body["completeness_checked"], body["matches_export"]) == (True, True)
    assert body["sha256"] == hashlib.sha256(content).hexdigest()
    assert body["chain"]["ok"] is True


def test_an_edited_copy_names_the_changed_event_and_field_without_echoing_it(exported, auditor):
    export_id, content = exported
    lines = content.decode().splitlines(keepends=True)
    edited_index = next(i for i, line in enumerate(lines) if line.startswith("r2-e1,"))
    lines[edited_index] = lines[edited_index].replace("org:st-marys", "org:mallory-clinic")

    response = verify(auditor, "".join(lines).encode(), export=export_id)

    body = response.json()
    assert response.status_code == 200
    assert (body["ok"], body["problem_count"], body["matches_export"]) == (False, 1, False)
    assert body["problems"] == [{"event_id": "r2-e1", "kind": "changed", "fields": ["grantee"]}]
    assert "mallory" not in response.content.decode()


def test_a_copy_with_an_event_left_out_names_it_when_its_export_is_given(exported, auditor):
    export_id, content = exported
    kept = [line for line in content.decode().splitlines(keepends=True) if not line.startswith("r1-e2,")]

    without_export = verify(auditor, "".join(kept).encode()).json()
    with_export = verify(auditor, "".join(kept).encode(), export=export_id).json()

    assert (without_export["ok"], without_export["completeness_checked"]) == (False, False)
    assert with_export["problems"] == [{"event_id": "r1-e2", "kind": "missing_from_copy", "fields": []}]


def test_a_file_that_is_not_an_export_is_400_naming_the_line_never_its_content(auditor, ledger):
    not_json = b'{"events": [\n{"event_id": "x"},\nsecret-value-of-line-3\n]}\n'

    response = verify(auditor, not_json, format="json")

    body = response.json()
    assert (response.status_code, body["code"]) == (400, "invalid_export_file")
    assert "line 3" in body["message"]
    assert "secret-value" not in response.content.decode()
    wrong_header = verify(auditor, b"name,secret-header\nx,y\n", format="csv").json()
    assert wrong_header["code"] == "invalid_export_file"
    assert "secret-header" not in json.dumps(wrong_header)
    not_text = verify(auditor, b"\xff\xfe\x00secret", format="fhir").json()
    assert (not_text["code"], not_text["detail"]["reason"]) == ("invalid_export_file", "it is not UTF-8 text")
    shaped_wrong = verify(auditor, b'{"resourceType": "AuditEvent", "entity": ["secret"]}\n', format="fhir").json()
    assert shaped_wrong["code"] == "invalid_export_file"
    assert "secret" not in json.dumps(shaped_wrong)


def test_verify_checks_format_size_and_the_export_named(exported, auditor, settings):
    _, content = exported

    assert verify(auditor, content, format="xml").json()["code"] == "unknown_export_format"
    assert verify(auditor, content, export="00000000-0000-0000-0000-000000000000").status_code == 404
    missing_file = api_as(auditor).post(VERIFY, {"format": "csv"}, format="multipart").json()
    assert (missing_file["code"], list(missing_file["detail"])) == ("validation_failed", ["file"])
    settings.AUDIT_VERIFY_MAX_BYTES = len(content) - 1
    too_large = verify(auditor, content)
    assert (too_large.status_code, too_large.json()["code"]) == (413, "payload_too_large")


def manifest_of(auditor, export_id, **changes):
    """The export's manifest as the API serves it, edited by `changes` (file_sha256 for the file's)."""
    values = api_as(auditor).get(f"{EXPORTS}{export_id}/manifest/").json()
    for name, value in changes.items():
        if name == "file_sha256":
            values["file"]["sha256"] = value
        else:
            values[name] = value
    upload = io.BytesIO(json.dumps(values).encode())
    upload.name = "copy.csv.manifest.json"
    return upload


def without_rows(content, *event_ids):
    return "".join(
        line for line in content.decode().splitlines(keepends=True) if line.split(",", 1)[0] not in event_ids
    ).encode()


def test_a_copy_verifies_with_its_manifest_uploaded_beside_it(exported, auditor):
    export_id, content = exported

    body = verify(auditor, content, manifest=manifest_of(auditor, export_id)).json()

    assert (body["ok"], body["completeness_checked"], body["matches_export"], body["export_id"]) == (
        True,
        True,
        True,
        export_id,
    )
    assert (body["checked"], body["completeness"]["expected"], body["completeness"]["manifest_count"]) == (3, 3, 3)
    assert body["message"].startswith("verified")


def test_a_copy_with_a_row_deleted_names_it_against_the_uploaded_manifest(exported, auditor):
    export_id, content = exported

    body = verify(auditor, without_rows(content, "r1-e2"), manifest=manifest_of(auditor, export_id)).json()

    assert (body["ok"], body["matches_export"]) == (False, False)
    assert body["problems"] == [{"event_id": "r1-e2", "kind": "missing_from_copy", "fields": []}]


def test_a_copy_with_a_whole_batch_deleted_names_its_events(exported, auditor):
    export_id, content = exported

    body = verify(auditor, without_rows(content, "r1-e1", "r1-e2"), export=export_id).json()

    assert [(p["event_id"], p["kind"]) for p in body["problems"]] == [
        ("r1-e1", "missing_from_copy"),
        ("r1-e2", "missing_from_copy"),
    ]


def test_without_a_manifest_the_answer_says_completeness_was_not_checked(exported, auditor):
    _, content = exported

    response = verify(auditor, without_rows(content, "r1-e2"))

    body = response.json()
    assert response.status_code == 200
    assert (body["ok"], body["completeness_checked"], body["problem_count"]) == (False, False, 0)
    assert body["message"] == "completeness was not checked: no manifest"
    assert (body["matches_export"], body["export_id"]) == (None, None)


def test_a_manifest_edited_to_fit_a_tampered_copy_is_refused_without_echoing_it(exported, auditor):
    export_id, content = exported
    cut = without_rows(content, "r2-e1")

    other_sha = verify(
        auditor, cut, manifest=manifest_of(auditor, export_id, file_sha256=hashlib.sha256(cut).hexdigest())
    )
    other_filters = verify(
        auditor, cut, manifest=manifest_of(auditor, export_id, filters={"grantee": "clinician:alice"}, count=2)
    )

    assert (other_sha.status_code, other_sha.json()["code"], other_sha.json()["detail"]["fields"]) == (
        400,
        "invalid_manifest",
        ["file.sha256"],
    )
    assert (other_filters.status_code, other_filters.json()["code"], other_filters.json()["detail"]["fields"]) == (
        400,
        "invalid_manifest",
        ["filters", "count"],
    )
    assert "clinician:alice" not in other_filters.content.decode()
    assert hashlib.sha256(cut).hexdigest() not in other_sha.content.decode()


def test_a_bad_manifest_is_400_invalid_manifest_413_when_too_large_and_a_pending_export_409(exported, auditor):
    export_id, content = exported
    not_json = io.BytesIO(b"secret-value {")
    not_json.name = "m.json"
    too_large = io.BytesIO(b" " * (64 * 1024 + 1))
    too_large.name = "m.json"
    pending = run_export_pending(auditor)

    malformed = verify(auditor, content, manifest=not_json)
    oversized = verify(auditor, content, manifest=too_large)
    not_ready = verify(auditor, content, manifest=manifest_of(auditor, export_id), export=str(pending.pk))

    assert (malformed.status_code, malformed.json()["code"]) == (400, "invalid_manifest")
    assert "secret-value" not in malformed.content.decode()
    assert (oversized.status_code, oversized.json()["code"]) == (413, "payload_too_large")
    assert (not_ready.status_code, not_ready.json()["code"]) == (409, "export_not_ready")


def test_a_manifest_of_another_export_than_the_one_named_is_refused(
    exported, auditor, django_capture_on_commit_callbacks
):
    export_id, content = exported
    other = run_export(api_as(auditor), django_capture_on_commit_callbacks, format="csv").json()["id"]

    named_other = verify(auditor, content, manifest=manifest_of(auditor, export_id), export=other).json()
    copy_of_another = verify(auditor, content, export=other).json()

    assert (named_other["code"], named_other["detail"]["field"]) == ("invalid_manifest", "export_id")
    assert (copy_of_another["code"], copy_of_another["detail"]["reason"]) == (
        "invalid_manifest",
        "the copy is the file of another export",
    )


def test_the_manifest_is_served_under_the_name_the_command_looks_for(exported, auditor):
    export_id, _ = exported

    response = api_as(auditor).get(f"{EXPORTS}{export_id}/manifest/")

    name = response.json()["file"]["name"]
    assert response["Content-Disposition"] == f'inline; filename="{name}.manifest.json"'


# --- the ledger view -----------------------------------------------------------------------------


def test_the_ledger_view_pages_back_through_blocks_without_payloads(access_log, logged, auditor, ledger):
    for number in range(3):
        logged(f"more-{number}", [access_event(f"more-{number}")])
    height = ledger.height()

    first = api_as(auditor).get(BLOCKS, {"limit": 2}).json()
    second = api_as(auditor).get(BLOCKS, {"limit": 2, "before": first["next_before"]}).json()

    assert [b["number"] for b in first["blocks"]] == [height - 1, height - 2]
    assert first["next_before"] == height - 2
    assert [b["number"] for b in second["blocks"]] == [height - 3, height - 4]
    newest = first["blocks"][0]
    assert newest["hash"] == ledger.block_summary(height - 1).hash
    assert first["blocks"][1]["hash"] == newest["previous_hash"]
    assert newest["transaction_count"] == len(newest["transactions"]) == 1
    assert newest["transactions"][0] == {
        "tx_id": newest["transactions"][0]["tx_id"],
        "status": "VALID",
        "contract": "accesslog",
        "function": "AppendAccessEvents",
        "timestamp": newest["transactions"][0]["timestamp"],
    }
    text = json.dumps(first) + json.dumps(second)
    for event in access_log.values():
        assert event["patient_pseudonym"] not in text
        assert event["event_id"] not in text
    everything = api_as(auditor).get(BLOCKS, {"limit": 100}).json()
    assert [b["number"] for b in everything["blocks"]] == list(range(height - 1, -1, -1))
    assert everything["next_before"] is None


@pytest.mark.parametrize("query", [{"limit": 0}, {"limit": 101}, {"before": -1}, {"limit": "many"}])
def test_bad_ledger_view_parameters_are_400(auditor, ledger, query):
    response = api_as(auditor).get(BLOCKS, query)

    assert (response.status_code, response.json()["code"]) == (400, "validation_failed")
    assert set(response.json()["detail"]) == set(query)
