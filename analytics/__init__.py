"""Encrypted analytics: CKKS diagnostic models on Celery (issue: Encrypted analytics)."""
