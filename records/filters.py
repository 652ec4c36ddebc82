import django_filters

from chaincode.vocabulary import CATEGORIES
from health_platform.errors import CHOICE_ERROR_MESSAGES
from records.models import AnchorState, Record


class RecordFilter(django_filters.FilterSet):
    category = django_filters.ChoiceFilter(choices=sorted(CATEGORIES.items()), error_messages=CHOICE_ERROR_MESSAGES)
    anchor_state = django_filters.ChoiceFilter(
        choices=AnchorState.choices,
        field_name="latest_anchor_state",
        label="Anchor state of the latest version",
        error_messages=CHOICE_ERROR_MESSAGES,
    )

    class Meta:
        model = Record
        fields = ["category", "anchor_state"]
