"""Patient-friendly wording: plain names first and codes behind a <details>; human units; the consent form offers
the kinds of data the patient has records in first, the rest behind "more"."""

import re

import pytest
from django.urls import reverse

from health_platform.roles import Role
from health_platform.wording import label_codes, plain_words, unit_words
from records.crypto import patient_pseudonym
from records.models import Patient
from records.services import patient_link_user, record_ingest
from tests.clients import html_of, signed_in
from tests.records.factories import MRN_SYSTEM, UserFactory, bundle, encode, patient_with_observations


def test_labels_split_into_plain_words_and_their_codes():
    assert plain_words("Treatment of the patient (HL7 v3 TREAT)") == "Treatment of the patient"
    assert label_codes("Treatment of the patient (HL7 v3 TREAT)") == "HL7 v3 TREAT"
    assert plain_words("Health research (GA4GH DUO:0000042, HL7 v3 HRESCH)") == "Health research"
    assert label_codes("Health research (GA4GH DUO:0000042, HL7 v3 HRESCH)") == "GA4GH DUO:0000042, HL7 v3 HRESCH"
    assert (plain_words("Vital signs"), label_codes("Vital signs")) == ("Vital signs", "")


def test_units_read_as_words():
    assert unit_words("[arb'U]") == "image units"
    assert unit_words("1") == ""
    assert unit_words("mm[Hg]") == "mmHg"
    assert unit_words("mg/dL") == "mg/dL"


@pytest.fixture
def imaging_patient(db, ledger):
    """A patient whose only records are imaging measurements (in image units)."""
    record_ingest(
        raw_body=encode(
            bundle(
                *patient_with_observations(
                    mrn="MRN-WORDS",
                    values=(14.1,),
                    category_code="imaging",
                    code_value="bc-mean-radius",
                    display="Nucleus radius, mean",
                    unit="[arb'U]",
                )
            )
        ),
        actor=UserFactory(username="custodian-words", roles=[Role.CUSTODIAN]),
    )
    user = UserFactory(username="patient-words", roles=[Role.PATIENT])
    patient_link_user(patient=Patient.objects.get(pseudonym=patient_pseudonym(f"{MRN_SYSTEM}|MRN-WORDS")), user=user)
    return user


def test_the_consent_form_offers_the_patients_own_kinds_of_data_first_and_the_rest_behind_more(imaging_patient):
    html = html_of(signed_in(imaging_patient).get(reverse("consent:dashboard")))

    own = re.findall(r'<div class="check" data-own-category>\s*<input[^>]*value="([a-z-]+)"', html)
    more = html.split('id="more-categories"')[1].split("</details>")[0]
    assert own == ["imaging"]
    assert 'value="laboratory"' in more
    assert 'value="imaging"' not in more


def test_the_consent_form_names_purposes_in_plain_words_with_the_codes_behind_details(imaging_patient):
    html = html_of(signed_in(imaging_patient).get(reverse("consent:dashboard")))

    labels = re.findall(r'<label for="id_purposes_\d+">([^<]+)</label>', html)
    assert "Treatment of the patient" in labels
    assert "Health research" in labels
    assert not [label for label in labels if "HL7" in label or "DUO" in label]
    codes = html.split('id="purpose-codes"')[1].split("</details>")[0]
    assert "HL7 v3 TREAT" in codes
    assert "GA4GH DUO:0000042" in codes


def test_a_record_shows_human_units_and_the_unit_code_behind_details(imaging_patient):
    record = imaging_patient.patient.records.get()

    html = html_of(signed_in(imaging_patient).get(reverse("records:record-detail", args=[record.pk])))

    unit_cell = re.search(r'<td data-label="Unit">(.*?)</td>', html, re.S)
    assert unit_cell
    assert unit_cell.group(1).strip().startswith("image units")
    assert '<details class="codes"><summary>Code</summary><code>[arb&#x27;U]</code></details>' in unit_cell.group(1)
