"""The audit management commands: rebuild the mirror from the ledger, verify the mirror or a file."""

import hashlib
import io
import json

import pytest
from django.core.management import CommandError, call_command

from audit.exports import export_path
from audit.models import EXTENSIONS, AccessEvent, AuditExport
from audit.selectors import AccessEventFilters, audit_export_manifest
from audit.services import audit_export_create
from health_platform import bootstrap
from tests.audit.conftest import access_event

pytestmark = pytest.mark.django_db(transaction=True)


def test_rebuild_restores_a_deleted_mirror(logged, eager, capsys):
    logged("b1", [access_event("e1"), access_event("e2")])
    AccessEvent.objects.all().delete()

    call_command("rebuild_access_log_mirror")

    assert "2 events" in capsys.readouterr().out
    assert set(AccessEvent.objects.values_list("event_id", flat=True)) == {"e1", "e2"}


def verify(*arguments):
    out = io.StringIO()
    call_command("verify_access_log", *arguments, stdout=out)
    return json.loads(out.getvalue())


def test_verify_reports_the_mirror_clean_then_names_an_edit(logged, eager):
    logged("b1", [access_event("e1")])
    assert verify()["ok"] is True

    AccessEvent.objects.filter(event_id="e1").update(grantee="clinician:mallory")
    out = io.StringIO()
    with pytest.raises(SystemExit) as failed:
        call_command("verify_access_log", stdout=out)

    assert failed.value.code == 1
    problems = json.loads(out.getvalue())["problems"]
    assert problems == [{"event_id": "e1", "kind": "changed", "fields": ["grantee"]}]


def test_verify_checks_an_export_file_by_its_extension(logged, audit_user, export_dir, eager, tmp_path):
    logged("b1", [access_event("e1")])
    created = audit_export_create(requester=audit_user, format="fhir", filters=AccessEventFilters())
    path = export_path(AuditExport.objects.get(pk=created.pk))
    manifest = audit_export_manifest(export=AuditExport.objects.get(pk=created.pk))
    path.with_name(f"{path.name}.manifest.json").write_text(json.dumps(manifest))  # without it: exit 3

    assert verify(str(path))["checked"] == 1

    broken = tmp_path / "copy.csv"
    broken.write_text("not,the,header\n")
    with pytest.raises(CommandError, match="invalid_export_file: the CSV header is not the export's"):
        call_command("verify_access_log", str(broken))


# --- a copy, checked against its manifest --------------------------------------------------------

FORMATS = ["csv", "json", "fhir"]


def exported_copy(logged, user, folder, format):
    """Two batches logged (b1: e0..e3 of req-1, b2: f0, f1 of req-2), exported whole in `format`, copied to
    `folder` with its manifest beside it as the portal saves it. Returns (export, copy path, manifest path)."""
    logged("b1", [access_event(f"e{i}") for i in range(4)])
    logged("b2", [access_event(f"f{i}", request_id="req-2") for i in range(2)])
    created = audit_export_create(requester=user, format=format, filters=AccessEventFilters())
    done = AuditExport.objects.get(pk=created.pk)
    assert (done.status, done.verification["ok"]) == ("completed", True)
    copy = folder / f"copy.{EXTENSIONS[format]}"
    copy.write_bytes(export_path(done).read_bytes())
    manifest = folder / f"{copy.name}.manifest.json"
    manifest.write_text(json.dumps(audit_export_manifest(export=done)))
    return done, copy, manifest


def row_index(lines, event_id, format):
    """The line of `event_id`'s row in an export file of `format`."""
    marks = {"csv": f"{event_id},", "json": f'"event_id": "{event_id}"', "fhir": f'"valueString":"{event_id}"'}
    found = [
        i for i, line in enumerate(lines) if (line.startswith if format == "csv" else line.__contains__)(marks[format])
    ]
    assert len(found) == 1, (event_id, found)
    return found[0]


def edited(path, format, edit):
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(edit(lines, lambda event_id: row_index(lines, event_id, format))))


def outcome(*arguments):
    """(exit code, printed result, stderr) of verify_access_log."""
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command("verify_access_log", *arguments, stdout=out, stderr=err)
        code = 0
    except SystemExit as exit:
        code = exit.code
    return code, json.loads(out.getvalue()), err.getvalue()


def named(result):
    return [(p["event_id"], p["kind"], tuple(p["fields"])) for p in result["problems"]]


@pytest.mark.parametrize("format", FORMATS)
def test_an_untouched_copy_with_its_manifest_beside_it_verifies(
    logged, audit_user, export_dir, eager, tmp_path, format
):
    done, copy, _ = exported_copy(logged, audit_user, tmp_path, format)

    code, result, _ = outcome(str(copy))

    assert (code, result["ok"], result["completeness_checked"], result["matches_export"]) == (0, True, True, True)
    assert (result["checked"], result["completeness"]["expected"], result["export_id"]) == (6, 6, str(done.id))


@pytest.mark.parametrize("format", FORMATS)
def test_a_copy_with_one_row_deleted_exits_1_naming_the_event(logged, audit_user, export_dir, eager, tmp_path, format):
    _, copy, _ = exported_copy(logged, audit_user, tmp_path, format)
    edited(copy, format, lambda lines, at: lines[: at("e2")] + lines[at("e2") + 1 :])

    code, result, err = outcome(str(copy))

    assert (code, result["ok"], result["matches_export"]) == (1, False, False)
    assert named(result) == [("e2", "missing_from_copy", ())]
    assert "1 problem found" in err


def _swap(lines, at):
    first, second = at("e1"), at("e2")
    lines[first], lines[second] = lines[second], lines[first]
    return lines


def _added(late_line):
    def add(lines, at):
        last = at("f1")
        return [*lines[: last + 1], late_line, *lines[last + 1 :]]

    return add


EDITS = {
    "a whole batch deleted": (
        lambda lines, at: lines[: at("f0")] + lines[at("f1") + 1 :],
        [("f0", "missing_from_copy", ()), ("f1", "missing_from_copy", ())],
    ),
    "two rows swapped": (_swap, [("e1", "reordered", ())]),
    "a field changed": (
        lambda lines, at: [
            *lines[: at("e3")],
            lines[at("e3")].replace("clinician:alice", "clinician:mallory"),
            *lines[at("e3") + 1 :],
        ],
        [("e3", "changed", ("grantee",))],
    ),
    "a row repeated": (
        lambda lines, at: [*lines[: at("e1") + 1], lines[at("e1")], *lines[at("e1") + 1 :]],
        [("e1", "duplicated", ())],
    ),
}


@pytest.mark.parametrize("edit", EDITS)
@pytest.mark.parametrize("format", FORMATS)
def test_an_edited_copy_fails_naming_the_event(logged, audit_user, export_dir, eager, tmp_path, format, edit):
    _, copy, _ = exported_copy(logged, audit_user, tmp_path, format)
    change, expected = EDITS[edit]
    edited(copy, format, change)

    code, result, _ = outcome(str(copy))

    assert (code, result["ok"]) == (1, False)
    assert named(result) == expected


@pytest.mark.parametrize("format", FORMATS)
def test_a_row_of_an_event_the_export_did_not_cover_is_named(logged, audit_user, export_dir, eager, tmp_path, format):
    """A real ledger event added to a copy (logged after the export was asked for, so another export's) fails."""
    _, copy, _ = exported_copy(logged, audit_user, tmp_path, format)
    logged("b3", [access_event("late-1", request_id="req-3")])
    later = export_path(
        AuditExport.objects.get(
            pk=audit_export_create(
                requester=audit_user, format=format, filters=AccessEventFilters(request_id="req-3")
            ).pk
        )
    )
    late_lines = later.read_text().splitlines(keepends=True)
    edited(copy, format, _added(late_lines[row_index(late_lines, "late-1", format)]))

    code, result, _ = outcome(str(copy))

    assert (code, result["ok"]) == (1, False)
    assert named(result) == [("late-1", "out_of_scope", ())]


@pytest.mark.parametrize("format", FORMATS)
def test_a_copy_without_a_manifest_is_not_verified_complete(logged, audit_user, export_dir, eager, tmp_path, format):
    _, copy, manifest = exported_copy(logged, audit_user, tmp_path, format)
    manifest.unlink()
    edited(copy, format, lambda lines, at: lines[: at("e2")] + lines[at("e2") + 1 :])

    code, result, err = outcome(str(copy))

    assert (code, result["ok"], result["completeness_checked"], result["problem_count"]) == (3, False, False, 0)
    assert result["message"] == "completeness was not checked: no manifest"
    assert "completeness was not checked: no manifest" in err
    assert "--manifest" in err


def test_the_manifest_can_be_named_and_gives_the_format(logged, audit_user, export_dir, eager, tmp_path):
    _, copy, manifest = exported_copy(logged, audit_user, tmp_path, "fhir")
    elsewhere = tmp_path / "evidence" / "the-manifest.json"
    elsewhere.parent.mkdir()
    manifest.rename(elsewhere)
    unnamed = copy.rename(tmp_path / "copy.txt")

    code, result, _ = outcome(str(unnamed), "--manifest", str(elsewhere))

    assert (code, result["ok"]) == (0, True)


def refused(*arguments):
    with pytest.raises(CommandError) as error:
        call_command("verify_access_log", *arguments, stdout=io.StringIO(), stderr=io.StringIO())
    return error.value


def manifest_edited(path, **changes):
    values = json.loads(path.read_text())
    for name, value in changes.items():
        if name == "sha256":
            values["file"]["sha256"] = value
        else:
            values[name] = value
    path.write_text(json.dumps(values))


@pytest.mark.parametrize("format", FORMATS)
def test_a_manifest_edited_to_fit_a_tampered_copy_is_refused(logged, audit_user, export_dir, eager, tmp_path, format):
    """The manifest is no anchor: its SHA-256 must be the ledger's, its filters the platform's record."""
    _, copy, manifest = exported_copy(logged, audit_user, tmp_path, format)
    edited(copy, format, lambda lines, at: lines[: at("f0")] + lines[at("f1") + 1 :])  # req-2's batch cut out
    original = manifest.read_text()

    manifest_edited(manifest, sha256=hashlib.sha256(copy.read_bytes()).hexdigest(), count=4)
    other_sha = refused(str(copy))
    manifest.write_text(original)
    manifest_edited(manifest, filters={"request_id": "req-1"}, count=4)
    other_filters = refused(str(copy))

    assert (other_sha.returncode, str(other_sha)) == (
        4,
        "invalid_manifest: it does not match the ledger's entry of the export",
    )
    assert (other_filters.returncode, str(other_filters)) == (
        4,
        "invalid_manifest: it does not match the platform's record of the export",
    )


def test_without_the_platforms_record_the_ledger_still_anchors_the_manifest(
    logged, audit_user, export_dir, eager, tmp_path
):
    done, copy, manifest = exported_copy(logged, audit_user, tmp_path, "csv")
    AuditExport.objects.filter(pk=done.pk).delete()  # another organisation's platform: no record of this export

    code, result, _ = outcome(str(copy))
    assert (code, result["ok"], result["matches_export"]) == (0, True, True)
    edited(copy, "csv", lambda lines, at: lines[: at("e0")] + lines[at("e0") + 1 :])
    manifest_edited(manifest, sha256=hashlib.sha256(copy.read_bytes()).hexdigest())
    assert str(refused(str(copy))) == "invalid_manifest: it does not match the ledger's entry of the export"


def test_a_manifest_of_another_export_or_format_is_refused(logged, audit_user, export_dir, eager, tmp_path):
    _, copy, manifest = exported_copy(logged, audit_user, tmp_path, "csv")
    second = AuditExport.objects.get(
        pk=audit_export_create(requester=audit_user, format="csv", filters=AccessEventFilters()).pk
    )
    as_json = AuditExport.objects.get(
        pk=audit_export_create(requester=audit_user, format="json", filters=AccessEventFilters()).pk
    )

    manifest.write_text(json.dumps(audit_export_manifest(export=second)))
    another_export = refused(str(copy))
    manifest.write_text(json.dumps(audit_export_manifest(export=as_json)))
    another_format = refused(str(copy))

    assert str(another_export) == "invalid_manifest: the copy is the file of another export"
    assert str(another_format) == "invalid_manifest: the manifest describes an export in another format"
    assert another_export.returncode == another_format.returncode == 4


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"secret-value, not JSON", "invalid_manifest: it is not JSON"),
        (b'["secret-value"]', "invalid_manifest: it is not a JSON object"),
        (b'{"status": "completed", "export_id": "secret-value"}', "invalid_manifest: export_id is not an export id"),
        (b"{" + b'"pad": "' + b"x" * 70_000 + b'"}', "invalid_manifest: it is larger than 65536 bytes"),
    ],
)
def test_a_malformed_manifest_is_refused_without_echoing_it(
    logged, audit_user, export_dir, eager, tmp_path, content, message
):
    _, copy, manifest = exported_copy(logged, audit_user, tmp_path, "csv")
    manifest.write_bytes(content)

    error = refused(str(copy))

    assert (str(error), error.returncode) == (message, 4)


def test_a_batch_the_mirror_never_received_is_named_missing(logged, ledger, eager):
    """The mirror is written after the ledger commits: a process that dies between the two leaves a batch on the
    ledger that the mirror lacks. The mirror's verification enumerates the ledger, so it names that batch."""
    logged("b1", [access_event("e1")])
    bootstrap.contracts().append_access_events(batch_id="b2", events=[access_event("e2"), access_event("e3")])

    code, result, _ = outcome()

    assert (code, result["ok"]) == (1, False)
    assert named(result) == [("e2", "missing_from_copy", ()), ("e3", "missing_from_copy", ())]
