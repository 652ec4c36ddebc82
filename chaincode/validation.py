"""Input validation done inside the contracts: every argument is checked for format, length and
presence before anything is read or written, and refused with a message naming the field (never
echoing a value that could be health data)."""

import re
from datetime import UTC, datetime
from typing import Any

import orjson

from chaincode.errors import InvalidArgument
from chaincode.vocabulary import CODE_MAX_LENGTH, MODEL_PURPOSE_PREFIX, PURPOSES, TRAINING_PURPOSE_PREFIX, is_purpose

MAX_JSON_ARGUMENT_BYTES = 8 * 1024 * 1024
MAX_BATCH_ITEMS = 10_000
MAX_CODES = 32

_IDENTIFIER = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
_PSEUDONYM = re.compile(r"[0-9a-f]{64}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_GRANTEE = re.compile(r"(clinician|org):[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_CODE = re.compile(rf"[a-z0-9][a-z0-9:._-]{{0,{CODE_MAX_LENGTH - 1}}}")
_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|\+00:00)")


def _string(value: Any, field: str) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidArgument(f"{field} is required and must be a non-empty string")
    return value


def matching(pattern: re.Pattern[str], value: Any, field: str, form: str) -> str:
    """`value` if it is a string `pattern` matches whole; refused naming `field` and the `form` expected."""
    if not pattern.fullmatch(_string(value, field)):
        raise InvalidArgument(f"{field} must be {form}")
    return value


def identifier(value: Any, field: str) -> str:
    """Record, consent, event and request ids: 1-128 characters of [A-Za-z0-9._:-]."""
    return matching(_IDENTIFIER, value, field, "1-128 characters of letters, digits and . _ : -")


def pseudonym(value: Any, field: str = "patient_pseudonym") -> str:
    return matching(_PSEUDONYM, value, field, "64 lowercase hex characters (a keyed HMAC-SHA256)")


def sha256(value: Any, field: str = "sha256") -> str:
    return matching(_SHA256, value, field, "64 lowercase hex characters")


def grantee(value: Any, field: str = "grantee") -> str:
    return matching(_GRANTEE, value, field, "'clinician:<id>' or 'org:<id>'")


def code(value: Any, field: str, vocabulary: dict[str, str] | tuple[str, ...]) -> str:
    if not _CODE.fullmatch(_string(value, field)) or value not in vocabulary:
        raise InvalidArgument(f"{field} must be one of: {', '.join(sorted(vocabulary))}")
    return value


def code_list(value: Any, field: str, vocabulary: dict[str, str], check: Any = None) -> list[str]:
    """A non-empty list of distinct codes, each checked by `check(item, field)` (default: in `vocabulary`)."""
    check = check or (lambda item, name: code(item, name, vocabulary))
    if not isinstance(value, list) or not value:
        raise InvalidArgument(f"{field} must be a non-empty list")
    if len(value) > MAX_CODES:
        raise InvalidArgument(f"{field} has more than {MAX_CODES} entries")
    codes = [check(item, f"{field}[{index}]") for index, item in enumerate(value)]
    if len(set(codes)) != len(codes):
        raise InvalidArgument(f"{field} must not repeat a code")
    return sorted(codes)


def purpose(value: Any, field: str, extra: dict[str, str] | None = None) -> str:
    """A consentable purpose (vocabulary.PURPOSES, "diagnostic-model:<family>" or "training:<family>"), or one of
    `extra`."""
    if not _CODE.fullmatch(_string(value, field)) or not (is_purpose(value) or value in (extra or {})):
        allowed = ", ".join(sorted({**PURPOSES, **(extra or {})}))
        families = f"{MODEL_PURPOSE_PREFIX}<model family> or {TRAINING_PURPOSE_PREFIX}<model family>"
        raise InvalidArgument(f"{field} must be one of: {allowed}, {families}")
    return value


def positive_int(value: Any, field: str, maximum: int = 2**31 - 1) -> int:
    """An integer given as int or decimal string (Fabric passes every argument as a string)."""
    if isinstance(value, bool):
        raise InvalidArgument(f"{field} must be a positive integer")
    if isinstance(value, str) and re.fullmatch(r"[0-9]{1,10}", value):
        value = int(value)
    if not isinstance(value, int) or not 1 <= value <= maximum:
        raise InvalidArgument(f"{field} must be an integer from 1 to {maximum}")
    return value


def timestamp(value: Any, field: str) -> datetime:
    """An RFC 3339 UTC timestamp such as 2026-01-31T12:00:00Z."""
    if not _TIMESTAMP.fullmatch(_string(value, field)):
        raise InvalidArgument(f"{field} must be an RFC 3339 UTC timestamp like 2026-01-31T12:00:00Z")
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)
    except ValueError:
        raise InvalidArgument(f"{field} is not a valid date and time") from None


def format_timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def json_argument(value: Any, field: str, kind: type) -> Any:
    """Parse a JSON argument, refusing oversize input and the wrong top-level type."""
    text = _string(value, field)
    if len(text) > MAX_JSON_ARGUMENT_BYTES:
        raise InvalidArgument(f"{field} is larger than {MAX_JSON_ARGUMENT_BYTES} bytes")
    try:
        parsed = orjson.loads(text)  # strict JSON: no NaN, no lone surrogates, nesting within 1,024
    except (ValueError, RecursionError):
        raise InvalidArgument(f"{field} is not valid JSON") from None
    if not isinstance(parsed, kind):
        raise InvalidArgument(f"{field} must be a JSON {'object' if kind is dict else 'array'}")
    return parsed


def batch(value: Any, field: str, maximum: int = MAX_BATCH_ITEMS) -> list[dict[str, Any]]:
    """A JSON array argument of 1..maximum objects."""
    return object_list(json_argument(value, field, list), field, maximum)


def object_list(items: Any, field: str, maximum: int = MAX_BATCH_ITEMS) -> list[dict[str, Any]]:
    if not isinstance(items, list):
        raise InvalidArgument(f"{field} must be a JSON array")
    if not items:
        raise InvalidArgument(f"{field} must not be empty")
    if len(items) > maximum:
        raise InvalidArgument(f"{field} holds {len(items)} items; at most {maximum} are accepted")
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise InvalidArgument(f"{field}[{index}] must be a JSON object")
    return items


def only_fields(obj: dict[str, Any], field: str, allowed: set[str], required: set[str]) -> None:
    unknown = set(obj) - allowed
    if unknown:
        raise InvalidArgument(f"{field} has unknown fields: {', '.join(sorted(unknown))}")
    missing = required - set(obj)
    if missing:
        raise InvalidArgument(f"{field} is missing required fields: {', '.join(sorted(missing))}")


_ACTOR = re.compile(r"(clinician|org|auditor|custodian|patient|system):[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def actor(value: Any, field: str) -> str:
    """Whoever acts in an access event: a grantee, or an auditor exporting the log."""
    roles = "clinician, org, auditor, custodian, patient or system"
    return matching(_ACTOR, value, field, f"'<role>:<id>' with role {roles}")


_AUDITOR = re.compile(r"auditor:[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_MODEL_STEWARD = re.compile(r"model-steward:[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_ORGANISATION = re.compile(r"org:[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_VERSION_LABEL = re.compile(r"[0-9A-Za-z][0-9A-Za-z._-]{0,31}")
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
_DECIMAL = re.compile(r"-?\d{1,6}(\.\d{1,6})?")


def auditor(value: Any, field: str) -> str:
    return matching(_AUDITOR, value, field, "'auditor:<id>'")


def model_steward(value: Any, field: str) -> str:
    """A model steward (issue 18), who asks for training runs and answers for the models they produce."""
    return matching(_MODEL_STEWARD, value, field, "'model-steward:<id>'")


def organisation(value: Any, field: str) -> str:
    return matching(_ORGANISATION, value, field, "'org:<id>'")


def version_label(value: Any, field: str) -> str:
    """A model version's label, as the model catalogue writes it: 1-32 characters of [0-9A-Za-z._-]."""
    return matching(_VERSION_LABEL, value, field, "1-32 characters of letters, digits and . _ -")


def day(value: Any, field: str) -> str:
    """A calendar date, YYYY-MM-DD (checked to exist)."""
    matching(_DAY, value, field, "a date, YYYY-MM-DD")
    try:
        datetime.strptime(value, "%Y-%m-%d")
    except ValueError:
        raise InvalidArgument(f"{field} must be a date, YYYY-MM-DD") from None
    return value


def decimal(value: Any, field: str) -> str:
    """A number as text (state holds no floats: their bytes could differ between endorsers)."""
    return matching(_DECIMAL, value, field, "a decimal number as text, at most 6 decimals")
