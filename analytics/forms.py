"""The portal's analysis request form: it parses what the clinician typed; the analytics service decides.

The form checks shape only (a model was chosen, a listed cohort lists something). Whether the model is
registered, the ids are pseudonymous ids and the cohort is within the limit is decided once, in
analytics.services.analysis_request_create; its ValidationFailed errors are put back on the field they
concern by `add_service_error`. The portal offers portal-held keys only: requester-held keys are made and
kept by the command-line client (python -m analytics.client), never by a web page.
"""

import re
from typing import Any

from django import forms

from analytics.models import CohortKind
from analytics.selectors import ModelCard
from health_platform.errors import ApplicationError
from health_platform.portal import ListedChoiceField

SERVICE_ERROR_MESSAGES: dict[str, str] = {
    "unknown_model": "Choose a model from the list.",
    "model_hash_mismatch": "This model's weights no longer match the hash anchored on the ledger: it cannot be used.",
    "invalid_cohort": "List at least one pseudonymous patient id.",
    "cohort_too_large": "Too many patients for one request.",
    "invalid_batch_size": "The batch size is not allowed.",
    "model_retired": "This model is retired from new analyses: too many of the consents it was trained under have "
    "been withdrawn since. It can be used again once it is retrained.",
}

SERVICE_ERROR_FIELDS: dict[str, str] = {
    "unknown_model": "model",
    "model_hash_mismatch": "model",
    "model_retired": "model",
    "invalid_cohort": "pseudonyms",
    "cohort_too_large": "pseudonyms",
}

# What separates the pseudonyms pasted into the cohort box.
_SEPARATORS = re.compile(r"[\s,;]+")


class AnalysisRequestForm(forms.Form):
    model = ListedChoiceField(label="Diagnostic model", help_id="model-help", what="a model")
    cohort_kind = forms.ChoiceField(
        label="Which patients",
        choices=[
            (CohortKind.CONSENTED, "Everyone who has consented to me for this model’s purpose"),
            (CohortKind.EXPLICIT, "Only the patients I list"),
        ],
        initial=CohortKind.CONSENTED,
        widget=forms.RadioSelect,
        error_messages={"required": "Choose which patients.", "invalid_choice": "Choose which patients."},
    )
    pseudonyms = forms.CharField(
        label="Pseudonymous patient ids",
        required=False,
        strip=True,
        widget=forms.Textarea(attrs={"rows": 5, "spellcheck": "false", "autocomplete": "off"}),
        help_text="Only for “Only the patients I list”: one id per line (64 characters, 0–9 and a–f). "
        "Rather than copying ids, tick the patients on “Consents granted to me” and press “Request an analysis "
        "for the selected patients”: their full ids are filled in here.",
    )

    def __init__(self, *args: Any, cards: list[ModelCard], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        model_field: ListedChoiceField = self.fields["model"]  # type: ignore[assignment]
        model_field.offer(
            (card.name, f"{card.name} (version {card.version}{', retired' if card.retired else ''})")
            for card in cards
            if card.available
        )

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        listed = [token.lower() for token in _SEPARATORS.split(cleaned.get("pseudonyms") or "") if token]
        cleaned["pseudonym_list"] = listed
        kind = cleaned.get("cohort_kind")
        if kind == CohortKind.EXPLICIT and not listed:
            self.add_error("pseudonyms", "List at least one pseudonymous patient id, or choose everyone who consented.")
        if kind == CohortKind.CONSENTED and listed:
            self.add_error(
                "pseudonyms",
                "You listed ids but chose everyone who consented: "
                "choose “Only the patients I list”, or clear the list.",
            )
        return cleaned

    def add_service_error(self, error: ApplicationError) -> None:
        """Show the analytics service's refusal by the field it concerns (its detail carries no values)."""
        detail = error.detail if isinstance(error.detail, dict) else {}
        message = SERVICE_ERROR_MESSAGES.get(error.code, error.message)
        if error.code == "invalid_cohort" and detail.get("indexes"):
            indexes = detail["indexes"]
            entries = ", ".join(str(index + 1) for index in indexes)
            message = (
                f"Entry {entries} of your list is not a pseudonymous id"
                if len(indexes) == 1
                else f"Entries {entries} of your list are not pseudonymous ids"
            ) + " (64 characters, 0–9 and a–f)."
        elif error.code == "cohort_too_large":
            message = error.message
        self.add_error(SERVICE_ERROR_FIELDS.get(error.code), message)
