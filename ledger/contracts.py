"""The typed door to the contracts: one method per transaction the platform uses.

Apps and benchmarks call `Contracts`, never `LedgerClient.submit/evaluate` with contract and function
names: this module owns the names, the JSON encoding of arguments and answers, the lookup of the block
that holds a transaction, and which contract refusals mean "absent" (None) rather than an error.

Errors are the ledger's own family (ledger.errors), each with a stable `code`, an HTTP `status` and a
message free of arguments, so that the web layer renders them without catching them first:
- LedgerUnavailable (and TransactionConflict, a kind of it): transient; retry later, fail closed meanwhile;
- ContractRejected: the contract refused the call; retrying will not help;
- LedgerError: anything else the backend could not classify (a misconfigured identity, say).
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from dataclasses import field as dataclass_field
from typing import Any, TypeVar

import orjson

from chaincode.contracts.access_log import compact
from chaincode.contracts.consent import MAX_GRANT_BATCH
from ledger.client import BlockSummary, LedgerClient, Receipt, TransactionLocation, VerificationReport
from ledger.errors import ContractRejected, LedgerUnavailable
from ledger.group_commit import GroupCommit

ANCHORS, CONSENT, ACCESS_LOG, DIRECTORY = "anchors", "consent", "accesslog", "directory"
EMERGENCY, ALERTS, PATIENT_KEYS = "emergency", "alerts", "patient_keys"
TRAINING = "training"

# A grantee's status in the directory, as the ledger holds it.
GRANTEE_ACTIVE, GRANTEE_INACTIVE = "active", "inactive"

# Contract refusals that mean "the ledger holds no such thing" for a read.
_ABSENT = frozenset({"not_found"})

_T = TypeVar("_T")


def _patient_of(request: tuple[Mapping[str, Any], Any]) -> str:
    """The patient a grant request is for: one document per patient in a batch."""
    return str(request[0].get("patient_pseudonym"))


def _alive(client: weakref.ref[Any]) -> LedgerClient:
    found = client()
    if found is None:  # only a caller racing the client's last reference can see this
        raise LedgerUnavailable("the ledger client is closed")
    return found


def _granted(answer: list[LedgerConsent] | ContractRejected) -> list[LedgerConsent]:
    if isinstance(answer, ContractRejected):
        raise answer
    return answer


def _from_mapping(kind: type[_T], values: Mapping[str, Any]) -> _T:
    """Build a dataclass from a contract answer, ignoring fields the dataclass does not name."""
    names = {f.name for f in fields(kind)}  # type: ignore[arg-type]
    return kind(**{name: value for name, value in values.items() if name in names})


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


# --- results ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RecordAnchor:
    """What the ledger holds for one anchored version of a record."""

    record_id: str
    patient_pseudonym: str
    sha256: str
    version: int
    anchored_at: str
    tx_id: str
    features_sha256: str = ""  # the salted hash of the features kept at ingest, when the version anchors one
    erased: bool = False  # the patient's data was erased (EraseRecords): the gate refuses the record
    erasure_id: str = ""
    erased_at: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "version", int(self.version))


@dataclass(frozen=True)
class LedgerErasure:
    """An erasure entry (EraseRecords): the pseudonym, the sorted record ids, their count and digest."""

    erasure_id: str
    patient_pseudonym: str
    record_ids: tuple[str, ...]
    count: int
    records_sha256: str
    erased_at: str
    tx_id: str
    block_number: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "record_ids", tuple(self.record_ids))


@dataclass(frozen=True)
class AnchorRequest:
    record_id: str
    patient_pseudonym: str
    sha256: str
    version: int
    features_sha256: str = ""


@dataclass(frozen=True)
class AnchorsCommitted:
    """The anchors one AnchorRecords transaction answered with. An anchor that was already on the
    ledger (a retry) carries its original tx_id, whose block is not this transaction's."""

    tx_id: str
    block_number: int | None
    anchors: tuple[RecordAnchor, ...]

    def block_of(self, anchor: RecordAnchor) -> int | None:
        return self.block_number if anchor.tx_id == self.tx_id else None


@dataclass(frozen=True)
class AnchorAtVersion:
    """The ledger's anchor of one version of a record (None when absent) and the newest anchored version
    of that record (0 when it has none)."""

    anchor: RecordAnchor | None
    latest_version: int


@dataclass(frozen=True)
class ModelAnchor:
    model_name: str
    model_version: str
    sha256: str
    anchored_at: str
    tx_id: str
    block_number: int | None = None


@dataclass(frozen=True)
class ConsentGrant:
    """One grant of a signed grant document; times are RFC 3339 UTC text (chaincode.validation.format_timestamp)."""

    consent_id: str
    grantee: str
    purposes: Sequence[str]
    categories: Sequence[str]
    valid_from: str
    valid_until: str

    def payload(self) -> dict[str, Any]:
        return {**self.__dict__, "purposes": list(self.purposes), "categories": list(self.categories)}


def grant_document(patient_pseudonym: str, grants: Iterable[ConsentGrant], *, issued_at: str) -> dict[str, Any]:
    """The document a patient signs to grant `grants` (GrantConsent's first argument)."""
    return {
        "action": "grant_consent",
        "patient_pseudonym": patient_pseudonym,
        "issued_at": issued_at,
        "grants": [grant.payload() for grant in grants],
    }


def revoke_document(patient_pseudonym: str, consent_id: str, *, issued_at: str) -> dict[str, Any]:
    """The document a patient signs to revoke a consent (RevokeConsent's first argument)."""
    return {
        "action": "revoke_consent",
        "patient_pseudonym": patient_pseudonym,
        "consent_id": consent_id,
        "issued_at": issued_at,
    }


@dataclass(frozen=True)
class PatientKey:
    """A patient's passkey as the ledger holds it (its public key: COSE, base64url)."""

    credential_id: str
    public_key: str
    rp_id_hash: str
    origin: str
    status: str
    sign_count: int
    added_at: str
    added_tx_id: str
    added_by: str
    revoked_at: str | None = None
    revoked_tx_id: str | None = None
    revoked_by: str | None = None


@dataclass(frozen=True)
class KeyRecovery:
    """The custodian revoked every passkey of a patient who had lost them: for the patient to see, always."""

    recovery_id: str
    custodian: str
    reason: str
    revoked: list[str]
    at: str
    tx_id: str


@dataclass(frozen=True)
class PatientKeys:
    patient_pseudonym: str
    keys: list[PatientKey]
    recoveries: list[KeyRecovery]

    @property
    def active(self) -> list[PatientKey]:
        return [key for key in self.keys if key.status == "active"]


@dataclass(frozen=True)
class SignedDocument:
    """A document a patient signed and the ledger verified: the document and the WebAuthn assertion over it."""

    document_sha256: str
    document: dict[str, Any]
    credential_id: str
    authenticator_data: str
    client_data_json: str
    signature: str


@dataclass(frozen=True)
class LedgerConsent:
    """A consent as the ledger holds it, with the blocks of its grant and revocation where known."""

    consent_id: str
    patient_pseudonym: str
    grantee: str
    purposes: list[str]
    categories: list[str]
    valid_from: str
    valid_until: str
    status: str
    granted_at: str
    granted_tx_id: str
    revoked_at: str | None = None
    revoked_tx_id: str | None = None
    granted_block: int | None = None
    revoked_block: int | None = None
    grant_signature: str | None = None
    revoke_signature: str | None = None

    @property
    def patient_signed(self) -> bool:
        """Whether the patient signed the grant (consents written before signatures were required did not)."""
        return bool(self.grant_signature)


@dataclass(frozen=True)
class LedgerGrantee:
    """A grantee's directory entry on the ledger: its status, who registered it, and the transaction of its
    last change (with that transaction's block where known)."""

    grantee: str
    status: str  # GRANTEE_ACTIVE or GRANTEE_INACTIVE
    registered_by: str  # the MSP that registered it, the only one that may change it
    registered_at: str
    changed_at: str
    tx_id: str
    block_number: int | None = None

    @property
    def active(self) -> bool:
        return self.status == GRANTEE_ACTIVE


@dataclass(frozen=True)
class StateChange:
    """One committed change of a key (its history): the transaction, its block and the value written."""

    tx_id: str
    block_number: int | None
    timestamp: str
    value: dict[str, Any] | None  # None for a delete


@dataclass(frozen=True)
class AccessItem:
    """One record to gate: its id, data category and the hash recomputed from its content now; or, for an analysis
    that uses the features kept at ingest, the record's hash sealed with them and the features' own salted hash,
    which the ledger compares with the anchor's."""

    record_id: str
    category: str
    sha256: str
    features_sha256: str = ""

    def payload(self) -> dict[str, str]:
        item = {"record_id": self.record_id, "category": self.category, "sha256": self.sha256}
        if self.features_sha256:
            item["features_sha256"] = self.features_sha256
        return item


@dataclass(frozen=True)
class AccessDecision:
    record_id: str
    decision: str  # "admit" or "refuse"
    reason: str | None  # a REFUSAL_REASONS code when refused
    consent_id: str | None  # the consent that admitted it
    patient_pseudonym: str | None  # None when the record has no anchor

    @property
    def admitted(self) -> bool:
        return self.decision == "admit"


@dataclass(frozen=True)
class LoggedBatch:
    """Where a batch of access events is on the ledger. `appended` is False when the identical batch was
    already logged (a retry): tx_id and block are then the original transaction's."""

    batch_id: str
    tx_id: str
    block_number: int | None
    recorded_at: str
    appended: bool
    count: int


@dataclass(frozen=True)
class AccessBatch:
    """A logged batch as the ledger holds it: its events in order."""

    batch_id: str
    recorded_at: str
    tx_id: str
    events: list[dict[str, Any]]


@dataclass(frozen=True)
class AccessEventPage:
    """Events (each with batch_id, position, recorded_at and tx_id) and the bookmark of the next page."""

    events: list[dict[str, Any]]
    bookmark: str


@dataclass(frozen=True)
class Verdict:
    """An auditor's verdict on an emergency (a review) or an alert (a triage), as the ledger holds it."""

    reviewer: str
    verdict: str
    note_sha256: str
    at: str
    tx_id: str


@dataclass(frozen=True)
class LedgerEmergency:
    """An emergency declaration as the ledger holds it, with its review once there is one."""

    declaration_id: str
    grantee: str
    organisation: str | None
    patient_pseudonym: str
    reason: str
    justification_sha256: str
    duration_seconds: int
    declared_at: str
    expires_at: str
    tx_id: str
    judgement: Verdict | None = None


@dataclass(frozen=True)
class EmergencyRefusals:
    """The data categories a patient forbids emergency access to (tx_id None: never set)."""

    patient_pseudonym: str
    categories: list[str]
    changed_at: str | None
    tx_id: str | None
    block_number: int | None = None


@dataclass(frozen=True)
class AlertRequest:
    """One alert a scoring run raises: the flagged clinician's day, the detector's score and reason codes."""

    alert_id: str
    grantee: str
    day: str  # YYYY-MM-DD
    score: str  # a decimal as text
    reasons: Sequence[str]


@dataclass(frozen=True)
class LedgerAlert:
    alert_id: str
    grantee: str
    day: str
    score: str
    reasons: list[str]
    detector_name: str
    detector_version: str
    detector_sha256: str
    raised_at: str
    tx_id: str
    judgement: Verdict | None = None


@dataclass(frozen=True)
class Recorded:
    """What an oversight transaction wrote (a declaration, a review, an alert's triage) and where its access event
    is logged."""

    entry: Any  # LedgerEmergency or LedgerAlert
    logged: LoggedBatch


@dataclass(frozen=True)
class OrganisationLineage:
    """One organisation's part of a training set: the Merkle roots (chaincode.merkle) over its records' (id,
    version, anchored hash) and over the consents that admitted them, and the size of each tree."""

    organisation: str  # "org:<slug>"
    training_set_root: str
    consent_root: str
    record_count: int
    consent_count: int
    left_out: Mapping[str, int] = dataclass_field(
        default_factory=dict
    )  # offered and not used, by reason (gate or no_label)


@dataclass(frozen=True)
class TrainingRunRequest:
    """The lineage of a training run, as RecordTrainingRun takes it (issue 18). The totals and overall roots are
    over every organisation's records and consents; `round_aggregates` holds one hash per round."""

    run_id: str
    model_family: str
    model_version: str
    steward: str  # "model-steward:<id>": who asked for the run
    organisations: tuple[OrganisationLineage, ...]
    training_set_root: str
    consent_root: str
    record_count: int
    consent_count: int
    trainer_sha256: str
    hyperparameters: Mapping[str, Any]  # names to numbers, short texts, booleans or None
    rounds: int
    round_aggregates: tuple[str, ...]
    metrics: Mapping[str, float]
    weights_sha256: str
    dp_epsilon: float | None = None  # the differential-privacy budget spent, None without noise
    dp_delta: float | None = None

    def payload(self) -> dict[str, Any]:
        return {
            **{f.name: getattr(self, f.name) for f in fields(TrainingRunRequest)},
            "organisations": [
                {**organisation.__dict__, "left_out": dict(organisation.left_out)}
                for organisation in self.organisations
            ],
            "hyperparameters": dict(self.hyperparameters),
            "round_aggregates": list(self.round_aggregates),
            "metrics": dict(self.metrics),
        }


@dataclass(frozen=True)
class TrainingRun(TrainingRunRequest):
    """A training run's lineage as the ledger holds it: what was asked, the organisation (MSP) that submitted it,
    when, and its transaction with that transaction's block where known."""

    submitted_by: str = ""
    recorded_at: str = ""
    tx_id: str = ""
    block_number: int | None = None


@dataclass(frozen=True)
class ModelStatus:
    """Whether a trained model is retired from new analyses: its last retirement or reinstatement (reason code and
    the revocations counted then), or active with no change for a model never retired."""

    weights_sha256: str
    status: str  # "active" or "retired"
    reason: str | None
    revocations: int | None
    changed_by: str | None
    changed_at: str | None
    tx_id: str | None
    run_id: str = ""
    block_number: int | None = None

    @property
    def retired(self) -> bool:
        return self.status == "retired"


# --- the facade -------------------------------------------------------------------------------------


class Contracts:
    """The platform's contracts over one LedgerClient (either backend).

    group_grants: signed grants made at the same moment through this client (by many patients at once) are
    written together, up to MAX_GRANT_BATCH per transaction (ledger.group_commit); a grant alone goes at once,
    as GrantConsent. One GroupCommit per client, shared by every Contracts over it."""

    _grant_groups: weakref.WeakKeyDictionary[Any, GroupCommit[tuple[Any, Any], list[LedgerConsent]]] = (
        weakref.WeakKeyDictionary()
    )
    _grant_groups_lock = threading.Lock()

    def __init__(self, client: LedgerClient, *, group_grants: bool = False):
        self.client = client
        self.group_grants = group_grants

    # --- the chain ---------------------------------------------------------------------------------
    def block_of(self, tx_id: str | None) -> int | None:
        """The block that holds committed transaction `tx_id`; None if the ledger has none (or no id)."""
        if not tx_id:
            return None
        location = self.client.locate(tx_id)
        return location.block_number if location is not None else None

    def locate(self, tx_id: str) -> TransactionLocation | None:
        return self.client.locate(tx_id)

    def height(self) -> int:
        return self.client.height()

    def block_summary(self, number: int) -> BlockSummary | None:
        return self.client.block_summary(number)

    def recent_blocks(self, *, limit: int, before: int | None = None) -> list[BlockSummary]:
        """Up to `limit` blocks below `before` (default: the height), newest first."""
        top = self.height() if before is None else min(before, self.height())
        summaries = (self.block_summary(number) for number in range(top - 1, max(top - limit, 0) - 1, -1))
        return [summary for summary in summaries if summary is not None]

    def verify(self) -> VerificationReport:
        return self.client.verify()

    def _committed_block(self, receipt: Receipt, tx_id: str | None) -> int | None:
        """The block of `tx_id`: the receipt's own when it is the receipt's transaction, else looked up."""
        if tx_id and tx_id == receipt.tx_id:
            return receipt.block_number
        return self.block_of(tx_id)

    def _read(self, contract: str, function: str, *args: str) -> Any | None:
        """Evaluate a read; None when the contract answers that the key does not exist."""
        try:
            return self.client.evaluate(contract, function, *args).json()
        except ContractRejected as rejection:
            if rejection.code in _ABSENT:
                return None
            raise

    # --- anchors -----------------------------------------------------------------------------------
    def anchor_records(self, anchors: Iterable[AnchorRequest]) -> AnchorsCommitted:
        """Anchor many record versions (at most one per record) in one transaction."""
        payload = [
            {
                "record_id": anchor.record_id,
                "patient_pseudonym": anchor.patient_pseudonym,
                "sha256": anchor.sha256,
                "version": str(anchor.version),
                **({"features_sha256": anchor.features_sha256} if anchor.features_sha256 else {}),
            }
            for anchor in anchors
        ]
        receipt = self.client.submit(ANCHORS, "AnchorRecords", _json(payload))
        answered = tuple(_from_mapping(RecordAnchor, item) for item in receipt.json() or [])
        return AnchorsCommitted(tx_id=receipt.tx_id, block_number=receipt.block_number, anchors=answered)

    def read_anchor(self, record_id: str) -> RecordAnchor | None:
        """The latest anchored version of a record, or None if it has none."""
        found = self._read(ANCHORS, "ReadAnchor", str(record_id))
        return None if found is None else _from_mapping(RecordAnchor, found)

    def anchor_history(self, record_id: str) -> list[RecordAnchor]:
        """Every anchored version of a record, oldest first."""
        entries = self.client.evaluate(ANCHORS, "AnchorHistory", str(record_id)).json() or []
        return [_from_mapping(RecordAnchor, entry["value"]) for entry in entries if entry.get("value")]

    def anchor_at_version(self, record_id: str, version: int) -> AnchorAtVersion:
        """The anchor of `version` of a record: ReadAnchor, then the history for an older version."""
        latest = self.read_anchor(record_id)
        if latest is None:
            return AnchorAtVersion(anchor=None, latest_version=0)
        if latest.version == version:
            return AnchorAtVersion(anchor=latest, latest_version=latest.version)
        if latest.version < version:
            return AnchorAtVersion(anchor=None, latest_version=latest.version)
        older = next((anchor for anchor in self.anchor_history(record_id) if anchor.version == version), None)
        return AnchorAtVersion(anchor=older, latest_version=latest.version)

    def erase_records(self, *, erasure_id: str, patient_pseudonym: str, record_ids: Sequence[str]) -> LedgerErasure:
        """Mark the patient's anchors erased and store the erasure entry, one transaction (a retry is answered
        with the entry as first stored, and its block)."""
        payload = {"erasure_id": erasure_id, "patient_pseudonym": patient_pseudonym, "record_ids": list(record_ids)}
        receipt = self.client.submit(ANCHORS, "EraseRecords", _json(payload))
        entry = _from_mapping(LedgerErasure, receipt.json())
        return LedgerErasure(**{**entry.__dict__, "block_number": self._committed_block(receipt, entry.tx_id)})

    def read_erasure(self, erasure_id: str) -> LedgerErasure | None:
        """An erasure entry with its block, or None if the ledger holds none of that id."""
        found = self._read(ANCHORS, "ReadErasure", erasure_id)
        if found is None:
            return None
        entry = _from_mapping(LedgerErasure, found)
        return LedgerErasure(**{**entry.__dict__, "block_number": self.block_of(entry.tx_id)})

    def anchor_model(self, *, name: str, version: str, sha256: str) -> ModelAnchor:
        """Anchor a diagnostic model's weights hash (the same hash again is a no-op)."""
        receipt = self.client.submit(ANCHORS, "AnchorModel", name, version, sha256)
        anchor = _from_mapping(ModelAnchor, receipt.json())
        return ModelAnchor(
            **{**anchor.__dict__, "block_number": self._committed_block(receipt, anchor.tx_id)},
        )

    # --- consent -----------------------------------------------------------------------------------
    def grant_consents(self, document: Mapping[str, Any], signature: Mapping[str, str]) -> list[LedgerConsent]:
        """Grant every consent of a grant document the patient signed (chaincode.contracts.consent), at once; with
        group_grants, in the same transaction as other patients' grants made at the same moment."""
        if not self.group_grants:
            return _granted(self._grant_batch([(document, signature)])[0])
        with Contracts._grant_groups_lock:
            group = Contracts._grant_groups.get(self.client)
            if group is None:
                # The group holds its client weakly: kept by the client, it must not keep the client alive.
                client = weakref.ref(self.client)
                group = Contracts._grant_groups[self.client] = GroupCommit(
                    lambda requests: Contracts(_alive(client))._grant_batch(requests),
                    key=_patient_of,
                    max_items=MAX_GRANT_BATCH,
                )
        return group.call((document, signature))

    def _grant_batch(self, requests: list[tuple[Any, Any]]) -> list[list[LedgerConsent] | ContractRejected]:
        """One transaction for the grant documents of different patients: GrantConsent for one, GrantConsents for
        more (each document accepted or refused alone)."""
        if len(requests) == 1:
            receipt = self.client.submit(CONSENT, "GrantConsent", *(_json(part) for part in requests[0]))
            answers: list[Any] = [{"consents": receipt.json()}]
        else:
            batch = [{"document": _json(document), "signature": _json(signature)} for document, signature in requests]
            receipt = self.client.submit(CONSENT, "GrantConsents", _json(batch))
            answers = receipt.json()
        return [
            [
                _consent(consent, granted_block=self._committed_block(receipt, consent["granted_tx_id"]))
                for consent in answer["consents"]
            ]
            if "consents" in answer
            else ContractRejected(answer["error"]["code"], answer["error"]["message"])
            for answer in answers
        ]

    def revoke_consent(
        self, document: Mapping[str, Any], signature: Mapping[str, str], *, granted_block: int | None = None
    ) -> LedgerConsent:
        """Revoke a consent by a revocation document its patient signed; revoking a revoked one writes nothing and
        answers the consent as it is."""
        pseudonym, consent_id = str(document.get("patient_pseudonym", "")), str(document.get("consent_id", ""))
        current = self.read_consent(pseudonym, consent_id, with_blocks=False)
        if current is None:
            raise ContractRejected("not_found", "no consent with this consent_id")
        if current.status == "revoked":
            return _consent(
                current.__dict__, granted_block=granted_block, revoked_block=self.block_of(current.revoked_tx_id)
            )
        receipt = self.client.submit(CONSENT, "RevokeConsent", _json(document), _json(signature))
        consent = receipt.json()
        return _consent(
            consent, granted_block=granted_block, revoked_block=self._committed_block(receipt, consent["revoked_tx_id"])
        )

    def consent_signature(self, tx_id: str, document_sha256: str) -> SignedDocument | None:
        """The signed document with this hash that transaction `tx_id` applied: a consent's granted_tx_id and
        grant_signature, or its revoked_tx_id and revoke_signature."""
        found = self._read(CONSENT, "ReadConsentSignature", tx_id, document_sha256)
        return None if found is None else _from_mapping(SignedDocument, found)

    # --- patients' passkeys ------------------------------------------------------------------------
    def enrol_patient_key(self, key: Mapping[str, str]) -> PatientKeys:
        """The platform enrols a patient's passkey while the patient has no active one (keys_exist otherwise)."""
        return _patient_keys(self.client.submit(PATIENT_KEYS, "EnrolPatientKey", _json(key)).json())

    def enrol_patient_keys(self, keys: Sequence[Mapping[str, str]]) -> list[PatientKeys | ContractRejected]:
        """Enrol several patients' passkeys in one transaction (1 to MAX_ENROL_BATCH, each of another patient): for
        each, in order, the patient's keys, or the contract's refusal of that key alone (keys_exist, ...)."""
        answers = self.client.submit(PATIENT_KEYS, "EnrolPatientKeys", _json(list(keys))).json()
        return [
            _patient_keys(answer["entry"])
            if "entry" in answer
            else ContractRejected(answer["error"]["code"], answer["error"]["message"])
            for answer in answers
        ]

    def add_patient_key(self, document: Mapping[str, str], signature: Mapping[str, str]) -> PatientKeys:
        return _patient_keys(
            self.client.submit(PATIENT_KEYS, "AddPatientKey", _json(document), _json(signature)).json()
        )

    def revoke_patient_key(self, document: Mapping[str, str], signature: Mapping[str, str]) -> PatientKeys:
        return _patient_keys(
            self.client.submit(PATIENT_KEYS, "RevokePatientKey", _json(document), _json(signature)).json()
        )

    def recover_patient_keys(self, *, recovery_id: str, pseudonym: str, custodian: str, reason: str) -> PatientKeys:
        recovery = {
            "recovery_id": recovery_id,
            "patient_pseudonym": pseudonym,
            "custodian": custodian,
            "reason": reason,
        }
        return _patient_keys(self.client.submit(PATIENT_KEYS, "RecoverPatientKeys", _json(recovery)).json())

    def patient_keys(self, pseudonym: str) -> PatientKeys:
        return _patient_keys(self.client.evaluate(PATIENT_KEYS, "ReadPatientKeys", pseudonym).json())

    def read_consent(self, pseudonym: str, consent_id: str, *, with_blocks: bool = True) -> LedgerConsent | None:
        """A patient's consent (a consent id names a consent of its patient's)."""
        found = self._read(CONSENT, "ReadConsent", pseudonym, consent_id)
        if found is None:
            return None
        return self._with_blocks(found) if with_blocks else _consent(found)

    def consents_of_patient(self, pseudonym: str, *, with_blocks: bool = True) -> list[LedgerConsent]:
        """A patient's consents, with the blocks of their grants and revocations unless `with_blocks` is False."""
        found = self.client.evaluate(CONSENT, "ListConsentsForPatient", pseudonym).json()
        return [self._with_blocks(consent) if with_blocks else _consent(consent) for consent in found]

    def consent_history(self, pseudonym: str, consent_id: str) -> list[StateChange]:
        """Every committed change of a patient's consent (grant, revocation), oldest first, with its block."""
        return self._history(CONSENT, "ConsentHistory", pseudonym, consent_id)

    def check_access_batch(
        self,
        *,
        grantee: str,
        organisation: str | None,
        purpose: str,
        at: str,
        items: Sequence[AccessItem],
        declaration_id: str | None = None,
    ) -> list[AccessDecision]:
        """ONE read-only call, endorsed by every organisation (so one tampered copy of the state cannot admit): per
        item, admit or refuse with the reason, at time `at` (RFC 3339 UTC). Purpose emergency names the
        declaration that would allow it."""
        query: dict[str, Any] = {
            "grantee": grantee,
            "purpose": purpose,
            "at": at,
            "items": [item.payload() for item in items],
        }
        if organisation:
            query["organisation"] = organisation
        if declaration_id:
            query["declaration_id"] = declaration_id
        answer = self.client.evaluate_endorsed(CONSENT, "CheckAccessBatch", _json(query)).json()
        return [
            AccessDecision(r["record_id"], r["decision"], r["reason"], r["consent_id"], r["patient_pseudonym"])
            for r in answer["results"]
        ]

    def _with_blocks(self, consent: Mapping[str, Any]) -> LedgerConsent:
        return _consent(
            consent,
            granted_block=self.block_of(consent.get("granted_tx_id")),
            revoked_block=self.block_of(consent.get("revoked_tx_id")),
        )

    # --- grantee directory -------------------------------------------------------------------------
    def register_grantee(self, grantee: str) -> LedgerGrantee:
        """Register `grantee` as active; one already registered is answered as it is (its status unchanged)."""
        receipt = self.client.submit(DIRECTORY, "RegisterGrantee", grantee)
        entry = receipt.json()
        return _grantee(entry, block_number=self._committed_block(receipt, entry["tx_id"]))

    def set_grantee_status(self, grantee: str, *, active: bool) -> LedgerGrantee:
        """Activate or deactivate `grantee` (registering it if the ledger does not know it). The gate refuses an
        inactive grantee's consents from its next batch on. The same status again writes nothing."""
        status = GRANTEE_ACTIVE if active else GRANTEE_INACTIVE
        receipt = self.client.submit(DIRECTORY, "SetGranteeStatus", grantee, status)
        entry = receipt.json()
        return _grantee(entry, block_number=self._committed_block(receipt, entry["tx_id"]))

    def read_grantee(self, grantee: str) -> LedgerGrantee | None:
        """The grantee's entry, or None if it was never registered (the gate then treats it as active)."""
        found = self._read(DIRECTORY, "ReadGrantee", grantee)
        return None if found is None else _grantee(found, block_number=self.block_of(found.get("tx_id")))

    def grantees(self) -> list[LedgerGrantee]:
        """Every registered grantee's entry, ordered by grantee id, without blocks (one call)."""
        return [_grantee(entry) for entry in self.client.evaluate(DIRECTORY, "ListGrantees").json() or []]

    def grantee_history(self, grantee: str) -> list[StateChange]:
        """Every committed change of a grantee's entry, oldest first, with its block."""
        return self._history(DIRECTORY, "GranteeHistory", grantee)

    # --- access log --------------------------------------------------------------------------------
    def append_access_events(self, *, batch_id: str, events: Sequence[Mapping[str, Any]]) -> LoggedBatch:
        """Log `events` as one batch, in ONE transaction. An identical batch again is a no-op that
        answers with the original transaction; another batch under the same id is refused.

        Sent in the compact form: the fields every event shares once, as `common` (chaincode.contracts.access_log)."""
        common, own = compact([dict(event) for event in events])
        argument = {"batch_id": batch_id, "common": common, "events": own}
        receipt = self.client.submit(ACCESS_LOG, "AppendAccessEvents", _json(argument))
        return self._logged(receipt, receipt.json())

    def read_access_batch(self, batch_id: str) -> AccessBatch | None:
        """A logged batch, or None if the ledger holds none under this id (or the id is not one)."""
        try:
            found = self._read(ACCESS_LOG, "ReadAccessBatch", batch_id)
        except ContractRejected as rejection:
            if rejection.code == "invalid_argument":
                return None
            raise
        return None if found is None else _from_mapping(AccessBatch, found)

    def query_access_events(
        self,
        *,
        limit: int,
        bookmark: str = "",
        patient_pseudonym: str = "",
        grantee: str = "",
        request_id: str = "",
        since: str = "",
        until: str = "",
    ) -> AccessEventPage:
        """One page of events by request or by time, oldest first."""
        query: dict[str, Any] = {"limit": limit, "bookmark": bookmark}
        for name, value in (
            ("patient_pseudonym", patient_pseudonym),
            ("grantee", grantee),
            ("request_id", request_id),
            ("since", since),
            ("until", until),
        ):
            if value:
                query[name] = value
        page = self.client.evaluate(ACCESS_LOG, "QueryAccessEvents", _json(query)).json()
        return AccessEventPage(events=page["events"], bookmark=page["bookmark"])

    # --- emergency access and misuse alerts ------------------------------------------------------------
    def declare_emergency(
        self,
        *,
        declaration_id: str,
        grantee: str,
        organisation: str | None,
        patient_pseudonym: str,
        reason: str,
        justification_sha256: str,
        duration_seconds: int,
    ) -> Recorded:
        """Open the patient's records to `grantee` for `duration_seconds` from the transaction's time, logged as an
        access event in the same transaction (a retry answers the original)."""
        payload = {
            "declaration_id": declaration_id,
            "grantee": grantee,
            "organisation": organisation,
            "patient_pseudonym": patient_pseudonym,
            "reason": reason,
            "justification_sha256": justification_sha256,
            "duration_seconds": duration_seconds,
        }
        receipt = self.client.submit(EMERGENCY, "DeclareEmergency", _json(payload))
        return self._recorded(receipt, _emergency)

    def review_emergency(self, *, declaration_id: str, reviewer: str, verdict: str, note_sha256: str) -> Recorded:
        """An auditor's verdict (justified, unjustified) on a declaration, once; logged in the same transaction."""
        payload = {"subject_id": declaration_id, "reviewer": reviewer, "verdict": verdict, "note_sha256": note_sha256}
        return self._recorded(self.client.submit(EMERGENCY, "ReviewEmergency", _json(payload)), _emergency)

    def read_emergency(self, declaration_id: str) -> LedgerEmergency | None:
        found = self._read(EMERGENCY, "ReadEmergency", declaration_id)
        return None if found is None else _emergency(found)

    def set_emergency_refusals(self, patient_pseudonym: str, categories: Sequence[str]) -> EmergencyRefusals:
        """The categories the patient forbids emergency access to, as a whole set; the same set writes nothing."""
        receipt = self.client.submit(EMERGENCY, "SetEmergencyRefusals", patient_pseudonym, _json(list(categories)))
        entry = receipt.json()
        return EmergencyRefusals(**entry, block_number=self._committed_block(receipt, entry["tx_id"]))

    def emergency_refusals(self, patient_pseudonym: str) -> EmergencyRefusals:
        entry = self.client.evaluate(EMERGENCY, "ReadEmergencyRefusals", patient_pseudonym).json()
        return EmergencyRefusals(**entry, block_number=self.block_of(entry["tx_id"]))

    def raise_alerts(
        self,
        *,
        run_id: str,
        detector_name: str,
        detector_version: str,
        detector_sha256: str,
        alerts: Sequence[AlertRequest],
    ) -> LoggedBatch:
        """Record a scoring run's alerts, each citing the detector (anchored first with anchor_model), in ONE
        transaction that also logs them; a retry answers the original."""
        payload = {
            "run_id": run_id,
            "detector_name": detector_name,
            "detector_version": detector_version,
            "detector_sha256": detector_sha256,
            "alerts": [{**alert.__dict__, "reasons": list(alert.reasons)} for alert in alerts],
        }
        receipt = self.client.submit(ALERTS, "RaiseAlerts", _json(payload))
        return self._logged(receipt, receipt.json()["logged"])

    def triage_alert(self, *, alert_id: str, reviewer: str, verdict: str, note_sha256: str) -> Recorded:
        """An auditor's verdict (confirmed, dismissed) on an alert, once; logged in the same transaction."""
        payload = {"subject_id": alert_id, "reviewer": reviewer, "verdict": verdict, "note_sha256": note_sha256}
        return self._recorded(self.client.submit(ALERTS, "TriageAlert", _json(payload)), _alert)

    def read_alert(self, alert_id: str) -> LedgerAlert | None:
        found = self._read(ALERTS, "ReadAlert", alert_id)
        return None if found is None else _alert(found)

    # --- training lineage --------------------------------------------------------------------------
    def record_training_run(self, run: TrainingRunRequest) -> TrainingRun:
        """Write a training run's lineage in ONE transaction; the same run again answers the original."""
        receipt = self.client.submit(TRAINING, "RecordTrainingRun", _json(run.payload()))
        entry = receipt.json()
        return _training_run(entry, block_number=self._committed_block(receipt, entry["tx_id"]))

    def read_training_run(self, run_id: str) -> TrainingRun | None:
        found = self._read(TRAINING, "ReadTrainingRun", run_id)
        return None if found is None else _training_run(found, block_number=self.block_of(found["tx_id"]))

    def model_lineage_by_weights(self, weights_sha256: str) -> TrainingRun | None:
        """The lineage of the run that produced the model with these weights (None: a model trained elsewhere)."""
        found = self._read(TRAINING, "ModelLineageByWeights", weights_sha256)
        return None if found is None else _training_run(found, block_number=self.block_of(found["tx_id"]))

    def retire_model(self, *, weights_sha256: str, reason: str, revocations: int) -> ModelStatus:
        """Retire a model with a lineage from new analyses (reason: vocabulary.RETIREMENT_REASONS), once."""
        return self._model_status_change("RetireModel", weights_sha256, reason, revocations)

    def reinstate_model(self, *, weights_sha256: str, reason: str, revocations: int) -> ModelStatus:
        """Put a retired model back in use (reason: vocabulary.REINSTATEMENT_REASONS), once."""
        return self._model_status_change("ReinstateModel", weights_sha256, reason, revocations)

    def model_status(self, weights_sha256: str) -> ModelStatus:
        entry = self.client.evaluate(TRAINING, "ReadModelStatus", weights_sha256).json()
        return ModelStatus(**entry, block_number=self.block_of(entry["tx_id"]))

    def model_status_history(self, weights_sha256: str) -> list[StateChange]:
        return self._history(TRAINING, "ModelStatusHistory", weights_sha256)

    def _model_status_change(self, function: str, weights_sha256: str, reason: str, revocations: int) -> ModelStatus:
        payload = {"weights_sha256": weights_sha256, "reason": reason, "revocations": revocations}
        receipt = self.client.submit(TRAINING, function, _json(payload))
        entry = receipt.json()
        return ModelStatus(**entry, block_number=self._committed_block(receipt, entry["tx_id"]))

    def _logged(self, receipt: Receipt, answer: Mapping[str, Any]) -> LoggedBatch:
        return LoggedBatch(
            batch_id=answer["batch_id"],
            tx_id=answer["tx_id"],
            block_number=self._committed_block(receipt, answer["tx_id"]),
            recorded_at=answer["recorded_at"],
            appended=answer["appended"],
            count=answer["count"],
        )

    def _recorded(self, receipt: Receipt, build: Any) -> Recorded:
        answer = dict(receipt.json())
        return Recorded(entry=build(answer), logged=self._logged(receipt, answer.pop("logged")))

    # --- history -----------------------------------------------------------------------------------
    def _history(self, contract: str, function: str, *key: str) -> list[StateChange]:
        blocks: dict[str, int | None] = {}
        changes = []
        for entry in self.client.evaluate(contract, function, *key).json() or []:
            tx_id = entry["tx_id"]
            if tx_id not in blocks:
                blocks[tx_id] = self.block_of(tx_id)
            changes.append(StateChange(tx_id, blocks[tx_id], entry["timestamp"], entry["value"]))
        return changes


def _consent(
    values: Mapping[str, Any], *, granted_block: int | None = None, revoked_block: int | None = None
) -> LedgerConsent:
    consent = _from_mapping(LedgerConsent, values)
    return LedgerConsent(
        **{**consent.__dict__, "granted_block": granted_block, "revoked_block": revoked_block},
    )


def _patient_keys(values: Mapping[str, Any]) -> PatientKeys:
    return PatientKeys(
        patient_pseudonym=values["patient_pseudonym"],
        keys=[_from_mapping(PatientKey, key) for key in values["keys"]],
        recoveries=[_from_mapping(KeyRecovery, recovery) for recovery in values["recoveries"]],
    )


def _grantee(values: Mapping[str, Any], *, block_number: int | None = None) -> LedgerGrantee:
    entry = _from_mapping(LedgerGrantee, values)
    return LedgerGrantee(**{**entry.__dict__, "block_number": block_number})


def _verdict(values: Mapping[str, Any] | None) -> Verdict | None:
    return None if values is None else _from_mapping(Verdict, values)


def _emergency(values: Mapping[str, Any]) -> LedgerEmergency:
    declaration = _from_mapping(LedgerEmergency, values)
    return LedgerEmergency(**{**declaration.__dict__, "judgement": _verdict(values.get("judgement"))})


def _alert(values: Mapping[str, Any]) -> LedgerAlert:
    alert = _from_mapping(LedgerAlert, values)
    return LedgerAlert(**{**alert.__dict__, "judgement": _verdict(values.get("judgement"))})


def _training_run(values: Mapping[str, Any], *, block_number: int | None) -> TrainingRun:
    """A run as the contract stores it (numbers other than counts as decimal text, the hyperparameters as JSON
    text), with numbers and objects again."""
    run = _from_mapping(TrainingRun, values)
    return TrainingRun(
        **{
            **run.__dict__,
            "organisations": tuple(_from_mapping(OrganisationLineage, item) for item in values["organisations"]),
            "hyperparameters": orjson.loads(values["hyperparameters"]),
            "round_aggregates": tuple(values["round_aggregates"]),
            "metrics": {name: float(number) for name, number in values["metrics"].items()},
            "dp_epsilon": None if values["dp_epsilon"] is None else float(values["dp_epsilon"]),
            "dp_delta": None if values["dp_delta"] is None else float(values["dp_delta"]),
            "block_number": block_number,
        }
    )
