"""Signing as a patient, for tests that grant or revoke consent without a browser: each patient gets a passkey held
in software (health_platform.software_passkey), put on the ledger as their first, which signs the documents the
services make exactly as a browser's passkey would."""

import html
import json
import re
from typing import Any

from chaincode.webauthn import document_challenge
from consent.models import Consent
from consent.services import consent_grant, consent_grant_document, consent_revoke, consent_revoke_document
from health_platform import bootstrap
from health_platform.software_passkey import SoftwarePasskey

_passkeys: dict[str, SoftwarePasskey] = {}


def enrol_passkey(patient: Any, *, rp_id: str = "testserver", origin: str = "http://testserver") -> SoftwarePasskey:
    """A new software passkey for `patient`, enrolled on the ledger as their first (they must have none there)."""
    passkey = SoftwarePasskey(rp_id=rp_id, origin=origin)
    bootstrap.contracts().enrol_patient_key(passkey.ledger_key(patient.pseudonym))
    _passkeys[patient.pseudonym] = passkey
    return passkey


def passkey_of(patient: Any) -> SoftwarePasskey:
    """The patient's software passkey, enrolled on the current ledger if it is not there yet."""
    passkey = _passkeys.get(patient.pseudonym)
    keys = bootstrap.contracts().patient_keys(patient.pseudonym)
    if passkey is not None and any(key.credential_id == passkey.credential_id_text for key in keys.active):
        return passkey
    return enrol_passkey(patient)


def grant_signed(*, actor: Any, patient: Any, **terms: Any) -> Consent:
    """consent_grant of one grant with `terms`, signed by the patient's passkey."""
    document = consent_grant_document(actor=actor, patient=patient, **terms)
    signature = passkey_of(patient).sign(document)
    return consent_grant(actor=actor, patient=patient, document=document, signature=signature)[0]


def revoke_signed(*, actor: Any, consent: Consent) -> Consent:
    """consent_revoke of `consent`, signed by its patient's passkey."""
    document = consent_revoke_document(actor=actor, consent=consent)
    signature = passkey_of(consent.patient).sign(document)
    return consent_revoke(actor=actor, consent=consent, document=document, signature=signature)


CONSENTS_URL = "/api/consents/"


def api_grant(client: Any, patient: Any, body: dict[str, Any], *, sign: Any = None) -> Any:
    """Grant through the API as a browser would: the signing request, the passkey's signature over its document
    (`sign(document)`, by default the patient's passkey), then the signed document. The last response."""
    asked = client.post(f"{CONSENTS_URL}sign-request/", body, format="json")
    if asked.status_code != 200:
        return asked
    document = asked.json()["document"]
    signature = (sign or passkey_of(patient).sign)(document)
    return client.post(CONSENTS_URL, {"document": document, "signature": signature}, format="json")


def api_revoke(client: Any, patient: Any, consent_id: str) -> Any:
    """Revoke through the API: the revocation's signing request, signed by the patient's passkey, submitted."""
    asked = client.post(f"{CONSENTS_URL}{consent_id}/revoke/sign-request/")
    if asked.status_code != 200:
        return asked
    document = asked.json()["document"]
    signed = {"document": document, "signature": passkey_of(patient).sign(document)}
    return client.post(f"{CONSENTS_URL}{consent_id}/revoke/", signed, format="json")


def api_import_fhir(client: Any, patient: Any, resource: dict[str, Any]) -> Any:
    """Import a FHIR Consent through the API: its signing request, signed by the patient's passkey, submitted."""
    asked = client.post(f"{CONSENTS_URL}fhir/", resource, format="json")
    if asked.status_code != 200:
        return asked
    document = asked.json()["document"]
    signed = {"document": document, "signature": passkey_of(patient).sign(document)}
    return client.post(CONSENTS_URL, signed, format="json")


def portal_sign(client: Any, patient: Any, page: Any, *, passkey: SoftwarePasskey | None = None) -> Any:
    """On a portal page that asks the patient's passkey to sign (consent/sign.html, the passkeys page), do what
    passkey_sign.js does: sign the form's document with the patient's passkey and send the form."""
    text = page.content.decode()
    form = re.search(r'<form method="post" action="([^"]+)"[^>]*data-challenge="([^"]+)"', text)
    document_field = re.search(r'name="document" value="([^"]*)"', text)
    assert form, "the page asks for no signature"
    assert document_field
    document = json.loads(html.unescape(document_field.group(1)))
    assert document_challenge(document) == form.group(2)
    passkey = passkey or _passkeys.get(patient.pseudonym) or passkey_of(patient)  # held: the ledger may be away
    signed = {"document": json.dumps(document), "signature": json.dumps(passkey.sign(document))}
    return client.post(html.unescape(form.group(1)), signed)
