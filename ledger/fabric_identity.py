"""A Fabric client identity: an X.509 certificate of an MSP and its ECDSA P-256 key.

Fabric accepts only low-S ECDSA signatures (s <= n/2): a signature with a high s is rejected by
the peers and orderers as malleable, so every signature made here is normalised to low-S.
The transaction id is Fabric's: hex SHA-256 of the nonce followed by the creator bytes.
"""

from __future__ import annotations

import hashlib
import secrets
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature
from fabric_protos.msp import identities_pb2

# The order n of the P-256 group; Fabric requires s <= n // 2.
P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
P256_HALF_ORDER = P256_ORDER >> 1
NONCE_BYTES = 24


def to_low_s(signature: bytes) -> bytes:
    """The same DER ECDSA signature with s replaced by n - s when s is in the upper half."""
    r, s = decode_dss_signature(signature)
    if s > P256_HALF_ORDER:
        s = P256_ORDER - s
    return encode_dss_signature(r, s)


def transaction_id(nonce: bytes, creator: bytes) -> str:
    """Fabric's transaction id: hex SHA-256 over nonce || serialized creator identity."""
    return hashlib.sha256(nonce + creator).hexdigest()


def new_nonce() -> bytes:
    return secrets.token_bytes(NONCE_BYTES)


class SigningIdentity:
    """An MSP member that signs proposals, transactions and commit-status requests."""

    def __init__(self, msp_id: str, certificate_pem: bytes, private_key: ec.EllipticCurvePrivateKey):
        if not msp_id:
            raise ValueError("the MSP id must not be empty")
        if not isinstance(private_key, ec.EllipticCurvePrivateKey) or private_key.curve.name != "secp256r1":
            raise ValueError("the signing key must be an ECDSA P-256 private key")
        certificate = x509.load_pem_x509_certificate(certificate_pem)
        public_key = certificate.public_key()
        if not isinstance(public_key, ec.EllipticCurvePublicKey) or public_key.public_numbers() != (
            private_key.public_key().public_numbers()
        ):
            raise ValueError("the signing key does not belong to the certificate")
        self.msp_id = msp_id
        self.certificate_pem = certificate_pem
        self._private_key = private_key
        self.creator = identities_pb2.SerializedIdentity(mspid=msp_id, id_bytes=certificate_pem).SerializeToString()

    @classmethod
    def from_files(cls, msp_id: str, certificate_path: str | Path, private_key_path: str | Path) -> SigningIdentity:
        """Load a PEM certificate and an unencrypted PEM key (PKCS#8 or SEC1), as cryptogen writes them.

        Either path may name a directory holding exactly one file (an MSP's signcerts/ or keystore/).
        """
        certificate_pem = _single_file(Path(certificate_path)).read_bytes()
        key = serialization.load_pem_private_key(_single_file(Path(private_key_path)).read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError("the signing key must be an ECDSA P-256 private key")
        return cls(msp_id, certificate_pem, key)

    def sign(self, message: bytes) -> bytes:
        """DER ECDSA-SHA256 signature over `message`, normalised to low-S."""
        return to_low_s(self._private_key.sign(message, ec.ECDSA(hashes.SHA256())))

    def new_transaction_context(self) -> tuple[str, bytes]:
        """A fresh (transaction id, nonce) pair for one proposal."""
        nonce = new_nonce()
        return transaction_id(nonce, self.creator), nonce


def _single_file(path: Path) -> Path:
    if path.is_dir():
        files = sorted(entry for entry in path.iterdir() if entry.is_file())
        if len(files) != 1:
            raise ValueError(f"{path} must hold exactly one file, it holds {len(files)}")
        return files[0]
    if not path.is_file():
        raise ValueError(f"{path} does not exist")
    return path
