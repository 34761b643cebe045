"""OpenAPI helpers: the house's authentication schemes for drf-spectacular, the error body and
the Idempotency-Key header shared by every app's endpoints."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse
from rest_framework import serializers

from core.api.auth import IsStaff
from core.idempotency import MAX_KEY_LENGTH

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


RATE_LIMITED = "Rate limit exceeded: Retry-After says when to try again"
UNSUPPORTED_MEDIA_TYPE = "The body is not application/json"
BODY_TOO_LARGE = "The body is larger than DATA_UPLOAD_MAX_MEMORY_SIZE (2.5 MB)"
IDEMPOTENCY_CONFLICT = "The Idempotency-Key is in use by a request in progress, or was used with another body"


# What the kernel lets through in text (core.api.inputs.UNSAFE_TEXT_RE, refused with a 400): said in the
# document on every free-text string a client sends, so the document is exact about it.
SAFE_TEXT_PATTERN = "^[^\\u0000-\\u0008\\u000b\\u000c\\u000e-\\u001f\\u007f]*$"
_TYPED_FORMATS = {"uuid", "date", "date-time", "uri", "email", "decimal", "binary"}


def _constrain_text(schema: dict) -> None:
    if schema.get("type") == "string" and not ({"enum", "pattern"} & schema.keys()) and schema.get("format") not in _TYPED_FORMATS:
        schema["pattern"] = SAFE_TEXT_PATTERN


def _constrain_request_text(result) -> None:
    """Free text of request bodies (the split ...Request components) and of query, path and header
    parameters carries SAFE_TEXT_PATTERN; the Idempotency-Key its length limits too."""
    for name, component in result.get("components", {}).get("schemas", {}).items():
        if name.endswith("Request"):
            for prop in component.get("properties", {}).values():
                _constrain_text(prop)
                _constrain_text(prop.get("items", {}))
    for operations in result.get("paths", {}).values():
        for operation in operations.values():
            for parameter in operation.get("parameters", []):
                schema = parameter.get("schema", {})
                _constrain_text(schema)
                if parameter.get("in") == "header" and parameter.get("name") == "Idempotency-Key":
                    schema.update(minLength=1, maxLength=MAX_KEY_LENGTH)


def _error(description: str) -> dict:
    return {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}, "description": description}


def document_credential_errors(result, generator, request, public):
    """Postprocessing hook: the answers every operation of a kind can give, in the error shape,
    documented where the view did not: 401 without a valid credential where one is needed, 403 with
    a bearer token of the other kind (core.api.auth); 429 from the per-caller rate limit of every
    API view (core.api.throttling); 413 and 415 where a JSON body is read (core.api.rendering); 409 where an Idempotency-Key is
    taken (core.api.base.HouseAPIView.run_idempotent). And the text rule of the kernel on what clients send."""
    _constrain_request_text(result)
    for path, operations in result.get("paths", {}).items():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            security = operation.get("security") or []
            if security and {} not in security:
                responses.setdefault("401", _error(UNAUTHORIZED))
                if any(PLAYER_TOKEN in requirement or STAFF_TOKEN in requirement for requirement in security):
                    responses.setdefault("403", _error(FORBIDDEN))
            if path.startswith("/api/casino/"):
                responses.setdefault("429", _error(RATE_LIMITED))
            if "requestBody" in operation:
                responses.setdefault("413", _error(BODY_TOO_LARGE))
                responses.setdefault("415", _error(UNSUPPORTED_MEDIA_TYPE))
            if any(p.get("in") == "header" and p.get("name") == "Idempotency-Key" for p in operation.get("parameters", [])):
                responses.setdefault("409", _error(IDEMPOTENCY_CONFLICT))
    return result
