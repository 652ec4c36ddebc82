"""The codes that may appear on the ledger, shared by the contracts and the Django apps.

Data categories are FHIR R4 observation-category codes
(http://terminology.hl7.org/CodeSystem/observation-category). A record is one patient's
observations of one category from one ingest.

Purposes are modelled on HL7 v3 PurposeOfUse and GA4GH DUO. A diagnostic-model purpose names the
model family it covers, so that a consent for one model does not cover another; a training purpose names
the model family whose training it allows, and covers neither running that model nor training another.
"""

import re

OBSERVATION_CATEGORY_SYSTEM = "http://terminology.hl7.org/CodeSystem/observation-category"

CATEGORIES: dict[str, str] = {
    "vital-signs": "Vital signs",
    "laboratory": "Laboratory results",
    "imaging": "Imaging-derived measurements",
    "exam": "Examination findings",
    "survey": "Questionnaires and assessments",
    "social-history": "Social history",
    "procedure": "Procedures",
    "therapy": "Therapy",
    "activity": "Activity",
}

PURPOSES: dict[str, str] = {
    # HL7 v3 PurposeOfUse TREAT
    "treatment": "Treatment of the patient (HL7 v3 TREAT)",
    # GA4GH DUO:0000042 general research use / HL7 v3 HRESCH
    "research": "Health research (GA4GH DUO:0000042, HL7 v3 HRESCH)",
}

# GA4GH DUO:0000007 disease-specific research, narrowed to one diagnostic model family: the purpose
# "diagnostic-model:<family>". The families are declared as data (health_platform.model_catalogue), so a new
# model needs no change here; a consent for one family does not cover another.
MODEL_PURPOSE_PREFIX = "diagnostic-model:"
# No code on the ledger is longer than this (chaincode.validation), and every column that stores one fits it;
# a model family is as long as the purpose that names it allows.
CODE_MAX_LENGTH = 64
_MODEL_FAMILY = re.compile(rf"[a-z0-9][a-z0-9-]{{0,{CODE_MAX_LENGTH - len(MODEL_PURPOSE_PREFIX) - 1}}}")

# GA4GH DUO:0000007 disease-specific research, narrowed to TRAINING one model family: the purpose
# "training:<family>" (issue 18), of HL7 v3 PurposeOfUse HRESCH (healthcare research: the records teach a model
# that is then used for other patients, not for this one's care). Its own purpose, granted and revoked like any
# other, and matched exactly: a consent to train a family's model does not let anyone run it on the patient's
# records ("diagnostic-model:<family>"), nor the other way round. A family is written as for a diagnostic model.
TRAINING_PURPOSE_PREFIX = "training:"


def _with_family(code: object, prefix: str) -> bool:
    return (
        isinstance(code, str) and code.startswith(prefix) and _MODEL_FAMILY.fullmatch(code[len(prefix) :]) is not None
    )


def is_model_purpose(code: object) -> bool:
    return _with_family(code, MODEL_PURPOSE_PREFIX)


def is_training_purpose(code: object) -> bool:
    return _with_family(code, TRAINING_PURPOSE_PREFIX)


def model_family_of(code: str) -> str:
    """The model family a diagnostic-model or training purpose names ("" for any other purpose)."""
    for prefix in (MODEL_PURPOSE_PREFIX, TRAINING_PURPOSE_PREFIX):
        if _with_family(code, prefix):
            return code[len(prefix) :]
    return ""


def training_purpose(family: str) -> str:
    """The purpose of training `family`'s model: "training:<family>"."""
    code = TRAINING_PURPOSE_PREFIX + family
    if not is_training_purpose(code):
        raise ValueError("a model family is lower-case letters, digits and -, starting with a letter or digit")
    return code


def is_purpose(code: object) -> bool:
    """A purpose a consent may name and an access may be for."""
    return code in PURPOSES or is_model_purpose(code) or is_training_purpose(code)


# Emergency treatment without consent (break-the-glass): no consent names it, an emergency declaration on the
# ledger allows it for a bounded time.
EMERGENCY = "emergency"
EMERGENCY_PURPOSES: dict[str, str] = {EMERGENCY: "Emergency treatment (HL7 v3 ETREAT)"}

# Purposes an access event may carry besides the consentable ones (which include "training:<family>": a training
# round's gate and log carry it, is_purpose): an auditor exporting the log, reviewing an emergency or triaging an
# alert (and the misuse detector raising one); a clinician in an emergency; a patient downloading their own data
# (no consent is needed for that: it is their right of access).
PATIENT_REQUEST = "patient-request"
AUDIT_PURPOSES: dict[str, str] = {
    "audit": "Compliance audit of access to health data (HL7 v3 HCOMPL)",
    PATIENT_REQUEST: "The patient's own request for their data (HL7 v3 PATRQT)",
    **EMERGENCY_PURPOSES,
}

# Why a clinician declares an emergency: a fixed list (the free-text justification stays off the ledger, encrypted;
# only its hash is on it).
EMERGENCY_REASONS: dict[str, str] = {
    "unconscious": "Patient unconscious or unable to consent",
    "life_threatening": "Life-threatening condition needing immediate treatment",
    "urgent_care": "Urgent care, consent cannot be obtained in time",
    "incapacity": "Patient lacks capacity and no representative is reachable",
}
# How long an emergency declaration may last at most, whatever the platform's setting asks (24 h).
EMERGENCY_MAX_SECONDS = 24 * 3600
# An auditor's verdict on an emergency, and on a misuse alert.
EMERGENCY_VERDICTS: dict[str, str] = {"justified": "Justified", "unjustified": "Not justified"}
ALERT_VERDICTS: dict[str, str] = {"confirmed": "Misuse confirmed", "dismissed": "Dismissed"}

DECISIONS: dict[str, str] = {"admit": "Admitted", "refuse": "Refused"}

# Why the gate refused a record, with the words people read for it (the portals show them).
REFUSAL_REASONS: dict[str, str] = {
    "no_consent": "No consent",
    "consent_expired": "Consent expired",
    "consent_revoked": "Consent revoked",
    "category_not_covered": "Consent does not cover this kind of data",
    "no_anchor": "Record not anchored on the ledger",
    "hash_mismatch": "Record changed since it was anchored",
    "erased": "Patient's data erased at their request",
    "grantee_inactive": "Grantee deactivated in the directory",
    "no_emergency": "No emergency declared by this clinician for this patient",
    "emergency_expired": "Emergency access period over",
    "emergency_refused": "Patient refused emergency access to this kind of data",
}

# An access event: what the access log holds per event, in this order (exports, the audit mirror and the
# API list them the same way). The time and the transaction are the batch's. Its explanation is the request
# (an analysis, an export) or the consent that allowed it (a read for treatment), or the refusal's reason.
ACCESS_EVENT_FIELDS: tuple[str, ...] = (
    "event_id",
    "kind",
    "record_id",
    "patient_pseudonym",
    "grantee",
    "purpose",
    "request_id",
    "consent_id",
    "model_hash",
    "category",
    "decision",
    "reason",
    "export_sha256",
)
EVENT_KINDS: dict[str, str] = {
    "record_access": "Record access",
    "record_read": "Record read for treatment",
    "export": "Access-log export",
    "outcome": "Outcome of an admitted access",
    "emergency_declared": "Emergency access declared",
    "emergency_review": "Emergency access reviewed",
    "alert": "Misuse alert raised",
    "alert_triage": "Misuse alert triaged",
}
# Why the misuse detector flagged a clinician's day (oversight.detector; the portals show its own words, with the
# figures: "14 emergency reads in a night, usual 0").
ALERT_REASONS: dict[str, str] = {
    "volume": "Far more accesses than usual",
    "distinct_patients": "Far more patients than usual",
    "refusal_ratio": "Far more refusals than usual",
    "off_hours": "Accesses outside the usual hours",
    "emergency_declarations": "More emergency declarations than usual",
    "night_emergency_reads": "Emergency reads at night",
    "repeated_reads": "One patient's records read repeatedly",
    "large_cohort": "A cohort far larger than usual",
    "outside_patients": "Patients outside the organisation's usual patients",
    "unexplained_access": "Accesses with no valid explanation",
}

# Kinds written only by the transaction that changes what they speak of (the emergency, the alert), in the same
# transaction: AppendAccessEvents refuses them. Each has decisions of its own, and its request_id names the
# declaration or the alert.
DECLARED = "declared"
FLAGGED = "flagged"
OVERSIGHT_DECISIONS: dict[str, dict[str, str]] = {
    "emergency_declared": {DECLARED: "Declared"},
    "emergency_review": EMERGENCY_VERDICTS,
    "alert": {FLAGGED: "Flagged"},
    "alert_triage": ALERT_VERDICTS,
}

# What became of the records the gate admitted, logged after the gate's decision (events of kind "outcome"):
# computed, or not computed and why.
OUTCOMES: dict[str, str] = {"computed": "Computed", "not_computed": "Not computed"}
NOT_COMPUTED_REASONS: dict[str, str] = {
    "request_failed": "The analysis stopped before it was computed",
    "request_cancelled": "The analysis was cancelled",
    "content_unavailable": "Record could not be read",
    "changed_after_gate": "Record changed while the analysis ran",
    "missing_features": "Record lacks the model's measurements",
}

# The words for every decision and reason an access event may carry (a refusal or an outcome's).
DECISION_LABELS: dict[str, str] = {
    **DECISIONS,
    **OUTCOMES,
    **{code: label for decisions in OVERSIGHT_DECISIONS.values() for code, label in decisions.items()},
}
REASON_LABELS: dict[str, str] = {**REFUSAL_REASONS, **NOT_COMPUTED_REASONS, **EMERGENCY_REASONS}

# A trained model's standing (contract "training", issue 18): a model whose lineage shows too many of its training
# consents revoked since is retired from new analyses until it is retrained without them; retirement and
# reinstatement are ledger transactions that carry why, and how many revocations counted against the model then.
MODEL_STATUSES: dict[str, str] = {"active": "In use", "retired": "Retired from new analyses"}
RETIREMENT_REASONS: dict[str, str] = {
    "revocations_threshold": "Too many of its training consents revoked since it was trained",
    "superseded": "Replaced by a model retrained without the revoked records",
    "steward_decision": "Withdrawn by the model steward",
}
REINSTATEMENT_REASONS: dict[str, str] = {
    "policy_changed": "The retirement policy changed and no longer retires it",
    "steward_decision": "Put back in use by the model steward",
}
