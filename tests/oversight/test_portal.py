"""The auditors' misuse alerts in the portal and the API: listed with their reasons, triaged on the ledger, scored on
demand; nobody else reaches them."""

from datetime import timedelta

import pytest
from django.utils.html import escape
from rest_framework.test import APIClient

from oversight import services
from oversight.models import Alert
from tests.oversight.conftest import SCORED, snooping


@pytest.fixture
def alert(history, clinician):
    snooping(history, clinician)
    (raised,) = services.misuse_score(until=SCORED + timedelta(days=1)).alerts
    return raised


def api(user):
    client = APIClient()
    client.force_authenticate(user)
    return client


def test_the_auditor_sees_the_alert_with_its_reasons_and_triages_it_in_the_portal(alert, auditor, client):
    client.force_login(auditor)
    listed = client.get("/oversight/alerts/").content.decode()
    assert f'data-alert-id="{alert.id}" data-status="open"' in listed
    assert all(escape(reason["text"]) in listed for reason in alert.reasons)
    page = client.get(f"/oversight/alerts/{alert.id}/").content.decode()
    assert alert.detector.weights_sha256 in page
    assert 'id="verdict-form"' in page
    missing_note = client.post(f"/oversight/alerts/{alert.id}/triage/", {"verdict": "dismissed", "note": " "})
    assert missing_note.status_code == 400
    assert 'data-error-code="invalid_note"' in missing_note.content.decode()
    done = client.post(f"/oversight/alerts/{alert.id}/triage/", {"verdict": "dismissed", "note": "On call that night."})
    assert done.status_code == 302
    assert Alert.objects.get().verdict == "dismissed"
    assert 'id="verdict-note"' in client.get(f"/oversight/alerts/{alert.id}/").content.decode()


@pytest.mark.parametrize("who", ["clinician", "patient", "custodian"])
def test_nobody_but_auditors_reaches_the_alerts(alert, who, clinician, custodian, cohort, client):
    user = {"clinician": clinician, "custodian": custodian}.get(who) or cohort(1)[0][0]
    client.force_login(user)
    assert client.get("/oversight/alerts/").status_code == 403
    assert client.get(f"/oversight/alerts/{alert.id}/").status_code == 403
    assert (
        client.post(f"/oversight/alerts/{alert.id}/triage/", {"verdict": "dismissed", "note": "x"}).status_code == 403
    )
    assert api(user).get("/api/oversight/alerts/").status_code == 403
    assert api(user).post("/api/oversight/scoring-runs/", {}, format="json").status_code == 403
    assert Alert.objects.get().verdict == ""


def test_the_api_lists_reads_and_triages(alert, auditor):
    client = api(auditor)
    (listed,) = client.get("/api/oversight/alerts/?status=open").json()
    assert listed["alert_id"] == str(alert.id)
    assert listed["detector_sha256"] == alert.detector.weights_sha256
    assert {r["code"] for r in listed["reasons"]} >= {"repeated_reads"}
    assert client.get("/api/oversight/alerts/?status=whatever").json()["code"] == "invalid_status"
    assert client.get("/api/oversight/alerts/not-an-id/").status_code == 404
    bad = client.post(f"/api/oversight/alerts/{alert.id}/triage/", {"verdict": "confirmed"}, format="json")
    assert (bad.status_code, bad.json()["code"], set(bad.json()["detail"])) == (400, "validation_failed", {"note"})
    done = client.post(
        f"/api/oversight/alerts/{alert.id}/triage/", {"verdict": "confirmed", "note": "Confirmed."}, format="json"
    )
    assert done.json()["status"] == "confirmed"
    assert done.json()["verdict_tx_id"]


def test_scoring_on_demand_runs_the_task(history, clinician, auditor, eager_tasks):
    snooping(history, clinician)
    queued = api(auditor).post(
        "/api/oversight/scoring-runs/", {"until": str(SCORED + timedelta(days=1))}, format="json"
    )
    assert queued.status_code == 202
    assert Alert.objects.filter(grantee_id=clinician.clinician_profile.grantee_id, day=SCORED).exists()
    bad = api(auditor).post("/api/oversight/scoring-runs/", {"days": 400}, format="json")
    assert (bad.status_code, bad.json()["code"], set(bad.json()["detail"])) == (400, "validation_failed", {"days"})
