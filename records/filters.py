import django_filters

from chaincode.vocabulary import CATEGORIES
from records.models import AnchorState, Record


class RecordFilter(django_filters.FilterSet):
    category = django_filters.ChoiceFilter(choices=sorted(CATEGORIES.items()))
    anchor_state = django_filters.ChoiceFilter(
        choices=AnchorState.choices, field_name="latest_anchor_state", label="Anchor state of the latest version"
    )

    class Meta:
        model = Record
        fields = ["category", "anchor_state"]
