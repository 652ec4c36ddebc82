"""Factories for users, patients and FHIR resources (plain dicts, as a sender would post them)."""

import json
from typing import Any

import factory
from django.contrib.auth import get_user_model
from factory.django import DjangoModelFactory

from chaincode.vocabulary import OBSERVATION_CATEGORY_SYSTEM
from health_platform.fhir_codes import UCUM
from health_platform.roles import Role, role_group
from records.codes import FEATURE_SYSTEM
from records.crypto import patient_pseudonym
from records.models import Patient

PASSWORD = "a-test-password-not-for-anything"
MRN_SYSTEM = "https://hospital.example/fhir/NamingSystem/mrn"


class UserFactory(DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    password = factory.PostGenerationMethodCall("set_password", PASSWORD)

    @factory.post_generation
    def roles(self, create: bool, extracted: Any, **kwargs: Any) -> None:
        """UserFactory(roles=[Role.PATIENT]): the groups come from migration health_platform/0001_roles."""
        self.save()
        for role in extracted or ():
            self.groups.add(role_group(Role(role)))


class PatientFactory(DjangoModelFactory):
    class Meta:
        model = Patient

    class Params:
        mrn = factory.Sequence(lambda n: f"MRN-{n:06d}")

    pseudonym = factory.LazyAttribute(lambda o: patient_pseudonym(f"{MRN_SYSTEM}|{o.mrn}"))
    user = None


def patient_account(username: str):
    """A user holding the patient role and linked to a patient of their own (who has no records)."""
    user = UserFactory(username=username, roles=[Role.PATIENT])
    PatientFactory(user=user)
    return user


class PatientResourceFactory(factory.DictFactory):
    class Params:
        mrn = factory.Sequence(lambda n: f"MRN-{n:06d}")

    resourceType = "Patient"  # noqa: N815 (FHIR field names)
    id = factory.Sequence(lambda n: f"patient-{n}")
    identifier = factory.LazyAttribute(lambda o: [{"system": MRN_SYSTEM, "value": o.mrn}])


class ObservationResourceFactory(factory.DictFactory):
    class Params:
        patient = None  # the Patient resource dict this observation is about
        category_code = "laboratory"
        code_value = "db-glu"
        display = "Blood sugar level (glu)"
        value = 87.0
        unit = "mg/dL"

    resourceType = "Observation"  # noqa: N815
    id = factory.Sequence(lambda n: f"observation-{n}")
    status = "final"
    category = factory.LazyAttribute(
        lambda o: [{"coding": [{"system": OBSERVATION_CATEGORY_SYSTEM, "code": o.category_code}]}]
    )
    code = factory.LazyAttribute(
        lambda o: {"coding": [{"system": FEATURE_SYSTEM, "code": o.code_value, "display": o.display}]}
    )
    subject = factory.LazyAttribute(lambda o: {"reference": f"Patient/{o.patient['id']}"})
    valueQuantity = factory.LazyAttribute(lambda o: {"value": o.value, "unit": o.unit})  # noqa: N815


def bundle(*resources: dict[str, Any], bundle_type: str = "collection") -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": bundle_type, "entry": [{"resource": r} for r in resources]}


def encode(document: Any) -> bytes:
    return json.dumps(document).encode()


def patient_with_observations(
    *, mrn: str | None = None, values: tuple[float, ...] = (87.0,), category_code: str = "laboratory", **kwargs: Any
) -> list[dict[str, Any]]:
    """A Patient resource followed by one Observation per value."""
    patient = PatientResourceFactory(**({"mrn": mrn} if mrn else {}))
    return [patient] + [
        ObservationResourceFactory(patient=patient, value=value, category_code=category_code, **kwargs)
        for value in values
    ]


NATIONAL_ID_SYSTEM = "https://national-registry.example/fhir/NamingSystem/national-id"
V2_IDENTIFIER_TYPE = "http://terminology.hl7.org/CodeSystem/v2-0203"


def project_coded_bundle(patients: list[Any]) -> dict[str, Any]:
    """The demo `patients` (records.demo.DemoPatient) as a collection bundle coded the project's way only: every
    Observation under its project code, with its category."""
    from records.codes import FEATURE_SYSTEM, feature_codes_for_dataset
    from records.demo import demo_patient_resources

    resources = []
    for patient in patients:
        features = iter(feature_codes_for_dataset(patient.dataset))
        for resource in demo_patient_resources(patient):
            if resource["resourceType"] == "Observation":
                feature = next(features)
                resource["code"] = {"coding": [{"system": FEATURE_SYSTEM, "code": feature.code}]}
            resources.append(resource)
    return bundle(*resources)


def ehr_transaction_bundle(patients: list[Any], *, bundle_type: str = "transaction") -> dict[str, Any]:
    """The same values as an EHR feed sends them: a transaction of POSTs with urn:uuid fullUrls, each Patient known by
    a hospital MRN and a national id (typed, each with its system), each Observation coded as the code map says
    (LOINC where it has one) and with no category."""
    import uuid

    from records.codes import feature_codes_for_dataset

    entries = []
    for patient in patients:
        patient_url = f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, patient.identifier)}"
        identifiers = [
            {"type": {"coding": [{"system": V2_IDENTIFIER_TYPE, "code": "MR"}]}, "system": MRN_SYSTEM},
            {"type": {"coding": [{"system": V2_IDENTIFIER_TYPE, "code": "NI"}]}, "system": NATIONAL_ID_SYSTEM},
        ]
        identifiers[0]["value"], identifiers[1]["value"] = f"MRN-{patient.identifier}", f"NI-{patient.identifier}"
        entries.append(
            {
                "fullUrl": patient_url,
                "resource": {"resourceType": "Patient", "identifier": identifiers},
                "request": {"method": "POST", "url": "Patient"},
            }
        )
        for feature, value in zip(feature_codes_for_dataset(patient.dataset), patient.features, strict=True):
            system, code = feature.coding
            entries.append(
                {
                    "fullUrl": f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, f'{patient.identifier}/{feature.code}')}",
                    "resource": {
                        "resourceType": "Observation",
                        "status": "final",
                        "code": {"coding": [{"system": system, "code": code}], "text": feature.display},
                        "subject": {"reference": patient_url},
                        "valueQuantity": {"value": value, "unit": feature.unit, "system": UCUM, "code": feature.unit},
                    },
                    "request": {"method": "POST", "url": "Observation"},
                }
            )
    return {"resourceType": "Bundle", "type": bundle_type, "entry": entries}
