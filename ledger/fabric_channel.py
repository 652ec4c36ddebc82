"""A Fabric channel's configuration as a verifier needs it: its organisations' MSPs and its policies.

Built from a common.Config (the ConfigEnvelope of a genesis or configuration block), it answers what a
Fabric v2.5 peer's channel MSP manager and policy manager answer, for X.509 MSPs at MSP version 1.4.3
(channel capability V2_0 and later):

- `identity(serialized)`: the msp.SerializedIdentity parsed and validated against the MSP it names:
  the certificate chains to one of the MSP's root certificates through its intermediates
  (msp/mspimpl.go: expiry is ignored, as Fabric ignores it when validating), is not a CA, is not revoked
  by one of the MSP's CRLs, carries one of the MSP's organisational units when it restricts them and,
  with NodeOUs on, exactly one node role (client, peer, admin, orderer).
- `verify(identity, data, signature)`: ECDSA over SHA-256, low-S only (bccsp/sw rejects a high S).
- `satisfied(policy, identities)`: the policy evaluated as common/cauthdsl (signature policies, each
  identity used at most once) and common/policies/implicitmeta.go (ANY, ALL, MAJORITY of the child
  groups' sub-policies) evaluate it; a policy of another type raises UnsupportedPolicy.

Parsed certificates and validated identities are cached per configuration.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding
from fabric_protos.common import configtx_pb2, policies_pb2
from fabric_protos.msp import identities_pb2, msp_config_pb2, msp_principal_pb2
from google.protobuf.message import DecodeError

CHANNEL = "/Channel"
ORDERER_GROUP = "/Channel/Orderer"
APPLICATION_GROUP = "/Channel/Application"
BLOCK_VALIDATION = "/Channel/Orderer/BlockValidation"
LIFECYCLE_ENDORSEMENT = "/Channel/Application/LifecycleEndorsement"
MSP_VALUE = "MSP"
_DER = Encoding.DER
FABRIC_MSP_TYPE = 0

_ROLE = msp_principal_pb2.MSPRole.MSPRoleType
MEMBER, ADMIN, CLIENT, PEER, ORDERER = (_ROLE.Value(name) for name in ("MEMBER", "ADMIN", "CLIENT", "PEER", "ORDERER"))
_CLASSIFICATION = msp_principal_pb2.MSPPrincipal.Classification
_POLICY_TYPE = policies_pb2.Policy.PolicyType
_IMPLICIT_RULE = policies_pb2.ImplicitMetaPolicy.Rule
_ANONYMITY = msp_principal_pb2.MSPIdentityAnonymity.MSPIdentityAnonymityType
# Half the group order of the curves Fabric's bccsp signs with: a signature's s must not exceed it.
_HALF_ORDER = {
    "secp256r1": 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551 >> 1,
    "secp384r1": int(
        "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFC7634D81F4372DDF581A0DB248B0A77AECEC196ACCC52973", 16
    )
    >> 1,
}


class UnsupportedPolicy(Exception):
    """A policy this verifier cannot evaluate: named as a problem, never taken as satisfied."""


class ConfigurationError(ValueError):
    """The channel configuration cannot be read (a malformed MSP or policy)."""


@dataclass(frozen=True)
class Identity:
    """A serialized identity, as far as it could be read and validated against its MSP."""

    msp_id: str
    serialized: bytes
    certificate_der: bytes
    public_key: ec.EllipticCurvePublicKey | None
    units: tuple[str, ...]
    certifiers: bytes  # SHA-256 over the certification chain above the certificate (Fabric's identifier)
    error: str | None  # why the identity is not a valid member of its MSP; None when it is

    @property
    def valid(self) -> bool:
        return self.error is None

    @property
    def key(self) -> tuple[str, bytes]:
        """What Fabric deduplicates signature sets by: the MSP and the certificate."""
        return self.msp_id, self.certificate_der


def verify_signature(identity: Identity, data: bytes, signature: bytes) -> bool:
    """True when `signature` is a low-S ECDSA-SHA256 signature over `data` by the identity's key."""
    key = identity.public_key
    if key is None:
        return False
    try:
        _, s = decode_dss_signature(signature)
    except ValueError:
        return False
    half_order = _HALF_ORDER.get(key.curve.name)
    if half_order is None or s > half_order:
        return False
    try:
        key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return False
    return True


def _load_certificates(pems: Sequence[bytes], msp_id: str) -> list[x509.Certificate]:
    try:
        return [x509.load_pem_x509_certificate(bytes(pem)) for pem in pems]
    except ValueError:
        raise ConfigurationError(f"{msp_id}'s MSP holds a certificate that cannot be read") from None


def _chain_identifier(chain: Sequence[x509.Certificate]) -> bytes:
    digest = hashlib.sha256()
    for certificate in chain:
        digest.update(certificate.public_bytes(_DER))
    return digest.digest()


def _issued_by(certificate: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        certificate.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _is_ca(certificate: x509.Certificate) -> bool:
    try:
        return bool(certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _units(certificate: x509.Certificate) -> tuple[str, ...]:
    return tuple(
        str(attribute.value)
        for attribute in certificate.subject.get_attributes_for_oid(x509.oid.NameOID.ORGANIZATIONAL_UNIT_NAME)
    )


class Msp:
    """One organisation's X.509 MSP, from its FabricMSPConfig."""

    def __init__(self, msp_id: str, config: Any):
        self.msp_id = msp_id
        self.roots = _load_certificates(config.root_certs, msp_id)
        if not self.roots:
            raise ConfigurationError(f"{msp_id}'s MSP has no root certificate")
        self.intermediates = _load_certificates(config.intermediate_certs, msp_id)
        self.admins = frozenset(cert.public_bytes(_DER) for cert in _load_certificates(config.admins, msp_id))
        try:
            self.crls = [x509.load_pem_x509_crl(bytes(pem)) for pem in config.revocation_list]
        except ValueError:
            raise ConfigurationError(f"{msp_id}'s MSP holds a revocation list that cannot be read") from None
        self._chains: dict[bytes, tuple[x509.Certificate, ...] | None] = {}
        self.unit_restrictions = [
            (ou.organizational_unit_identifier, self._certifiers_of(ou.certificate))
            for ou in config.organizational_unit_identifiers
        ]
        node_ous = config.fabric_node_ous
        self.node_ous_enabled = bool(node_ous.enable)
        self.node_ous: dict[int, tuple[str, bytes | None]] = {}
        if self.node_ous_enabled:
            for role, field in (
                (CLIENT, "client_ou_identifier"),
                (PEER, "peer_ou_identifier"),
                (ADMIN, "admin_ou_identifier"),
                (ORDERER, "orderer_ou_identifier"),
            ):
                if node_ous.HasField(field) and getattr(node_ous, field).organizational_unit_identifier:
                    identifier = getattr(node_ous, field)
                    self.node_ous[role] = (
                        identifier.organizational_unit_identifier,
                        self._certifiers_of(identifier.certificate),
                    )

    def _certifiers_of(self, pem: bytes) -> bytes | None:
        """The certifiers identifier of a CA certificate of this MSP (None when no certificate is given)."""
        if not pem:
            return None
        (certificate,) = _load_certificates([pem], self.msp_id)
        for candidate in (*self.roots, *self.intermediates):
            if candidate.subject == certificate.subject and candidate.public_key() == certificate.public_key():
                chain = self._ca_chain(candidate)
                if chain is not None:
                    return _chain_identifier(chain)
        raise ConfigurationError(f"{self.msp_id}'s MSP names an OU certificate that is not one of its CAs")

    def _ca_chain(self, ca: x509.Certificate, depth: int = 0) -> tuple[x509.Certificate, ...] | None:
        """`ca` and the certificates above it up to one of the roots, or None if it does not reach one."""
        der = ca.public_bytes(_DER)
        if der in self._chains:
            return self._chains[der]
        chain: tuple[x509.Certificate, ...] | None = None
        if any(root.public_bytes(_DER) == der for root in self.roots):
            chain = (ca,)
        elif depth < 8:
            for issuer in (*self.intermediates, *self.roots):
                if issuer.public_bytes(_DER) != der and _issued_by(ca, issuer) and _is_ca(issuer):
                    above = self._ca_chain(issuer, depth + 1)
                    if above is not None:
                        chain = (ca, *above)
                        break
        self._chains[der] = chain
        return chain

    def validate(self, certificate: x509.Certificate) -> tuple[bytes, str | None]:
        """(certifiers identifier, None) for a valid member's certificate, or (b"", why it is not valid)."""
        if _is_ca(certificate):
            return b"", "the certificate is a CA certificate"
        chain = None
        for issuer in (*self.intermediates, *self.roots):
            if _issued_by(certificate, issuer):
                chain = self._ca_chain(issuer)
                if chain is not None:
                    break
        if chain is None:
            return b"", f"the certificate is not issued by a certificate authority of {self.msp_id}"
        if self._revoked(certificate, chain[0]):
            return b"", f"the certificate is revoked by {self.msp_id}"
        certifiers = _chain_identifier(chain)
        units = _units(certificate)
        restrictions = self.unit_restrictions
        if restrictions and not any(
            unit == wanted and (by is None or by == certifiers) for unit in units for wanted, by in restrictions
        ):
            return b"", f"the certificate carries none of {self.msp_id}'s organisational units"
        if self.node_ous_enabled:
            roles = [
                unit
                for unit in units
                for wanted, by in self.node_ous.values()
                if unit == wanted and (by is None or by == certifiers)
            ]
            if len(roles) != 1:
                return b"", f"the certificate does not carry exactly one node role of {self.msp_id}"
        return certifiers, None

    def _revoked(self, certificate: x509.Certificate, issuer: x509.Certificate) -> bool:
        for crl in self.crls:
            if crl.issuer != issuer.subject or not crl.is_signature_valid(issuer.public_key()):  # type: ignore[arg-type]
                continue
            if crl.get_revoked_certificate_by_serial_number(certificate.serial_number) is not None:
                return True
        return False

    def has_role(self, identity: Identity, role: int) -> bool:
        node_ou = self.node_ous.get(role)
        return self.node_ous_enabled and node_ou is not None and node_ou[0] in identity.units


@dataclass(frozen=True)
class _Group:
    path: str
    children: tuple[str, ...]
    policies: dict[str, Any]  # name -> common.Policy


class ChannelConfig:
    """The organisations and policies of one channel configuration (one config block's)."""

    def __init__(self, config: Any):
        self.sequence = int(config.sequence)
        self.msps: dict[str, Msp] = {}
        self._msp_paths: dict[str, str] = {}  # MSP id -> the path of the organisation's group
        self._groups: dict[str, _Group] = {}
        self._walk(config.channel_group, CHANNEL)
        self.orderer_msps = self._msps_under(ORDERER_GROUP)
        self.application_msps = self._msps_under(APPLICATION_GROUP)
        self.application_organisations = {
            msp_id: name for name, msp_id in self._org_msp_ids(APPLICATION_GROUP).items() if msp_id
        }
        self._identities: dict[bytes, Identity] = {}

    @classmethod
    def from_bytes(cls, config_envelope: bytes) -> ChannelConfig:
        try:
            return cls(configtx_pb2.ConfigEnvelope.FromString(config_envelope).config)
        except DecodeError:
            raise ConfigurationError("the configuration envelope cannot be read") from None

    # --- the configuration tree -----------------------------------------------------------------
    def _walk(self, group: Any, path: str) -> None:
        self._groups[path] = _Group(
            path=path,
            children=tuple(sorted(group.groups)),
            policies={name: value.policy for name, value in group.policies.items()},
        )
        if MSP_VALUE in group.values:
            try:
                msp_config = msp_config_pb2.MSPConfig.FromString(group.values[MSP_VALUE].value)
                if msp_config.type != FABRIC_MSP_TYPE:
                    raise ConfigurationError(f"{path} has an MSP of type {msp_config.type}: only X.509 MSPs are read")
                fabric = msp_config_pb2.FabricMSPConfig.FromString(msp_config.config)
            except DecodeError:
                raise ConfigurationError(f"{path}'s MSP cannot be read") from None
            self.msps[fabric.name] = Msp(fabric.name, fabric)
            self._msp_paths[fabric.name] = path
        for name, child in group.groups.items():
            self._walk(child, f"{path}/{name}")

    def _org_msp_ids(self, parent: str) -> dict[str, str]:
        group = self._groups.get(parent)
        by_path = {path: msp_id for msp_id, path in self._msp_paths.items()}
        return {name: by_path.get(f"{parent}/{name}", "") for name in (group.children if group else ())}

    def _msps_under(self, parent: str) -> frozenset[str]:
        return frozenset(msp_id for msp_id in self._org_msp_ids(parent).values() if msp_id)

    def policy(self, path: str) -> Any | None:
        group, _, name = path.rpartition("/")
        found = self._groups.get(group)
        return found.policies.get(name) if found else None

    # --- identities -----------------------------------------------------------------------------
    def identity(self, serialized: bytes) -> Identity:
        """The identity, validated against the MSP it names (cached: a chain re-uses a few identities)."""
        cached = self._identities.get(serialized)
        if cached is None:
            cached = self._identities[serialized] = self._read_identity(serialized)
        return cached

    def _read_identity(self, serialized: bytes) -> Identity:
        def invalid(msp_id: str, error: str) -> Identity:
            return Identity(msp_id, serialized, b"", None, (), b"", error)

        try:
            parsed = identities_pb2.SerializedIdentity.FromString(serialized)
        except DecodeError:
            return invalid("", "the identity cannot be read")
        msp = self.msps.get(parsed.mspid)
        if msp is None:
            return invalid(parsed.mspid, "the identity's MSP is not in the channel configuration")
        try:
            certificate = x509.load_pem_x509_certificate(bytes(parsed.id_bytes))
        except ValueError:
            return invalid(parsed.mspid, "the identity's certificate cannot be read")
        key = certificate.public_key()
        certifiers, error = msp.validate(certificate)
        public_key = key if isinstance(key, ec.EllipticCurvePublicKey) else None
        if public_key is None:
            error = error or "the identity's key is not an ECDSA key"
        return Identity(
            msp_id=parsed.mspid,
            serialized=serialized,
            certificate_der=certificate.public_bytes(_DER),
            public_key=public_key,
            units=_units(certificate),
            certifiers=certifiers,
            error=error,
        )

    # --- policies -------------------------------------------------------------------------------
    def satisfied_by_path(self, path: str, identities: Sequence[Identity]) -> bool:
        policy = self.policy(path)
        if policy is None:
            raise UnsupportedPolicy(f"the channel configuration has no policy {path}")
        return self.satisfied(policy, path.rpartition("/")[0], identities)

    def satisfied(self, policy: Any, group: str, identities: Sequence[Identity]) -> bool:
        """Whether the identities (whose signatures verified, deduplicated) satisfy a common.Policy of `group`."""
        if policy.type == _POLICY_TYPE.Value("SIGNATURE"):
            envelope = _parse(policies_pb2.SignaturePolicyEnvelope, policy.value)
            return self.signature_policy_satisfied(envelope, identities)
        if policy.type == _POLICY_TYPE.Value("IMPLICIT_META"):
            meta = _parse(policies_pb2.ImplicitMetaPolicy, policy.value)
            children = self._groups[group].children
            satisfied = 0
            for child in children:
                sub_policy = self._groups[f"{group}/{child}"].policies.get(meta.sub_policy)
                if sub_policy is not None and self.satisfied(sub_policy, f"{group}/{child}", identities):
                    satisfied += 1
            return satisfied >= _threshold(meta.rule, len(children))
        raise UnsupportedPolicy(f"policy type {_type_name(policy.type)} is not supported")

    def signature_policy_satisfied(self, envelope: Any, identities: Sequence[Identity]) -> bool:
        used = [False] * len(identities)
        return self._rule(envelope.rule, list(envelope.identities), identities, used)

    def _rule(self, rule: Any, principals: list[Any], identities: Sequence[Identity], used: list[bool]) -> bool:
        kind = rule.WhichOneof("Type")
        if kind == "signed_by":
            if not 0 <= rule.signed_by < len(principals):
                raise UnsupportedPolicy("a signature policy names a principal it does not define")
            principal = principals[rule.signed_by]
            for index, identity in enumerate(identities):
                if not used[index] and self._satisfies(identity, principal):
                    used[index] = True
                    return True
            return False
        if kind == "n_out_of":
            verified = 0
            for sub_rule in rule.n_out_of.rules:
                trial = list(used)
                if self._rule(sub_rule, principals, identities, trial):
                    verified += 1
                    used[:] = trial
            return verified >= rule.n_out_of.n
        raise UnsupportedPolicy("a signature policy rule is empty")

    def _satisfies(self, identity: Identity, principal: Any) -> bool:
        msp = self.msps.get(identity.msp_id)
        if msp is None:
            return False
        classification = principal.principal_classification
        if classification == _CLASSIFICATION.Value("ROLE"):
            role = _parse(msp_principal_pb2.MSPRole, principal.principal)
            if role.msp_identifier != identity.msp_id:
                return False
            if role.role == MEMBER:
                return identity.valid
            if role.role == ADMIN and identity.certificate_der in msp.admins:
                return True
            if role.role in (ADMIN, CLIENT, PEER, ORDERER):
                return identity.valid and msp.has_role(identity, role.role)
            raise UnsupportedPolicy(f"MSP role {role.role} is not supported")
        if classification == _CLASSIFICATION.Value("IDENTITY"):
            other = self.identity(bytes(principal.principal))
            return other.msp_id == identity.msp_id and other.certificate_der == identity.certificate_der and other.valid
        if classification == _CLASSIFICATION.Value("ORGANIZATION_UNIT"):
            unit = _parse(msp_principal_pb2.OrganizationUnit, principal.principal)
            return (
                unit.msp_identifier == identity.msp_id
                and identity.valid
                and unit.organizational_unit_identifier in identity.units
                and bytes(unit.certifiers_identifier) == identity.certifiers
            )
        if classification == _CLASSIFICATION.Value("ANONYMITY"):
            anonymity = _parse(msp_principal_pb2.MSPIdentityAnonymity, principal.principal)
            return bool(anonymity.anonymity_type == _ANONYMITY.Value("NOMINAL"))
        if classification == _CLASSIFICATION.Value("COMBINED"):
            combined = _parse(msp_principal_pb2.CombinedPrincipal, principal.principal)
            return all(self._satisfies(identity, part) for part in combined.principals)
        raise UnsupportedPolicy(f"principal classification {classification} is not supported")

    def describe(self, policy: Any) -> str:
        """A common.Policy as configtx.yaml writes it: "ANY Writers", "AND('A.peer', 'B.peer')"."""
        if policy.type == _POLICY_TYPE.Value("IMPLICIT_META"):
            meta = _parse(policies_pb2.ImplicitMetaPolicy, policy.value)
            return f"{_IMPLICIT_RULE.Name(meta.rule)} {meta.sub_policy}"
        if policy.type == _POLICY_TYPE.Value("SIGNATURE"):
            return describe_signature_policy(_parse(policies_pb2.SignaturePolicyEnvelope, policy.value))
        return f"a policy of type {_type_name(policy.type)}"


def _threshold(rule: int, children: int) -> int:
    if children == 0:
        return 0  # Fabric: with no sub-policies, zero is any and a majority
    if rule == _IMPLICIT_RULE.Value("ANY"):
        return 1
    if rule == _IMPLICIT_RULE.Value("ALL"):
        return children
    if rule == _IMPLICIT_RULE.Value("MAJORITY"):
        return children // 2 + 1
    raise UnsupportedPolicy(f"implicit meta rule {rule} is not supported")


def _type_name(policy_type: int) -> str:
    try:
        return str(_POLICY_TYPE.Name(policy_type))
    except ValueError:
        return str(policy_type)


def _parse(message: Any, data: bytes) -> Any:
    try:
        return message.FromString(bytes(data))
    except DecodeError:
        raise UnsupportedPolicy(f"a {message.DESCRIPTOR.name} cannot be read") from None


def describe_signature_policy(envelope: Any) -> str:
    principals = list(envelope.identities)

    def principal_name(principal: Any) -> str:
        if principal.principal_classification == _CLASSIFICATION.Value("ROLE"):
            role = msp_principal_pb2.MSPRole.FromString(principal.principal)
            return f"'{role.msp_identifier}.{_ROLE.Name(role.role).lower()}'"
        return f"<{_CLASSIFICATION.Name(principal.principal_classification).lower()} principal>"

    def rule_text(rule: Any) -> str:
        if rule.WhichOneof("Type") == "signed_by":
            index = rule.signed_by
            return principal_name(principals[index]) if 0 <= index < len(principals) else "<undefined principal>"
        parts = ", ".join(rule_text(sub_rule) for sub_rule in rule.n_out_of.rules)
        total, needed = len(rule.n_out_of.rules), rule.n_out_of.n
        if needed == total and total > 1:
            return f"AND({parts})"
        if needed == 1:
            return f"OR({parts})"
        return f"OutOf({needed}, {parts})"

    return rule_text(envelope.rule)
