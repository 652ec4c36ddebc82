"""The steward's "Request a training run" form: it parses what was typed; training.services decides.

The form checks shape (a family chosen from the list, whole-number rounds, a decimal ridge); the service checks the
meaning and the ranges (training.services.training_terms_check) and its ValidationFailed errors are put back on the
field they concern by `add_service_error`, as the analysis request form does.
"""

from typing import Any

from django import forms

from health_platform.errors import ValidationFailed
from health_platform.portal import ListedChoiceField
from training.privacy import MAX_DELTA, MAX_EPSILON
from training.services import MAX_RIDGE, MAX_ROUNDS

# Which field a service refusal concerns (its detail names it too; these are the codes without one).
SERVICE_ERROR_FIELDS: dict[str, str] = {
    "unknown_model": "family",
    "no_records_offered": "family",
    "invalid_rounds": "rounds",
    "invalid_ridge": "ridge",
}

# What each model kind learns, in plain words, for the family select's help.
KIND_EXPLANATIONS: dict[str, str] = {
    "logistic": "Logistic regression: learns the probability of a yes/no outcome from the measurements. It trains "
    "in several rounds (Newton's method); each round every organisation sends an encrypted summary of its records.",
    "linear": "Linear regression: learns a value (a score or a measurement) from the measurements. It trains in one "
    "round: each organisation sends encrypted sums of its records, from which the exact least-squares fit follows.",
}


class TrainingRunForm(forms.Form):
    family = ListedChoiceField(label="Model family", help_id="family-help", what="a model family")
    rounds = forms.IntegerField(
        label="Rounds",
        required=False,
        min_value=1,
        max_value=MAX_ROUNDS,
        widget=forms.NumberInput(attrs={"inputmode": "numeric"}),
        help_text=f"Leave empty for the family's default (shown beside each family). 1 to {MAX_ROUNDS}; a linear "
        "model always trains in 1.",
        error_messages={
            "invalid": "Enter a whole number of rounds.",
            "min_value": f"Rounds must be 1 to {MAX_ROUNDS}.",
            "max_value": f"Rounds must be 1 to {MAX_ROUNDS}.",
        },
    )
    ridge = forms.FloatField(
        label="Ridge penalty",
        required=False,
        min_value=0,
        max_value=MAX_RIDGE,
        widget=forms.NumberInput(attrs={"step": "any", "inputmode": "decimal"}),
        help_text="Leave empty for the family's default. A larger penalty keeps the weights small (the measurements "
        f"are scaled to their documented range first). 0 to {MAX_RIDGE:g}.",
        error_messages={
            "invalid": "Enter a number, such as 1 or 0.5.",
            "min_value": "The ridge penalty cannot be negative.",
            "max_value": f"The ridge penalty can be at most {MAX_RIDGE:g}.",
        },
    )

    dp_epsilon = forms.FloatField(
        label="Privacy budget ε",
        required=False,
        widget=forms.NumberInput(attrs={"step": "any", "inputmode": "decimal"}),
        help_text="Differential privacy: noise is added to each round's combined update so that the model reveals "
        "little about any one patient. A smaller ε protects more and costs accuracy; give δ too. Leave both empty for "
        f"none. Above 0, at most {MAX_EPSILON:g}.",
        error_messages={"invalid": "Enter a number, such as 4 or 0.5."},
    )
    dp_delta = forms.FloatField(
        label="Privacy δ",
        required=False,
        widget=forms.NumberInput(attrs={"step": "any", "inputmode": "decimal"}),
        help_text=f"The small chance the ε guarantee does not hold, such as 0.00001. Above 0, at most {MAX_DELTA:g}.",
        error_messages={"invalid": "Enter a number, such as 0.00001."},
    )
    dp_target_bound = forms.FloatField(
        label="Target bound (linear models under a privacy budget)",
        required=False,
        widget=forms.NumberInput(attrs={"step": "any", "inputmode": "decimal"}),
        help_text="The largest value a linear model's target may take; larger targets are clipped to it.",
        error_messages={"invalid": "Enter a number, such as 400."},
    )

    def __init__(self, *args: Any, families: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        family_field: ListedChoiceField = self.fields["family"]  # type: ignore[assignment]
        family_field.offer((family, family) for family in families)

    def add_service_error(self, error: ValidationFailed) -> None:
        """Show the training service's refusal by the field it concerns (its message names limits, never values)."""
        detail = error.detail if isinstance(error.detail, dict) else {}
        field = detail.get("field") or SERVICE_ERROR_FIELDS.get(error.code)
        self.add_error(field if field in self.fields else None, error.message)
