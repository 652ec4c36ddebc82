"""The requester-held key client: the platform never holds a key that opens your results.

    python -m analytics.client keygen --out keys/
    python -m analytics.client submit --model breast-cancer --consented --keys keys/
    python -m analytics.client status REQUEST_ID
    python -m analytics.client fetch REQUEST_ID --keys keys/ --out scores.json --wait 300

`keygen` makes a CKKS key set here: secret.ctx (mode 0600, never leaves this machine) and public.ctx.
`submit` uploads public.ctx only (it refuses to send a context holding a secret key) and prints the
request id. `fetch` downloads the encrypted scores, decrypts them here with secret.ctx and applies the
model's interpretation (probability and label for logistic models); the results cite the SHA-256 of the
model weights that produced them, which --expect-model-sha256 can pin. A row marked `"clipped": true` is a
record with a measurement outside the model's documented range, clipped to it before encryption: its score
is that of the clipped values, less reliable than the others.

The server and token come from --url/--token or HEALTH_PLATFORM_URL/HEALTH_PLATFORM_TOKEN (your
personal token from the portal's /accounts/tokens/); prefer the variable, which does not show in the process list.

Standard library (urllib) plus TenSEAL and numpy; no Django: it runs anywhere the package is checked out.
"""

import argparse
import base64
import hashlib
import json
import os
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

SECRET_FILE = "secret.ctx"  # noqa: S105 (a file name)
PUBLIC_FILE = "public.ctx"
DEFAULT_URL = "http://127.0.0.1:8000"
FINISHED = ("completed", "failed")


class ClientError(Exception):
    """A failure to report to the user: one line, no key material, no scores."""


# --- HTTP ----------------------------------------------------------------------------------------


class Api:
    def __init__(self, url: str, token: str, timeout: float = 600.0):
        if not token:
            raise ClientError(
                "no token: pass --token or set HEALTH_PLATFORM_TOKEN (create one at /accounts/tokens/ in the portal)"
            )
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(  # noqa: S310 (the user names the server)
            self.url + path,
            data=data,
            method=method,
            headers={
                "Authorization": f"Token {self.token}",
                "Accept": "application/json",
                **({"Content-Type": "application/json"} if data is not None else {}),
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                return json.load(response)
        except urllib.error.HTTPError as error:
            raise ClientError(_error_line(error)) from None
        except urllib.error.URLError as error:
            raise ClientError(f"cannot reach {self.url}: {error.reason}") from None


def _error_line(error: urllib.error.HTTPError) -> str:
    try:
        body = json.load(error)
        return f"{error.code} {body.get('code', 'error')}: {body.get('message', '')}"
    except (ValueError, OSError):
        return f"{error.code} {error.reason}"


# --- commands ------------------------------------------------------------------------------------


def keygen(out: Path, *, force: bool = False, wide: bool = False) -> tuple[Path, Path]:
    """Write a new key set: secret.ctx readable by the owner only, public.ctx for the platform. `wide`: the less
    precise parameters that hold larger scores (analytics.he.scoring_parameters), for a model the default's refuse."""
    from analytics.he import SCORING_PARAMETERS, TenSEALEngine, score_room

    out.mkdir(mode=0o700, parents=True, exist_ok=True)
    secret_path, public_path = out / SECRET_FILE, out / PUBLIC_FILE
    if secret_path.exists() and not force:
        raise ClientError(f"{secret_path} exists: scores encrypted for it could not be read again; use --force")
    keys = TenSEALEngine().keygen(score_bound=score_room(SCORING_PARAMETERS[-1][1]) if wide else 0.0)
    secret_path.unlink(missing_ok=True)
    descriptor = os.open(secret_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as secret_file:
        secret_file.write(keys.secret)
    public_path.write_bytes(keys.public)
    return secret_path, public_path


def submit(
    api: Api,
    *,
    model: str,
    keys: Path,
    pseudonyms: list[str] | None = None,
    batch_size: int | None = None,
) -> dict[str, Any]:
    """Request an analysis with requester-held keys: only the public context is uploaded."""
    from analytics.he import TenSEALEngine

    public = _read(keys / PUBLIC_FILE)
    try:
        holds_secret = TenSEALEngine().is_secret_context(public)
    except Exception:  # TenSEAL raises bare exceptions for malformed input
        raise ClientError(f"{keys / PUBLIC_FILE} is not a CKKS context") from None
    if holds_secret:
        raise ClientError(f"{keys / PUBLIC_FILE} holds a secret key: it must never be uploaded")
    body: dict[str, Any] = {
        "model": model,
        "cohort": {"kind": "explicit", "pseudonyms": pseudonyms} if pseudonyms is not None else {"kind": "consented"},
        "key_mode": "requester",
        "public_context": base64.b64encode(public).decode("ascii"),
    }
    if batch_size is not None:
        body["batch_size"] = batch_size
    return api.call("POST", "/api/analyses/", body)


def status(api: Api, request_id: str) -> dict[str, Any]:
    return api.call("GET", f"/api/analyses/{request_id}/")


def wait_until_finished(api: Api, request_id: str, *, timeout: float, interval: float = 1.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        current = status(api, request_id)
        if current["status"] in FINISHED or time.monotonic() >= deadline:
            return current
        time.sleep(interval)


def fetch(
    api: Api, request_id: str, *, keys: Path, allow_partial: bool = False, expect_model_sha256: str | None = None
) -> dict[str, Any]:
    """Download the encrypted scores and decrypt them here; returns the results document."""
    from analytics.he import TenSEALEngine

    secret = _read(keys / SECRET_FILE)
    engine = TenSEALEngine()
    if not engine.is_secret_context(secret):
        raise ClientError(f"{keys / SECRET_FILE} holds no secret key")
    document = api.call("GET", f"/api/analyses/{request_id}/encrypted-scores/")
    # CKKS has no integrity check: another key "decrypts" to noise. The platform stores the public context
    # under its SHA-256, so the scores are for this key exactly when that hash is this key's public part's.
    if hashlib.sha256(engine.public_parts(secret).public).hexdigest() != document["public_context_sha256"]:
        raise ClientError(f"request {request_id} was not encrypted for the key in {keys}: its scores would not open")
    if document["status"] == "failed" and not allow_partial:
        raise ClientError("the analysis failed; see `status` for its failure code")
    if document["status"] != "completed" and not allow_partial:
        raise ClientError(f"the analysis is {document['status']}, not completed: wait (--wait) or pass --partial")
    if expect_model_sha256 and document["model"]["sha256"] != expect_model_sha256.lower():
        raise ClientError(
            f"the scores cite model weights {document['model']['sha256']}, not the expected {expect_model_sha256}"
        )
    model = interpretation_for(document["model"])
    rows = []
    for chunk in document["chunks"]:
        count = len(chunk["record_ids"])
        try:
            scores = engine.decrypt(secret, base64.b64decode(chunk["ciphertext"]), count)
        except Exception:  # TenSEAL raises bare exceptions for malformed input
            raise ClientError("a score ciphertext cannot be read") from None
        clipped = set(chunk.get("clipped_record_ids", ()))
        for record_id, pseudonym, result in zip(
            chunk["record_ids"], chunk["patient_pseudonyms"], model.interpret(scores), strict=True
        ):
            rows.append(
                {"record_id": record_id, "patient_pseudonym": pseudonym, **result, "clipped": record_id in clipped}
            )
    return {
        "request_id": document["request_id"],
        "status": document["status"],
        "model": document["model"],
        "summary": summary(rows),
        "rows": rows,
    }


def interpretation_for(described: dict[str, Any]) -> Any:
    """The model's interpretation of decrypted scores, from the kind and labels the platform describes.

    Reuses analytics.diagnostic_models.LinearModel.interpret (probability and label for logistic models,
    the value for linear ones); it needs neither the weights nor any training here. Which weights produced
    the scores is the SHA-256 the platform cites (anchored on the ledger: see the model card); pin it with
    `fetch --expect-model-sha256`.
    """
    from analytics.diagnostic_models import LinearModel

    if described["kind"] not in ("logistic", "linear"):
        raise ClientError(f"unknown model kind {described['kind']!r}: update the client")
    return LinearModel(
        name=described["name"],
        version=described["version"],
        kind=described["kind"],
        purpose="",
        category="",
        dataset="",
        feature_codes=(),
        weights=(),
        bias=0.0,
        feature_min=(),
        feature_max=(),
        metrics={},
        positive_label=described.get("positive_label", ""),
        negative_label=described.get("negative_label", ""),
    )


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Count, mean, min, max, median, labels and clipped rows of decrypted scores (the portal shows the same)."""
    return scores_summary(
        [row["score"] for row in rows], (row["label"] for row in rows), sum(1 for row in rows if row["clipped"])
    )


def scores_summary(scores: list[float], labels: Iterable[str], clipped: int) -> dict[str, Any]:
    """summary() from the rows' scores, labels and how many were clipped."""
    scores = sorted(scores)
    if not scores:
        return {"count": 0, "labels": {}, "clipped": 0}
    return {
        "count": len(scores),
        "mean": sum(scores) / len(scores),
        "min": scores[0],
        "max": scores[-1],
        "median": scores[len(scores) // 2],
        "labels": dict(Counter(label for label in labels if label)),
        "clipped": clipped,
    }


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise ClientError(f"cannot read {path}: {error.strerror}") from None


def _pseudonyms_from(path: Path) -> list[str]:
    lines = _read(path).decode("utf-8", errors="replace").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


# --- command line --------------------------------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    server = argparse.ArgumentParser(add_help=False)
    server.add_argument("--url", default=os.environ.get("HEALTH_PLATFORM_URL", DEFAULT_URL), help="the platform")
    server.add_argument(
        "--token", default=os.environ.get("HEALTH_PLATFORM_TOKEN", ""), help="API token (or HEALTH_PLATFORM_TOKEN)"
    )
    main = argparse.ArgumentParser(prog="python -m analytics.client", description=__doc__.split("\n\n")[0])
    commands = main.add_subparsers(dest="command", required=True)

    command = commands.add_parser("keygen", help="make a key set: secret.ctx (0600) and public.ctx")
    command.add_argument("--out", type=Path, required=True, help="folder for the keys")
    command.add_argument("--force", action="store_true", help="replace an existing secret.ctx")
    command.add_argument(
        "--wide", action="store_true", help="parameters for larger scores, less precise (if submit says out_of_range)"
    )

    command = commands.add_parser("submit", parents=[server], help="request an analysis (uploads public.ctx only)")
    command.add_argument("--model", required=True, help="model name, see /api/models/")
    cohort = command.add_mutually_exclusive_group(required=True)
    cohort.add_argument("--consented", action="store_true", help="everyone who consented to you for the purpose")
    cohort.add_argument("--pseudonyms-file", type=Path, help="pseudonymous patient ids, one per line")
    command.add_argument("--keys", type=Path, required=True, help="the keygen folder")
    command.add_argument("--batch-size", type=int, help="records per batch (server default otherwise)")

    command = commands.add_parser("status", parents=[server], help="a request's status and progress")
    command.add_argument("request_id")

    command = commands.add_parser("fetch", parents=[server], help="download, decrypt and interpret the scores")
    command.add_argument("request_id")
    command.add_argument("--keys", type=Path, required=True, help="the keygen folder (secret.ctx)")
    command.add_argument("--out", type=Path, required=True, help="where to write the results (JSON)")
    command.add_argument("--wait", type=float, default=0, metavar="SECONDS", help="wait up to this long to finish")
    command.add_argument("--partial", action="store_true", help="decrypt what is scored even if not completed")
    command.add_argument(
        "--expect-model-sha256", metavar="HASH", help="refuse scores that cite other model weights (see the model card)"
    )
    return main


def main(argv: list[str] | None = None) -> int:
    arguments = parser().parse_args(argv)
    try:
        if arguments.command == "keygen":
            secret_path, public_path = keygen(arguments.out, force=arguments.force, wide=arguments.wide)
            print(f"secret key (keep it here, never upload it): {secret_path}", file=sys.stderr)
            print(f"public context (what submit uploads): {public_path}", file=sys.stderr)
            return 0
        api = Api(arguments.url, arguments.token)
        if arguments.command == "submit":
            pseudonyms = _pseudonyms_from(arguments.pseudonyms_file) if arguments.pseudonyms_file else None
            created = submit(
                api, model=arguments.model, keys=arguments.keys, pseudonyms=pseudonyms, batch_size=arguments.batch_size
            )
            print(created["id"])
            return 0
        if arguments.command == "status":
            print(json.dumps(status(api, arguments.request_id), indent=2))
            return 0
        if arguments.wait:
            wait_until_finished(api, arguments.request_id, timeout=arguments.wait)
        results = fetch(
            api,
            arguments.request_id,
            keys=arguments.keys,
            allow_partial=arguments.partial,
            expect_model_sha256=arguments.expect_model_sha256,
        )
        arguments.out.write_text(json.dumps(results, indent=2) + "\n")
        model = results["model"]
        print(
            f"{len(results['rows'])} scores decrypted to {arguments.out} "
            f"(model {model['name']}@{model['version']}, weights SHA-256 {model['sha256']})",
            file=sys.stderr,
        )
        if results["summary"]["clipped"]:
            print(
                f"{results['summary']['clipped']} of them had a measurement outside the model's documented range, "
                'clipped to it before encryption: those rows are marked "clipped": true and their scores are '
                "less reliable",
                file=sys.stderr,
            )
        return 0
    except ClientError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
