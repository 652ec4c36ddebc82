"""GET /api/records/...: patients see their own, auditors and custodians metadata, clinicians nothing."""

import pytest
from rest_framework.authtoken.models import Token

from health_platform.roles import Role
from records.models import Patient, Record, RecordVersion
from records.services import patient_link_user, record_ingest
from tests.records.factories import MRN_SYSTEM, UserFactory, bundle, encode, patient_with_observations

URL = "/api/records/"
CLINICAL_VALUE = 271.828182
CLINICAL_DISPLAY = "Display-Text-Only-The-Patient-Sees"
OWNER_MRN = "MRN-OWNER-31337"


@pytest.fixture
def owner_and_other(custodian):
    """Two patients with accounts: the owner has a laboratory and an imaging record, the other one record."""
    owner_resources = patient_with_observations(mrn=OWNER_MRN, values=(CLINICAL_VALUE,), display=CLINICAL_DISPLAY)
    imaging = patient_with_observations(mrn=OWNER_MRN, values=(1.5,), category_code="imaging")[1:]
    for observation in imaging:
        observation["subject"] = {"reference": f"Patient/{owner_resources[0]['id']}"}
    other_resources = patient_with_observations(mrn="MRN-OTHER", values=(3.0,))
    record_ingest(raw_body=encode(bundle(*owner_resources, *imaging, *other_resources)), actor=custodian)
    owner = UserFactory(username="owner", roles=[Role.PATIENT])
    other = UserFactory(username="other", roles=[Role.PATIENT])
    from records.crypto import patient_pseudonym

    patient_link_user(patient=Patient.objects.get(pseudonym=patient_pseudonym(f"{MRN_SYSTEM}|{OWNER_MRN}")), user=owner)
    patient_link_user(patient=Patient.objects.get(pseudonym=patient_pseudonym(f"{MRN_SYSTEM}|MRN-OTHER")), user=other)
    return owner, other


def _record_of(user, category="laboratory"):
    return Record.objects.get(patient__user=user, category=category)


def _assert_no_clinical_content(response):
    for plaintext in (str(CLINICAL_VALUE), CLINICAL_DISPLAY, OWNER_MRN, "valueQuantity", "Observation"):
        assert plaintext.encode() not in response.content, plaintext


@pytest.mark.django_db
def test_patient_lists_only_their_own_records_with_latest_version(owner_and_other, client_for):
    owner, other = owner_and_other

    response = client_for(owner).get(URL)

    assert response.status_code == 200
    results = response.json()["results"]
    assert sorted(r["id"] for r in results) == sorted(str(r.pk) for r in Record.objects.filter(patient__user=owner))
    record = next(r for r in results if r["category"] == "laboratory")
    version = RecordVersion.objects.get(record=_record_of(owner))
    assert record["latest_version"] == {
        "version": 1,
        "sha256": version.sha256,
        "key_id": version.key_id,
        "anchor_state": "anchored",
        "anchor_tx_id": version.anchor_tx_id,
        "anchor_block": version.anchor_block,
        "anchored_at": record["latest_version"]["anchored_at"],
        "created_at": record["latest_version"]["created_at"],
    }
    assert str(_record_of(other).pk) not in response.content.decode()


@pytest.mark.django_db
def test_patient_reads_their_own_record_with_its_decrypted_bundle(owner_and_other, client_for):
    owner, _other = owner_and_other
    record = _record_of(owner)

    response = client_for(owner).get(f"{URL}{record.pk}/")

    assert response.status_code == 200
    body = response.json()
    assert body["id"] == str(record.pk)
    observations = [e["resource"] for e in body["bundle"]["entry"] if e["resource"]["resourceType"] == "Observation"]
    assert [o["valueQuantity"]["value"] for o in observations] == [CLINICAL_VALUE]
    assert body["bundle"]["entry"][0]["resource"]["identifier"][0]["value"] == OWNER_MRN


@pytest.mark.django_db
@pytest.mark.parametrize("suffix", ["", "integrity/"])
def test_patient_gets_404_for_another_patients_record(owner_and_other, client_for, suffix):
    owner, other = owner_and_other

    response = client_for(other).get(f"{URL}{_record_of(owner).pk}/{suffix}")

    assert response.status_code == 404
    assert response.json()["code"] == "not_found"
    _assert_no_clinical_content(response)


@pytest.mark.django_db
def test_unknown_and_malformed_record_ids_are_404(owner_and_other, client_for):
    owner, _other = owner_and_other

    assert client_for(owner).get(f"{URL}00000000-0000-0000-0000-000000000000/").status_code == 404
    assert client_for(owner).get(f"{URL}not-a-uuid/").status_code == 404


@pytest.mark.django_db
@pytest.mark.parametrize("role", [Role.AUDITOR, Role.CUSTODIAN])
def test_auditor_and_custodian_see_every_record_as_metadata_only(owner_and_other, client_for, role):
    owner, _other = owner_and_other
    reader = UserFactory(roles=[role])
    record = _record_of(owner)

    listing = client_for(reader).get(URL)
    detail = client_for(reader).get(f"{URL}{record.pk}/")

    assert listing.status_code == detail.status_code == 200
    assert listing.json()["count"] == Record.objects.count() == 3
    assert detail.json()["bundle"] is None
    version = RecordVersion.objects.get(record=record)
    assert detail.json()["patient_pseudonym"] == record.patient.pseudonym
    assert [v["sha256"] for v in detail.json()["versions"]] == [version.sha256]
    assert detail.json()["versions"][0]["anchor_state"] == "anchored"
    _assert_no_clinical_content(listing)
    _assert_no_clinical_content(detail)


@pytest.mark.django_db
@pytest.mark.parametrize("suffix", [None, "", "integrity/"], ids=["list", "detail", "integrity"])
def test_clinician_is_refused_every_record_read(owner_and_other, client_for, clinician, suffix):
    owner, _other = owner_and_other
    url = URL if suffix is None else f"{URL}{_record_of(owner).pk}/{suffix}"

    response = client_for(clinician).get(url)

    assert response.status_code == 403
    assert response.json()["code"] == "permission_denied"
    _assert_no_clinical_content(response)


@pytest.mark.django_db
@pytest.mark.parametrize("suffix", [None, "", "integrity/"], ids=["list", "detail", "integrity"])
def test_anonymous_is_refused_every_record_read(owner_and_other, api_client, suffix):
    owner, _other = owner_and_other
    url = URL if suffix is None else f"{URL}{_record_of(owner).pk}/{suffix}"

    response = api_client.get(url)

    assert response.status_code in (401, 403)
    assert response.json()["code"] == "not_authenticated"


@pytest.mark.django_db
def test_token_authentication_reads_own_records(owner_and_other, api_client):
    owner, _other = owner_and_other
    token = Token.objects.create(user=owner)

    response = api_client.get(URL, HTTP_AUTHORIZATION=f"Token {token.key}")

    assert response.status_code == 200
    assert response.json()["count"] == 2
    wrong = api_client.get(URL, HTTP_AUTHORIZATION="Token wrong")
    assert (wrong.status_code, wrong.json()["code"]) == (401, "authentication_failed")
    assert wrong["WWW-Authenticate"] == "Token"


@pytest.mark.django_db
def test_records_filter_by_category_and_anchor_state(
    owner_and_other, auditor, client_for, custodian, ledger_down, scheduled_anchoring
):
    record_ingest(raw_body=encode(bundle(*patient_with_observations(mrn="MRN-PENDING"))), actor=custodian)
    client = client_for(auditor)

    imaging = client.get(URL, {"category": "imaging"}).json()["results"]
    pending = client.get(URL, {"anchor_state": "pending"}).json()["results"]
    anchored = client.get(URL, {"anchor_state": "anchored", "category": "laboratory"}).json()["results"]

    assert [r["category"] for r in imaging] == ["imaging"]
    assert [r["patient_pseudonym"] for r in pending] == [
        Patient.objects.get(records__versions__anchor_state="pending").pseudonym
    ]
    assert len(anchored) == 2
    assert client.get(URL, {"category": "gossip"}).status_code == 400


@pytest.mark.django_db
@pytest.mark.parametrize("who", ["owner", "auditor", "custodian"])
def test_integrity_endpoint_reports_the_check_for_owner_auditor_and_custodian(
    owner_and_other, client_for, who, auditor, custodian
):
    owner, _other = owner_and_other
    user = {"owner": owner, "auditor": auditor, "custodian": custodian}[who]
    record = _record_of(owner)
    version = RecordVersion.objects.get(record=record)

    response = client_for(user).get(f"{URL}{record.pk}/integrity/")

    assert response.status_code == 200
    body = response.json()
    assert (body["ok"], body["reason"], body["version"]) == (True, "ok", 1)
    assert (body["sha256"], body["ledger_sha256"]) == (version.sha256, version.sha256)
    assert (body["tx_id"], body["block_number"]) == (version.anchor_tx_id, version.anchor_block)
    _assert_no_clinical_content(response)


@pytest.mark.django_db
def test_integrity_endpoint_reports_a_tampered_version(owner_and_other, client_for, auditor):
    owner, _other = owner_and_other
    record = _record_of(owner)
    RecordVersion.objects.filter(record=record).update(sha256="0" * 64)

    body = client_for(auditor).get(f"{URL}{record.pk}/integrity/").json()

    assert (body["ok"], body["reason"]) == (False, "hash_mismatch_local")


@pytest.mark.django_db
def test_integrity_endpoint_checks_a_requested_version(owner_and_other, client_for, auditor):
    owner, _other = owner_and_other
    record = _record_of(owner)

    assert client_for(auditor).get(f"{URL}{record.pk}/integrity/", {"version": 1}).json()["ok"] is True
    assert client_for(auditor).get(f"{URL}{record.pk}/integrity/", {"version": 9}).status_code == 404


@pytest.mark.django_db
def test_openapi_schema_documents_the_records_endpoints(auditor, client_for):
    response = client_for(auditor).get("/api/schema/", {"format": "json"})

    assert response.status_code == 200
    paths = response.json()["paths"]
    assert set(paths["/api/records/"]) >= {"get", "post"}
    assert set(paths["/api/records/"]["post"]["responses"]) >= {"201", "202", "400", "413"}
    assert "application/fhir+json" in paths["/api/records/"]["post"]["requestBody"]["content"]
    assert "/api/records/{id}/" in paths
    assert "/api/records/{id}/integrity/" in paths
