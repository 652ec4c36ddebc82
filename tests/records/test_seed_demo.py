"""manage.py seed_demo, and the demo feature codes."""

import io
import re
from pathlib import Path

import pytest
from django.core.management import call_command

from consent.models import Consent
from health_platform.models import ClinicianProfile
from records.codes import FEATURE_CODES, feature_codes_for_dataset
from records.models import Patient, Record, RecordVersion

CODES_DOC = Path(__file__).resolve().parents[2] / "docs" / "CODES.md"


def _seed(patients: int) -> tuple[str, dict[str, tuple[str, str]]]:
    out = io.StringIO()
    call_command("seed_demo", "--patients", str(patients), stdout=out)
    text = out.getvalue()
    table = text[text.index("role ") :].splitlines()[1:]
    credentials = {}
    for line in table:
        role, username, password, *_second_factor = line.split()
        credentials[username] = (role, password)
    return text, credentials


@pytest.mark.django_db
def test_seed_demo_creates_anchored_records_and_printed_credentials_sign_in(client):
    text, credentials = _seed(patients=3)

    assert {role for role, _ in credentials.values()} == {
        "patient",
        "clinician",
        "auditor",
        "custodian",
        "model-steward",
    }
    for username, (_role, password) in credentials.items():
        assert client.login(username=username, password=password), username
        client.logout()
    token = client.post(
        "/api/auth/token/", {"username": "demo-patient-bc", "password": credentials["demo-patient-bc"][1]}
    )
    assert token.status_code == 200
    assert Record.objects.filter(category="imaging").count() == 3
    assert Record.objects.filter(category="laboratory").count() == 3
    assert set(RecordVersion.objects.values_list("anchor_state", flat=True)) == {"anchored"}
    assert "0 waiting for the ledger" in text
    printed = {"demo-patient-bc", "demo-patient-db"}
    linked = Patient.objects.exclude(user=None).select_related("user")
    assert printed <= {p.user.username for p in linked}
    # The other demo patients who consent got an account nobody can sign in to.
    assert all(not p.user.has_usable_password() for p in linked if p.user.username not in printed)
    consents = Consent.objects.all()
    assert consents.count() == 4  # rows 1 and 2 of each dataset; row 0 belongs to the printed patients
    assert {c.grantee for c in consents} == {"clinician:" + ClinicianProfile.objects.get().public_id}
    assert "4 demo patients granted the demo clinician consent" in text


@pytest.mark.django_db
def test_seeded_patient_record_carries_the_dataset_features_and_no_label(client):
    from sklearn.datasets import load_breast_cancer

    _text, credentials = _seed(patients=1)
    client.login(username="demo-patient-bc", password=credentials["demo-patient-bc"][1])

    [record] = client.get("/api/records/").json()["results"]
    document = client.get(f"/api/records/{record['id']}/").json()["bundle"]

    observations = [entry["resource"] for entry in document["entry"][1:]]
    by_code = {o["code"]["coding"][0]["code"]: o["valueQuantity"]["value"] for o in observations}
    expected = dict(
        zip(
            (f.code for f in feature_codes_for_dataset("breast_cancer")),
            load_breast_cancer().data[0].tolist(),
            strict=True,
        )
    )
    assert by_code == expected
    assert record["category"] == "imaging"
    for label_word in ("target", "malignant", "benign", "diagnosis"):
        assert label_word not in str(document)


@pytest.mark.django_db
def test_rerunning_seed_demo_resets_passwords_and_duplicates_nothing(client):
    _seed(patients=2)
    versions = list(RecordVersion.objects.values_list("pk", "sha256"))
    users_before = {u: p for u, (_r, p) in _seed(patients=2)[1].items()}

    text, credentials = _seed(patients=2)

    assert list(RecordVersion.objects.values_list("pk", "sha256")) == versions
    assert "0 new versions" in text
    for username, (_role, password) in credentials.items():
        assert password != users_before[username]
        assert not client.login(username=username, password=users_before[username])
        assert client.login(username=username, password=password)


@pytest.mark.django_db
def test_demo_datasets_give_every_row_and_build_valid_fhir_bundles():
    from records.bundles import bundle_parse
    from records.demo import demo_patient_resources, demo_patients
    from tests.records.factories import bundle, encode

    for dataset in ("breast_cancer", "diabetes"):
        patients = demo_patients(dataset=dataset, count=10_000)
        assert len(patients) == {"breast_cancer": 569, "diabetes": 442}[dataset]
        # One bundle of a handful of rows through the full parser (FHIR validation included).
        resources = [r for patient in patients[:5] for r in demo_patient_resources(patient)]
        assert len(bundle_parse(encode(bundle(*resources)))) == 5


def test_codes_doc_lists_every_feature_code_with_its_loinc_code_and_column():
    rows = re.findall(
        r"^\| `([^`]+)` \|.*\| ([0-9]+-[0-9]|—) \| [a-z_]+ \| `([^`]+)` \|$", CODES_DOC.read_text(), flags=re.MULTILINE
    )

    assert rows == [(feature.code, feature.loinc or "—", feature.column) for feature in FEATURE_CODES]
    assert len(FEATURE_CODES) == 40
    assert len({feature.code for feature in FEATURE_CODES}) == 40


@pytest.mark.django_db
def test_seed_demo_prints_what_staff_need_to_pass_the_second_factor():
    import time

    from allauth.mfa.totp.internal.auth import format_hotp_value, hotp_value
    from django.core.cache import cache
    from django.test import Client

    from tests.clients import totp_code

    text, _ = _seed(patients=1)
    staff_lines = [line.split() for line in text[text.index("role ") :].splitlines()[1:] if len(line.split()) == 6]

    assert {line[0] for line in staff_lines} == {"clinician", "auditor", "custodian", "model-steward"}
    for role, username, password, secret, code, recovery in staff_lines:
        period = int(time.time()) // 30  # the code printed is the secret's, now (or in the period just ended)
        assert code in {format_hotp_value(hotp_value(secret, counter)) for counter in (period, period - 1)}, role
        by_app, by_recovery = Client(), Client()
        for client, second in ((by_app, totp_code(secret)), (by_recovery, recovery)):
            first = client.post("/accounts/login/", {"username": username, "password": password})
            assert first["Location"].startswith("/accounts/2fa/authenticate/"), username
            cache.clear()  # the printed code was not used, but the app's code may equal it: a code passes once
            passed = client.post("/accounts/2fa/authenticate/", {"code": second})
            assert (passed.status_code, passed["Location"]) == (302, "/"), (username, second)


@pytest.mark.django_db
def test_rerunning_seed_demo_skips_the_ingest_only_while_the_demo_records_are_as_it_left_them():
    _seed(patients=1)
    skipped, _credentials = _seed(patients=1)
    assert "2 demo records are in the database, anchored and unchanged" in skipped
    assert "Ingested" not in skipped
    demo_version = RecordVersion.objects.get(record__category="imaging")

    # The demo record's latest version is no longer the one seeding left (another content): the next seeding
    # ingests, and the demo content is back as a new version.
    Record.objects.get(category="imaging").versions.update(sha256="0" * 64)
    text, _credentials = _seed(patients=1)

    assert "Ingested 2 records" in text
    assert "1 new versions" in text
    latest = RecordVersion.objects.filter(record__category="imaging").order_by("-version").first()
    assert latest is not None
    assert latest.sha256 == demo_version.sha256
    assert latest.version == demo_version.version + 1
    assert "anchored and unchanged" in _seed(patients=1)[0]


@pytest.mark.django_db
def test_the_printed_stranger_is_one_the_demo_clinician_may_only_read_in_an_emergency():
    from care.emergencies import emergency_declare, emergency_records_read
    from care.services import treatment_records_read
    from health_platform.errors import NotFound

    text, _ = _seed(patients=4)
    stranger = re.search(r"Demo patient (\S+) never consented", text).group(1)
    clinician = ClinicianProfile.objects.get().user
    declaration = emergency_declare(
        clinician=clinician, identifier=stranger, reason="unconscious", justification="Demo: brought in unconscious."
    )
    with pytest.raises(NotFound):  # no consent of this patient names the clinician
        treatment_records_read(clinician=clinician, patient_pseudonym=declaration.patient.pseudonym, category="imaging")
    read = emergency_records_read(clinician=clinician, declaration_id=str(declaration.id), category="imaging")
    assert [record.decision for record in read.records] == ["admit"]
