"""Errors of the records app, each with a stable code.

Details name entry indexes and field paths, never values: what a sender put in a bundle is health
data, and error bodies end up in responses and logs.
"""

from health_platform.errors import ApplicationError, PayloadTooLarge, ValidationFailed
from health_platform.keyring import CiphertextInvalid

__all__ = ["BundleRejected", "BundleTooLarge", "CiphertextInvalid", "IngestInterrupted", "UnsupportedMediaType"]


class BundleRejected(ValidationFailed):
    """The bundle cannot be ingested; `code` says why (malformed_json, not_a_bundle, ...)."""

    code = "bundle_rejected"
    message = "The bundle cannot be ingested."


class BundleTooLarge(PayloadTooLarge):
    """The bundle is over a configured size limit (bytes or entries): 413."""


class UnsupportedMediaType(ApplicationError):
    code = "unsupported_media_type"
    status = 415
    message = "Send the bundle as application/fhir+json or application/json."


class IngestInterrupted(ApplicationError):
    """A bulk ingest stopped reading its files (a file that no longer reads, a reader process that died): what was
    stored is kept, and the same command run again resumes at the first slice not stored. `detail.error` names the
    cause's type, never a value."""

    code = "ingest_interrupted"
    status = 503
    message = "Reading the files stopped. The slices stored are kept: run the same command again to resume."
