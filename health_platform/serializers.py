"""Serializers every API shares."""

from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers


class ErrorSerializer(serializers.Serializer):
    """Every API error: a stable code, a message that never echoes input, and an optional detail."""

    code = serializers.CharField()
    message = serializers.CharField()
    detail = serializers.JSONField(allow_null=True)


def error_response(description: str = '{"code", "message", "detail"} with a stable code') -> OpenApiResponse:
    """An error answer in the API schema: the shared shape, described by its code(s) and when it comes."""
    return OpenApiResponse(ErrorSerializer, description=description)


ERROR_RESPONSE = error_response()
