"""The access-log search terms, defined once: the API's query (and an export's body) and the portal form.

A search is validated here and becomes an `audit.selectors.AccessEventFilters`; the search itself, and
who may see which events, stay in audit.selectors. Every error names the field and never echoes the
value that was sent (a pseudonym or a request id is not for logs or error pages).
"""

from dataclasses import dataclass
from datetime import UTC
from typing import Any

import django_filters
from django import forms
from django.core.validators import RegexValidator

from audit.models import AccessEvent
from audit.selectors import AccessEventFilters
from chaincode.vocabulary import DECISIONS, EVENT_KINDS, REFUSAL_REASONS

PSEUDONYM_VALIDATOR = RegexValidator(
    r"\A[0-9a-f]{64}\Z", "Enter a pseudonymous patient id: 64 lowercase hexadecimal characters."
)
ACTOR_VALIDATOR = RegexValidator(
    r"\A(clinician|org|auditor|custodian|patient|system):[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z",
    "Enter a grantee id such as clinician:… or org:… (auditor:… for exports).",
)
IDENTIFIER_VALIDATOR = RegexValidator(
    r"\A[A-Za-z0-9][A-Za-z0-9._:-]{0,127}\Z", "Enter a request id: letters, digits and . _ : - only."
)
SHA256_VALIDATOR = RegexValidator(r"\A[0-9a-f]{64}\Z", "Enter a SHA-256: 64 lowercase hexadecimal characters.")

DECISION_CHOICES = list(DECISIONS.items())
REASON_CHOICES = list(REFUSAL_REASONS.items())
KIND_CHOICES = list(EVENT_KINDS.items())
ORDERING_CHOICES = [("-recorded_at", "Newest first"), ("recorded_at", "Oldest first")]
NEWEST_FIRST = "-recorded_at"

CHOICE_ERROR = {"invalid_choice": "Choose one of the listed values."}
TIME_ERROR = {"invalid": "Enter a time in ISO 8601, such as 2025-01-31T09:30:00Z."}
SEARCH_FIELDS = ("patient", "grantee", "request", "model", "decision", "reason", "kind", "since", "until")


@dataclass(frozen=True)
class SearchTerms:
    filters: AccessEventFilters
    newest_first: bool = True


def search_terms(cleaned: dict[str, Any]) -> SearchTerms:
    """The validated fields of a search form as the selectors take them."""
    filters = AccessEventFilters(
        patient_pseudonym=cleaned.get("patient") or "",
        grantee=cleaned.get("grantee") or "",
        request_id=cleaned.get("request") or "",
        model_hash=cleaned.get("model") or "",
        decision=cleaned.get("decision") or "",
        reason=cleaned.get("reason") or "",
        kind=cleaned.get("kind") or "",
        since=cleaned.get("since"),
        until=cleaned.get("until"),
    )
    return SearchTerms(filters=filters, newest_first=(cleaned.get("ordering") or NEWEST_FIRST) == NEWEST_FIRST)


def check_time_range(form: forms.Form) -> None:
    """Both ends in UTC (an offset the database cannot hold, up to ±23:59 in ISO 8601, is read as the instant it
    names), the end after the start."""
    for name in ("since", "until"):
        moment = form.cleaned_data.get(name)
        if moment is None or moment.tzinfo is None:
            continue
        try:
            form.cleaned_data[name] = moment.astimezone(UTC)
        except OverflowError:
            form.add_error(name, "The time is out of range.")
    since, until = form.cleaned_data.get("since"), form.cleaned_data.get("until")
    if since is not None and until is not None and until <= since:
        form.add_error("until", "The end of the time range must be after its start.")


class AccessEventSearchForm(forms.Form):
    """The form behind AccessEventFilter: the same checks for the API's query and an export's body."""

    def clean(self) -> dict[str, Any] | None:
        cleaned = super().clean()
        check_time_range(self)
        return cleaned


class AccessEventFilter(django_filters.FilterSet):
    """The API's search parameters (validated; see `search_terms`). Times are ISO 8601; `until` is exclusive."""

    patient = django_filters.CharFilter(
        field_name="patient_pseudonym", max_length=64, validators=[PSEUDONYM_VALIDATOR], help_text="patient pseudonym"
    )
    grantee = django_filters.CharFilter(
        max_length=80, validators=[ACTOR_VALIDATOR], help_text="who asked: clinician:…, org:… or auditor:…"
    )
    request = django_filters.CharFilter(
        field_name="request_id", max_length=128, validators=[IDENTIFIER_VALIDATOR], help_text="analysis or export id"
    )
    model = django_filters.CharFilter(
        field_name="model_hash", max_length=64, validators=[SHA256_VALIDATOR], help_text="the model's SHA-256"
    )
    decision = django_filters.ChoiceFilter(choices=DECISION_CHOICES, error_messages=CHOICE_ERROR)
    reason = django_filters.ChoiceFilter(
        choices=REASON_CHOICES, error_messages=CHOICE_ERROR, help_text="refusal reason"
    )
    kind = django_filters.ChoiceFilter(choices=KIND_CHOICES, error_messages=CHOICE_ERROR)
    since = django_filters.IsoDateTimeFilter(
        field_name="recorded_at", lookup_expr="gte", error_messages=TIME_ERROR, help_text="from (inclusive)"
    )
    until = django_filters.IsoDateTimeFilter(
        field_name="recorded_at", lookup_expr="lt", error_messages=TIME_ERROR, help_text="to (exclusive)"
    )
    ordering = django_filters.ChoiceFilter(
        choices=ORDERING_CHOICES,
        method="filter_nothing",
        error_messages=CHOICE_ERROR,
        help_text="by time: -recorded_at (newest first, the default) or recorded_at",
    )

    class Meta:
        model = AccessEvent
        fields: list[str] = []
        form = AccessEventSearchForm

    def filter_nothing(self, queryset, name, value):
        return queryset  # ordering is applied by the selector, with its tie-breakers (batch, position)

    def terms(self) -> SearchTerms:
        """The validated search; call after is_valid()."""
        return search_terms(self.form.cleaned_data)
