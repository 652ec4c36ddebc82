"""Serializers every API shares."""

from collections.abc import Callable
from typing import Any

from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
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


def list_and_read_schema(
    *,
    listed: str,
    read: str,
    item: type[serializers.BaseSerializer],
    detail: type[serializers.BaseSerializer] | None = None,
    refusals: dict[int, OpenApiResponse],
    not_found: OpenApiResponse = ERROR_RESPONSE,
) -> Callable[[Any], Any]:
    """The OpenAPI description of a viewset that lists and reads: the list of `item`s (summary `listed`) and one
    (`detail`, else `item`; summary `read`), each with its `refusals` (401, 403...), the read with 404 too."""
    return extend_schema_view(
        list=extend_schema(summary=listed, responses={200: item(many=True), **refusals}),
        retrieve=extend_schema(summary=read, responses={200: detail or item, **refusals, 404: not_found}),
    )
