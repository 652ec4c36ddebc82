"""The clinician's "Consents granted to me": one page of at most 50, searched and filtered, and the patients with a
consent in force selected straight into an analysis request (their full pseudonyms, nobody copies ids)."""

import re
import uuid
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from consent.models import Consent, ConsentStatus
from consent.views import GRANTED_PER_PAGE
from tests.clients import html_of, signed_in
from tests.records.factories import PatientFactory

pytestmark = pytest.mark.django_db

PAGE = "consent:granted-to-me"
BREAST_CANCER = "diagnostic-model:breast-cancer"


def mirror_consents(grantee: str, count: int, **terms) -> list[Consent]:
    """`count` consents naming `grantee` in the mirror (the page reads the mirror), each for a patient of its own."""
    now = timezone.now()
    defaults = {
        "purposes": [BREAST_CANCER],
        "categories": ["imaging"],
        "valid_from": now - timedelta(days=1),
        "valid_until": now + timedelta(days=30),
        "status": ConsentStatus.ACTIVE,
    }
    defaults.update(terms)
    consents = [
        Consent(
            consent_id=f"cns-{uuid.uuid4().hex}",
            patient=PatientFactory(),
            grantee=grantee,
            granted_at=now - timedelta(minutes=index),
            granted_tx_id=f"tx-{index}",
            granted_block=index,
            **defaults,
        )
        for index in range(count)
    ]
    return Consent.objects.bulk_create(consents)


def rows(html: str) -> list[str]:
    return re.findall(r'<tr data-consent-id="([^"]+)"', html)


def selectable(html: str) -> list[str]:
    return re.findall(r'<input type="checkbox" name="patient" value="([0-9a-f]{64})"', html)


@pytest.fixture
def grantee(clinician) -> str:
    return clinician.clinician_profile.grantee_id


def test_300_consents_show_one_page_of_at_most_50_with_a_pager(clinician, grantee):
    mirror_consents(grantee, 120)
    client = signed_in(clinician)

    first = html_of(client.get(reverse(PAGE)))
    last = html_of(client.get(reverse(PAGE), {"page": 3}))

    assert GRANTED_PER_PAGE == 50
    assert len(rows(first)) == 50
    assert len(rows(last)) == 20
    assert "Page 1 of 3" in first
    assert 'rel="next"' in first
    assert "<strong>120</strong> patients with an active consent" in first
    assert not set(rows(first)) & set(rows(last))


def test_each_patient_with_a_consent_in_force_is_selectable_by_their_full_pseudonym(clinician, grantee):
    active = mirror_consents(grantee, 2)
    revoked = mirror_consents(grantee, 1, status=ConsentStatus.REVOKED)

    html = html_of(signed_in(clinician).get(reverse(PAGE)))

    assert sorted(selectable(html)) == sorted(consent.patient.pseudonym for consent in active)
    assert revoked[0].patient.pseudonym not in selectable(html)
    assert f'<form method="get" action="{reverse("analytics:new")}" id="select-patients"' in html


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        pytest.param({"category": "laboratory"}, "lab", id="category"),
        pytest.param({"purpose": "research"}, "research", id="purpose"),
        pytest.param({"status": "revoked"}, "revoked", id="revoked"),
        pytest.param({"status": "active"}, "imaging", id="active"),
        pytest.param({"valid_on": "2001-06-01"}, "old", id="valid-on"),
    ],
)
def test_filters_narrow_the_list(clinician, grantee, filters, expected):
    now = timezone.now()
    made = {
        "imaging": mirror_consents(grantee, 2),
        "lab": mirror_consents(grantee, 1, categories=["laboratory"]),
        "research": mirror_consents(grantee, 1, purposes=["research"]),
        "revoked": mirror_consents(grantee, 1, status=ConsentStatus.REVOKED),
        "old": mirror_consents(
            grantee, 1, valid_from=now.replace(year=2001, month=1, day=1), valid_until=now.replace(year=2002)
        ),
    }
    if filters == {"status": "active"}:
        made["imaging"] += made["lab"] + made["research"]

    html = html_of(signed_in(clinician).get(reverse(PAGE), filters))

    assert sorted(rows(html)) == sorted(consent.consent_id for consent in made[expected])


def test_a_pseudonym_prefix_finds_the_patient(clinician, grantee):
    consents = mirror_consents(grantee, 5)
    wanted = consents[3]

    html = html_of(signed_in(clinician).get(reverse(PAGE), {"q": wanted.patient.pseudonym[:16].upper()}))

    assert rows(html) == [wanted.consent_id]


@pytest.mark.parametrize(
    "filters",
    [{"category": "no-such-category"}, {"purpose": "x"}, {"status": "gone"}, {"valid_on": "31/01"}, {"q": "xyz"}],
)
def test_a_filter_that_is_not_a_listed_value_is_refused_with_a_stable_code(clinician, grantee, filters):
    mirror_consents(grantee, 2)

    response = signed_in(clinician).get(reverse(PAGE), filters)

    html = html_of(response)
    assert response.status_code == 400
    assert 'data-error-code="invalid_filter"' in html
    assert rows(html) == []
    for value in filters.values():
        assert f">{value}<" not in html  # the value sent is not echoed back as text


def test_choosing_a_models_purpose_carries_the_model_into_the_request(clinician, grantee):
    mirror_consents(grantee, 1)

    html = html_of(signed_in(clinician).get(reverse(PAGE), {"purpose": BREAST_CANCER}))

    assert '<input type="hidden" name="model" value="breast-cancer">' in html


@pytest.mark.parametrize("who", ["patient_user", "auditor", "custodian"])
def test_the_page_is_only_for_clinicians(request, who):
    assert signed_in(request.getfixturevalue(who)).get(reverse(PAGE)).status_code == 403
