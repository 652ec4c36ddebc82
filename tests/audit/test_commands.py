"""The audit management commands: rebuild the mirror from the ledger, verify the mirror or a file."""

import io
import json

import pytest
from django.core.management import CommandError, call_command

from audit.exports import export_path
from audit.models import AccessEvent, AuditExport
from audit.selectors import AccessEventFilters
from audit.services import audit_export_create
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

    assert verify(str(path))["checked"] == 1

    broken = tmp_path / "copy.csv"
    broken.write_text("not,the,header\n")
    with pytest.raises(CommandError, match="invalid_export_file: the CSV header is not the export's"):
        call_command("verify_access_log", str(broken))
