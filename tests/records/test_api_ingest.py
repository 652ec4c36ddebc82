"""POST /api/records/: who may ingest, what it answers, and every rejection's status and code."""

import pytest
from django.urls import reverse

from health_platform.fhir_codes import LOINC
from health_platform.roles import Role
from records.codes import FEATURE_SYSTEM
from records.models import Patient, Record, RecordVersion
from records.tasks import anchor_pending_records
from tests.clients import staff_token
from tests.hostile.strategies import BUNDLE_REFUSAL_CODES
from tests.records.factories import (
    NATIONAL_ID_SYSTEM,
    ObservationResourceFactory,
    PatientResourceFactory,
    UserFactory,
    bundle,
    encode,
    patient_with_observations,
)

URL = "/api/records/"
FHIR_JSON = "application/fhir+json"
SECRET_TEXT = "VALUE-THAT-MUST-NOT-ECHO"


def test_ingest_url_is_the_record_list_url():
    assert reverse("records-api:record-list") == URL


@pytest.mark.django_db
def test_custodian_ingest_answers_201_with_anchored_records(custodian, client_for):
    resources = patient_with_observations(mrn="MRN-API", values=(1.0, 2.0))

    response = client_for(custodian).post(URL, data=encode(bundle(*resources)), content_type=FHIR_JSON)

    assert response.status_code == 201, response.content
    [record] = response.json()["records"]
    version = RecordVersion.objects.get()
    assert record == {
        "record_id": str(version.record_id),
        "version": 1,
        "category": "laboratory",
        "sha256": version.sha256,
        "patient_pseudonym": Patient.objects.get().pseudonym,
        "anchored": True,
        "tx_id": version.anchor_tx_id,
        "block_number": version.anchor_block,
        "unchanged": False,
    }


@pytest.mark.django_db
def test_ingest_answers_202_while_the_ledger_is_down_and_the_task_anchors_it_later(
    custodian, auditor, client_for, ledger_down, scheduled_anchoring, django_capture_on_commit_callbacks, settings
):
    with django_capture_on_commit_callbacks(execute=True):
        response = client_for(custodian).post(
            URL, data=encode(bundle(*patient_with_observations())), content_type="application/json"
        )

    assert response.status_code == 202, response.content
    [record] = response.json()["records"]
    assert (record["anchored"], record["tx_id"], record["block_number"]) == (False, None, None)
    assert scheduled_anchoring == [{"countdown": settings.ANCHOR_RETRY_COUNTDOWN_SECONDS}]
    pending = client_for(auditor).get(f"{URL}{record['record_id']}/integrity/").json()
    assert (pending["ok"], pending["reason"]) == (False, "not_anchored")

    ledger_down.up()
    assert anchor_pending_records.apply().get() == 1

    checked = client_for(auditor).get(f"{URL}{record['record_id']}/integrity/").json()
    assert (checked["ok"], checked["reason"]) == (True, "ok")
    assert checked["tx_id"] == RecordVersion.objects.get().anchor_tx_id


@pytest.mark.django_db
def test_superuser_may_ingest(client_for):
    admin = UserFactory(username="root", is_superuser=True, is_staff=True)

    response = client_for(admin).post(URL, data=encode(bundle(*patient_with_observations())), content_type=FHIR_JSON)

    assert response.status_code == 201


@pytest.mark.django_db
@pytest.mark.parametrize("role", [Role.PATIENT, Role.CLINICIAN, Role.AUDITOR])
def test_only_custodians_may_ingest(role, client_for):
    user = UserFactory(roles=[role])

    response = client_for(user).post(URL, data=encode(bundle(*patient_with_observations())), content_type=FHIR_JSON)

    assert response.status_code == 403
    assert response.json()["code"] == "permission_denied"
    assert Record.objects.count() == 0


@pytest.mark.django_db
def test_anonymous_ingest_is_refused(api_client):
    response = api_client.post(URL, data=encode(bundle(*patient_with_observations())), content_type=FHIR_JSON)

    assert response.status_code in (401, 403)
    assert response.json()["code"] == "not_authenticated"
    assert Record.objects.count() == 0


@pytest.mark.django_db
def test_token_authentication_works_for_ingest(custodian, api_client):
    token = staff_token("custodian")  # a session that passed the second factor asks for it

    response = api_client.post(
        URL,
        data=encode(bundle(*patient_with_observations())),
        content_type=FHIR_JSON,
        HTTP_AUTHORIZATION=f"Token {token}",
    )

    assert response.status_code == 201


def _with(resources_change):
    """A valid one-patient bundle, changed by `resources_change(patient, observation)`."""

    def build():
        patient = PatientResourceFactory(mrn="MRN-BAD")
        observation = ObservationResourceFactory(patient=patient, value=7.5)
        resources_change(patient, observation)
        return encode(bundle(patient, observation))

    return build


def _set(mapping, path, value):
    *parents, last = path
    for key in parents:
        mapping = mapping[key]
    mapping[last] = value


def _two_patients_sharing_a_national_id():
    """Two Patient entries with different MRNs (their first identifiers) and one national id: one person."""
    first, *first_observations = patient_with_observations(mrn="MRN-ONE")
    second, *second_observations = patient_with_observations(mrn="MRN-TWO")
    for patient in (first, second):
        patient["identifier"].append({"system": NATIONAL_ID_SYSTEM, "value": "NI-SHARED"})
    return encode(bundle(first, *first_observations, second, *second_observations))


def _two_observations_with_one_id():
    patient = PatientResourceFactory()
    return encode(
        bundle(
            patient,
            ObservationResourceFactory(patient=patient, id="same"),
            ObservationResourceFactory(patient=patient, id="same"),
        )
    )


BAD_INPUTS = {
    "malformed_json": (400, lambda: b'{"resourceType": "Bundle", '),
    "malformed_json:not_utf8": (400, lambda: b'{"resourceType": "\xff"}'),
    "malformed_json:duplicate_key": (400, lambda: b'{"resourceType": "Bundle", "resourceType": "Bundle"}'),
    "malformed_json:nan": (400, lambda: b'{"resourceType": "Bundle", "type": "collection", "x": NaN}'),
    "json_too_deep": (400, lambda: b'{"resourceType": "Bundle", "a": ' + b"[" * 40 + b"]" * 40 + b"}"),
    "json_too_deep:recursion_bomb": (400, lambda: b"[" * 200_000 + b"]" * 200_000),
    "not_a_bundle": (400, lambda: encode({"resourceType": "Patient", "id": "x"})),
    "not_a_bundle:array": (400, lambda: encode([bundle()])),
    "unsupported_bundle_type": (400, lambda: encode({**bundle(*patient_with_observations()), "type": "searchset"})),
    "empty_bundle": (400, lambda: encode(bundle())),
    "empty_bundle:no_observation": (400, lambda: encode(bundle(PatientResourceFactory()))),
    "unsupported_resource_type": (
        400,
        lambda: encode(bundle(*patient_with_observations(), {"resourceType": "Encounter", "status": "planned"})),
    ),
    "observation_subject_missing": (400, _with(lambda p, o: o.pop("subject"))),
    "observation_subject_unknown": (400, _with(lambda p, o: _set(o, ["subject", "reference"], "Patient/nobody"))),
    "observation_code_missing": (400, _with(lambda p, o: _set(o, ["code", "coding"], []))),
    # No category and a code the code map does not know (a known feature's code would give the category).
    "observation_category_missing": (
        400,
        _with(lambda p, o: (o.pop("category"), _set(o["code"]["coding"][0], ["code"], "not-a-feature"))),
    ),
    "observation_category_missing:loinc_code_unmapped": (
        400,
        _with(lambda p, o: (o.pop("category"), o.update(code={"coding": [{"system": LOINC, "code": "718-7"}]}))),
    ),
    "observation_category_ambiguous:features_of_two_categories": (
        400,
        _with(
            lambda p, o: (
                o.pop("category"),
                o["code"]["coding"].append({"system": FEATURE_SYSTEM, "code": "bc-mean-radius"}),
            )
        ),
    ),
    "observation_category_unknown": (400, _with(lambda p, o: _set(o["category"][0]["coding"][0], ["code"], "gossip"))),
    "patient_identifier_missing": (400, _with(lambda p, o: _set(p, ["identifier"], [{"value": "MRN-NO-SYSTEM"}]))),
    "duplicate_resource_id": (400, lambda: _two_observations_with_one_id()),
    "duplicate_resource_id:same_fullurl": (
        400,
        lambda: encode(
            {
                **bundle(),
                "entry": [
                    {"fullUrl": "urn:uuid:1", "resource": PatientResourceFactory()},
                    {"fullUrl": "urn:uuid:1", "resource": PatientResourceFactory()},
                ],
            }
        ),
    ),
    "duplicate_patient": (
        400,
        lambda: encode(
            bundle(*patient_with_observations(mrn="MRN-TWICE"), *patient_with_observations(mrn="MRN-TWICE"))
        ),
    ),
    "duplicate_patient:a_second_identifier_shared": (400, lambda: _two_patients_sharing_a_national_id()),
    "observation_category_ambiguous": (
        400,
        _with(
            lambda p, o: o["category"].append(
                {"coding": [{"system": o["category"][0]["coding"][0]["system"], "code": "imaging"}]}
            )
        ),
    ),
    "fhir_invalid": (400, _with(lambda p, o: _set(o, ["valueQuantity", "value"], SECRET_TEXT))),
}


@pytest.mark.django_db
@pytest.mark.parametrize("case", BAD_INPUTS, ids=list(BAD_INPUTS))
def test_bad_bundle_is_refused_with_its_code_and_nothing_is_stored(case, custodian, client_for, ledger):
    status, build = BAD_INPUTS[case]
    height = ledger.height()

    response = client_for(custodian).post(URL, data=build(), content_type=FHIR_JSON)

    assert response.status_code == status, response.content
    assert response.json()["code"] == case.split(":")[0]
    assert set(response.json()) == {"code", "message", "detail"}
    assert (Patient.objects.count(), Record.objects.count(), RecordVersion.objects.count()) == (0, 0, 0)
    assert ledger.height() == height


@pytest.mark.django_db
def test_resource_ids_are_unique_per_resource_type_not_across_types(custodian, client_for):
    patient = PatientResourceFactory(id="shared-id")
    observation = ObservationResourceFactory(patient=patient, id="shared-id")

    response = client_for(custodian).post(URL, data=encode(bundle(patient, observation)), content_type=FHIR_JSON)

    assert response.status_code == 201


@pytest.mark.django_db
def test_duplicate_resource_id_names_both_entries(custodian, client_for):
    response = client_for(custodian).post(URL, data=_two_observations_with_one_id(), content_type=FHIR_JSON)

    assert (response.status_code, response.json()["code"]) == (400, "duplicate_resource_id")
    assert response.json()["detail"] == {"entries": [1, 2], "path": "resource.id"}


@pytest.mark.django_db
def test_fhir_invalid_names_the_entry_and_field_path_but_never_the_value(custodian, client_for):
    patient = PatientResourceFactory()
    observation = ObservationResourceFactory(patient=patient)
    observation["valueQuantity"]["value"] = SECRET_TEXT
    observation["status"] = SECRET_TEXT.lower()

    response = client_for(custodian).post(URL, data=encode(bundle(patient, observation)), content_type=FHIR_JSON)

    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "fhir_invalid"
    assert {"entry": 1, "path": "resource.valueQuantity.value"} in body["detail"]["errors"]
    assert all(set(error) == {"entry", "path"} for error in body["detail"]["errors"])
    assert SECRET_TEXT.encode() not in response.content
    assert SECRET_TEXT.lower().encode() not in response.content


NOT_A_NUMBER = {
    "null": None,
    "numeric text": "12.5",
    "exponent text": "1e5",
    "NaN text": "NaN",
    "Infinity text": "Infinity",
    "other text": SECRET_TEXT,
    "true": True,
    "false": False,
    "list": [7.5],
    "object": {"value": 7.5},
}


@pytest.mark.django_db
@pytest.mark.parametrize("value", NOT_A_NUMBER.values(), ids=list(NOT_A_NUMBER))
def test_a_quantity_value_that_is_not_a_json_number_is_refused_at_ingest(value, custodian, client_for, ledger):
    """FHIR JSON gives a decimal as a number; fhir.resources lets null and numeric text through, which then
    reached the analysis as a record "missing" the model's measurement. Refused here, by entry and path."""
    patient = PatientResourceFactory()
    observations = [ObservationResourceFactory(patient=patient), ObservationResourceFactory(patient=patient)]
    observations[1]["valueQuantity"]["value"] = value
    height = ledger.height()

    response = client_for(custodian).post(URL, data=encode(bundle(patient, *observations)), content_type=FHIR_JSON)

    assert response.status_code == 400, response.content
    body = response.json()
    assert body["code"] == "fhir_invalid"
    assert body["detail"]["errors"][0] == {"entry": 2, "path": "resource.valueQuantity.value"}
    assert all(set(error) == {"entry", "path"} for error in body["detail"]["errors"])
    if isinstance(value, str):
        assert value.encode() not in response.content
    assert (Record.objects.count(), ledger.height()) == (0, height)


@pytest.mark.django_db
def test_a_components_quantity_value_must_be_a_json_number_too(custodian, client_for):
    patient = PatientResourceFactory()
    observation = ObservationResourceFactory(patient=patient)
    observation["component"] = [
        {"code": {"coding": [{"code": "a"}]}, "valueQuantity": {"value": 1.5}},
        {"code": {"coding": [{"code": "b"}]}, "valueQuantity": {"value": "2.5"}},
    ]

    response = client_for(custodian).post(URL, data=encode(bundle(patient, observation)), content_type=FHIR_JSON)

    assert (response.status_code, response.json()["code"]) == (400, "fhir_invalid")
    assert response.json()["detail"]["errors"] == [{"entry": 1, "path": "resource.component[1].valueQuantity.value"}]


@pytest.mark.django_db
def test_null_is_refused_anywhere_in_a_resource_naming_its_path(custodian, client_for):
    patient = PatientResourceFactory(mrn="MRN-NULLS")
    patient["birthDate"] = None
    patient["name"] = [{"family": "Doe", "given": ["Jo", None]}]
    observation = ObservationResourceFactory(patient=patient)
    observation["valueQuantity"]["unit"] = None

    response = client_for(custodian).post(URL, data=encode(bundle(patient, observation)), content_type=FHIR_JSON)

    assert (response.status_code, response.json()["code"]) == (400, "fhir_invalid")
    paths = [(error["entry"], error["path"]) for error in response.json()["detail"]["errors"]]
    assert paths[:2] == [(0, "resource.birthDate"), (0, "resource.name[0].given[1]")]
    assert (1, "resource.valueQuantity.unit") in paths
    assert Record.objects.count() == 0


@pytest.mark.django_db
def test_a_null_that_aligns_a_primitive_array_with_its_extensions_is_valid_fhir(custodian, client_for):
    """The one place FHIR JSON holds null: `given` and `_given` keep positions aligned (R4 JSON, 2.6.2.4)."""
    patient = PatientResourceFactory(mrn="MRN-ALIGNED")
    patient["name"] = [
        {
            "family": "Doe",
            "given": ["Jo", None],
            "_given": [None, {"extension": [{"url": "https://example.org/fhir/initial", "valueString": "Q"}]}],
        }
    ]
    observation = ObservationResourceFactory(patient=patient)

    response = client_for(custodian).post(URL, data=encode(bundle(patient, observation)), content_type=FHIR_JSON)

    assert response.status_code == 201, response.content


# Each limit set just under a 20-observation bundle, and the code it is refused with.
OVER_A_LIMIT = {
    "entries": ({"INGEST_MAX_ENTRIES": lambda body: 3}, "too_many_entries"),
    "bytes": ({"INGEST_MAX_BYTES": lambda body: len(body) - 1}, "payload_too_large"),
    "django's own upload limit": (
        {"INGEST_MAX_BYTES": lambda body: len(body) * 10, "DATA_UPLOAD_MAX_MEMORY_SIZE": lambda body: len(body) // 2},
        "payload_too_large",
    ),
}


@pytest.mark.django_db
@pytest.mark.parametrize(("limits", "code"), OVER_A_LIMIT.values(), ids=OVER_A_LIMIT.keys())
def test_a_bundle_over_a_limit_is_refused_with_413_and_nothing_is_stored(custodian, client_for, settings, limits, code):
    body = encode(bundle(*patient_with_observations(values=tuple(float(v) for v in range(20)))))
    for setting, value in limits.items():
        setattr(settings, setting, value(body))

    response = client_for(custodian).post(URL, data=body, content_type=FHIR_JSON)

    assert (response.status_code, response.json()["code"]) == (413, code)
    assert Record.objects.count() == 0


@pytest.mark.django_db
def test_form_encoded_body_is_refused_with_415(custodian, client_for):
    response = client_for(custodian).post(URL, data={"resourceType": "Bundle"})

    assert (response.status_code, response.json()["code"]) == (415, "unsupported_media_type")


@pytest.mark.django_db
def test_depth_limit_counts_nesting_not_brackets_inside_strings(custodian, client_for, settings):
    settings.INGEST_MAX_JSON_DEPTH = 8
    patient = PatientResourceFactory()
    observation = ObservationResourceFactory(patient=patient)
    observation["note"] = [{"text": '[[[[[[[[[[{{{{{{{{ \\" ]]]]'}]

    response = client_for(custodian).post(URL, data=encode(bundle(patient, observation)), content_type=FHIR_JSON)

    assert response.status_code == 201, response.content


def test_bad_input_cases_cover_every_documented_code():
    assert {case.split(":")[0] for case in BAD_INPUTS} == BUNDLE_REFUSAL_CODES
