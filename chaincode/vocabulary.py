"""The codes that may appear on the ledger, shared by the contracts and the Django apps.

Data categories are FHIR R4 observation-category codes
(http://terminology.hl7.org/CodeSystem/observation-category). A record is one patient's
observations of one category from one ingest.

Purposes are modelled on HL7 v3 PurposeOfUse and GA4GH DUO. A diagnostic-model purpose names the
model family it covers, so that a consent for one model does not cover another.
"""

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
    # GA4GH DUO:0000007 disease-specific research, narrowed to one diagnostic model family
    "diagnostic-model:breast-cancer": "Running the breast-cancer diagnostic model (DUO:0000007)",
    "diagnostic-model:diabetes-progression": "Running the diabetes-progression model (DUO:0000007)",
}

# Purposes an access event may carry besides the consentable ones: an auditor exporting the log.
AUDIT_PURPOSES: dict[str, str] = {
    "audit": "Compliance audit of access to health data (HL7 v3 HCOMPL)",
}

DECISIONS = ("admit", "refuse")

REFUSAL_REASONS = (
    "no_consent",
    "consent_expired",
    "consent_revoked",
    "category_not_covered",
    "no_anchor",
    "hash_mismatch",
)
