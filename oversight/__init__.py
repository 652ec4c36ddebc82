"""Oversight of access to health data: misuse detection over the access log."""
