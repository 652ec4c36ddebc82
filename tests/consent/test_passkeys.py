"""The patient's passkeys on the ledger: the first enrolled when allauth registers it, later ones confirmed with a
passkey already there, taken off by a signature, and reset by the custodian (on the ledger, shown, told)."""

import io

import pytest
from allauth.mfa.models import Authenticator
from allauth.mfa.signals import authenticator_added
from django.core.management import CommandError, call_command
from django.urls import reverse

from consent.passkeys import patient_passkey_add_document, patient_passkey_change, patient_passkeys_recover
from consent.services import consent_grant, consent_grant_document
from health_platform import bootstrap
from health_platform.errors import PermissionDenied, SignatureRefused
from health_platform.software_passkey import SoftwarePasskey
from records.crypto import patient_pseudonym
from records.models import PatientIdentifier
from tests import signing
from tests.clients import html_of, signed_in
from tests.records.factories import MRN_SYSTEM
from tests.signing import grant_signed, portal_sign

PASSKEYS = reverse("consent:passkeys")


def register(user, name: str) -> tuple[SoftwarePasskey, Authenticator]:
    """A passkey registered on `user`'s account as allauth's ceremony leaves it, and allauth's signal sent."""
    passkey = SoftwarePasskey(rp_id="testserver", origin="http://testserver")
    authenticator = Authenticator.objects.create(
        user=user, type=Authenticator.Type.WEBAUTHN, data={"name": name, "credential": passkey.registration()}
    )
    authenticator_added.send(sender=Authenticator, request=None, user=user, authenticator=authenticator)
    return passkey, authenticator


def active_keys(patient) -> list[str]:
    return [key.credential_id for key in bootstrap.contracts().patient_keys(patient.pseudonym).active]


def test_the_first_passkey_goes_to_the_ledger_as_allauth_registers_it(patient_user, ledger):
    phone, _ = register(patient_user, "Phone")
    (key,) = bootstrap.contracts().patient_keys(patient_user.patient.pseudonym).keys
    assert (key.credential_id, key.status, key.added_by) == (phone.credential_id_text, "active", "enrolment")
    assert (key.origin, key.rp_id_hash) == ("http://testserver", phone.rp_id_hash.hex())
    html = html_of(signed_in(patient_user).get(PASSKEYS))
    assert f'data-credential="{phone.credential_id_text}" data-state="on_ledger"' in html


def test_a_clinicians_passkey_goes_nowhere_near_the_ledger(clinician, ledger):
    height = ledger.height()
    register(clinician, "Clinician's key")
    assert ledger.height() == height


def test_a_second_passkey_waits_until_the_first_signs_for_it_then_signs_grants(patient_user, terms, ledger):
    phone, _ = register(patient_user, "Phone")
    laptop, _ = register(patient_user, "Laptop")
    assert active_keys(patient_user.patient) == [phone.credential_id_text]
    client = signed_in(patient_user)
    page = client.get(PASSKEYS)
    assert f'data-credential="{laptop.credential_id_text}" data-state="waiting"' in html_of(page)

    assert portal_sign(client, patient_user.patient, page, passkey=phone).status_code == 302

    assert active_keys(patient_user.patient) == [phone.credential_id_text, laptop.credential_id_text]
    keys = bootstrap.contracts().patient_keys(patient_user.patient.pseudonym).keys
    assert [key.added_by for key in keys] == ["enrolment", "patient"]
    signing._passkeys[patient_user.patient.pseudonym] = laptop
    assert grant_signed(actor=patient_user, patient=patient_user.patient, **terms).patient_signed


def test_a_waiting_passkey_cannot_sign_for_itself(patient_user, ledger):
    register(patient_user, "Phone")
    laptop, authenticator = register(patient_user, "Laptop")
    document = patient_passkey_add_document(
        actor=patient_user, patient=patient_user.patient, authenticator_id=authenticator.pk
    )
    height = ledger.height()
    with pytest.raises(SignatureRefused) as refused:
        patient_passkey_change(
            actor=patient_user, patient=patient_user.patient, document=document, signature=laptop.sign(document)
        )
    assert refused.value.code == "unknown_key"
    assert ledger.height() == height


def test_no_patient_can_confirm_a_passkey_for_another(patient_user, other_patient_user, ledger):
    register(patient_user, "Phone")
    _, authenticator = register(patient_user, "Laptop")
    document = patient_passkey_add_document(
        actor=patient_user, patient=patient_user.patient, authenticator_id=authenticator.pk
    )
    with pytest.raises(PermissionDenied):
        patient_passkey_change(actor=other_patient_user, patient=patient_user.patient, document=document, signature={})
    with pytest.raises(PermissionDenied):
        patient_passkey_change(
            actor=other_patient_user, patient=other_patient_user.patient, document=document, signature={}
        )


def test_a_passkey_is_taken_off_the_ledger_by_a_signature_but_never_the_last(patient_user, ledger):
    phone, _ = register(patient_user, "Phone")
    laptop, _ = register(patient_user, "Laptop")
    client = signed_in(patient_user)
    portal_sign(client, patient_user.patient, client.get(PASSKEYS), passkey=phone)  # the laptop, confirmed

    page = client.get(PASSKEYS)  # two on the ledger: each can be taken off; the first form is the phone's
    assert portal_sign(client, patient_user.patient, page, passkey=laptop).status_code == 302

    assert active_keys(patient_user.patient) == [laptop.credential_id_text]
    html = html_of(client.get(PASSKEYS))
    assert "Take it off the ledger" not in html  # the last one has no such form
    assert f'data-credential="{phone.credential_id_text}" data-state="revoked"' in html


def test_a_passkey_registered_while_the_ledger_is_away_waits_and_goes_on_it_later(patient_user, ledger, ledger_switch):
    ledger_switch.down()
    phone, authenticator = register(patient_user, "Phone")  # allauth's registration is not refused
    ledger_switch.up()
    assert active_keys(patient_user.patient) == []
    client = signed_in(patient_user)
    assert "Put this passkey on the ledger" in html_of(client.get(PASSKEYS))

    response = client.post(reverse("consent:passkey-enrol", args=[authenticator.pk]))

    assert response.status_code == 302
    assert active_keys(patient_user.patient) == [phone.credential_id_text]


@pytest.fixture
def identified(patient_user):
    """patient_user's hospital identifier (the one their pseudonym was made of), as the custodian knows it."""
    patient_user.email = "alice@example.org"
    patient_user.save()
    identifier = f"{MRN_SYSTEM}|ALICE-0001"
    PatientIdentifier.objects.create(patient=patient_user.patient, pseudonym=patient_pseudonym(identifier))
    return identifier


def test_the_custodians_reset_is_on_the_ledger_shown_to_the_patient_and_told_by_e_mail(
    patient_user, custodian, identified, terms, ledger, mailoutbox
):
    phone, _ = register(patient_user, "Phone")
    out = io.StringIO()

    call_command("patient_passkeys_reset", identified, reason="lost_all_passkeys", custodian="custodian", stdout=out)

    keys = bootstrap.contracts().patient_keys(patient_user.patient.pseudonym)
    assert keys.active == []
    (recovery,) = keys.recoveries
    assert (recovery.custodian, recovery.reason, recovery.revoked) == (
        f"custodian:{custodian.pk}",
        "lost_all_passkeys",
        [phone.credential_id_text],
    )
    assert recovery.tx_id in out.getvalue()
    assert not Authenticator.objects.filter(user=patient_user, type=Authenticator.Type.WEBAUTHN).exists()
    (mail,) = mailoutbox
    assert mail.to == ["alice@example.org"]
    assert "reset your health_platform passkeys" in mail.subject
    html = html_of(signed_in(patient_user).get(PASSKEYS))
    assert 'id="recoveries"' in html
    assert recovery.tx_id in html
    # The lost passkey signs nothing any more; a new one is enrolled as at first, and signs.
    document = consent_grant_document(actor=patient_user, patient=patient_user.patient, **terms)
    with pytest.raises(SignatureRefused) as refused:
        consent_grant(
            actor=patient_user, patient=patient_user.patient, document=document, signature=phone.sign(document)
        )
    assert refused.value.code == "key_revoked"
    tablet, _ = register(patient_user, "Tablet")
    assert active_keys(patient_user.patient) == [tablet.credential_id_text]
    signing._passkeys[patient_user.patient.pseudonym] = tablet
    assert grant_signed(actor=patient_user, patient=patient_user.patient, **terms).patient_signed


def test_only_a_custodian_resets_passkeys_and_the_command_refuses_unknowns(
    patient_user, clinician, identified, custodian
):
    with pytest.raises(PermissionDenied):
        patient_passkeys_recover(actor=clinician, patient=patient_user.patient, reason="lost_all_passkeys")
    for arguments, code in (
        (("nobody|nothing", "--reason", "lost_all_passkeys", "--custodian", "custodian"), "unknown_patient"),
        ((identified, "--reason", "lost_all_passkeys", "--custodian", "nobody"), "unknown_user"),
        ((identified, "--reason", "lost_all_passkeys", "--custodian", clinician.username), "permission_denied"),
    ):
        with pytest.raises(CommandError, match=code):
            call_command("patient_passkeys_reset", *arguments)


def test_the_custodian_resets_a_patients_passkeys_from_the_portal_once_identity_is_checked(
    patient_user, custodian, identified, ledger
):
    phone, _ = register(patient_user, "Phone")
    system, _, value = identified.rpartition("|")
    client = signed_in(custodian)
    page = reverse("consent:passkey-reset")
    form = {"identifier_system": system, "identifier_value": value, "reason": "lost_all_passkeys"}
    height = ledger.height()

    unchecked = client.post(page, form)
    unknown = client.post(page, {**form, "identifier_value": "NO-SUCH", "identity_checked": "on"})
    assert (unchecked.status_code, unknown.status_code) == (400, 400)
    assert "No ingested patient has this identifier." in html_of(unknown)
    assert ledger.height() == height

    done = client.post(page, {**form, "identity_checked": "on"})

    assert (done.status_code, done["Location"]) == (302, page)
    keys = bootstrap.contracts().patient_keys(patient_user.patient.pseudonym)
    assert (keys.active, keys.recoveries[0].revoked) == ([], [phone.credential_id_text])
    assert keys.recoveries[0].tx_id in html_of(client.get(page))
    assert signed_in(patient_user).post(page, {**form, "identity_checked": "on"}).status_code == 403
