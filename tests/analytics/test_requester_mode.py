"""Requester-held keys: the client makes the keys, the platform gets the public context only, the client
decrypts; and the platform stores nothing with which it could decrypt the scores (the tests try)."""

import base64
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tenseal
from django.apps import apps
from django.db import models as django_models
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from analytics import client as requester_client
from analytics.diagnostic_models import breast_cancer_model
from analytics.he import TenSEALEngine
from analytics.models import AnalysisRequest, AnalysisStatus, KeyMode
from records.codes import BREAST_CANCER_DATASET
from records.demo import demo_patients
from tests.conftest import REPO, grant

pytestmark = [pytest.mark.he, pytest.mark.django_db(transaction=True)]

ANALYSES = "/api/analyses/"


class ApiThroughTestClient:
    """The client's `Api` over DRF's test client, with real token authentication."""

    def __init__(self, token: str):
        self.client = APIClient()
        self.client.credentials(HTTP_AUTHORIZATION=f"Token {token}")

    def call(self, method, path, body=None):
        response = self.client.post(path, body, format="json") if method == "POST" else self.client.get(path)
        if response.status_code >= 400:
            raise requester_client.ClientError(f"{response.status_code} {response.json()['code']}")
        return response.json()


def expected_results(people):
    """Plaintext scikit-learn-equivalent scores of the demo patients, by record id."""
    model = breast_cancer_model()
    features = np.asarray([p.features for p in demo_patients(dataset=BREAST_CANCER_DATASET, count=len(people))])
    interpreted = model.interpret(model.score_plain(features))
    return {str(record.id): result for (_, _, record), result in zip(people, interpreted, strict=True)}


def everything_the_server_stored(blob_dir):
    """Every blob file, and every binary column value of every row in the database."""
    found = {f"blob {path.name}": path.read_bytes() for path in blob_dir.rglob("*") if path.is_file()}
    for model in apps.get_models():
        for field in model._meta.get_fields():
            if isinstance(field, django_models.BinaryField):
                for pk, value in model.objects.exclude(**{f"{field.name}__isnull": True}).values_list("pk", field.name):
                    found[f"{model._meta.label}.{field.name} {pk}"] = bytes(value)
    return found


def opens(context_bytes: bytes, ciphertext: bytes, expected: np.ndarray) -> bool:
    """Whether `context_bytes`, taken as a TenSEAL context, decrypts `ciphertext` to the true scores.

    CKKS has no integrity check: a wrong secret key "decrypts" to noise without an error, so success means
    the right values, not merely no exception.
    """
    try:
        context = tenseal.context_from(context_bytes)
        values = np.asarray(tenseal.ckks_vector_from(context, ciphertext).decrypt()[: len(expected)])
    except Exception:
        return False
    return bool(np.allclose(values, expected, atol=1e-3))


def test_requester_held_scores_decrypt_only_with_the_requesters_key_and_equal_plaintext(
    cohort, clinician, models_registered, blob_dir, eager, tmp_path
):
    people = cohort(5)
    for user, patient, _ in people[:4]:
        grant(user, patient, clinician)
    secret_path, public_path = requester_client.keygen(tmp_path / "keys")
    api = ApiThroughTestClient(Token.objects.create(user=clinician).key)

    created = requester_client.submit(
        api, model="breast-cancer", keys=tmp_path / "keys", pseudonyms=[p.pseudonym for _, p, _ in people]
    )

    request = AnalysisRequest.objects.get(pk=created["id"])
    assert (request.key_mode, request.status) == (KeyMode.REQUESTER, AnalysisStatus.COMPLETED)
    assert "results" not in created["links"]
    # The platform cannot show results itself.
    refused = api.client.get(f"{ANALYSES}{request.id}/results/")
    assert (refused.status_code, refused.json()["code"]) == (400, "results_held_by_requester")

    results = requester_client.fetch(api, str(request.id), keys=tmp_path / "keys")

    expected = expected_results(people)
    assert results["model"]["sha256"] == breast_cancer_model().sha256
    assert sorted(row["record_id"] for row in results["rows"]) == sorted(str(r.id) for _, _, r in people[:4])
    for row in results["rows"]:
        assert abs(row["score"] - expected[row["record_id"]]["score"]) < 1e-3
        assert row["label"] == expected[row["record_id"]]["label"]
    assert results["summary"]["count"] == 4

    # The server stores nothing that opens the scores: try every blob and every binary column value.
    assert request.sealed_secret_context is None
    assert request.sealed_key_id == ""
    encrypted = api.call("GET", f"{ANALYSES}{request.id}/encrypted-scores/")
    score_ciphertexts = [base64.b64decode(chunk["ciphertext"]) for chunk in encrypted["chunks"]]
    assert score_ciphertexts
    stored = everything_the_server_stored(blob_dir)
    contexts = {name for name, data in stored.items() if _is_context(data)}
    assert {f"blob {request.public_context_key}", f"blob {request.compute_context_key}"} <= contexts
    assert any(name.startswith("records.RecordVersion.ciphertext") for name in stored)  # the search reached the DB
    engine = TenSEALEngine()
    for chunk, ciphertext in zip(encrypted["chunks"], score_ciphertexts, strict=True):
        logits = engine.decrypt(secret_path.read_bytes(), ciphertext, len(chunk["record_ids"]))
        assert opens(secret_path.read_bytes(), ciphertext, logits)  # the requester's key does: the check can succeed
        opened_by = [name for name, data in stored.items() if opens(data, ciphertext, logits)]
        assert opened_by == []
        # Not even by a lucky error: without a secret key there is nothing to decrypt with.
        for name in contexts:
            with pytest.raises(ValueError, match="secret"):
                tenseal.ckks_vector_from(tenseal.context_from(stored[name]), ciphertext).decrypt()
    assert not any(tenseal.context_from(stored[name]).has_secret_key() for name in contexts)
    assert public_path.read_bytes() == stored[f"blob {request.public_context_key}"]  # exactly what was uploaded


def _is_context(data: bytes) -> bool:
    try:
        tenseal.context_from(data)
    except Exception:
        return False
    return True


def test_uploading_a_context_that_holds_the_secret_key_is_refused_and_nothing_is_stored(
    cohort, clinician, models_registered, blob_dir, tmp_path
):
    people = cohort(1)
    keys = TenSEALEngine().keygen()
    client = APIClient()
    client.force_authenticate(clinician)
    before = sorted(blob_dir.rglob("*")) if blob_dir.exists() else []

    response = client.post(
        ANALYSES,
        {
            "model": "breast-cancer",
            "cohort": {"kind": "explicit", "pseudonyms": [people[0][1].pseudonym]},
            "key_mode": "requester",
            "public_context": base64.b64encode(keys.secret).decode(),
        },
        format="json",
    )

    assert (response.status_code, response.json()["code"]) == (400, "secret_key_uploaded")
    assert AnalysisRequest.objects.count() == 0
    assert (sorted(blob_dir.rglob("*")) if blob_dir.exists() else []) == before
    # ...and the client refuses to send one in the first place.
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "public.ctx").write_bytes(keys.secret)
    with pytest.raises(requester_client.ClientError, match="holds a secret key"):
        requester_client.submit(ApiThroughTestClient("unused"), model="breast-cancer", keys=tmp_path / "bad")


def test_a_context_whose_parameters_cannot_hold_the_models_scores_is_refused_and_wide_keys_are_accepted(
    cohort, clinician, models_registered, blob_dir, tmp_path
):
    """A CKKS score past its parameters' room decrypts to a wrong number: a context that cannot hold the model's
    scores (here a scale of 2^55, room 2^4 against breast-cancer's ~96) is refused before anything is stored; the
    client's wide keys hold them."""
    people = cohort(1)
    context = tenseal.context(tenseal.SCHEME_TYPE.CKKS, 8192, coeff_mod_bit_sizes=[60, 55, 60])
    context.global_scale = 2**55
    client = APIClient()
    client.force_authenticate(clinician)

    def submitted(public: bytes):
        return client.post(
            ANALYSES,
            {
                "model": "breast-cancer",
                "cohort": {"kind": "explicit", "pseudonyms": [people[0][1].pseudonym]},
                "key_mode": "requester",
                "public_context": base64.b64encode(public).decode(),
            },
            format="json",
        )

    response = submitted(context.serialize(save_secret_key=False))
    assert (response.status_code, response.json()["code"]) == (400, "public_context_out_of_range")
    assert AnalysisRequest.objects.count() == 0
    requester_client.keygen(tmp_path / "wide", wide=True)
    assert submitted((tmp_path / "wide" / "public.ctx").read_bytes()).status_code == 201


def test_the_interpretation_comes_from_the_described_kind_and_labels():
    logistic = requester_client.interpretation_for(
        {"name": "m", "version": "1", "kind": "logistic", "positive_label": "yes", "negative_label": "no"}
    )
    assert [(round(r["score"], 3), r["label"]) for r in logistic.interpret(np.asarray([2.0, -2.0]))] == [
        (0.881, "yes"),
        (0.119, "no"),
    ]
    linear = requester_client.interpretation_for({"name": "m", "version": "1", "kind": "linear"})
    assert linear.interpret(np.asarray([151.5])) == [{"score": 151.5, "label": ""}]
    with pytest.raises(requester_client.ClientError, match="unknown model kind"):
        requester_client.interpretation_for({"name": "m", "version": "1", "kind": "forest"})


def test_the_client_imports_no_django():
    probe = "import sys, analytics.client; print(sorted(m for m in sys.modules if m.split('.')[0] == 'django'))"
    environment = {"PATH": os.environ["PATH"], "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, env=environment, capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "[]"


@pytest.mark.slow
def test_the_command_line_client_against_a_live_server(
    cohort, clinician, models_registered, blob_dir, eager, live_server, tmp_path
):
    people = cohort(3)
    for user, patient, _ in people:
        grant(user, patient, clinician)
    token = Token.objects.create(user=clinician).key
    # The client's whole environment: no Django settings, no database, no platform keys.
    environment = {
        "PATH": os.environ["PATH"],
        "PYTHONPATH": str(REPO),
        "HOME": str(tmp_path),
        "HEALTH_PLATFORM_URL": live_server.url,
        "HEALTH_PLATFORM_TOKEN": token,
    }

    def run(*arguments):
        return subprocess.run(
            [sys.executable, "-m", "analytics.client", *arguments],
            cwd=tmp_path,
            env=environment,
            capture_output=True,
            text=True,
            timeout=240,
        )

    keys = tmp_path / "keys"
    assert run("keygen", "--out", str(keys)).returncode == 0
    assert stat.S_IMODE((keys / "secret.ctx").stat().st_mode) == 0o600
    again = run("keygen", "--out", str(keys))
    assert (again.returncode, "exists" in again.stderr) == (1, True)  # a key in use is never overwritten

    submitted = run("submit", "--model", "breast-cancer", "--consented", "--keys", str(keys))
    assert submitted.returncode == 0, submitted.stderr
    request_id = submitted.stdout.strip()
    assert AnalysisRequest.objects.get(pk=request_id).key_mode == KeyMode.REQUESTER

    status = run("status", request_id)
    assert json.loads(status.stdout)["status"] == "completed"

    out = tmp_path / "scores.json"
    fetched = run("fetch", request_id, "--keys", str(keys), "--out", str(out), "--wait", "120")
    assert fetched.returncode == 0, fetched.stderr
    results = json.loads(out.read_text())
    expected = expected_results(people)
    assert results["model"]["sha256"] == models_registered["breast-cancer"].sha256
    assert len(results["rows"]) == 3
    for row in results["rows"]:
        assert abs(row["score"] - expected[row["record_id"]]["score"]) < 1e-3
        assert row["label"] == expected[row["record_id"]]["label"]

    pinned = run("fetch", request_id, "--keys", str(keys), "--out", str(out), "--expect-model-sha256", "0" * 64)
    assert (pinned.returncode, "not the expected" in pinned.stderr) == (1, True)

    # Errors are one line with the API's code; a wrong token is refused.
    wrong = run("status", request_id, "--token", "wrong")
    assert (wrong.returncode, wrong.stderr.strip()) == (1, "error: 401 authentication_failed: Invalid token.")
    other_keys = tmp_path / "other-keys"
    run("keygen", "--out", str(other_keys))
    mismatched = run("fetch", request_id, "--keys", str(other_keys), "--out", str(tmp_path / "x.json"))
    assert mismatched.returncode == 1
    assert "was not encrypted for the key" in mismatched.stderr
    assert not Path(tmp_path / "x.json").exists()
