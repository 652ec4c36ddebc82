"""The custodian's upload form: a FHIR R4 Bundle as a JSON file. The form checks that a file came and its size;
what it holds is decided by records.services (the same checks as the API's ingest)."""

from django import forms
from django.conf import settings
from django.core.files.uploadedfile import UploadedFile


class BundleUploadForm(forms.Form):
    bundle = forms.FileField(
        label="FHIR R4 Bundle (JSON file)",
        help_text="A Bundle of Patient and Observation resources, as the API's POST /api/records/ takes it.",
        widget=forms.ClearableFileInput(attrs={"accept": ".json,application/json,application/fhir+json"}),
        error_messages={"required": "Choose a bundle file to upload.", "empty": "The file is empty."},
    )

    def clean_bundle(self) -> UploadedFile:
        upload = self.cleaned_data["bundle"]
        if upload.size > settings.INGEST_MAX_BYTES:
            raise forms.ValidationError(
                f"The file is larger than the limit of {settings.INGEST_MAX_BYTES:,} bytes.", code="payload_too_large"
            )
        return upload
