"""The portal's grant form: it parses what the patient typed; the consent service decides what is allowed.

The form checks only shape (a choice was made, the dates are dates). Whether the grantee exists, the
codes are known and the period is acceptable is decided once, in consent.services.consent_grant; its
ValidationFailed errors are put back on the form's fields by `add_service_error`, so the patient sees
the message next to the field it concerns. The form has no patient field: the view takes the patient
from the signed-in user only.
"""

from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from django import forms
from django.utils import timezone

from chaincode.vocabulary import CATEGORIES, is_training_purpose
from health_platform.errors import CHOICE_ERROR_MESSAGES, ValidationFailed
from health_platform.model_catalogue import consent_purposes
from health_platform.selectors import Grantee
from health_platform.wording import label_codes, plain_words

# What the patient reads for each ValidationFailed code of consent_grant.
SERVICE_ERROR_MESSAGES: dict[str, str] = {
    "unknown_grantee": "Choose a clinician or an organisation from the list.",
    "unknown_purpose": "Choose purposes from the list.",
    "unknown_category": "Choose data categories from the list.",
    "invalid_period": "The last day must be on or after the first day.",
    "period_in_past": "This period is already over: choose a last day that is today or later.",
}
# Where one code means different things for different fields.
SERVICE_ERROR_FIELD_MESSAGES: dict[tuple[str, str], str] = {
    ("period_in_past", "valid_from"): "A consent cannot start in the past: choose today or a later day.",
}
# Which form field a service error's detail["field"] belongs to.
SERVICE_ERROR_FIELDS: dict[str, str] = {
    "grantee": "grantee",
    "grantee_id": "grantee",
    "purpose": "purposes",
    "purposes": "purposes",
    "category": "categories",
    "categories": "categories",
    "valid_from": "valid_from",
    "valid_until": "valid_until",
    "period": "valid_until",
}
SERVICE_ERROR_DEFAULT_FIELDS: dict[str, str] = {
    "unknown_grantee": "grantee",
    "unknown_purpose": "purposes",
    "unknown_category": "categories",
    "invalid_period": "valid_until",
    "period_in_past": "valid_until",
}


# What consenting to train a model means, in plain words, beside the training purposes of the grant form (issue 18).
TRAINING_EXPLANATION = (
    "Training a model: your records help teach the model to recognise what it looks for. The trained model is then "
    "used for other patients. If you revoke this consent, your records are left out of every future training run, "
    "and each model already trained on them counts your revocation against itself."
)


class UncheckedChoiceField(forms.ChoiceField):
    """A select whose value the consent service validates (the one place that knows the grantees)."""

    def valid_value(self, value: Any) -> bool:
        return True


class UncheckedMultipleChoiceField(forms.MultipleChoiceField):
    """Checkboxes whose codes the consent service validates against the ledger vocabulary."""

    def valid_value(self, value: Any) -> bool:
        return True


class ConsentGrantForm(forms.Form):
    grantee = UncheckedChoiceField(
        label="Who may use your records",
        error_messages={"required": "Choose a clinician or an organisation."},
    )
    purposes = UncheckedMultipleChoiceField(
        label="For what purposes",
        choices=lambda: list(consent_purposes().items()),
        widget=forms.CheckboxSelectMultiple,
        error_messages={"required": "Choose at least one purpose."},
    )
    categories = UncheckedMultipleChoiceField(
        label="Which kinds of data",
        choices=list(CATEGORIES.items()),
        widget=forms.CheckboxSelectMultiple,
        error_messages={"required": "Choose at least one kind of data."},
    )
    valid_from = forms.DateField(
        label="First day",
        initial=lambda: timezone.now().astimezone(UTC).date(),
        widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"),
        input_formats=["%Y-%m-%d"],
        error_messages={"required": "Enter the first day.", "invalid": "Enter a date such as 2025-01-31."},
    )
    valid_until = forms.DateField(
        label="Last day",
        initial=lambda: timezone.now().astimezone(UTC).date() + timedelta(days=365),
        help_text="The consent ends at the end of this day (UTC).",
        widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"),
        input_formats=["%Y-%m-%d"],
        error_messages={"required": "Enter the last day.", "invalid": "Enter a date such as 2025-12-31."},
    )

    def __init__(self, *args: Any, grantees: list[Grantee], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        purposes_field = self.fields["purposes"]
        assert isinstance(purposes_field, forms.MultipleChoiceField)
        # Plain words on the checkbox; the code systems' names ("HL7 v3 TREAT") behind a <details> (purpose_codes).
        purposes_field.choices = [(code, plain_words(label)) for code, label in consent_purposes().items()]
        # Said only where the form offers training (a catalogue with no model offers none).
        offers_training = any(is_training_purpose(code) for code in consent_purposes())
        self.training_explanation = TRAINING_EXPLANATION if offers_training else ""
        grantee_field = self.fields["grantee"]
        assert isinstance(grantee_field, forms.ChoiceField)
        grantee_field.choices = [("", "Choose…")] + [
            (grantee.grantee_id, grantee.display_name + (" (organisation)" if grantee.kind == "organisation" else ""))
            for grantee in grantees
        ]

    def period(self) -> tuple[datetime, datetime]:
        """The validity period the service receives: [first day, day after the last day), in UTC.

        A first day of today starts now, so that a consent granted today is in force at once.
        """
        first_day: date = self.cleaned_data["valid_from"]
        last_day: date = self.cleaned_data["valid_until"]
        valid_from = datetime.combine(first_day, time.min, tzinfo=UTC)
        now = timezone.now()
        if first_day == now.astimezone(UTC).date():
            valid_from = now
        valid_until = datetime.combine(last_day + timedelta(days=1), time.min, tzinfo=UTC)
        return valid_from, valid_until

    def add_service_error(self, error: ValidationFailed) -> None:
        """Show the consent service's refusal next to the field it names (its detail carries no values)."""
        detail = error.detail if isinstance(error.detail, dict) else {}
        field = SERVICE_ERROR_FIELDS.get(str(detail.get("field", "")).split(".")[-1].split("[")[0])
        field = field or SERVICE_ERROR_DEFAULT_FIELDS.get(error.code)
        message = SERVICE_ERROR_FIELD_MESSAGES.get(
            (error.code, field or ""), SERVICE_ERROR_MESSAGES.get(error.code, error.message)
        )
        self.add_error(field, message)


HEX = "0123456789abcdef"
STATUS_CHOICES = [
    ("", "Any status"),
    ("active", "Active now"),
    ("pending", "Not yet begun"),
    ("expired", "Expired"),
    ("revoked", "Revoked"),
]


class GrantedConsentsFilterForm(forms.Form):
    """The clinician's search and filters over the consents naming them (GET; every field optional).

    Shape only: a pseudonym prefix of hexadecimal digits, codes from the lists, a date. What a consent says is
    read from the mirror by consent.selectors.consents_granted_to_filtered.
    """

    q = forms.CharField(
        label="Patient (pseudonym begins with)",
        required=False,
        max_length=64,
        strip=True,
        widget=forms.TextInput(attrs={"spellcheck": "false", "autocomplete": "off", "inputmode": "latin"}),
        error_messages={"max_length": "A pseudonym has 64 characters at most."},
    )
    category = forms.ChoiceField(label="Kind of data", required=False, error_messages=CHOICE_ERROR_MESSAGES)
    purpose = forms.ChoiceField(label="Purpose", required=False, error_messages=CHOICE_ERROR_MESSAGES)
    status = forms.ChoiceField(
        label="Status", required=False, choices=STATUS_CHOICES, error_messages=CHOICE_ERROR_MESSAGES
    )
    valid_on = forms.DateField(
        label="In force on",
        required=False,
        widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"),
        input_formats=["%Y-%m-%d"],
        error_messages={"invalid": "Enter a date such as 2025-01-31."},
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        category: forms.ChoiceField = self.fields["category"]  # type: ignore[assignment]
        category.choices = [("", "Any kind of data"), *CATEGORIES.items()]
        purpose: forms.ChoiceField = self.fields["purpose"]  # type: ignore[assignment]
        purpose.choices = [
            ("", "Any purpose"),
            *((code, plain_words(label)) for code, label in consent_purposes().items()),
        ]

    def clean_q(self) -> str:
        prefix = str(self.cleaned_data.get("q") or "").lower()
        if any(character not in HEX for character in prefix):
            raise forms.ValidationError("A pseudonym holds only the digits 0–9 and the letters a–f.")
        return prefix

    def filters(self) -> dict[str, Any]:
        """The filters chosen, as consents_granted_to_filtered takes them (empty ones left out)."""
        return {name: value for name, value in self.cleaned_data.items() if value not in ("", None)}


def purpose_codes() -> list[tuple[str, str, str]]:
    """(plain words, code systems, ledger code) of every purpose, for the form's "codes" details."""
    return [(plain_words(label), label_codes(label), code) for code, label in consent_purposes().items()]


class PasskeyResetForm(forms.Form):
    """The custodian's reset of a patient's lost passkeys: whose (a hospital identifier), why, and that the
    patient's identity was checked (a new passkey will sign for them)."""

    identifier_system = forms.CharField(label="Identifier system", max_length=200)
    identifier_value = forms.CharField(label="Identifier", max_length=200)
    reason = forms.ChoiceField(label="Why")
    identity_checked = forms.BooleanField(
        label="I have checked this patient's identity (in person, or as the hospital's policy requires)"
    )

    def __init__(self, *args: Any, reasons: dict[str, str], **kwargs: Any):
        super().__init__(*args, **kwargs)
        field = self.fields["reason"]
        assert isinstance(field, forms.ChoiceField)
        field.choices = sorted(reasons.items())
