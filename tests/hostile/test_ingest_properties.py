"""Property tests for FHIR ingestion (POST /api/records/) and the canonical hash it anchors.

Whatever a sender posts, ingest answers 201/202 (stored) or a 4xx with one of its stable codes (nothing
stored: not a patient, record or version more); never a 5xx. The hash (RFC 8785, SHA-256) does not depend
on key order, whitespace or escaping, changes with any value, is stable over a round trip, and does not
normalise unicode behind the sender's back.
"""

import json
import unicodedata

import pytest
import rfc8785
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from rest_framework.test import APIClient

from health_platform.roles import Role
from records.bundles import bundle_parse
from records.canonical import canonical_json, canonical_sha256
from records.models import Patient, Record, RecordVersion
from tests.hostile.strategies import (
    INGEST_REFUSAL_CODES,
    canonical_values,
    json_values,
    mutated_bundles,
    reordered,
    spelled,
    valid_bundle,
)
from tests.records.factories import UserFactory

URL = "/api/records/"
FHIR_JSON = "application/fhir+json"
STORED = (201, 202)
ESCAPED = {'"', "\\", *(chr(code) for code in range(0x20))}

# Bounded: the whole hostile suite stays within a few minutes on two cores. derandomize: CI sees the
# same examples every run (a new failure is a change in the code, not luck).
API_SETTINGS = settings(
    max_examples=60,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
PURE_SETTINGS = settings(max_examples=150, deadline=None, database=None, derandomize=True)


@pytest.fixture
def custodian_api(db):
    client = APIClient()
    client.force_authenticate(UserFactory(username="custodian-hostile", roles=[Role.CUSTODIAN]))
    return client


def stored_counts() -> tuple[int, int, int]:
    return Patient.objects.count(), Record.objects.count(), RecordVersion.objects.count()


def post_and_check(client: APIClient, body: bytes, content_type: str = FHIR_JSON) -> dict:
    """POST `body`; assert no 5xx, a stable code on refusal and nothing stored then; return the JSON answer."""
    before = stored_counts()
    response = client.post(URL, data=body, content_type=content_type)
    assert response.status_code < 500, response.content[:500]
    answer = response.json()
    if response.status_code in STORED:
        new_versions = sum(not record["unchanged"] for record in answer["records"])
        assert stored_counts()[2] == before[2] + new_versions
    else:
        assert response.status_code in (400, 413, 415), response.content[:500]
        assert answer["code"] in INGEST_REFUSAL_CODES, answer
        assert stored_counts() == before, f"a refused bundle ({answer['code']}) left rows behind"
    return {"status": response.status_code, **answer}


# --- ingest: arbitrary and near-valid input ------------------------------------------------------


@API_SETTINGS
@given(body=st.binary(max_size=300))
def test_arbitrary_bytes_are_refused_with_a_stable_code(custodian_api, body):
    answer = post_and_check(custodian_api, body)
    assert answer["status"] not in STORED


@API_SETTINGS
@given(document=json_values)
def test_arbitrary_json_is_refused_with_a_stable_code_and_nothing_stored(custodian_api, document):
    answer = post_and_check(custodian_api, json.dumps(document).encode())
    assert answer["status"] not in STORED


@API_SETTINGS
@given(
    document=st.fixed_dictionaries(
        {"resourceType": st.just("Bundle"), "type": st.sampled_from(["collection", "batch", "transaction"])},
        optional={"entry": st.lists(json_values | st.dictionaries(st.just("resource"), json_values), max_size=4)},
    )
)
def test_bundles_of_arbitrary_entries_are_refused_with_a_stable_code(custodian_api, document):
    post_and_check(custodian_api, json.dumps(document).encode())


@settings(API_SETTINGS, max_examples=200)  # enough to reach the rarer edits (a code that is a list)
@given(document=mutated_bundles())
def test_near_valid_bundles_are_stored_whole_or_refused_whole_with_a_stable_code(custodian_api, document):
    body = json.dumps(document).encode()
    first = post_and_check(custodian_api, body)
    if first["status"] not in STORED:
        # The same input is refused for the same reason: the code is a function of the input.
        again = post_and_check(custodian_api, body)
        assert (again["status"], again["code"]) == (first["status"], first["code"])


@pytest.mark.django_db
def test_unhashable_category_code_is_refused_not_a_server_error(custodian_api):
    document = valid_bundle(mrn_prefix="MRN-UNHASHABLE")
    document["entry"][1]["resource"]["category"][0]["coding"][0]["code"] = ["laboratory"]

    answer = post_and_check(custodian_api, json.dumps(document).encode())

    assert (answer["status"], answer["code"]) == (400, "observation_category_unknown")


# --- the canonical hash --------------------------------------------------------------------------


@PURE_SETTINGS
@given(
    document=canonical_values,
    order=st.lists(st.integers(0, 7), min_size=1, max_size=4),
    indent=st.none() | st.integers(0, 4),
    ascii_only=st.booleans(),
)
def test_key_order_whitespace_and_escaping_do_not_change_the_hash(document, order, indent, ascii_only):
    text = spelled(reordered(document, order), indent=indent, ascii_only=ascii_only)

    assert canonical_sha256(json.loads(text)) == canonical_sha256(document)


@PURE_SETTINGS
@given(document=canonical_values)
def test_canonical_form_is_stable_over_a_round_trip(document):
    canonical = canonical_json(document)

    assert canonical_json(json.loads(canonical)) == canonical
    assert canonical_json(json.loads(canonical.decode("utf-8"))) == canonical


def _same_json(a, b) -> bool:
    """JSON equality: 1 == 1.0 (one number), but true is not 1 and an object is not its key list."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same_json(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same_json(x, y) for x, y in zip(a, b, strict=True))
    return a == b


@PURE_SETTINGS
@given(data=st.data(), document=st.dictionaries(st.text(max_size=8), canonical_values, min_size=1, max_size=5))
def test_any_value_change_changes_the_hash(data, document):
    key = data.draw(st.sampled_from(sorted(document)))
    changed = {**document, key: data.draw(canonical_values)}
    assume(not _same_json(changed[key], document[key]))

    assert canonical_sha256(changed) != canonical_sha256(document)


@PURE_SETTINGS
@given(text=st.text(min_size=1, max_size=20))
def test_unicode_is_not_normalised(text):
    forms = {form: unicodedata.normalize(form, text) for form in ("NFC", "NFD", "NFKC", "NFKD")}
    for form, normalised in forms.items():
        if normalised != text:
            assert canonical_sha256({"name": normalised}) != canonical_sha256({"name": text}), form
    # The canonical bytes carry the string's own code points, UTF-8 encoded (only " \\ and controls escaped).
    assert json.loads(canonical_json(text)) == text
    if not set(text) & ESCAPED:
        assert canonical_json(text) == b'"' + text.encode("utf-8") + b'"'


def test_numbers_have_one_spelling():
    assert canonical_json(json.loads("[1.0, 1e2, -0.0, 0.1e1]")) == b"[1,100,0,1]"


def test_integral_floats_past_2_53_do_not_survive_a_reparse():
    """1e16 is canonically "10000000000000000"; parsed back, Python holds an int past 2^53, which has no
    canonical form. The platform never re-canonicalises stored bytes (it hashes them as stored), and a
    client re-sending such a document gets a 400, not a 5xx (see the ingest properties above)."""
    canonical = canonical_json({"value": 1e16})

    assert canonical == b'{"value":10000000000000000}'
    with pytest.raises(rfc8785.CanonicalizationError):
        canonical_json(json.loads(canonical))


def test_lone_surrogates_and_huge_integers_have_no_canonical_form():
    with pytest.raises(rfc8785.CanonicalizationError):
        canonical_json({"name": json.loads('"\\ud800"')})
    with pytest.raises(rfc8785.CanonicalizationError):
        canonical_json({"value": 2**53 + 1})


@pytest.mark.django_db
def test_reordered_respelled_bundle_is_the_same_record_version(custodian_api):
    document = valid_bundle(patients=2, observations=2, mrn_prefix="MRN-ORDER")
    first = post_and_check(custodian_api, json.dumps(document).encode())
    again = post_and_check(custodian_api, spelled(reordered(document, [3, 1]), indent=2, ascii_only=True))

    assert first["status"] in STORED
    assert again["status"] in STORED
    assert [r["sha256"] for r in again["records"]] == [r["sha256"] for r in first["records"]]
    assert all(r["unchanged"] for r in again["records"])


@pytest.mark.django_db
def test_nfc_and_nfd_names_are_different_versions_stored_as_sent(custodian_api):
    composed = valid_bundle(mrn_prefix="MRN-NFC")
    composed["entry"][0]["resource"]["name"] = [{"family": "Jos\u00e9"}]
    decomposed = json.loads(json.dumps(composed))
    decomposed["entry"][0]["resource"]["name"] = [{"family": "Jose\u0301"}]

    first = post_and_check(custodian_api, json.dumps(composed).encode())
    second = post_and_check(custodian_api, json.dumps(decomposed, ensure_ascii=False).encode())

    assert first["records"][0]["sha256"] != second["records"][0]["sha256"]
    assert (second["records"][0]["version"], second["records"][0]["unchanged"]) == (2, False)
    [parsed] = bundle_parse(json.dumps(decomposed).encode())
    assert json.loads(parsed.canonical)["entry"][0]["resource"]["name"] == [{"family": "Jose\u0301"}]
