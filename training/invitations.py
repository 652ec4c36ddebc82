"""The steward's instance and the organisations whose own instances take part in its run (training.participation on
their side): the signed invitation once the run's aggregator listens, and the outcome read at the end.

What travels: to the organisation, the run's public terms, its PUBLIC CKKS context (to encrypt its update), the
aggregator's address with the run's certificate authority (the only one its client trusts) and the organisation's
token for this attempt (the aggregator sums only updates that carry the run's tokens); back, its counts and
the manifest's leaves. Never the secret context, a record, a feature or a label.

A peer that does not answer (its web server down, the network) is organisation_unreachable: the run waits and tries
again as it does for the ledger (training.rounds), so that it completes once the peer is back.
"""

import base64
import json
import re
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import structlog
from django.conf import settings

from training.federation import FederationFailed
from training.local import TRAIN, VALIDATION
from training.models import TrainingRun
from training.peers import Peer, signed_headers
from training.tls import FlowerTls

log = structlog.get_logger(__name__)

INVITATIONS_PATH = "/api/training/federation/invitations/"
MAX_OUTCOME_BYTES = 256 * 1024 * 1024
UNREACHABLE = "organisation_unreachable"
_SHA256 = re.compile(r"\A[0-9a-f]{64}\Z")


class PeerUnreachable(FederationFailed):
    def __init__(self) -> None:
        super().__init__(UNREACHABLE)


def _sender() -> str:
    return settings.TRAINING_HOSTED_ORGANISATIONS[0]


def _call(peer: Peer, method: str, path: str, document: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
    """A signed request to `peer`; (status, the JSON object it answered). PeerUnreachable when it did not answer."""
    body = b"" if document is None else json.dumps(document, separators=(",", ":")).encode()
    signed_path = urlsplit(peer.url).path + path  # the path the peer's server sees, under the peer's base URL
    headers = signed_headers(sender=_sender(), peer=peer, method=method, path=signed_path, body=body)
    request = urllib.request.Request(  # noqa: S310 (the URL is the configured peer's, http or https: training.peers)
        peer.url + path,
        data=body if document is not None else None,
        method=method,
        headers={**headers, "Content-Type": "application/json", "Accept": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=settings.TRAINING_PEER_TIMEOUT_SECONDS) as response:  # noqa: S310
            status, raw = response.status, response.read(MAX_OUTCOME_BYTES + 1)
    except urllib.error.HTTPError as error:
        status, raw = error.code, error.read(64 * 1024)
    except (urllib.error.URLError, OSError):
        log.warning("training_peer_unreachable", organisation=peer.organisation)
        raise PeerUnreachable() from None
    if status >= 500 or len(raw) > MAX_OUTCOME_BYTES:
        log.warning("training_peer_unreachable", organisation=peer.organisation, status=status)
        raise PeerUnreachable()
    try:
        answer = json.loads(raw or b"{}")
    except ValueError:
        answer = None
    return status, answer if isinstance(answer, dict) else {}


@dataclass
class InvitedOrganisation:
    """An organisation whose own instance takes part in `run` (its attempt `run.attempts`)."""

    peer: Peer
    run: TrainingRun

    @property
    def organisation(self) -> str:
        return self.peer.organisation

    def invite(
        self, *, address: str, tls: FlowerTls, token: str, public_context: bytes, feature_codes: tuple[str, ...]
    ) -> None:
        """Send the invitation; FederationFailed invitation_refused (with the peer's code in the log) when its
        instance refuses it, PeerUnreachable when it does not answer."""
        run = self.run
        status, answer = _call(
            self.peer,
            "POST",
            INVITATIONS_PATH,
            {
                "run_id": str(run.pk),
                "attempt": run.attempts,
                "organisation": self.organisation,
                "model_family": run.model_family,
                "kind": run.kind,
                "feature_codes": list(feature_codes),
                "rounds": run.rounds_requested,
                "validation_fraction": float(run.hyperparameters["validation_fraction"]),
                "target_bound": run.hyperparameters.get("dp_target_bound"),
                "public_context": base64.b64encode(public_context).decode("ascii"),
                "aggregator": address,
                "authority": tls.authority.decode("ascii"),
                "token": token,
            },
        )
        if status not in (200, 201):
            log.error("training_invitation_refused", organisation=self.organisation, code=str(answer.get("code"))[:64])
            raise FederationFailed("invitation_refused")
        log.info("training_invitation_accepted", run_id=str(run.pk), organisation=self.organisation)

    def status(self) -> dict[str, Any]:
        """The participation as its instance reports it now."""
        status, answer = _call(self.peer, "GET", f"{INVITATIONS_PATH}{self.run.pk}/{self.run.attempts}/")
        if status != 200:
            raise FederationFailed("invitation_refused")
        return answer

    def outcome(self, timeout: float) -> dict[str, Any]:
        """Its counts and manifest once its instance has kept them (it does so as its client ends, just after the
        aggregator finished: waited for up to `timeout` seconds); FederationFailed with its failure code if it
        failed, peer_outcome_invalid if what it answers is not an outcome."""
        deadline = time.monotonic() + timeout
        while True:
            answer = self.status()
            if answer.get("status") == "completed":
                return _outcome_checked(answer, self.organisation)
            if answer.get("status") == "failed":
                raise FederationFailed(_code(answer.get("failure_code")))
            if time.monotonic() > deadline:
                raise PeerUnreachable()
            time.sleep(0.2)

    def standing(self) -> tuple[set[str], set[str]]:
        """What the organisation's instance says of the records it used now: (its consents since revoked, its records
        since erased), ids only, each one of its own leaves; FederationFailed when it does not answer or answers
        otherwise."""
        answer = self.status()
        standing = answer.get("standing")
        leaves = answer.get("manifest")
        if answer.get("status") != "completed" or not isinstance(standing, dict) or not isinstance(leaves, list):
            raise FederationFailed("peer_outcome_invalid")
        consents = {leaf.get("consent_id") for leaf in leaves if isinstance(leaf, dict)}
        records = {leaf.get("record_id") for leaf in leaves if isinstance(leaf, dict)}
        revoked, erased = standing.get("revoked_consents"), standing.get("erased_records")
        if not (isinstance(revoked, list) and isinstance(erased, list)):
            raise FederationFailed("peer_outcome_invalid")
        return {c for c in revoked if c in consents}, {r for r in erased if r in records}

    def failure(self) -> str | None:
        """After a federation that failed: the code this organisation's instance reports, if it reports one."""
        try:
            answer = self.status()
        except FederationFailed as error:
            return error.code
        if answer.get("status") in ("queued", "running"):  # its worker never took the invitation, or died in it
            return UNREACHABLE
        return _code(answer.get("failure_code")) if answer.get("status") == "failed" else None


def _code(value: object) -> str:
    text = str(value or "organisation_failed")
    return text if re.fullmatch(r"[a-z_]{1,64}", text) else "organisation_failed"


def _outcome_checked(answer: dict[str, Any], organisation: str) -> dict[str, Any]:
    """A peer's outcome, each leaf of its manifest checked (the lineage is computed over them)."""
    manifest, counts, round_counts = answer.get("manifest"), answer.get("counts"), answer.get("round_counts")
    if (
        answer.get("organisation") != organisation
        or not isinstance(manifest, list)
        or not isinstance(counts, dict)
        or not isinstance(round_counts, dict)
        or not all(_leaf(entry) for entry in manifest)
        or len({entry["record_id"] for entry in manifest}) != len(manifest)
        or not all(str(k).isdigit() and isinstance(v, int) for k, v in round_counts.items())
    ):
        raise FederationFailed("peer_outcome_invalid")
    offered = answer.get("offered")
    return {
        "manifest": manifest,
        "counts": {**_counts(counts), "offered": offered if isinstance(offered, int) else 0},
        "round_counts": {int(k): int(v) for k, v in round_counts.items()},
    }


def _counts(counts: dict[str, Any]) -> dict[str, Any]:
    def reasons(value: object) -> dict[str, int]:
        if not isinstance(value, dict):
            return {}
        return {str(k)[:64]: int(v) for k, v in value.items() if isinstance(v, int) and not isinstance(v, bool)}

    admitted = counts.get("admitted")
    return {
        "admitted": admitted if isinstance(admitted, int) else 0,
        "refused": reasons(counts.get("refused")),
        "skipped": reasons(counts.get("skipped")),
    }


def _leaf(entry: object) -> bool:
    if not isinstance(entry, dict) or set(entry) != {
        "record_id",
        "version",
        "sha256",
        "consent_id",
        "patient_pseudonym",
        "split",
    }:
        return False
    try:
        uuid.UUID(str(entry["record_id"]))
    except ValueError:
        return False
    return (
        isinstance(entry["version"], int)
        and entry["version"] >= 1
        and isinstance(entry["sha256"], str)
        and bool(_SHA256.match(entry["sha256"]))
        and isinstance(entry["consent_id"], str)
        and 0 < len(entry["consent_id"]) <= 128
        and isinstance(entry["patient_pseudonym"], str)
        and len(entry["patient_pseudonym"]) <= 128
        and entry["split"] in (TRAIN, VALIDATION)
    )


def invited_organisations(run: TrainingRun) -> list[InvitedOrganisation]:
    """The run's invited organisations with their configured peers; FederationFailed peer_not_configured for one
    this instance no longer knows (its configuration changed since the run was asked for)."""
    peers = settings.TRAINING_FEDERATION_PEERS
    missing = [organisation for organisation in run.invited if organisation not in peers]
    if missing:
        raise FederationFailed("peer_not_configured")
    return [InvitedOrganisation(peers[organisation], run) for organisation in sorted(run.invited)]
