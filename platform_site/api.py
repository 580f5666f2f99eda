"""API plumbing shared by every app: the exception handler, error schemas, pagination."""

from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular import openapi
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema_serializer
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import exception_handler as drf_exception_handler

from platform_site.errors import DomainError


def exception_handler(exc, context):
    if isinstance(exc, DomainError):
        retry_after = getattr(exc, "retry_after", None)
        headers = {"Retry-After": str(retry_after)} if retry_after else None
        return Response({"detail": exc.message, "code": exc.code}, status=exc.status_code, headers=headers)
    if isinstance(exc, DjangoValidationError):
        detail = exc.message_dict if hasattr(exc, "error_dict") else {"detail": exc.messages}
        return Response(detail, status=400)
    return drf_exception_handler(exc, context)


def paginated_response(*, request, view, queryset, serializer_class):
    """One page of `queryset` in the site's default pagination envelope."""
    paginator = api_settings.DEFAULT_PAGINATION_CLASS()
    page = paginator.paginate_queryset(queryset, request, view=view)
    return paginator.get_paginated_response(serializer_class(page, many=True).data)


@extend_schema_serializer(component_name="Error")
class ErrorSerializer(serializers.Serializer):
    detail = serializers.CharField()
    code = serializers.CharField(required=False)


_ERRORS = {
    400: OpenApiResponse(
        OpenApiTypes.OBJECT,
        description="Invalid input: `{field: [messages]}` for a malformed body, or `{detail, code}`.",
    ),
    401: OpenApiResponse(
        ErrorSerializer, description="No valid credentials: send `Authorization: Token <key>`."
    ),
    402: OpenApiResponse(
        ErrorSerializer, description="You cannot pay for this: the message says your balance and the price."
    ),
    403: OpenApiResponse(ErrorSerializer, description="You may not do this."),
    404: OpenApiResponse(ErrorSerializer, description="No such object among those you may see."),
    409: OpenApiResponse(
        ErrorSerializer, description="It conflicts with the current state: it exists already, or is finished."
    ),
    429: OpenApiResponse(
        ErrorSerializer,
        description="Over a limit (too many requests, or too many jobs at once); see Retry-After.",
    ),
}


def api_errors(*codes: int) -> dict[int, OpenApiResponse]:
    """The documented error responses for the given status codes; 401 is always among them."""
    return {code: _ERRORS[code] for code in sorted({401, *codes})}


class AutoSchema(openapi.AutoSchema):
    """Names a serializer nested in an API class after both (`TransferApi.InputSerializer` → `TransferInput`),
    so the house style's many `InputSerializer`/`OutputSerializer` classes never collide in the schema."""

    def get_serializer_name(self, serializer, direction) -> str:
        outer, _, inner = type(serializer).__qualname__.rpartition(".")
        if outer and "<locals>" not in outer:
            return outer.rpartition(".")[2].removesuffix("Api") + inner
        return super().get_serializer_name(serializer, direction)
