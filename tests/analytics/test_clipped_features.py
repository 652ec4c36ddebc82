"""A record whose features were clipped to the model's documented range is marked on every result row.

Clipping keeps one extreme value from corrupting the records packed with it (analytics.diagnostic_models.clip),
but the clipped record's own score is then that of values it does not have: a feature of -1e15 came back a
confident "benign". Which records were clipped is kept per batch (ids only, never the values) and every way
a clinician reads results says so: the API's results, the portal's table, the encrypted-scores download and
the requester-held client's output.
"""

import json
import re

import pytest
from django.urls import reverse
from rest_framework.authtoken.models import Token

from analytics import client as requester_client
from analytics.models import AnalysisBatch, AnalysisStatus
from analytics.services import analysis_request_create
from health_platform.roles import Role
from records.codes import BREAST_CANCER_DATASET
from records.crypto import patient_pseudonym
from records.demo import demo_bundles, demo_patients
from records.models import Record
from records.services import patient_link_user, record_ingest
from tests.analytics.test_requester_mode import ApiThroughTestClient
from tests.clients import api_as, html_of, signed_in
from tests.conftest import grant
from tests.records.factories import UserFactory

pytestmark = [pytest.mark.he, pytest.mark.django_db(transaction=True)]

EXTREME = -1e15


def extreme_patient(clinician) -> Record:
    """Demo patient 2 with a mean radius of -1e15, ingested, consenting to `clinician`: their imaging record."""
    demo = demo_patients(dataset=BREAST_CANCER_DATASET, count=3)[2]
    (document,) = demo_bundles(patients=[demo], max_entries=1000)
    for entry in document["entry"]:
        resource = entry["resource"]
        if resource["resourceType"] == "Observation" and resource["code"]["coding"][0]["code"] == "bc-mean-radius":
            resource["valueQuantity"]["value"] = EXTREME
    record_ingest(raw_body=json.dumps(document).encode(), actor=UserFactory(username="custodian-extreme"))
    record = Record.objects.get(patient__pseudonym=patient_pseudonym(demo.patient_key), category="imaging")
    user = UserFactory(username="patient-extreme", roles=[Role.PATIENT])
    patient_link_user(patient=record.patient, user=user)
    grant(user, record.patient, clinician)
    return record


@pytest.fixture
def mixed(cohort, clinician, models_registered):
    """Two demo patients within range and one with an extreme feature, all consenting: (ordinary ids, extreme id)."""
    people = cohort(2)
    for user, patient, _ in people:
        grant(user, patient, clinician)
    extreme = extreme_patient(clinician)
    return {str(record.id) for _, _, record in people}, str(extreme.id)


def test_the_batch_keeps_which_records_were_clipped_and_the_results_mark_them(mixed, clinician, blob_dir, eager):
    ordinary, extreme = mixed

    request = analysis_request_create(requester=clinician, model_name="breast-cancer", cohort_kind="consented")

    request.refresh_from_db()
    assert request.status == AnalysisStatus.COMPLETED
    (batch,) = AnalysisBatch.objects.filter(request=request)
    assert (batch.clipped_record_ids, batch.clipped_count) == ([extreme], 1)
    assert str(EXTREME) not in json.dumps(batch.clipped_record_ids)
    # The API's results: every row says whether it was clipped, the summary counts them.
    body = api_as(clinician).get(f"/api/analyses/{request.id}/results/").json()
    assert {row["record_id"]: row["clipped"] for row in body["rows"]} == {
        **dict.fromkeys(ordinary, False),
        extreme: True,
    }
    assert body["summary"]["clipped"] == 1
    # The portal: the extreme record's row carries the visible mark, explained above the table.
    html = html_of(signed_in(clinician).get(reverse("analytics:detail", kwargs={"analysis_id": request.id})))
    rows = dict(re.findall(r'<tr data-record-id="([^"]+)">(.*?)</tr>', html, re.S))
    assert set(rows) == {*ordinary, extreme}
    assert 'class="clipped-mark"' in rows[extreme]
    assert ">Clipped</a>" in rows[extreme]
    assert not any("clipped-mark" in rows[record_id] for record_id in ordinary)
    note = re.search(r'<p id="clipped-note".*?</p>', html, re.S).group(0)
    assert "1 record was scored on clipped values" in note
    assert "outside" in note
    assert 'data-summary="clipped">1<' in html


def test_an_analysis_with_nothing_clipped_shows_no_mark(cohort, clinician, models_registered, blob_dir, eager):
    for user, patient, _ in cohort(2):
        grant(user, patient, clinician)

    request = analysis_request_create(requester=clinician, model_name="breast-cancer", cohort_kind="consented")

    body = api_as(clinician).get(f"/api/analyses/{request.id}/results/").json()
    assert [row["clipped"] for row in body["rows"]] == [False, False]
    assert body["summary"]["clipped"] == 0
    html = html_of(signed_in(clinician).get(reverse("analytics:detail", kwargs={"analysis_id": request.id})))
    assert "clipped-mark" not in html
    assert 'id="clipped-note"' not in html


def test_the_encrypted_scores_and_the_requester_held_client_mark_clipped_records(
    mixed, clinician, blob_dir, eager, tmp_path
):
    ordinary, extreme = mixed
    requester_client.keygen(tmp_path / "keys")
    api = ApiThroughTestClient(Token.objects.create(user=clinician).key)
    created = requester_client.submit(api, model="breast-cancer", keys=tmp_path / "keys")

    encrypted = api.call("GET", f"/api/analyses/{created['id']}/encrypted-scores/")
    results = requester_client.fetch(api, created["id"], keys=tmp_path / "keys")

    assert [chunk["clipped_record_ids"] for chunk in encrypted["chunks"]] == [[extreme]]
    assert {row["record_id"]: row["clipped"] for row in results["rows"]} == {
        **dict.fromkeys(ordinary, False),
        extreme: True,
    }
    assert results["summary"]["clipped"] == 1


def test_the_command_line_client_says_how_many_rows_were_clipped(mixed, clinician, blob_dir, eager, tmp_path, capsys):
    _, extreme = mixed
    requester_client.keygen(tmp_path / "keys")
    api = ApiThroughTestClient(Token.objects.create(user=clinician).key)
    created = requester_client.submit(api, model="breast-cancer", keys=tmp_path / "keys")
    out = tmp_path / "scores.json"
    capsys.readouterr()

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(requester_client, "Api", lambda url, token: api)
        status = requester_client.main(["fetch", created["id"], "--keys", str(tmp_path / "keys"), "--out", str(out)])

    assert status == 0
    assert [row["record_id"] for row in json.loads(out.read_text())["rows"] if row["clipped"]] == [extreme]
    assert "1 of them had a measurement outside the model's documented range" in capsys.readouterr().err
