"""The CapabilityStatement at /fhir/metadata, written from the same declarations the views accept (fhir_api.search,
fhir_api.api), so that it cannot list a parameter that is refused or leave out one that is accepted."""

from typing import Any

from fhir_api.search import AUDIT_EVENT_SEARCH, CONSENT_SEARCH, FORMAT, PAGING, SearchParameter
from health_platform.fhir_codes import PLATFORM

FHIR_VERSION = "4.0.1"
# When what the statement says last changed.
STATEMENT_DATE = "2026-12-06"
EVERYTHING_DEFINITION = "http://hl7.org/fhir/OperationDefinition/Patient-everything"
DOWNLOAD_DEFINITION = f"{PLATFORM}/OperationDefinition/Patient-download"

_DOCUMENTATION = (
    "A read-only FHIR R4 API over the platform's consents, access log and a patient's own records. Searches are "
    "strict: a parameter that is not listed here (or a modifier) is refused 400 with an OperationOutcome, never "
    "ignored. Results are paged (_count, at most 200; Bundle links self, first, previous, next). Consent and "
    "AuditEvent resources use standard codes (v3-ActReason, GA4GH DUO, DICOM); patients appear by their "
    "pseudonym only. Every error is an OperationOutcome whose issue.details names the platform's error code."
)
_SECURITY = (
    "Every interaction but metadata needs a user: `Authorization: Token <key>` (a personal token from "
    "/accounts/tokens/ or /api/auth/token/) or the portal's session cookie. Staff (clinicians, auditors, "
    "custodians, model stewards) must have a second factor enrolled. Who sees what is the platform's rule "
    "everywhere: a patient their own consents and the access events about their records, a clinician the "
    "consents granted to them, an auditor every consent and every access event; Patient/$everything only for the "
    "patient themselves."
)
_EVERYTHING = (
    "The patient's own Patient (by pseudonym), the Observations of their records (decrypted), their consents and "
    "the access events about their records; only for the patient themselves (others: 403 by role, 404 otherwise)."
)
_DOWNLOAD = (
    "What $everything holds, as one searchset Bundle in one file (an attachment, unpaged, at most "
    "PATIENT_DOWNLOAD_MAX_ENTRIES entries: past it 422 download_too_large), for the patient themselves; each "
    "download is logged on the ledger before it is sent (no ledger: 503 ledger_unavailable, nothing sent)."
)


def capability_statement(*, base_url: str) -> dict[str, Any]:
    return {
        "resourceType": "CapabilityStatement",
        "id": "health-platform",
        "status": "active",
        "date": STATEMENT_DATE,
        "publisher": "health_platform",
        "kind": "instance",
        "software": {"name": "health_platform"},
        "implementation": {"description": "health_platform FHIR R4 read API", "url": base_url},
        "fhirVersion": FHIR_VERSION,
        "format": ["json"],
        "rest": [
            {
                "mode": "server",
                "documentation": _DOCUMENTATION,
                "security": {
                    "cors": False,
                    "service": [{"text": "Token"}, {"text": "Session"}],
                    "description": _SECURITY,
                },
                "resource": [
                    _resource("Consent", ("read", "search-type"), CONSENT_SEARCH),
                    _resource("AuditEvent", ("search-type",), AUDIT_EVENT_SEARCH),
                    {
                        "type": "Patient",
                        "operation": [
                            {"name": "everything", "definition": EVERYTHING_DEFINITION, "documentation": _EVERYTHING},
                            {"name": "download", "definition": DOWNLOAD_DEFINITION, "documentation": _DOWNLOAD},
                        ],
                    },
                ],
                "searchParam": [_parameter(parameter) for parameter in (*PAGING, FORMAT)],
            }
        ],
    }


def _resource(type_: str, interactions: tuple[str, ...], parameters: tuple[SearchParameter, ...]) -> dict[str, Any]:
    return {
        "type": type_,
        "interaction": [{"code": code} for code in interactions],
        "searchParam": [_parameter(parameter) for parameter in parameters],
    }


def _parameter(parameter: SearchParameter) -> dict[str, str]:
    return {"name": parameter.name, "type": parameter.type, "documentation": parameter.documentation}
