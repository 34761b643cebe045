"""Teach drf-spectacular the house's authentication schemes."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class BearerTokenScheme(OpenApiAuthenticationExtension):
    target_class = "casino.api.auth.BearerTokenAuthentication"
    name = "bearerAuth"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "description": "Player session token (ps_...) or staff token (st_...)"}


class OperatorKeyScheme(OpenApiAuthenticationExtension):
    target_class = "casino.api.auth.OperatorKeyAuthentication"
    name = "operatorKey"

    def get_security_definition(self, auto_schema):
        return {"type": "apiKey", "in": "header", "name": "X-Operator-Key"}
