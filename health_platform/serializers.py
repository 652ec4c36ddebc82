"""Serializers every API shares."""

from rest_framework import serializers


class ErrorSerializer(serializers.Serializer):
    """Every API error: a stable code, a message that never echoes input, and an optional detail."""

    code = serializers.CharField()
    message = serializers.CharField()
    detail = serializers.JSONField(allow_null=True)
