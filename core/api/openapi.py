"""OpenAPI helpers: the house's authentication schemes for drf-spectacular, the error body and
the Idempotency-Key header shared by every app's endpoints."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse
from rest_framework import serializers

from core.api.auth import IsStaff

IDEMPOTENCY_HEADER = OpenApiParameter(
    "Idempotency-Key",
    str,
    location=OpenApiParameter.HEADER,
    required=False,
    description="Same key + same body returns the first response; another body gets 409.",
)


# The security schemes of the document: who may call an operation is listed on it.
OPERATOR_KEY = "operatorKey"
PLAYER_TOKEN = "playerToken"
STAFF_TOKEN = "staffToken"
UNAUTHORIZED = "Missing or invalid credential"
# A bearer token of the other kind (a player's on a staff endpoint) authenticates, then is refused.
FORBIDDEN = "A credential of another kind (e.g. a player's token on a staff endpoint)"


class ErrorSerializer(serializers.Serializer):
    error = serializers.CharField()
    code = serializers.CharField(required=False)


# For endpoints whose only parameters are optional: a 400 then comes from a malformed request
# (Django's bad_request), still in the error shape.
BAD_REQUEST = OpenApiResponse(ErrorSerializer, description="Invalid input or a malformed request; `code` says which")


class BearerTokenScheme(OpenApiAuthenticationExtension):
    """One authentication class reads both bearer tokens; the document names them apart by the
    view's permission: IsStaff takes a staff token, everything else a player's session token
    (optional where the view allows anyone: a player's token then prices with their own spread)."""

    target_class = "core.api.auth.BearerTokenAuthentication"
    name = [PLAYER_TOKEN, STAFF_TOKEN]

    def get_security_requirement(self, auto_schema):
        staff = any(isinstance(permission, IsStaff) for permission in auto_schema.view.get_permissions())
        return {STAFF_TOKEN if staff else PLAYER_TOKEN: []}

    def get_security_definition(self, auto_schema):
        return [
            {
                "type": "http",
                "scheme": "bearer",
                "description": "A player's session token (ps_...), from POST /api/casino/operator/sessions",
            },
            {"type": "http", "scheme": "bearer", "description": "A house staff token (st_...), issued in the admin site"},
        ]


class OperatorKeyScheme(OpenApiAuthenticationExtension):
    target_class = "core.api.auth.OperatorKeyAuthentication"
    name = OPERATOR_KEY

    def get_security_definition(self, auto_schema):
        return {"type": "apiKey", "in": "header", "name": "X-Operator-Key", "description": "The operator's API key"}


def document_credential_errors(result, generator, request, public):
    """Postprocessing hook: an operation that needs a credential answers 401 without a valid one,
    and one taking a bearer token 403 with a token of the other kind (core.api.auth), in the error
    shape; documented where the view did not."""
    for operations in result.get("paths", {}).values():
        for operation in operations.values():
            security = operation.get("security") or []
            if not security or {} in security:
                continue
            errors = {"401": UNAUTHORIZED}
            if any(PLAYER_TOKEN in requirement or STAFF_TOKEN in requirement for requirement in security):
                errors["403"] = FORBIDDEN
            responses = operation.setdefault("responses", {})
            for status, description in errors.items():
                error = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}, "description": description}
                responses.setdefault(status, error)
    return result
