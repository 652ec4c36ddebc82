"""The FHIR R4 read API under /fhir/ (issue 15): metadata, Consent read and search, AuditEvent search and
Patient/$everything, in application/fhir+json, every error an OperationOutcome.

A room of its own over the apps (not `fhir/`: that name is fhir.resources' own package): it holds no data and no
rule of its own about who sees what. It reads through the apps' selectors (consent, audit, records), which decide
it as they do for the API and the portal, and writes what they return as FHIR resources.
"""
