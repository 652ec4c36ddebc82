"""The API's JSON parsers: DRF's, with the body's size, nesting depth and Unicode checked first.

Kept apart from health_platform.api: DRF resolves DEFAULT_PARSER_CLASSES when rest_framework.views is
imported, so this module must not import it.
"""

import io
import re
from typing import Any

from django.conf import settings
from rest_framework import exceptions, parsers

from health_platform.errors import PayloadTooLarge, ValidationFailed


class LimitedJSONParser(parsers.JSONParser):
    """DRF's JSON parser, with the body's size and nesting depth checked before anything is parsed.

    DRF reads JSON from the request stream, so Django's DATA_UPLOAD_MAX_MEMORY_SIZE does not bound it,
    and a deeply nested body makes json.loads raise RecursionError (a 500). Over the size limit: 413
    payload_too_large; deeper than INGEST_MAX_JSON_DEPTH: 400 json_too_deep (the ingest's codes). A string
    holding NUL ("\\u0000": PostgreSQL text cannot store it) or a lone surrogate ("\\ud800": not Unicode)
    would fail later, in a query or an encoder, as a 500: 400 malformed_request here, as Django's and DRF's
    own text fields refuse NUL. A view that takes larger bodies names its limit in a `json_max_bytes`
    attribute. (Ingest reads its raw body itself, with the same limits: records.bundles.)
    """

    def parse(self, stream: Any, media_type: str | None = None, parser_context: dict[str, Any] | None = None) -> Any:
        view = (parser_context or {}).get("view")
        limit = int(getattr(view, "json_max_bytes", None) or settings.DATA_UPLOAD_MAX_MEMORY_SIZE)
        body = stream.read(limit + 1)
        if len(body) > limit:
            raise PayloadTooLarge(detail={"max_bytes": limit})
        json_depth_check(body.decode("utf-8", errors="replace"), settings.INGEST_MAX_JSON_DEPTH)
        data = super().parse(io.BytesIO(body), media_type, parser_context)
        if _holds_unstorable_text(data):
            raise exceptions.ParseError(
                "The JSON holds a string that cannot be stored as text (a NUL character or a lone surrogate)."
            )
        return data


class LimitedFhirJSONParser(LimitedJSONParser):
    media_type = "application/fhir+json"


_STRING_OR_BRACKET = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.DOTALL)


def json_depth_check(text: str, max_depth: int, *, error: type[ValidationFailed] = ValidationFailed) -> None:
    """Raise 400 json_too_deep (as `error`) if `text` nests arrays and objects deeper than `max_depth`.

    Measured on the text (brackets inside strings skipped), so a hostile body never reaches the
    recursive parser.
    """
    if text.count("[") + text.count("{") <= max_depth:  # no deeper than its brackets: most resources, at C speed
        return
    depth = 0
    for match in _STRING_OR_BRACKET.finditer(text):
        token = match.group()
        if token in ("[", "{"):
            depth += 1
            if depth > max_depth:
                raise json_too_deep(max_depth, error=error)
        elif token in ("]", "}"):
            depth -= 1


def json_too_deep(max_depth: int, *, error: type[ValidationFailed] = ValidationFailed) -> ValidationFailed:
    return error(
        "The JSON is nested deeper than the configured limit.", code="json_too_deep", detail={"max_depth": max_depth}
    )


def _holds_unstorable_text(value: Any) -> bool:
    """Whether any string or key in `value` holds NUL or a lone surrogate (recursion bounded by the depth check)."""
    if isinstance(value, str):
        if "\x00" in value:
            return True
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return True
        return False
    if isinstance(value, dict):
        return any(_holds_unstorable_text(key) or _holds_unstorable_text(item) for key, item in value.items())
    if isinstance(value, list):
        return any(_holds_unstorable_text(item) for item in value)
    return False
