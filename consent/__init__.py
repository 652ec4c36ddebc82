"""Consent: the patient portal and API; a read model mirrored from the chain (issue: Consent)."""
