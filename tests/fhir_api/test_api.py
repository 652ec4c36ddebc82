"""The FHIR API through DRF's and Django's clients: what each user reads, the searches and their paging, the
CapabilityStatement's truth, and every error as an OperationOutcome."""

from urllib.parse import urlsplit

import pytest
from rest_framework.authtoken.models import Token

from health_platform.fhir_codes import PSEUDONYM_SYSTEM
from health_platform.request_limits import BODY_TOO_LARGE
from tests.clients import api_as, signed_in, unenrol
from tests.fhir_api.conftest import fhir_answer, outcome_code, resources, valid_fhir

pytestmark = pytest.mark.django_db


def ids(bundle) -> set[str]:
    return {resource["id"] for resource in resources(bundle)}


def search(user, path: str, **params):
    return fhir_answer(api_as(user).get(path, params), 200, "Bundle")


# --- metadata ----------------------------------------------------------------------------------------


def test_metadata_is_a_capability_statement_anyone_reads():
    statement = fhir_answer(api_as().get("/fhir/metadata"), 200, "CapabilityStatement")
    assert statement["fhirVersion"] == "4.0.1"
    assert statement["format"] == ["json"]
    (rest,) = statement["rest"]
    assert rest["mode"] == "server"
    by_type = {resource["type"]: resource for resource in rest["resource"]}
    assert [i["code"] for i in by_type["Consent"]["interaction"]] == ["read", "search-type"]
    assert [i["code"] for i in by_type["AuditEvent"]["interaction"]] == ["search-type"]
    assert by_type["Patient"]["operation"][0]["name"] == "everything"
    assert {p["name"] for p in by_type["Consent"]["searchParam"]} == {"patient", "status", "period"}
    assert {p["name"] for p in by_type["AuditEvent"]["searchParam"]} == {"patient", "date", "agent", "outcome"}
    assert {service["text"] for service in rest["security"]["service"]} == {"Token", "Session"}


# A valid value of each parameter the statement may list; a listed parameter with no example fails the test.
EXAMPLES = {
    ("Consent", "patient"): "Patient/{alice}",
    ("Consent", "status"): "active",
    ("Consent", "period"): "ge2026-01-01",
    ("AuditEvent", "patient"): "{alice}",
    ("AuditEvent", "date"): "le2100-01-01T00:00:00Z",
    ("AuditEvent", "agent"): "{carol}",
    ("AuditEvent", "outcome"): "0,4",
    (None, "_count"): "3",
    (None, "_getpagesoffset"): "1",
    (None, "_format"): "json",
}


def test_metadata_tells_the_truth_every_listed_parameter_is_accepted_and_an_unlisted_one_refused(fhir_world, auditor):
    (rest,) = fhir_answer(api_as().get("/fhir/metadata"), 200, "CapabilityStatement")["rest"]
    common = [p["name"] for p in rest["searchParam"]]
    searched = [r for r in rest["resource"] if any(i["code"] == "search-type" for i in r.get("interaction", []))]
    assert {r["type"] for r in searched} == {"Consent", "AuditEvent"}
    client = api_as(auditor)
    for resource in searched:
        names = [(resource["type"], p["name"]) for p in resource["searchParam"]] + [(None, n) for n in common]
        for key in names:
            value = EXAMPLES[key].format(alice=fhir_world.alice_pseudonym, carol=fhir_world.carol)
            fhir_answer(client.get(f"/fhir/{resource['type']}", {key[1]: value}), 200, "Bundle")
        for unlisted in ("name", "_sort", "status:not", "format", "_totalMethod"):
            answer = client.get(f"/fhir/{resource['type']}", {unlisted: "x"})
            assert outcome_code(answer, 400) == "fhir_unknown_parameter", unlisted


# --- Consent -------------------------------------------------------------------------------------------


def test_consent_search_shows_each_user_what_the_platform_lets_them_see(fhir_world, clinician, auditor):
    assert ids(search(fhir_world.alice, "/fhir/Consent")) == fhir_world.alice_consents
    assert ids(search(fhir_world.bob, "/fhir/Consent")) == {fhir_world.bob_consent}
    assert ids(search(clinician, "/fhir/Consent")) == fhir_world.carol_consents
    everything = search(auditor, "/fhir/Consent")
    assert ids(everything) == fhir_world.alice_consents | {fhir_world.bob_consent}
    assert everything["total"] == 4


def test_consent_search_by_patient_in_each_form(fhir_world, auditor):
    alice = fhir_world.alice_pseudonym
    for value in (alice, f"Patient/{alice}", f"{PSEUDONYM_SYSTEM}|{alice}"):
        assert ids(search(auditor, "/fhir/Consent", patient=value)) == fhir_world.alice_consents
    # Another patient's pseudonym narrows a patient's own consents to nothing: it never widens them.
    assert ids(search(fhir_world.bob, "/fhir/Consent", patient=alice)) == set()
    wrong_system = api_as(auditor).get("/fhir/Consent", {"patient": f"urn:other|{alice}"})
    assert outcome_code(wrong_system, 400) == "fhir_invalid_parameter"


def test_consent_search_by_status(fhir_world):
    active = search(fhir_world.alice, "/fhir/Consent", status="active")
    assert ids(active) == fhir_world.alice_consents - {fhir_world.alice_revoked}
    assert {c["status"] for c in resources(active)} == {"active"}
    inactive = search(fhir_world.alice, "/fhir/Consent", status="inactive")
    assert ids(inactive) == {fhir_world.alice_revoked}
    both = search(fhir_world.alice, "/fhir/Consent", status="http://hl7.org/fhir/consent-state-codes|active,inactive")
    assert ids(both) == fhir_world.alice_consents
    assert ids(search(fhir_world.alice, "/fhir/Consent", status="draft")) == set()
    refused = api_as(fhir_world.alice).get("/fhir/Consent", {"status": "on"})
    assert outcome_code(refused, 400) == "fhir_invalid_parameter"


def test_consent_search_by_period_with_date_prefixes(fhir_world):
    # Every consent runs from now to 30 days from now, but the revoked one, which runs 400 days.
    alice = fhir_world.alice
    assert ids(search(alice, "/fhir/Consent", period="ge2020-01-01")) == fhir_world.alice_consents
    assert ids(search(alice, "/fhir/Consent", period="lt2020-01-01")) == set()
    assert ids(search(alice, "/fhir/Consent", period="gt2100")) == set()
    from datetime import timedelta

    from django.utils import timezone

    in_100_days = (timezone.now() + timedelta(days=100)).date().isoformat()
    assert ids(search(alice, "/fhir/Consent", period=f"ge{in_100_days}")) == {fhir_world.alice_revoked}
    assert ids(search(alice, "/fhir/Consent", period=in_100_days)) == {fhir_world.alice_revoked}
    assert ids(search(alice, "/fhir/Consent", period=f"ne{in_100_days}")) == fhir_world.alice_consents - {
        fhir_world.alice_revoked
    }
    two = api_as(alice).get("/fhir/Consent", [("period", "ge2020"), ("period", f"lt{in_100_days}")])
    assert ids(fhir_answer(two, 200, "Bundle")) == fhir_world.alice_consents
    for bad in ("sa2026-01-01", "2026-13-01", "yesterday", "ge2026-02-30"):
        assert outcome_code(api_as(alice).get("/fhir/Consent", {"period": bad}), 400) == "fhir_invalid_parameter"


def test_consent_read_own_and_granted_but_another_patients_is_not_found(fhir_world, clinician, custodian):
    (own,) = fhir_world.alice_consents - {fhir_world.alice_revoked} - fhir_world.carol_consents
    consent = fhir_answer(api_as(fhir_world.alice).get(f"/fhir/Consent/{own}"), 200, "Consent")
    assert consent["patient"]["identifier"]["value"] == fhir_world.alice_pseudonym
    fhir_answer(api_as(clinician).get(f"/fhir/Consent/{fhir_world.bob_consent}"), 200, "Consent")
    assert outcome_code(api_as(fhir_world.bob).get(f"/fhir/Consent/{own}"), 404) == "not_found"
    assert outcome_code(api_as(clinician).get(f"/fhir/Consent/{own}"), 404) == "not_found"  # granted to Dr Dave
    assert outcome_code(api_as(fhir_world.alice).get("/fhir/Consent/nowhere"), 404) == "not_found"
    assert outcome_code(api_as(custodian).get(f"/fhir/Consent/{own}"), 403) == "permission_denied"


def test_consent_search_refuses_a_role_that_reads_no_consent(custodian):
    assert outcome_code(api_as(custodian).get("/fhir/Consent"), 403) == "permission_denied"


# --- AuditEvent ----------------------------------------------------------------------------------------


def event_patients(bundle) -> list[str]:
    return [
        entity["what"]["identifier"]["value"]
        for event in resources(bundle)
        for entity in event["entity"]
        if entity["what"]["identifier"]["system"] == PSEUDONYM_SYSTEM
    ]


def test_audit_events_an_auditor_reads_all_a_patient_their_own(fhir_world, auditor):
    assert search(auditor, "/fhir/AuditEvent")["total"] == 7
    own = search(fhir_world.alice, "/fhir/AuditEvent")
    assert own["total"] == 5
    assert set(event_patients(own)) == {fhir_world.alice_pseudonym}
    assert search(fhir_world.alice, "/fhir/AuditEvent", patient=fhir_world.bob_pseudonym)["total"] == 0


def test_audit_events_refused_to_clinicians_and_custodians(clinician, custodian):
    for user in (clinician, custodian):
        assert outcome_code(api_as(user).get("/fhir/AuditEvent"), 403) == "audit_forbidden"


def test_audit_event_search_by_patient_agent_outcome_and_date(fhir_world, auditor):
    by_patient = search(auditor, "/fhir/AuditEvent", patient=f"Patient/{fhir_world.bob_pseudonym}")
    assert event_patients(by_patient) == [fhir_world.bob_pseudonym] * 2
    by_agent = search(auditor, "/fhir/AuditEvent", agent="org:elsewhere")
    assert by_agent["total"] == 2
    assert {e["agent"][0]["who"]["identifier"]["value"] for e in resources(by_agent)} == {"org:elsewhere"}
    refused = search(auditor, "/fhir/AuditEvent", outcome="4")
    assert refused["total"] == 2
    assert {e["outcome"] for e in resources(refused)} == {"4"}
    assert {e["outcome"] for e in resources(search(auditor, "/fhir/AuditEvent", outcome="0"))} == {"0"}
    assert search(auditor, "/fhir/AuditEvent", outcome="8,12")["total"] == 0
    assert search(auditor, "/fhir/AuditEvent", date="ge2020-01-01")["total"] == 7
    assert search(auditor, "/fhir/AuditEvent", date="lt2020-01-01")["total"] == 0
    recorded = resources(search(auditor, "/fhir/AuditEvent", _count=1))[0]["recorded"]
    same_second = search(auditor, "/fhir/AuditEvent", date=recorded[:19] + "Z")
    assert recorded in {e["recorded"] for e in resources(same_second)}
    for out_of_range in ("0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "9999-12"):
        refused = fhir_answer(api_as(auditor).get("/fhir/AuditEvent", {"date": out_of_range}), 400, "OperationOutcome")
        assert "out of range" in refused["issue"][0]["diagnostics"]


# --- paging ------------------------------------------------------------------------------------------


def links(bundle) -> dict[str, str]:
    return {link["relation"]: link["url"] for link in bundle["link"]}


def follow(client, url: str):
    parts = urlsplit(url)
    return fhir_answer(client.get(f"{parts.path}?{parts.query}"), 200, "Bundle")


def test_paging_through_next_links_reads_every_event_once_in_a_stable_order(fhir_world, auditor):
    client = api_as(auditor)
    page = fhir_answer(client.get("/fhir/AuditEvent", {"_count": 3, "outcome": "0,4"}), 200, "Bundle")
    assert "previous" not in links(page)
    seen, pages = [], 0
    while True:
        pages += 1
        assert page["total"] == 7
        assert len(resources(page)) <= 3
        seen += [event["id"] for event in resources(page)]
        if "next" not in links(page):
            break
        assert "outcome=0%2C4" in links(page)["next"]
        page = follow(client, links(page)["next"])
    assert pages == 3
    assert len(seen) == len(set(seen)) == 7
    assert seen == [event["id"] for event in resources(search(auditor, "/fhir/AuditEvent", _count=200))]
    back = follow(client, links(page)["previous"])
    assert [event["id"] for event in resources(back)] == seen[3:6]
    assert follow(client, links(page)["self"]) == page


def test_count_zero_gives_the_total_alone_and_a_bad_count_is_refused(fhir_world, auditor):
    only_total = search(auditor, "/fhir/AuditEvent", _count=0)
    assert only_total["total"] == 7
    assert "entry" not in only_total
    for bad in ("201", "-1", "two", "1.5"):
        answer = api_as(auditor).get("/fhir/AuditEvent", {"_count": bad})
        assert outcome_code(answer, 400) == "fhir_invalid_parameter"
    twice = api_as(auditor).get("/fhir/AuditEvent", [("agent", "a"), ("agent", "b")])
    assert outcome_code(twice, 400) == "fhir_invalid_parameter"


# --- Patient/$everything -----------------------------------------------------------------------------


def test_everything_gives_the_patient_their_records_consents_and_access_events(fhir_world):
    alice = fhir_world.alice_pseudonym
    bundle = search(fhir_world.alice, f"/fhir/Patient/{alice}/$everything")
    (patient,) = resources(bundle, "Patient")
    assert patient["id"] == alice
    assert patient["identifier"] == [{"system": PSEUDONYM_SYSTEM, "value": alice}]
    observations = resources(bundle, "Observation")
    assert observations
    assert {o["subject"]["reference"] for o in observations} == {f"Patient/{alice}"}
    assert all("valueQuantity" in o or "component" in o or "valueCodeableConcept" in o for o in observations)
    assert {c["id"] for c in resources(bundle, "Consent")} == fhir_world.alice_consents
    assert set(event_patients({"entry": [{"resource": e} for e in resources(bundle, "AuditEvent")]})) == {alice}
    assert len(resources(bundle, "AuditEvent")) == 5
    assert bundle["total"] == len(resources(bundle))
    # Paged like a search: the same entries, a few at a time.
    client, url, paged = api_as(fhir_world.alice), f"/fhir/Patient/{alice}/$everything?_count=4", []
    page = fhir_answer(client.get(url), 200, "Bundle")
    while True:
        paged += resources(page)
        if "next" not in links(page):
            break
        page = follow(client, links(page)["next"])
    assert paged == resources(bundle)


def test_everything_of_another_patient_is_not_found_and_other_roles_are_refused(fhir_world, clinician, auditor):
    alice = fhir_world.alice_pseudonym
    assert outcome_code(api_as(fhir_world.bob).get(f"/fhir/Patient/{alice}/$everything"), 404) == "not_found"
    assert outcome_code(api_as(fhir_world.bob).get(f"/fhir/Patient/{'0' * 64}/$everything"), 404) == "not_found"
    for user in (clinician, auditor):
        assert outcome_code(api_as(user).get(f"/fhir/Patient/{alice}/$everything"), 403) == "permission_denied"


# --- errors --------------------------------------------------------------------------------------------


def test_anonymous_is_asked_to_sign_in(db):
    answer = api_as().get("/fhir/Consent")
    assert outcome_code(answer, 401) == "not_authenticated"
    assert answer["WWW-Authenticate"] == "Token"
    bad_token = api_as()
    bad_token.credentials(HTTP_AUTHORIZATION="Token nonsense")
    assert outcome_code(bad_token.get("/fhir/Consent"), 401) == "authentication_failed"


def test_a_patients_token_reads_as_the_patient(fhir_world):
    client = api_as()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=fhir_world.bob).key}")
    assert ids(fhir_answer(client.get("/fhir/Consent"), 200, "Bundle")) == {fhir_world.bob_consent}


def test_staff_without_a_second_factor_are_refused_by_session_and_by_token(auditor):
    unenrol(auditor)
    assert outcome_code(signed_in(auditor).get("/fhir/AuditEvent"), 403) == "mfa_required"
    client = api_as()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=auditor).key}")
    assert outcome_code(client.get("/fhir/AuditEvent"), 403) == "mfa_required"


def test_a_session_reads_the_api_too(fhir_world):
    assert ids(fhir_answer(signed_in(fhir_world.bob).get("/fhir/Consent"), 200, "Bundle")) == {fhir_world.bob_consent}


@pytest.mark.parametrize("method", ["post", "put", "patch", "delete", "options"])
def test_methods_other_than_get_are_not_allowed(fhir_world, method):
    answer = getattr(signed_in(fhir_world.alice), method)("/fhir/Consent")
    assert outcome_code(answer, 405) == "method_not_allowed"


def test_only_json_is_served(fhir_world):
    client = api_as(fhir_world.alice)
    for accept in ("application/fhir+xml", "text/html"):
        assert outcome_code(client.get("/fhir/Consent", HTTP_ACCEPT=accept), 406) == "not_acceptable"
    for value in ("xml", "application/fhir+xml", "html"):
        assert outcome_code(client.get("/fhir/Consent", {"_format": value}), 406) == "not_acceptable"
    fhir_answer(client.get("/fhir/Consent", {"_format": "application/fhir+json"}), 200, "Bundle")
    plain = client.get("/fhir/Consent", HTTP_ACCEPT="application/json")
    assert plain.status_code == 200
    assert plain["Content-Type"] == "application/json; charset=utf-8"
    valid_fhir(plain.json(), "Bundle")


def test_unknown_paths_under_fhir_are_not_found_in_fhir(fhir_world):
    client = signed_in(fhir_world.alice)
    for path in ("/fhir/Observation", "/fhir/Consent/", "/fhir/Patient/x", "/fhir/AuditEvent/x"):
        assert outcome_code(client.get(path), 404) == "not_found", path
    assert outcome_code(client.post("/fhir/Observation"), 404) == "not_found"


def test_limits_on_the_request_are_outcomes(fhir_world, settings):
    client = signed_in(fhir_world.alice)
    settings.REQUEST_URI_MAX_BYTES = 64
    assert outcome_code(client.get("/fhir/Consent", {"status": "active" + ",active" * 20}), 414) == "uri_too_long"
    settings.REQUEST_URI_MAX_BYTES = 8192
    assert outcome_code(client.get("/fhir/Consent", **{BODY_TOO_LARGE: 10}), 413) == "payload_too_large"


def test_an_unexpected_failure_is_a_500_outcome(fhir_world, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr("fhir_api.api.consents_readable_by", broken)
    assert outcome_code(api_as(fhir_world.alice).get("/fhir/Consent"), 500) == "server_error"
