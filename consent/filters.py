import django_filters
from django.db.models import QuerySet

from chaincode.vocabulary import CATEGORIES
from consent.models import Consent
from consent.selectors import consents_listing, consents_with_effective_status
from health_platform.errors import CHOICE_ERROR_MESSAGES
from health_platform.model_catalogue import consent_purposes


class ConsentFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(
        choices=[(s, s) for s in ("active", "expired", "pending", "revoked")],
        method="filter_status",
        label="effective status as of now",
        error_messages=CHOICE_ERROR_MESSAGES,
    )
    grantee = django_filters.CharFilter()
    purpose = django_filters.ChoiceFilter(
        choices=lambda: sorted(consent_purposes().items()),
        method="filter_purpose",
        error_messages=CHOICE_ERROR_MESSAGES,
    )
    category = django_filters.ChoiceFilter(
        choices=sorted(CATEGORIES.items()), method="filter_category", error_messages=CHOICE_ERROR_MESSAGES
    )
    patient_pseudonym = django_filters.CharFilter(field_name="patient__pseudonym")

    class Meta:
        model = Consent
        fields = ["status", "grantee", "purpose", "category", "patient_pseudonym"]

    def filter_status(self, queryset: QuerySet[Consent], name: str, value: str) -> QuerySet[Consent]:
        return consents_with_effective_status(queryset, value)

    def filter_purpose(self, queryset: QuerySet[Consent], name: str, value: str) -> QuerySet[Consent]:
        return consents_listing(queryset, field="purposes", code=value)

    def filter_category(self, queryset: QuerySet[Consent], name: str, value: str) -> QuerySet[Consent]:
        return consents_listing(queryset, field="categories", code=value)
