"""The served OpenAPI document (/api/schema/): valid, every operation says who may call it, what it
is for and what it answers. Checked over every path, so new endpoints are held to it too."""

import json

import pytest
from django.test import Client
from drf_spectacular.validation import validate_schema

HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
OPERATOR_PREFIX = "/api/casino/operator/"
STAFF_PREFIXES = ("/api/casino/admin/", "/api/casino/resolve")
PLAYER_PATHS = {
    "/api/casino/trade",
    "/api/casino/balance",
    "/api/casino/deposit",
    "/api/casino/withdraw",
    "/api/casino/positions",
    "/api/casino/trades",
}


@pytest.fixture(scope="module")
def schema(django_db_blocker):
    with django_db_blocker.unblock():
        response = Client().get("/api/schema/", {"format": "json"})
    assert response.status_code == 200
    return json.loads(response.content)


def operations(schema):
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            if method in HTTP_METHODS:
                yield path, method, operation


def test_the_served_schema_is_a_valid_openapi_document(schema):
    validate_schema(schema)  # raises on the first violation of the OpenAPI 3 JSON schema


def test_the_three_credentials_are_security_schemes(schema):
    assert schema["components"]["securitySchemes"] == {
        "operatorKey": {"type": "apiKey", "in": "header", "name": "X-Operator-Key", "description": "The operator's API key"},
        "playerToken": {
            "type": "http",
            "scheme": "bearer",
            "description": "A player's session token (ps_...), from POST /api/casino/operator/sessions",
        },
        "staffToken": {"type": "http", "scheme": "bearer", "description": "A house staff token (st_...), issued in the admin site"},
    }


def test_every_operator_endpoint_requires_the_operator_key(schema):
    operator_operations = [(path, method, op) for path, method, op in operations(schema) if path.startswith(OPERATOR_PREFIX)]
    assert ("/api/casino/operator/sessions", "post") in {(path, method) for path, method, _ in operator_operations}
    for path, method, operation in operator_operations:
        assert operation.get("security") == [{"operatorKey": []}], f"{method.upper()} {path}"


def test_staff_and_player_endpoints_name_their_token(schema):
    for path, method, operation in operations(schema):
        if path.startswith(STAFF_PREFIXES):
            assert operation.get("security") == [{"staffToken": []}], f"{method.upper()} {path}"
        elif path in PLAYER_PATHS:
            assert operation.get("security") == [{"playerToken": []}], f"{method.upper()} {path}"


def test_every_operation_declares_a_known_credential_or_none(schema):
    schemes = set(schema["components"]["securitySchemes"])
    for path, method, operation in operations(schema):
        security = operation.get("security")
        assert security, f"{method.upper()} {path} says nothing about authentication"
        for requirement in security:
            assert set(requirement) <= schemes, f"{method.upper()} {path}: {requirement}"
        if {} not in security:  # a credential is required: answering without one is documented
            assert "401" in operation["responses"], f"{method.upper()} {path}"
        if security[0].keys() & {"playerToken", "staffToken"} and {} not in security:  # the other kind of token: 403
            assert "403" in operation["responses"], f"{method.upper()} {path}"


def test_every_operation_has_a_summary_and_documents_success_and_bad_input(schema):
    missing = []
    for path, method, operation in operations(schema):
        statuses = set(operation.get("responses", {}))
        if not operation.get("summary", "").strip():
            missing.append(f"{method.upper()} {path}: summary")
        if not any(status.startswith("2") for status in statuses):
            missing.append(f"{method.upper()} {path}: 2xx response")
        if "400" not in statuses:
            missing.append(f"{method.upper()} {path}: 400 response")
        elif operation["responses"]["400"]["content"]["application/json"]["schema"] != {"$ref": "#/components/schemas/Error"}:
            missing.append(f"{method.upper()} {path}: 400 in the error shape")
    assert missing == []
