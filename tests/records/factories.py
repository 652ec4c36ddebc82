"""Factories for users, patients and FHIR resources (plain dicts, as a sender would post them)."""

import json
from typing import Any

import factory
from django.contrib.auth import get_user_model
from factory.django import DjangoModelFactory

from chaincode.vocabulary import OBSERVATION_CATEGORY_SYSTEM
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
