"""The auditor portal's forms: the access-log search, and an export of what a search selects.

They check what audit.filters checks for the API (the same validators, choices and time-range rule)
and hand the result over as the same `SearchTerms`; the search itself is audit.selectors'. The fields
carry the API's names (patient, grantee, request, model, …), so a search URL reads the same in both.
"""

from typing import Any

from django import forms

from audit.filters import (
    ACTOR_VALIDATOR,
    CHOICE_ERROR,
    DECISION_CHOICES,
    IDENTIFIER_VALIDATOR,
    KIND_CHOICES,
    ORDERING_CHOICES,
    PSEUDONYM_VALIDATOR,
    REASON_CHOICES,
    SEARCH_FIELDS,
    SearchTerms,
    check_time_range,
    search_terms,
)
from audit.models import ExportFormat

TIME_INPUT_FORMAT = "%Y-%m-%dT%H:%M"
TIME_ERROR = {"invalid": "Enter a date and time such as 2025-01-31 09:30."}


def _time_field(label: str, help_text: str) -> forms.DateTimeField:
    return forms.DateTimeField(
        label=label,
        required=False,
        help_text=help_text,
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format=TIME_INPUT_FORMAT),
        error_messages=TIME_ERROR,
    )


class AccessLogSearchForm(forms.Form):
    """Every field is optional: an empty search lists every event, newest first."""

    patient = forms.CharField(
        label="Patient (pseudonymous id)", required=False, max_length=64, validators=[PSEUDONYM_VALIDATOR]
    )
    grantee = forms.CharField(
        label="Requester (grantee id)",
        required=False,
        max_length=80,
        validators=[ACTOR_VALIDATOR],
        help_text="clinician:…, org:…, or auditor:… for exports",
    )
    request = forms.CharField(
        label="Request (analysis or export id)", required=False, max_length=128, validators=[IDENTIFIER_VALIDATOR]
    )
    model = forms.ChoiceField(label="Model", required=False, error_messages=CHOICE_ERROR)
    decision = forms.ChoiceField(
        label="Decision", required=False, choices=[("", "Any"), *DECISION_CHOICES], error_messages=CHOICE_ERROR
    )
    reason = forms.ChoiceField(
        label="Refusal reason", required=False, choices=[("", "Any"), *REASON_CHOICES], error_messages=CHOICE_ERROR
    )
    kind = forms.ChoiceField(
        label="Kind", required=False, choices=[("", "Any"), *KIND_CHOICES], error_messages=CHOICE_ERROR
    )
    since = _time_field("From (UTC)", "Events at or after this time.")
    until = _time_field("Until (UTC)", "Events before this time.")
    ordering = forms.ChoiceField(
        label="Order", required=False, choices=ORDERING_CHOICES, widget=forms.HiddenInput, error_messages=CHOICE_ERROR
    )

    def __init__(self, *args: Any, models: list[tuple[str, str]], **kwargs: Any) -> None:
        """`models`: (sha256, "name@version") of the registered diagnostic models."""
        super().__init__(*args, **kwargs)
        model_field = self.fields["model"]
        assert isinstance(model_field, forms.ChoiceField)
        model_field.choices = [("", "Any model"), *models]

    def clean(self) -> dict[str, Any] | None:
        cleaned = super().clean()
        check_time_range(self)
        return cleaned

    def terms(self) -> SearchTerms:
        """The validated search; call after is_valid()."""
        return search_terms(self.cleaned_data)

    def filter_values(self) -> list[tuple[str, str]]:
        """(name, raw value) of the filters that are set: carried into the export form as hidden fields."""
        return [(name, str(self.data.get(name))) for name in SEARCH_FIELDS if self.data.get(name)]


class AuditExportForm(AccessLogSearchForm):
    """An export: a format, and the filters of the search it was started from."""

    format = forms.ChoiceField(
        label="Format",
        choices=ExportFormat.choices,
        initial=ExportFormat.CSV,
        widget=forms.RadioSelect,
        error_messages={"required": "Choose a format.", **CHOICE_ERROR},
    )


class CopyVerifyForm(forms.Form):
    """The portal's face of POST /api/audit/verify/: a copy of an export, its format and (optional) manifest."""

    file = forms.FileField(
        label="Copy of an export",
        error_messages={"required": "Choose the copy to verify.", "empty": "The file is empty."},
    )
    format = forms.ChoiceField(
        label="Its format",
        choices=[("csv", "CSV"), ("json", "JSON"), ("fhir", "FHIR AuditEvent NDJSON")],
        initial="csv",
        widget=forms.RadioSelect,
        error_messages={"required": "Choose the copy's format.", **CHOICE_ERROR},
    )
    manifest = forms.FileField(
        label="Its manifest (optional)",
        required=False,
        help_text="The .manifest.json saved beside the export. Without it, completeness cannot be checked.",
    )
