"""OpenAPI helpers: the house's authentication schemes for drf-spectacular, the error body and
the Idempotency-Key header shared by every app's endpoints."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.utils import OpenApiParameter
from rest_framework import serializers

IDEMPOTENCY_HEADER = OpenApiParameter(
    "Idempotency-Key",
    str,
    location=OpenApiParameter.HEADER,
    required=False,
    description="Same key + same body returns the first response; another body gets 409.",
)


class ErrorSerializer(serializers.Serializer):
    error = serializers.CharField()
    code = serializers.CharField(required=False)


class BearerTokenScheme(OpenApiAuthenticationExtension):
    target_class = "core.api.auth.BearerTokenAuthentication"
    name = "bearerAuth"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "description": "Player session token (ps_...) or staff token (st_...)"}


class OperatorKeyScheme(OpenApiAuthenticationExtension):
    target_class = "core.api.auth.OperatorKeyAuthentication"
    name = "operatorKey"

    def get_security_definition(self, auto_schema):
        return {"type": "apiKey", "in": "header", "name": "X-Operator-Key"}
