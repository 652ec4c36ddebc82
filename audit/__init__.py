"""Audit: access-log search, export and verification (issue: Audit)."""
