"""The portal's forms for the directory, invitations and enrolment. They check shape and size only; the rules
live in directory.services, whose refusals are shown by the field they name."""

from django import forms

from health_platform.errors import ValidationFailed


class ServiceErrorsForm(forms.Form):
    def add_service_error(self, error: ValidationFailed) -> None:
        field = (error.detail or {}).get("field") if isinstance(error.detail, dict) else None
        self.add_error(field if field in self.fields else None, error.message)


class OrganisationAddForm(ServiceErrorsForm):
    slug = forms.CharField(label="Short name", max_length=63, help_text="lower-case letters, digits and -")
    name = forms.CharField(label="Name", max_length=200)


class ClinicianInviteForm(ServiceErrorsForm):
    display_name = forms.CharField(label="Name shown to patients", max_length=200)
    username = forms.CharField(label="Username", max_length=150)
    email = forms.EmailField(label="E-mail", max_length=254)
    organisation = forms.ChoiceField(label="Organisation", required=False)

    def __init__(self, *args, organisations=(), **kwargs):
        super().__init__(*args, **kwargs)
        field = self.fields["organisation"]
        assert isinstance(field, forms.ChoiceField)
        field.choices = [("", "None")] + [(o.slug, o.name) for o in organisations]


class ModelStewardInviteForm(ServiceErrorsForm):
    """On the directory page beside the clinician's form: its fields are prefixed (steward-username...) so that
    the two forms' fields keep ids of their own."""

    prefix = "steward"
    username = forms.CharField(label="Username", max_length=150)
    email = forms.EmailField(label="E-mail", max_length=254)


class InvitationIssueForm(ServiceErrorsForm):
    identifier_system = forms.CharField(label="Identifier system", max_length=200)
    identifier_value = forms.CharField(label="Identifier", max_length=200)
    email = forms.EmailField(
        label="E-mail (leave empty to hand over a code at the desk)", max_length=254, required=False
    )


class EnrolCodeForm(forms.Form):
    code = forms.CharField(label="Invitation code", max_length=64)


class EnrolForm(ServiceErrorsForm):
    username = forms.CharField(label="Username", max_length=150)
    password = forms.CharField(label="Password", max_length=4096, widget=forms.PasswordInput(render_value=False))
    password_again = forms.CharField(
        label="Password again", max_length=4096, widget=forms.PasswordInput(render_value=False)
    )
