"""The analysis form takes the patients selected on "Consents granted to me": their full 64-character pseudonyms
filled in, the listed cohort chosen, and the request created from it as it stands."""

import re

import pytest
from django.urls import reverse

from analytics.models import AnalysisRequest
from tests.clients import html_of, signed_in

pytestmark = pytest.mark.django_db

NEW = "analytics:new"
SELECTED = ["ab" * 32, "cd" * 32, "ef" * 32]


def textarea(html: str) -> str:
    match = re.search(r'<textarea name="pseudonyms"[^>]*>(.*?)</textarea>', html, re.S)
    assert match, "no pseudonyms field"
    return match.group(1).strip()


def test_the_selected_patients_full_ids_are_filled_in(clinician, models_registered):
    response = signed_in(clinician).get(reverse(NEW), {"patient": SELECTED, "model": "breast-cancer"})

    html = html_of(response)
    assert response.status_code == 200
    assert textarea(html).split() == SELECTED
    assert re.search(r'<input type="radio" name="cohort_kind" value="explicit"[^>]*checked', html)
    assert re.search(r'<option value="breast-cancer" selected>', html)
    assert "<strong>3</strong> patients selected" in html


def test_a_patient_selected_twice_is_listed_once(clinician):
    html = html_of(signed_in(clinician).get(reverse(NEW), {"patient": [SELECTED[0], SELECTED[0].upper()]}))

    assert textarea(html).split() == [SELECTED[0]]


def test_a_selection_that_is_not_pseudonyms_is_refused_with_a_stable_code_naming_entries_not_values(clinician):
    response = signed_in(clinician).get(reverse(NEW), {"patient": [SELECTED[0], "MRN-000777"]})

    html = html_of(response)
    assert response.status_code == 400
    assert 'data-error-code="invalid_selection"' in html
    assert "Selected entry 2 is not a pseudonymous id" in html
    assert "MRN-000777" not in html
    assert AnalysisRequest.objects.count() == 0


def test_the_form_no_longer_asks_for_ids_as_shown_on_the_list(clinician):
    html = html_of(signed_in(clinician).get(reverse(NEW)))

    assert "as shown on" not in html
    assert "tick the patients on “Consents granted to me”" in html


@pytest.mark.parametrize("who", ["patient_user", "auditor"])
def test_the_prefilled_form_is_only_for_clinicians(request, who):
    response = signed_in(request.getfixturevalue(who)).get(reverse(NEW), {"patient": SELECTED})
    assert response.status_code == 403
