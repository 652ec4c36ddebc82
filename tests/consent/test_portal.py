"""The consent portal's pages through Django's test client (the browser tests are in tests/e2e/)."""

import json
from datetime import UTC, timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from consent.models import Consent
from health_platform.roles import Role
from records.crypto import patient_pseudonym
from records.models import Patient
from records.services import patient_link_user, record_ingest
from tests.clients import html_of, shown_text, signed_in
from tests.conftest import BREAST_CANCER
from tests.records.factories import MRN_SYSTEM, UserFactory, bundle, encode, patient_with_observations
from tests.signing import grant_signed, passkey_of, portal_sign, revoke_signed

pytestmark = pytest.mark.django_db

DASHBOARD = "consent:dashboard"
GRANTED_TO_ME = "consent:granted-to-me"


def today():
    return timezone.now().astimezone(UTC).date()


def grant_form(grantee_id, **overrides):
    """What the browser posts for a valid grant: breast-cancer model use of imaging data, today + 30 days."""
    data = {
        "grantee": grantee_id,
        "purposes": [BREAST_CANCER],
        "categories": ["imaging"],
        "valid_from": today().isoformat(),
        "valid_until": (today() + timedelta(days=30)).isoformat(),
    }
    data.update(overrides)
    return data


@pytest.fixture
def grantee_id(clinician):
    return clinician.clinician_profile.grantee_id


@pytest.fixture
def granted(patient_user, terms):
    """An active consent of patient_user to the clinician, through the service."""
    return grant_signed(actor=patient_user, patient=patient_user.patient, **terms)


def consent_on_ledger(ledger, consent):
    return ledger.evaluate("consent", "ReadConsent", consent.patient.pseudonym, consent.consent_id).json()


# --- who may open which page ---------------------------------------------------------------------


@pytest.mark.parametrize("page", [DASHBOARD, GRANTED_TO_ME])
def test_anonymous_users_are_sent_to_sign_in(page, client):
    response = client.get(reverse(page))

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


@pytest.mark.parametrize(
    ("who", "page", "status"),
    [
        ("patient_user", DASHBOARD, 200),
        ("patient_user", GRANTED_TO_ME, 403),
        ("clinician", DASHBOARD, 403),
        ("clinician", GRANTED_TO_ME, 200),
        ("auditor", DASHBOARD, 403),
        ("auditor", GRANTED_TO_ME, 403),
    ],
)
def test_each_page_is_open_only_to_its_role(who, page, status, request):
    response = signed_in(request.getfixturevalue(who)).get(reverse(page))

    assert response.status_code == status


def test_a_patient_account_without_a_linked_patient_is_refused_with_an_explanation():
    response = signed_in(UserFactory(roles=[Role.PATIENT])).get(reverse(DASHBOARD))

    assert response.status_code == 403
    assert "not linked to a patient record" in html_of(response)


@pytest.mark.parametrize(("who", "page"), [("patient_user", DASHBOARD), ("clinician", GRANTED_TO_ME)])
def test_home_sends_patients_and_clinicians_to_their_page(who, page, request):
    response = signed_in(request.getfixturevalue(who)).get(reverse("home"))

    assert response.status_code == 302
    assert response["Location"] == reverse(page)


# --- the dashboard -------------------------------------------------------------------------------


@pytest.fixture
def patient_with_record():
    """A patient with one anchored laboratory record (another patient's record in the same batch)."""
    custodian = UserFactory(username="custodian", roles=[Role.CUSTODIAN])
    record_ingest(
        raw_body=encode(
            bundle(
                *patient_with_observations(mrn="MRN-DASH", values=(98.6,)),
                *patient_with_observations(mrn="MRN-OTHER", values=(55.5,)),
            )
        ),
        actor=custodian,
    )
    user = UserFactory(username="dashboard-patient", roles=[Role.PATIENT])
    patient = Patient.objects.get(pseudonym=patient_pseudonym(f"{MRN_SYSTEM}|MRN-DASH"))
    patient_link_user(patient=patient, user=user)
    return user


def test_dashboard_shows_records_with_their_integrity_checked_on_the_ledger(patient_with_record):
    version = patient_with_record.patient.records.get().versions.get()

    html = html_of(signed_in(patient_with_record).get(reverse(DASHBOARD)))

    assert "Laboratory results" in html
    assert version.anchor_tx_id in html
    assert "Verified" in html
    assert "98.6" not in shown_text(html)  # values are on the record page, not the dashboard
    assert "55.5" not in shown_text(html)


def test_dashboard_shows_each_consent_with_grantee_codes_period_status_and_ledger_transactions(
    patient_user, granted, terms, clinician, organisation
):
    revoked = revoke_signed(
        actor=patient_user,
        consent=grant_signed(
            actor=patient_user, patient=patient_user.patient, **{**terms, "grantee_id": organisation.grantee_id}
        ),
    )

    html = html_of(signed_in(patient_user).get(reverse(DASHBOARD)))

    assert "Dr Carol (St Mary&#x27;s Hospital)" in html
    assert "St Mary&#x27;s Hospital" in html
    assert "Running the breast-cancer diagnostic model" in html
    assert "Imaging-derived measurements" in html
    assert terms["valid_from"].strftime("%-d %b %Y") in html
    assert granted.granted_tx_id in html
    assert f'data-block="granted">{granted.granted_block}<' in html
    assert revoked.revoked_tx_id in html
    assert f'data-block="revoked">{revoked.revoked_block}<' in html
    assert 'data-status="active"' in html
    assert 'data-status="revoked"' in html
    assert html.count("Revoke…") == 1  # only the active consent can be revoked


def test_dashboard_tells_expired_and_not_yet_valid_consents_apart(patient_user, granted, terms):
    pending = grant_signed(
        actor=patient_user,
        patient=patient_user.patient,
        **{**terms, "valid_from": terms["valid_from"] + timedelta(days=2)},
    )
    # The mirror as it will read once the period is over (the ledger refuses grants that end in the past).
    Consent.objects.filter(pk=granted.pk).update(valid_until=timezone.now() - timedelta(seconds=1))

    html = html_of(signed_in(patient_user).get(reverse(DASHBOARD)))

    assert 'data-status="expired"' in html
    assert 'data-status="pending"' in html
    assert f'href="{reverse("consent:revoke", args=[pending.consent_id])}"' in html
    assert f'href="{reverse("consent:revoke", args=[granted.consent_id])}"' not in html


def test_dashboard_never_shows_another_patients_consents(patient_user, other_patient_user, granted):
    html = html_of(signed_in(other_patient_user).get(reverse(DASHBOARD)))

    assert granted.consent_id not in html
    assert granted.granted_tx_id not in html
    assert "You have not granted any consent" in html


def test_grant_form_is_labelled_and_carries_a_csrf_token(patient_user, grantee_id):
    html = html_of(signed_in(patient_user).get(reverse(DASHBOARD)))

    assert 'name="csrfmiddlewaretoken"' in html
    for field_id in ("id_grantee", "id_valid_from", "id_valid_until", "id_purposes_0", "id_categories_0"):
        assert f'for="{field_id}"' in html
        assert f'id="{field_id}"' in html
    assert f'<option value="{grantee_id}">Dr Carol (St Mary&#x27;s Hospital)</option>' in html
    assert "<legend>For what purposes</legend>" in html


def test_the_grant_form_offers_training_each_model_family_and_says_in_plain_words_what_it_means(patient_user):
    from health_platform.model_catalogue import catalogue

    html = html_of(signed_in(patient_user).get(reverse(DASHBOARD)))
    text = shown_text(html)

    families = [declaration.family for declaration in catalogue()]
    assert families == ["breast-cancer", "diabetes-progression"]
    for family in families:
        assert f'value="training:{family}"' in html
        assert f"Training of the {family} model" in text
    assert 'id="training-help"' in html
    assert 'aria-describedby="training-help"' in html
    for words in (
        "your records help teach the model",
        "used for other patients",
        "left out of every future training run",
        "each model already trained on them counts your revocation",
    ):
        assert words in text
    # The code systems' names stay behind the codes' details, as for the other purposes.
    assert "GA4GH DUO:0000007, HL7 v3 HRESCH · training:breast-cancer" in text


# --- granting ------------------------------------------------------------------------------------


def test_a_training_consent_is_granted_through_the_form_and_revoked_like_any_other(patient_user, grantee_id, ledger):
    client = signed_in(patient_user)
    passkey_of(patient_user.patient)
    asked = client.post(reverse("consent:grant"), grant_form(grantee_id, purposes=["training:breast-cancer"]))
    assert asked.status_code == 200
    portal_sign(client, patient_user.patient, asked)

    consent = Consent.objects.get()
    assert consent_on_ledger(ledger, consent)["purposes"] == ["training:breast-cancer"]
    assert consent.purposes == ["training:breast-cancer"]
    assert "Training of the breast-cancer model" in shown_text(html_of(client.get(reverse(DASHBOARD))))
    revoke_signed(actor=patient_user, consent=consent)
    assert consent_on_ledger(ledger, consent)["status"] == "revoked"


def test_granting_through_the_form_writes_the_consent_to_the_ledger_and_shows_its_transaction(
    patient_user, grantee_id, ledger
):
    client = signed_in(patient_user)
    passkey_of(patient_user.patient)
    asked = client.post(reverse("consent:grant"), grant_form(grantee_id))
    assert (asked.status_code, Consent.objects.count()) == (200, 0)  # the page to sign on; nothing written yet
    assert "Sign with my passkey" in html_of(asked)

    response = portal_sign(client, patient_user.patient, asked)

    consent = Consent.objects.get()
    assert consent.patient_signed
    assert response.status_code == 302
    assert response["Location"] == f"{reverse(DASHBOARD)}#consent-{consent.consent_id}"
    on_ledger = consent_on_ledger(ledger, consent)
    assert on_ledger["patient_pseudonym"] == patient_user.patient.pseudonym
    assert (on_ledger["grantee"], on_ledger["purposes"], on_ledger["categories"]) == (
        grantee_id,
        [BREAST_CANCER],
        ["imaging"],
    )
    assert on_ledger["valid_until"].startswith((today() + timedelta(days=31)).isoformat() + "T00:00:00")
    html = html_of(client.get(response["Location"]))
    assert f"transaction {consent.granted_tx_id}, block {consent.granted_block}" in html
    assert consent.effective_status == "active"


def test_a_forged_patient_field_is_ignored_the_grant_is_for_the_signed_in_patient(
    patient_user, other_patient_user, grantee_id, ledger
):
    forged = grant_form(
        grantee_id, patient=str(other_patient_user.patient.pk), patient_pseudonym=other_patient_user.patient.pseudonym
    )

    client = signed_in(patient_user)
    passkey_of(patient_user.patient)
    portal_sign(client, patient_user.patient, client.post(reverse("consent:grant"), forged))

    consent = Consent.objects.get()
    assert consent.patient == patient_user.patient
    assert consent_on_ledger(ledger, consent)["patient_pseudonym"] == patient_user.patient.pseudonym
    assert not Consent.objects.filter(patient=other_patient_user.patient).exists()


@pytest.mark.parametrize(
    ("overrides", "field_id", "message"),
    [
        ({"grantee": "clinician:c-000000000000"}, "id_grantee", "Choose a clinician or an organisation from the list."),
        ({"grantee": "org:nobody"}, "id_grantee", "Choose a clinician or an organisation from the list."),
        ({"grantee": ""}, "id_grantee", "Choose a clinician or an organisation."),
        ({"purposes": ["marketing"]}, "id_purposes", "Choose purposes from the list."),
        ({"purposes": []}, "id_purposes", "Choose at least one purpose."),
        ({"categories": ["genome"]}, "id_categories", "Choose data categories from the list."),
        ({"categories": []}, "id_categories", "Choose at least one kind of data."),
        (
            {"valid_from": "2030-02-01", "valid_until": "2030-01-01"},
            "id_valid_until",
            "The last day must be on or after the first day.",
        ),
        (
            {"valid_from": "2020-01-01", "valid_until": "2020-12-31"},
            "id_valid_until",
            "This period is already over",
        ),
        ({"valid_from": "2020-01-01"}, "id_valid_from", "A consent cannot start in the past"),
        ({"valid_until": "31/12/2030"}, "id_valid_until", "Enter a date such as 2025-12-31."),
    ],
)
def test_an_invalid_grant_is_refused_with_the_message_by_its_field_and_nothing_on_the_ledger(
    overrides, field_id, message, patient_user, grantee_id, ledger
):
    height = ledger.height()

    response = signed_in(patient_user).post(reverse("consent:grant"), grant_form(grantee_id, **overrides))

    assert response.status_code == 400
    html = html_of(response)
    assert f'<p class="field-error" id="{field_id}_error">{message}' in html.replace("&#x27;", "'")
    assert "The consent was not granted." in html
    assert ledger.height() == height
    assert not Consent.objects.exists()


def test_an_inactive_clinician_cannot_be_granted(patient_user, clinician, grantee_id, ledger):
    clinician.is_active = False
    clinician.save()
    height = ledger.height()

    response = signed_in(patient_user).post(reverse("consent:grant"), grant_form(grantee_id))

    assert response.status_code == 400
    assert 'id="id_grantee_error"' in html_of(response)
    assert ledger.height() == height


@pytest.mark.parametrize("who", ["clinician", "auditor"])
def test_only_patients_can_post_a_grant(who, request, grantee_id, ledger):
    height = ledger.height()

    response = signed_in(request.getfixturevalue(who)).post(reverse("consent:grant"), grant_form(grantee_id))

    assert response.status_code == 403
    assert ledger.height() == height


def test_a_grant_without_the_csrf_token_is_refused(patient_user, grantee_id, ledger):
    client = Client(enforce_csrf_checks=True)
    client.force_login(patient_user)
    height = ledger.height()

    response = client.post(reverse("consent:grant"), grant_form(grantee_id))

    assert response.status_code == 403
    assert ledger.height() == height


# --- revoking ------------------------------------------------------------------------------------


def test_revoke_asks_for_confirmation_first_and_changes_nothing_until_confirmed(patient_user, granted, ledger):
    height = ledger.height()

    response = signed_in(patient_user).get(reverse("consent:revoke", args=[granted.consent_id]))

    assert response.status_code == 200
    html = html_of(response)
    assert 'id="sign-form"' in html
    assert "The consent you gave Dr Carol (St Mary&#x27;s Hospital)." in html
    assert 'name="csrfmiddlewaretoken"' in html
    assert "Yes, revoke it with my passkey" in html
    assert ledger.height() == height
    assert consent_on_ledger(ledger, granted)["status"] == "active"


def test_confirmed_revoke_is_on_the_ledger_and_the_dashboard_shows_it_revoked(patient_user, granted, ledger):
    client = signed_in(patient_user)

    response = portal_sign(
        client, patient_user.patient, client.get(reverse("consent:revoke", args=[granted.consent_id]))
    )

    assert response.status_code == 302
    on_ledger = consent_on_ledger(ledger, granted)
    assert on_ledger["status"] == "revoked"
    granted.refresh_from_db()
    assert granted.revoked_tx_id == on_ledger["revoked_tx_id"]
    html = html_of(client.get(response["Location"]))
    assert f"Consent revoked. The revocation is on the ledger in transaction {granted.revoked_tx_id}" in html
    assert 'data-status="revoked"' in html
    assert granted.revoked_tx_id in html


def test_revoking_twice_writes_nothing_the_second_time(patient_user, granted, ledger):
    client = signed_in(patient_user)
    page = client.get(reverse("consent:revoke", args=[granted.consent_id]))
    portal_sign(client, patient_user.patient, page)
    height = ledger.height()

    response = portal_sign(client, patient_user.patient, page)

    assert response.status_code == 302
    assert ledger.height() == height


@pytest.mark.parametrize("method", ["get", "post"])
def test_another_patients_consent_cannot_be_revoked_or_even_seen(method, other_patient_user, granted, ledger):
    height = ledger.height()

    response = getattr(signed_in(other_patient_user), method)(reverse("consent:revoke", args=[granted.consent_id]))

    assert response.status_code == 404  # as for a consent that does not exist (403 until issue 20 told it exists)
    assert "There is no such consent among yours." in html_of(response)
    assert granted.consent_id not in html_of(response)
    assert "Dr Carol" not in html_of(response)
    assert ledger.height() == height
    assert consent_on_ledger(ledger, granted)["status"] == "active"
    granted.refresh_from_db()
    assert granted.status == "active"


def test_an_unknown_consent_id_is_refused_the_same_way(patient_user, ledger):
    height = ledger.height()

    response = signed_in(patient_user).post(reverse("consent:revoke", args=["cns-does-not-exist"]))

    assert response.status_code == 404
    assert "There is no such consent among yours." in html_of(response)
    assert ledger.height() == height


# --- history -------------------------------------------------------------------------------------


def test_history_lists_every_change_on_the_ledger_with_transaction_block_and_time(patient_user, granted, ledger):
    revoked = revoke_signed(actor=patient_user, consent=granted)

    response = signed_in(patient_user).get(
        reverse("consent:detail", args=[granted.consent_id]), headers={"HX-Request": "true"}
    )

    assert response.status_code == 200
    html = html_of(response)
    section = html[html.index('id="consent-history"') :]
    assert section.index(granted.granted_tx_id) < section.index(revoked.revoked_tx_id)
    assert f"{granted.granted_tx_id}</code>, block {granted.granted_block}" in section
    assert f"{revoked.revoked_tx_id}</code>, block {revoked.revoked_block}" in section
    assert section.count("<li data-status=") == 2
    assert "<strong>Granted</strong>" in section
    assert "<strong>Revoked</strong>" in section


def test_another_patients_history_is_refused(other_patient_user, granted):
    response = signed_in(other_patient_user).get(reverse("consent:detail", args=[granted.consent_id]))

    assert response.status_code == 404
    assert granted.granted_tx_id not in html_of(response)


# --- the ledger is down --------------------------------------------------------------------------


def test_grant_while_the_ledger_is_down_says_so_keeps_the_form_and_writes_nothing(
    patient_user, grantee_id, ledger, ledger_switch
):
    client = signed_in(patient_user)
    passkey_of(patient_user.patient)
    asked = client.post(reverse("consent:grant"), grant_form(grantee_id))
    height = ledger.height()
    ledger_switch.down()

    response = portal_sign(client, patient_user.patient, asked)
    before_signing = client.post(reverse("consent:grant"), grant_form(grantee_id))

    for answer in (response, before_signing):
        assert answer.status_code == 503
        html = html_of(answer)
        assert "The ledger is not reachable at the moment, so nothing was changed." in html
        assert "Traceback" not in html
    assert not Consent.objects.exists()
    ledger_switch.up()
    assert ledger.height() == height


def test_revoke_while_the_ledger_is_down_says_so_and_the_consent_stays_active(
    patient_user, granted, ledger, ledger_switch
):
    client = signed_in(patient_user)
    page = client.get(reverse("consent:revoke", args=[granted.consent_id]))
    ledger_switch.down()

    response = portal_sign(client, patient_user.patient, page)

    assert response.status_code == 503
    assert "The ledger is not reachable at the moment, so nothing was changed." in html_of(response)
    ledger_switch.up()
    assert consent_on_ledger(ledger, granted)["status"] == "active"
    granted.refresh_from_db()
    assert granted.status == "active"


def test_history_while_the_ledger_is_down_says_so(patient_user, granted, ledger_switch):
    ledger_switch.down()

    response = signed_in(patient_user).get(reverse("consent:detail", args=[granted.consent_id]))

    assert response.status_code == 503
    assert "the history cannot be shown" in html_of(response)


def test_dashboard_while_the_ledger_is_down_still_lists_consents_and_fails_integrity_closed(
    patient_with_record, ledger_switch
):
    ledger_switch.down()

    response = signed_in(patient_with_record).get(reverse(DASHBOARD))

    assert response.status_code == 200
    html = html_of(response)
    assert "Not verified" in html
    assert "ledger_unavailable" in html


# --- the clinician's page ------------------------------------------------------------------------


def test_clinician_sees_pseudonyms_codes_and_periods_of_consents_naming_them_or_their_organisation(
    patient_user, other_patient_user, clinician, other_clinician, organisation, terms
):
    to_me = grant_signed(actor=patient_user, patient=patient_user.patient, **terms)
    to_my_organisation = grant_signed(
        actor=other_patient_user,
        patient=other_patient_user.patient,
        **{**terms, "grantee_id": organisation.grantee_id, "categories": ["laboratory", "vital-signs"]},
    )
    not_mine = grant_signed(
        actor=patient_user,
        patient=patient_user.patient,
        **{**terms, "grantee_id": other_clinician.clinician_profile.grantee_id},
    )

    html = html_of(signed_in(clinician).get(reverse(GRANTED_TO_ME)))

    assert f'data-consent-id="{to_me.consent_id}"' in html
    assert f'data-consent-id="{to_my_organisation.consent_id}"' in html
    assert f'data-consent-id="{not_mine.consent_id}"' not in html
    assert f'title="{patient_user.patient.pseudonym}"' in html
    assert f'title="{other_patient_user.patient.pseudonym}"' in html
    assert "Laboratory results" in html
    assert "Vital signs" in html
    assert BREAST_CANCER in html
    assert "<strong>2</strong> patients with an active consent" in html
    for identifying in ("patient-alice", "patient-bob", str(patient_user.patient.pk)):
        assert identifying not in html


def test_a_clinician_named_by_no_consent_sees_an_empty_page(other_clinician, granted):
    html = html_of(signed_in(other_clinician).get(reverse(GRANTED_TO_ME)))

    assert granted.consent_id not in html
    assert "No patient has granted you" in html


def test_the_dashboard_marks_a_consent_granted_before_signatures_as_not_patient_signed(patient_user, granted, terms):
    Consent.objects.filter(pk=granted.pk).update(grant_signature="")  # the mirror of a grant made before signatures
    html = html_of(signed_in(patient_user).get(reverse(DASHBOARD)))
    assert 'data-patient-signed="false"' in html
    assert "Not patient-signed" in html
    granted_too = grant_signed(actor=patient_user, patient=patient_user.patient, **terms)
    html = html_of(signed_in(patient_user).get(reverse(DASHBOARD)))
    assert 'data-patient-signed="true"' in html
    assert granted_too.grant_signature in html


@pytest.mark.parametrize(
    "grants",
    [
        [{"grantee": 5, "purposes": 5, "categories": "imaging", "valid_from": [], "valid_until": {}}],
        [{"purposes": ["<script>alert(1)</script>"], "categories": [["x"]]}],
        "not a list",
    ],
)
def test_a_hostile_signed_document_is_answered_with_the_signing_page_and_writes_nothing(
    patient_user, granted, ledger, grants
):
    """What comes back from the browser is any JSON: the page shows only what the platform knows, never echoes it."""
    client = signed_in(patient_user)
    passkey = passkey_of(patient_user.patient)
    document = {"action": "grant_consent", "patient_pseudonym": patient_user.patient.pseudonym, "grants": grants}
    height = ledger.height()
    response = client.post(
        reverse("consent:grant"),
        {"document": json.dumps(document), "signature": json.dumps(passkey.sign(document))},
    )
    assert response.status_code == 400
    assert "invalid_document" in html_of(response)
    assert "<script>alert(1)</script>" not in response.content.decode()
    assert "&lt;script&gt;" not in response.content.decode()
    assert ledger.height() == height
