"""The service API between platform instances (training.federation_api) and the configuration and signatures behind
it (training.peers): only a request signed by a configured peer's key is heard; an invitation is checked field by
field with stable codes, kept once per run and attempt, and queued for the custodian worker; a refused request
stores nothing; the outcome is read only by the peer that sent the invitation."""

import base64
import json
import time
import uuid

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import Client

from analytics.he import TenSEALEngine
from training.models import TrainingParticipation
from training.peers import (
    SIGNATURE_HEADER,
    SIGNATURE_WINDOW_SECONDS,
    Peer,
    PeersMisconfigured,
    SignatureRefused,
    peers_parse,
    signature_check,
    signed_headers,
)
from training.tls import loopback_tls

INVITATIONS = "/api/training/federation/invitations/"
ST_MARYS, NORTHGATE, ELSEWHERE = "org:st-marys", "org:northgate", "org:elsewhere"
KEY, OTHER_KEY = b"k" * 32, b"o" * 32
KEY_TEXT = base64.b64encode(KEY).decode()


# --- configuration -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "hosted", "says"),
    [
        ("not json", [NORTHGATE], "must be a JSON object"),
        ("[]", [NORTHGATE], "must be a JSON object"),
        ("{}", [NORTHGATE], "at least one organisation"),
        (json.dumps({ST_MARYS: {"url": "https://a.example", "key": KEY_TEXT}}), [], "TRAINING_HOSTED_ORGANISATIONS"),
        (json.dumps({"st-marys": {"url": "https://a.example", "key": KEY_TEXT}}), [NORTHGATE], "org:<slug>"),
        (json.dumps({NORTHGATE: {"url": "https://a.example", "key": KEY_TEXT}}), [NORTHGATE], "hosted by this"),
        (json.dumps({ST_MARYS: {"url": "https://a.example"}}), [NORTHGATE], "exactly a url and a key"),
        (json.dumps({ST_MARYS: {"url": "ftp://a.example", "key": KEY_TEXT}}), [NORTHGATE], "http(s) URL"),
        (json.dumps({ST_MARYS: {"url": "https://a.example", "key": "c2hvcnQ="}}), [NORTHGATE], "at least 32 bytes"),
        (json.dumps({ST_MARYS: {"url": "https://a.example", "key": "!!"}}), [NORTHGATE], "at least 32 bytes"),
    ],
)
def test_a_misconfigured_peer_list_stops_the_start_naming_the_variable_and_never_the_key(text, hosted, says):
    with pytest.raises(PeersMisconfigured) as refused:
        peers_parse("TRAINING_FEDERATION_PEERS", text, hosted=hosted)
    assert says in str(refused.value)
    assert "TRAINING_FEDERATION_PEERS" in str(refused.value)
    assert KEY_TEXT not in str(refused.value)


def test_the_settings_refuse_a_bad_peer_list_at_start(tmp_path):
    import subprocess
    import sys

    from tests.conftest import REPO

    done = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=REPO,
        env={
            "PATH": "/usr/bin:/bin",
            "HEALTH_PLATFORM_VAR_DIR": str(tmp_path),
            "TRAINING_FEDERATION_PEERS": json.dumps({ST_MARYS: {"url": "https://a.example", "key": KEY_TEXT}}),
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    assert ImproperlyConfigured.__name__ in done.stderr
    assert "TRAINING_FEDERATION_PEERS needs TRAINING_HOSTED_ORGANISATIONS" in done.stderr


def test_a_peer_list_parses_to_peers_whose_key_is_never_shown():
    peers = peers_parse(
        "TRAINING_FEDERATION_PEERS",
        json.dumps({ST_MARYS: {"url": "https://st-marys.example/platform/", "key": KEY_TEXT}}),
        hosted=[NORTHGATE],
    )
    assert peers == {ST_MARYS: Peer(ST_MARYS, "https://st-marys.example/platform", KEY)}
    assert KEY_TEXT not in repr(peers)
    assert "kkkk" not in repr(peers)


# --- signatures ----------------------------------------------------------------------------------


def _check(headers, *, body=b"{}", path=INVITATIONS, method="POST", now=None, peers=None):
    return signature_check(
        peers=peers or {ST_MARYS: Peer(ST_MARYS, "http://x", KEY)},
        headers=headers,
        method=method,
        path=path,
        body=body,
        now=now,
    )


def _signed(body=b"{}", *, key=KEY, sender=ST_MARYS, path=INVITATIONS, method="POST", now=None):
    peer = Peer(sender, "http://x", key)
    return signed_headers(sender=sender, peer=peer, method=method, path=path, body=body, now=now)


def test_a_signed_request_names_its_peer():
    assert _check(_signed()).organisation == ST_MARYS


@pytest.mark.parametrize(
    ("headers", "change", "code"),
    [
        (lambda: {}, {}, "federation_unsigned"),
        (lambda: _signed(sender=ELSEWHERE), {}, "federation_unknown_peer"),
        (lambda: _signed(key=OTHER_KEY), {}, "federation_signature_invalid"),
        (lambda: _signed(b'{"a":1}'), {}, "federation_signature_invalid"),  # another body
        (lambda: _signed(path="/api/other/"), {}, "federation_signature_invalid"),
        (lambda: _signed(method="GET"), {}, "federation_signature_invalid"),
        (lambda: _signed(now=time.time() - SIGNATURE_WINDOW_SECONDS - 5), {}, "federation_stale"),
        (lambda: _signed(now=time.time() + SIGNATURE_WINDOW_SECONDS + 5), {}, "federation_stale"),
        (lambda: {**_signed(), "X-Federation-Timestamp": "9" * 5000}, {}, "federation_stale"),
        (lambda: {**_signed(), "X-Federation-Timestamp": "-1"}, {}, "federation_stale"),
        (lambda: {**_signed(), SIGNATURE_HEADER: "é" * 64}, {}, "federation_signature_invalid"),
    ],
)
def test_a_request_not_signed_by_a_peers_key_now_is_refused_with_its_code(headers, change, code):
    with pytest.raises(SignatureRefused) as refused:
        _check(headers(), **change)
    assert refused.value.code == code


# --- the API -------------------------------------------------------------------------------------


@pytest.fixture
def northgate_instance(settings, blob_dir):
    """This instance hosts Northgate; St Mary's instance is its peer."""
    settings.TRAINING_HOSTED_ORGANISATIONS = [NORTHGATE]
    settings.TRAINING_FEDERATION_PEERS = {ST_MARYS: Peer(ST_MARYS, "http://st-marys.invalid", KEY)}
    return settings


@pytest.fixture(scope="module")
def public_context() -> str:
    return base64.b64encode(TenSEALEngine().keygen_for_sums().public).decode()


def invitation(context: str, **change) -> dict:
    body = {
        "run_id": str(uuid.uuid4()),
        "attempt": 0,
        "organisation": NORTHGATE,
        "model_family": "breast-cancer",
        "kind": "logistic",
        "feature_codes": _breast_cancer_features(),
        "rounds": 2,
        "validation_fraction": 0.2,
        "target_bound": None,
        "public_context": context,
        "aggregator": "127.0.0.1:45678",
        "authority": loopback_tls().authority.decode(),
        "token": "t" * 43,
    }
    body.update(change)
    return body


def _breast_cancer_features() -> list[str]:
    from analytics.selectors import declared_model_of_family

    return list(declared_model_of_family(family="breast-cancer").feature_codes)


def send(method: str, path: str, body: object = None, *, key: bytes = KEY, sender: str = ST_MARYS, raw=None):
    data = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
    headers = signed_headers(sender=sender, peer=Peer(sender, "http://x", key), method=method, path=path, body=data)
    extra = {f"HTTP_{name.upper().replace('-', '_')}": value for name, value in headers.items()}
    client = Client()
    if method == "POST":
        return client.post(path, data=data, content_type="application/json", **extra)
    return client.get(path, **extra)


@pytest.mark.django_db
@pytest.mark.he
def test_a_signed_invitation_is_kept_once_and_queued_for_the_custodian_worker(
    northgate_instance, public_context, django_capture_on_commit_callbacks, monkeypatch
):
    queued = []
    monkeypatch.setattr("training.tasks.training_participation_run.delay", queued.append)
    body = invitation(public_context)
    with django_capture_on_commit_callbacks(execute=True):
        first = send("POST", INVITATIONS, body)
    assert first.status_code == 201, first.json()
    assert first.json()["status"] == "queued"
    assert first.json()["manifest"] == []
    participation = TrainingParticipation.objects.get()
    assert queued == [participation.pk]
    assert (participation.steward_organisation, participation.organisation) == (ST_MARYS, NORTHGATE)
    assert participation.terms == {"rounds": 2, "validation_fraction": 0.2, "target_bound": None}

    with django_capture_on_commit_callbacks(execute=True):
        again = send("POST", INVITATIONS, body)
    assert again.status_code == 200
    assert TrainingParticipation.objects.count() == 1
    assert len(queued) == 1

    read = send("GET", f"{INVITATIONS}{body['run_id']}/0/")
    assert read.status_code == 200
    assert read.json()["organisation"] == NORTHGATE


BAD_FIELDS = [
    ({"run_id": "not-a-uuid"}, "invalid_run_id", "run_id"),
    ({"run_id": 12}, "invalid_run_id", "run_id"),
    ({"attempt": -1}, "invalid_attempt", "attempt"),
    ({"attempt": True}, "invalid_attempt", "attempt"),
    ({"attempt": "0"}, "invalid_attempt", "attempt"),
    ({"organisation": ST_MARYS}, "organisation_not_hosted", "organisation"),
    ({"organisation": ["org:northgate"]}, "organisation_not_hosted", "organisation"),
    ({"model_family": "no-such-family"}, "unknown_model", "model_family"),
    ({"model_family": {"x": 1}}, "unknown_model", "model_family"),
    ({"kind": "linear"}, "model_mismatch", "model_family"),
    ({"feature_codes": ["a", "b"]}, "model_mismatch", "model_family"),
    ({"rounds": 0}, "invalid_rounds", "rounds"),
    ({"rounds": 51}, "invalid_rounds", "rounds"),
    ({"rounds": 2.0}, "invalid_rounds", "rounds"),
    ({"validation_fraction": 0.9}, "invalid_validation_fraction", "validation_fraction"),
    ({"validation_fraction": "0.2"}, "invalid_validation_fraction", "validation_fraction"),
    ({"target_bound": -1}, "invalid_dp_target_bound", "target_bound"),
    ({"public_context": "%%%"}, "invalid_context", "public_context"),
    ({"public_context": ""}, "invalid_context", "public_context"),
    ({"aggregator": "127.0.0.1"}, "invalid_aggregator", "aggregator"),
    ({"aggregator": "127.0.0.1:99999"}, "invalid_aggregator", "aggregator"),
    ({"aggregator": "evil host:80"}, "invalid_aggregator", "aggregator"),
    ({"authority": "not a certificate"}, "invalid_authority", "authority"),
    ({"authority": "<script>" * 2000}, "invalid_authority", "authority"),
    ({"token": "short"}, "invalid_token", "token"),
    ({"token": "t" * 40 + " <>"}, "invalid_token", "token"),
    ({"token": 123}, "invalid_token", "token"),
]


@pytest.mark.django_db
@pytest.mark.he
@pytest.mark.parametrize(("change", "code", "field"), BAD_FIELDS)
def test_a_bad_invitation_field_is_refused_with_its_code_and_nothing_is_kept(
    northgate_instance, public_context, change, code, field
):
    answer = send("POST", INVITATIONS, invitation(public_context, **change))
    assert answer.status_code == 400, answer.json()
    assert answer.json()["code"] == code
    assert answer.json()["detail"] == {"field": field}
    assert "<script>" not in answer.content.decode()
    assert not TrainingParticipation.objects.exists()


@pytest.mark.django_db
@pytest.mark.he
def test_an_invitation_with_a_field_unknown_or_missing_or_not_an_object_is_refused(northgate_instance, public_context):
    body = invitation(public_context)
    unknown = send("POST", INVITATIONS, {**body, "secret_context": "x"})
    assert (unknown.status_code, unknown.json()["code"]) == (400, "unknown_fields")
    missing = {k: v for k, v in body.items() if k != "authority"}
    assert send("POST", INVITATIONS, missing).json()["code"] == "missing_fields"
    assert send("POST", INVITATIONS, [body]).json()["code"] == "malformed_request"
    assert send("POST", INVITATIONS, raw=b'{"run_id": ').json()["code"] == "malformed_request"
    leaf_certificate = loopback_tls()  # a server certificate is not an authority
    server_certificate = leaf_certificate.certificate.decode()
    not_authority = send("POST", INVITATIONS, invitation(public_context, authority=server_certificate))
    assert not_authority.json()["code"] == "invalid_authority"
    assert not TrainingParticipation.objects.exists()


@pytest.mark.django_db
def test_an_oversized_invitation_is_refused_before_it_is_read(northgate_instance):
    answer = send("POST", INVITATIONS, raw=b'{"x": "' + b"a" * (4 * 1024 * 1024) + b'"}')
    assert answer.status_code == 413
    assert answer.json()["code"] == "payload_too_large"
    assert not TrainingParticipation.objects.exists()


@pytest.mark.django_db
@pytest.mark.he
def test_only_a_peers_signature_is_heard_and_only_by_the_peer_that_invited(northgate_instance, public_context):
    body = invitation(public_context)
    raw = json.dumps(body).encode()
    unsigned = Client().post(INVITATIONS, data=raw, content_type="application/json")
    assert (unsigned.status_code, unsigned.json()["code"]) == (401, "not_authenticated")
    forged = send("POST", INVITATIONS, body, key=OTHER_KEY)
    assert (forged.status_code, forged.json()["code"]) == (401, "federation_signature_invalid")
    stranger = send("POST", INVITATIONS, body, sender=ELSEWHERE)
    assert (stranger.status_code, stranger.json()["code"]) == (401, "federation_unknown_peer")
    assert not TrainingParticipation.objects.exists()

    assert send("POST", INVITATIONS, body).status_code == 201
    northgate_instance.TRAINING_FEDERATION_PEERS = {
        ST_MARYS: Peer(ST_MARYS, "http://st-marys.invalid", KEY),
        ELSEWHERE: Peer(ELSEWHERE, "http://elsewhere.invalid", OTHER_KEY),
    }
    other_peer = send("GET", f"{INVITATIONS}{body['run_id']}/0/", key=OTHER_KEY, sender=ELSEWHERE)
    assert (other_peer.status_code, other_peer.json()["code"]) == (404, "not_found")
    taken = send("POST", INVITATIONS, body, key=OTHER_KEY, sender=ELSEWHERE)
    assert (taken.status_code, taken.json()["code"]) == (409, "invitation_conflict")
    assert send("GET", f"{INVITATIONS}{uuid.uuid4()}/0/").status_code == 404
    assert TrainingParticipation.objects.get().steward_organisation == ST_MARYS
