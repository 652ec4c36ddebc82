"""API shapes for model cards and analysis requests.

The create serializer checks shape only (types, required fields, sizes that protect the server). What a
value means (a known model, well-formed pseudonyms, a cohort within the limit, a public context without
a secret key) is decided once, by analytics.services.analysis_request_create, which answers with stable
codes. No error here echoes a submitted value.
"""

import base64
import binascii
from typing import Any

from django.urls import reverse
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from analytics.models import AnalysisRequest, AnalysisStatus, CohortKind, KeyMode
from analytics.selectors import Progress
from health_platform.errors import CHOICE_ERROR_MESSAGES, PayloadTooLarge, ValidationFailed

# A public context (N=8192, public key, no Galois or relinearisation keys) is ~360 KB, ~480 KB in base64.
# Anything past this is not a context the platform uses: refused before it is decoded.
PUBLIC_CONTEXT_MAX_BASE64_CHARS = 4 * 1024 * 1024


class ModelFeatureSerializer(serializers.Serializer):
    code = serializers.CharField()
    display = serializers.CharField()
    unit = serializers.CharField()


class ModelAnchorSerializer(serializers.Serializer):
    tx_id = serializers.CharField(source="anchor_tx_id")
    block = serializers.IntegerField(source="anchor_block", allow_null=True)


class SinceTrainedSerializer(serializers.Serializer):
    records = serializers.IntegerField(help_text="records the model was trained on (its lineage's record count)")
    consents = serializers.IntegerField(help_text="consents that admitted them")
    revoked_consents = serializers.IntegerField(help_text="of those consents, how many have been revoked since")
    erased_records = serializers.IntegerField(help_text="of those records, how many have been erased since")
    withdrawn_consents = serializers.IntegerField(
        help_text="consents revoked or whose records were erased: what the retirement policy counts"
    )
    counted_at = serializers.CharField()


class ModelRetirementSerializer(serializers.Serializer):
    reason = serializers.CharField(help_text="revocations_threshold, superseded or steward_decision")
    reason_label = serializers.CharField()
    revocations = serializers.IntegerField(allow_null=True, help_text="withdrawn consents counted when retired")
    retired_at = serializers.DateTimeField()
    tx_id = serializers.CharField(help_text="the RetireModel transaction; empty while the ledger has not taken it")
    block_number = serializers.IntegerField(allow_null=True)


class ModelCardSerializer(serializers.Serializer):
    """A model card (analytics.selectors.ModelCard)."""

    name = serializers.CharField()
    version = serializers.CharField()
    available = serializers.BooleanField(
        help_text="False when the running code's weights do not hash to the anchored SHA-256: no request can use it."
    )
    unavailable_code = serializers.CharField(help_text="model_hash_mismatch or unknown_model when not available")
    kind = serializers.CharField(help_text="logistic (score: probability of the positive label) or linear (value)")
    purpose = serializers.CharField(help_text="the consent purpose a patient must have granted")
    purpose_label = serializers.CharField()
    category = serializers.CharField(help_text="the record category the model reads")
    category_label = serializers.CharField()
    description = serializers.CharField()
    positive_label = serializers.CharField()
    negative_label = serializers.CharField()
    features = ModelFeatureSerializer(many=True)
    metrics = serializers.DictField(child=serializers.FloatField(), help_text="on the held-out test split")
    sha256 = serializers.CharField(help_text="SHA-256 of the weights document; every result cites it")
    anchor = ModelAnchorSerializer(source="*", help_text="the ledger transaction that anchored the hash")
    registered_at = serializers.DateTimeField()
    since_trained = serializers.SerializerMethodField(
        help_text="a model trained on the platform: what has become of its training set since (else null)"
    )
    retired = serializers.BooleanField(
        help_text="True: retired from new analyses (a request is refused, model_retired)"
    )
    retirement = serializers.SerializerMethodField(help_text="why and when it was retired, and where (else null)")
    links = serializers.SerializerMethodField()

    @extend_schema_field(SinceTrainedSerializer(allow_null=True))
    def get_since_trained(self, card: Any) -> dict[str, Any] | None:
        return SinceTrainedSerializer(card.since_trained).data if card.since_trained else None

    @extend_schema_field(ModelRetirementSerializer(allow_null=True))
    def get_retirement(self, card: Any) -> dict[str, Any] | None:
        return ModelRetirementSerializer(card.retirement).data if card.retirement else None

    def get_links(self, card: Any) -> dict[str, str]:
        return {
            "self": reverse("api-model-detail", kwargs={"name": card.name}),
            "portal": reverse("analytics:model-card", kwargs={"name": card.name}),
        }


@extend_schema_field({"type": "array", "items": {"type": "string", "pattern": "^[0-9a-f]{64}$"}})
class PseudonymListField(serializers.Field):
    """A JSON list, passed on as is: the service checks each id (64 lowercase hex) and the cohort limit,
    and names the offending indexes, never the values."""

    default_error_messages = {"not_a_list": "Expected a list of pseudonymous patient ids."}

    def to_internal_value(self, data: Any) -> list[Any]:
        if not isinstance(data, list):
            self.fail("not_a_list")
        return data

    def to_representation(self, value: Any) -> Any:
        return value


class CohortSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=CohortKind.choices, error_messages=CHOICE_ERROR_MESSAGES)
    pseudonyms = PseudonymListField(
        required=False, help_text="kind explicit only: pseudonymous patient ids (at most ANALYTICS_MAX_COHORT)"
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs["kind"] == CohortKind.CONSENTED and "pseudonyms" in attrs:
            raise serializers.ValidationError({"pseudonyms": "Only a cohort of kind explicit lists pseudonyms."})
        return attrs


class AnalysisCreateSerializer(serializers.Serializer):
    model = serializers.CharField(max_length=64, help_text="a model name from /api/models/")
    cohort = CohortSerializer()
    key_mode = serializers.ChoiceField(
        choices=KeyMode.choices, default=KeyMode.PORTAL, error_messages=CHOICE_ERROR_MESSAGES
    )
    public_context = serializers.CharField(
        required=False,
        trim_whitespace=False,
        help_text="requester mode only: base64 of the serialised CKKS context WITHOUT its secret key "
        f"(at most {PUBLIC_CONTEXT_MAX_BASE64_CHARS} characters)",
    )
    batch_size = serializers.IntegerField(
        required=False,
        min_value=1,
        help_text="records per batch (default from settings; at most ANALYTICS_MAX_BATCH_SIZE)",
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs["key_mode"] == KeyMode.PORTAL and "public_context" in attrs:
            raise serializers.ValidationError(
                {"public_context": "Only requester-held keys upload a public context; the portal makes its own."}
            )
        return attrs


def public_context_decoded(text: str | None) -> bytes | None:
    """The uploaded public context as bytes: too long → 413 public_context_too_large, not base64 → 400."""
    if text is None:
        return None
    if len(text) > PUBLIC_CONTEXT_MAX_BASE64_CHARS:
        raise PayloadTooLarge(
            "The public context is larger than the limit.",
            code="public_context_too_large",
            detail={"field": "public_context", "max_base64_chars": PUBLIC_CONTEXT_MAX_BASE64_CHARS},
        )
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValidationFailed(
            "The public context is not base64.", code="public_context_invalid", detail={"field": "public_context"}
        ) from None


class AnalysisModelSerializer(serializers.Serializer):
    name = serializers.CharField()
    version = serializers.CharField()
    sha256 = serializers.CharField()


class AnalysisRequestSerializer(serializers.ModelSerializer):
    """A request as its requester sees it. The cohort is given by kind and size, not by its ids."""

    model = AnalysisModelSerializer(read_only=True)
    cohort_size = serializers.SerializerMethodField(help_text="explicit cohorts: how many ids were listed")
    links = serializers.SerializerMethodField(
        help_text="self, model, portal, encrypted_scores, and results (portal mode: decrypted by the platform)"
    )

    class Meta:
        model = AnalysisRequest
        fields = [
            "id",
            "status",
            "failure_code",
            "model",
            "purpose",
            "cohort_kind",
            "cohort_size",
            "key_mode",
            "batch_size",
            "total_records",
            "unknown_patients",
            "created_at",
            "started_at",
            "finished_at",
            "links",
        ]
        read_only_fields = fields

    def get_cohort_size(self, request: AnalysisRequest) -> int | None:
        return len(request.cohort_pseudonyms) if request.cohort_kind == CohortKind.EXPLICIT else None

    def get_links(self, request: AnalysisRequest) -> dict[str, str]:
        links = {
            "self": reverse("api-analysis-detail", kwargs={"pk": request.pk}),
            "model": reverse("api-model-detail", kwargs={"name": request.model.name}),
            "portal": reverse("analytics:detail", kwargs={"analysis_id": request.pk}),
            "encrypted_scores": reverse("api-analysis-encrypted-scores", kwargs={"pk": request.pk}),
        }
        if request.key_mode == KeyMode.PORTAL:
            links["results"] = reverse("api-analysis-results", kwargs={"pk": request.pk})
        return links


class ProgressSerializer(serializers.Serializer):
    total = serializers.IntegerField(help_text="records planned (usable records of the cohort)")
    gated = serializers.IntegerField(help_text="records the ledger has answered for")
    admitted = serializers.IntegerField(help_text="records admitted and encrypted")
    refused = serializers.IntegerField()
    refusals = serializers.DictField(child=serializers.IntegerField(), help_text="refused records by reason")
    scored = serializers.IntegerField()
    batches = serializers.IntegerField()
    batches_done = serializers.IntegerField()


class AnalysisDetailSerializer(AnalysisRequestSerializer):
    progress = serializers.SerializerMethodField()

    class Meta(AnalysisRequestSerializer.Meta):
        fields = [*AnalysisRequestSerializer.Meta.fields, "progress"]
        read_only_fields = fields

    @extend_schema_field(ProgressSerializer)
    def get_progress(self, request: AnalysisRequest) -> dict[str, Any]:
        progress: Progress = self.context["progress"]
        return dict(ProgressSerializer(progress).data)


class ResultRowSerializer(serializers.Serializer):
    record_id = serializers.CharField()
    patient_pseudonym = serializers.CharField()
    score = serializers.FloatField(help_text="logistic models: probability of the positive label; linear: value")
    label = serializers.CharField()
    clipped = serializers.BooleanField(
        help_text="true when one of the record's measurements was outside the model's documented range and was "
        "clipped to it before encryption: the score is that of the clipped values, less reliable than others"
    )


class HistogramBinSerializer(serializers.Serializer):
    start = serializers.FloatField(source="from")
    end = serializers.FloatField(source="to")
    count = serializers.IntegerField()


class ResultsSerializer(serializers.Serializer):
    request_id = serializers.UUIDField()
    status = serializers.ChoiceField(
        choices=AnalysisStatus.choices, help_text="rows hold the scored batches; complete once status is completed"
    )
    model = serializers.DictField(help_text="name, version, kind and sha256 of the weights that scored the rows")
    summary = serializers.DictField(
        help_text="count, mean, min, max, median, count per label, and clipped (rows whose features were clipped)"
    )
    histogram = HistogramBinSerializer(many=True)
    refusals = serializers.DictField(child=serializers.IntegerField())
    count = serializers.IntegerField(help_text="rows in every page together")
    next = serializers.URLField(allow_null=True, help_text="the next page of rows; null on the last")
    previous = serializers.URLField(allow_null=True, help_text="the page before; null on the first")
    rows = ResultRowSerializer(many=True, help_text="this page's rows, in the batches' order")


class EncryptedChunkSerializer(serializers.Serializer):
    record_ids = serializers.ListField(child=serializers.CharField())
    patient_pseudonyms = serializers.ListField(child=serializers.CharField())
    clipped_record_ids = serializers.ListField(
        child=serializers.CharField(),
        help_text="those of record_ids with a measurement outside the model's documented range, clipped to it "
        "before encryption: their scores are those of the clipped values, less reliable than others",
    )
    ciphertext = serializers.CharField(help_text="base64 of a CKKS vector; slot i is the score of record_ids[i]")


class EncryptedScoresSerializer(serializers.Serializer):
    request_id = serializers.UUIDField()
    status = serializers.ChoiceField(choices=AnalysisStatus.choices)
    key_mode = serializers.ChoiceField(choices=KeyMode.choices)
    public_context_sha256 = serializers.CharField(
        help_text="SHA-256 of the public context the scores are encrypted under: check it is your key's"
    )
    model = serializers.DictField(
        help_text="name, version, sha256 and kind; logistic scores are logits (apply the sigmoid after decryption), "
        "labelled positive_label when the logit is >= 0, else negative_label"
    )
    chunks = EncryptedChunkSerializer(many=True)
