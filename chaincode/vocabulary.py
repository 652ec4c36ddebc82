"""The codes that may appear on the ledger, shared by the contracts and the Django apps.

Data categories are FHIR R4 observation-category codes
(http://terminology.hl7.org/CodeSystem/observation-category). A record is one patient's
observations of one category from one ingest.

Purposes are modelled on HL7 v3 PurposeOfUse and GA4GH DUO. A diagnostic-model purpose names the
model family it covers, so that a consent for one model does not cover another.
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


def is_model_purpose(code: object) -> bool:
    return (
        isinstance(code, str)
        and code.startswith(MODEL_PURPOSE_PREFIX)
        and _MODEL_FAMILY.fullmatch(code[len(MODEL_PURPOSE_PREFIX) :]) is not None
    )


def is_purpose(code: object) -> bool:
    """A purpose a consent may name and an access may be for."""
    return code in PURPOSES or is_model_purpose(code)


# Purposes an access event may carry besides the consentable ones: an auditor exporting the log.
AUDIT_PURPOSES: dict[str, str] = {
    "audit": "Compliance audit of access to health data (HL7 v3 HCOMPL)",
}

DECISIONS: dict[str, str] = {"admit": "Admitted", "refuse": "Refused"}

# Why the gate refused a record, with the words people read for it (the portals show them).
REFUSAL_REASONS: dict[str, str] = {
    "no_consent": "No consent",
    "consent_expired": "Consent expired",
    "consent_revoked": "Consent revoked",
    "category_not_covered": "Consent does not cover this kind of data",
    "no_anchor": "Record not anchored on the ledger",
    "hash_mismatch": "Record changed since it was anchored",
    "grantee_inactive": "Grantee deactivated in the directory",
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
DECISION_LABELS: dict[str, str] = {**DECISIONS, **OUTCOMES}
REASON_LABELS: dict[str, str] = {**REFUSAL_REASONS, **NOT_COMPUTED_REASONS}
