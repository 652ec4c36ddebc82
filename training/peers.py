"""The platform instances of other organisations a training run federates with, and how two instances know each
other. Free of Django: the settings parse TRAINING_FEDERATION_PEERS with it when the platform starts.

The deployment the issue names is one platform instance per organisation (its own database, record keys and
workers), all sharing the ledger. A steward's instance invites each peer's instance to a run over a service API
(training.participation); every request between two instances is signed with the key the two share:
HMAC-SHA256 over the method, the path, a timestamp and the body's SHA-256, in three headers. A timestamp more than
SIGNATURE_WINDOW_SECONDS away from the receiver's clock is refused, so a request seen on the way cannot be sent again
later; an invitation is idempotent on (run, attempt), so sending one again within the window does nothing new.

TRAINING_FEDERATION_PEERS, a JSON object: {"org:<slug>": {"url": "https://...", "key": "<base64, >= 32 bytes>"}}:
the organisations whose instances this one invites (url) or accepts invitations from (key).
"""

import base64
import binascii
import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

SENDER_HEADER = "X-Federation-Sender"
TIMESTAMP_HEADER = "X-Federation-Timestamp"
SIGNATURE_HEADER = "X-Federation-Signature"
SIGNATURE_WINDOW_SECONDS = 300
MINIMUM_KEY_BYTES = 32


class PeersMisconfigured(ValueError):
    """TRAINING_FEDERATION_PEERS or TRAINING_HOSTED_ORGANISATIONS is not what they must be (the message says what,
    never a key)."""


class SignatureRefused(Exception):
    """A request between instances that is not signed by a peer's key as it must be; `code` says how."""

    def __init__(self, code: str):
        super().__init__(code)
        self.code = code


@dataclass(frozen=True)
class Peer:
    """Another organisation's platform instance: its grantee id, its base URL and the key the two instances share."""

    organisation: str
    url: str
    key: bytes = field(repr=False)


def _organisation_id(text: object) -> bool:
    return isinstance(text, str) and text.startswith("org:") and 4 < len(text) <= 80 and text.isprintable()


def peers_parse(name: str, text: str, *, hosted: list[str]) -> dict[str, Peer]:
    """The peers named by `text` (see the module's docstring); {} for an empty text. Anything else than the format,
    a key shorter than MINIMUM_KEY_BYTES, a URL that is not http(s), a peer this instance hosts itself, or peers
    without TRAINING_HOSTED_ORGANISATIONS (the name this instance signs with) is PeersMisconfigured naming `name`."""
    if not text.strip():
        return {}
    try:
        document = json.loads(text)
    except ValueError:
        raise PeersMisconfigured(f"{name} must be a JSON object") from None
    if not isinstance(document, dict) or not document:
        raise PeersMisconfigured(f"{name} must be a JSON object naming at least one organisation")
    if not hosted:
        raise PeersMisconfigured(f"{name} needs TRAINING_HOSTED_ORGANISATIONS: the organisations this instance hosts")
    peers = {}
    for organisation, entry in document.items():
        if not _organisation_id(organisation):
            raise PeersMisconfigured(f"{name}: every peer is named org:<slug>")
        if organisation in hosted:
            raise PeersMisconfigured(f"{name}: {organisation} is hosted by this instance, not a peer")
        if not isinstance(entry, dict) or set(entry) != {"url", "key"}:
            raise PeersMisconfigured(f"{name}: {organisation} needs exactly a url and a key")
        url = entry["url"]
        if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).hostname:
            raise PeersMisconfigured(f"{name}: {organisation}'s url must be an http(s) URL")
        try:
            key = base64.b64decode(str(entry["key"]), validate=True)
        except (binascii.Error, ValueError):
            key = b""
        if len(key) < MINIMUM_KEY_BYTES:
            raise PeersMisconfigured(
                f"{name}: {organisation}'s key must be base64 of at least {MINIMUM_KEY_BYTES} bytes"
            )
        peers[organisation] = Peer(organisation, url.rstrip("/"), key)
    return peers


def hosted_parse(name: str, values: list[str]) -> list[str]:
    """TRAINING_HOSTED_ORGANISATIONS checked: org:<slug> ids, or none (this instance hosts every organisation)."""
    if any(not _organisation_id(value) for value in values):
        raise PeersMisconfigured(f"{name} must list organisations as org:<slug>")
    return list(values)


def _signature(key: bytes, method: str, path: str, timestamp: str, body: bytes) -> str:
    message = "\n".join([method.upper(), path, timestamp, hashlib.sha256(body).hexdigest()]).encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def signed_headers(*, sender: str, peer: Peer, method: str, path: str, body: bytes, now: float | None = None) -> dict:
    """The headers that sign a request `sender` (an organisation this instance hosts) sends to `peer`."""
    timestamp = str(int(time.time() if now is None else now))
    return {
        SENDER_HEADER: sender,
        TIMESTAMP_HEADER: timestamp,
        SIGNATURE_HEADER: _signature(peer.key, method, path, timestamp, body),
    }


def signature_check(
    *,
    peers: Mapping[str, Peer],
    headers: Mapping[str, str],
    method: str,
    path: str,
    body: bytes,
    now: float | None = None,
) -> Peer:
    """The peer that signed this request; SignatureRefused otherwise: federation_unsigned (a header missing),
    federation_unknown_peer (a sender that is not a configured peer), federation_stale (a timestamp outside the
    window), federation_signature_invalid."""
    sender, timestamp, signature = (headers.get(h, "") for h in (SENDER_HEADER, TIMESTAMP_HEADER, SIGNATURE_HEADER))
    if not (sender and timestamp and signature):
        raise SignatureRefused("federation_unsigned")
    peer = peers.get(sender)
    if peer is None:
        raise SignatureRefused("federation_unknown_peer")
    well_formed = timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12
    clock = time.time() if now is None else now
    if not well_formed or abs(clock - int(timestamp)) > SIGNATURE_WINDOW_SECONDS:
        raise SignatureRefused("federation_stale")
    expected = _signature(peer.key, method, path, timestamp, body).encode()
    if not hmac.compare_digest(expected, signature.lower().encode("utf-8", errors="replace")):
        raise SignatureRefused("federation_signature_invalid")
    return peer
