"""API shapes for training runs.

The create serializer checks shape only, strictly: JSON numbers of the right kind (a boolean, a string or a fraction
is not a number of rounds; a boolean or a string is not a ridge), and no field it does not know. What a value means
(a declared family, rounds within 1..MAX_ROUNDS, a finite ridge within its range) is decided once, by
training.services, which answers with stable codes. No error here echoes a submitted value or a submitted key.
"""

from typing import Any

from django.urls import reverse
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from health_platform.errors import ValidationFailed
from training.models import TrainingRun
from training.privacy import MAX_DELTA, MAX_EPSILON
from training.selectors import RunOverview
from training.services import MAX_RIDGE, MAX_ROUNDS, MAX_VALIDATION_FRACTION, finite_number


class JsonIntegerField(serializers.IntegerField):
    """A JSON integer, exactly: not a boolean, a string of digits or a number with a fraction (1.0 included)."""

    default_error_messages = {"invalid": "A whole number is required."}

    def to_internal_value(self, data: Any) -> int:
        if not isinstance(data, int) or isinstance(data, bool):
            self.fail("invalid")
        return int(data)


class JsonNumberField(serializers.FloatField):
    """A finite JSON number (integer or not): not a boolean or a string. JSON has no NaN or infinity (the parser
    refuses them), but 1e999 reads as infinity and 1 followed by 400 zeros as an integer no float holds: refused."""

    default_error_messages = {"invalid": "A finite number is required."}

    def to_internal_value(self, data: Any) -> float:
        if not finite_number(data):
            self.fail("invalid")
        return float(data)


class TrainingRunCreateSerializer(serializers.Serializer):
    family = serializers.CharField(max_length=64, help_text="a declared model family, as in training:<family>")
    rounds = JsonIntegerField(
        required=False, help_text=f"federated rounds, 1 to {MAX_ROUNDS} (a linear model: 1); the family's default"
    )
    ridge = JsonNumberField(
        required=False, help_text=f"L2 penalty on the scaled features, 0 to {MAX_RIDGE:g}; the family's default"
    )
    validation_fraction = JsonNumberField(
        required=False, help_text=f"share of records held out to validate, 0 to {MAX_VALIDATION_FRACTION}; 0.2"
    )
    dp_epsilon = JsonNumberField(
        required=False,
        help_text=f"differential privacy: the run's epsilon, above 0 and at most {MAX_EPSILON:g} (with dp_delta)",
    )
    dp_delta = JsonNumberField(
        required=False, help_text=f"differential privacy: the run's delta, above 0 and at most {MAX_DELTA:g}"
    )
    dp_target_bound = JsonNumberField(
        required=False,
        help_text="differential privacy, a linear family only: the bound B its records' targets are clipped to",
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        unknown = set(self.initial_data) - set(self.fields) if isinstance(self.initial_data, dict) else set()
        if unknown:
            raise ValidationFailed(
                f"{len(unknown)} field{'' if len(unknown) == 1 else 's'} not known to this endpoint.",
                code="unknown_fields",
                detail={"allowed": sorted(self.fields)},
            )
        return attrs


class TrainingRoundSerializer(serializers.Serializer):
    index = serializers.IntegerField(help_text="1-based")
    aggregate_sha256 = serializers.CharField(help_text="SHA-256 of the round's opened sum, as the lineage cites it")
    contributions = serializers.DictField(
        child=serializers.IntegerField(), help_text="organisation -> training records its encrypted update covered"
    )


class OrganisationCountsSerializer(serializers.Serializer):
    organisation = serializers.CharField(help_text="org:<slug>")
    offered = serializers.IntegerField(help_text="record versions its custodian offered the run")
    admitted = serializers.IntegerField(help_text="records the gate admitted and the run used (last round so far)")
    refused = serializers.DictField(child=serializers.IntegerField(), help_text="refused by the gate, by reason")
    skipped = serializers.DictField(
        child=serializers.IntegerField(), help_text="admitted but unusable (missing_features, no_label), by reason"
    )


class TrainingRunSerializer(serializers.ModelSerializer):
    """A run as its steward sees it in a list."""

    family = serializers.CharField(source="model_family")
    rounds_requested = serializers.IntegerField()
    links = serializers.SerializerMethodField(help_text="self, portal and, once completed, model (its card)")

    class Meta:
        model = TrainingRun
        fields = [
            "id",
            "family",
            "kind",
            "status",
            "failure_code",
            "rounds_requested",
            "hyperparameters",
            "created_at",
            "finished_at",
            "links",
        ]
        read_only_fields = fields

    def get_links(self, run: TrainingRun) -> dict[str, str]:
        links = {
            "self": reverse("training-api:run-detail", kwargs={"pk": run.pk}),
            "portal": reverse("training:detail", kwargs={"run_id": run.pk}),
        }
        if run.model_name:
            links["model"] = reverse("api-model-detail", kwargs={"name": run.model_name})
        return links


class TrainingRunDetailSerializer(TrainingRunSerializer):
    rounds = serializers.SerializerMethodField()
    organisations = serializers.SerializerMethodField()
    lineage = serializers.SerializerMethodField(
        help_text="completed runs: the lineage transaction and block, the roots, counts, trainer hash, round "
        "aggregates, metrics and weights hash (as the model registry keeps them), and the model name and version"
    )

    class Meta(TrainingRunSerializer.Meta):
        fields = [*TrainingRunSerializer.Meta.fields, "rounds", "organisations", "lineage"]
        read_only_fields = fields

    def _overview(self) -> RunOverview:
        return self.context["overview"]

    @extend_schema_field(TrainingRoundSerializer(many=True))
    def get_rounds(self, run: TrainingRun) -> list[dict[str, Any]]:
        return list(TrainingRoundSerializer(self._overview().rounds, many=True).data)

    @extend_schema_field(OrganisationCountsSerializer(many=True))
    def get_organisations(self, run: TrainingRun) -> list[dict[str, Any]]:
        return list(OrganisationCountsSerializer(self._overview().organisations, many=True).data)

    @extend_schema_field({"type": "object", "nullable": True})
    def get_lineage(self, run: TrainingRun) -> dict[str, Any] | None:
        lineage = self._overview().lineage
        if lineage is None:
            return None
        return {**lineage, "model": {"name": run.model_name, "version": run.model_version}}
