"""Hostile input on every operation of the served OpenAPI document (SPEC §15), sent with a valid
credential of the operation's kind so it gets past authentication: control characters and NUL bytes
(in JSON strings and keys, query strings, path parameters, the Idempotency-Key header), lone
surrogates, invalid UTF-8, a body past DATA_UPLOAD_MAX_MEMORY_SIZE, JSON nested 100,000 deep,
numbers of 1,000 digits, bodies of the wrong content type. Every answer is a 4xx in the error shape
and nothing is stored. (tests/test_bad_input.py fuzzes the trade's fields; this is every endpoint.)

The refusals come from the kernel, not from each view: the JSON parser (core.api.rendering) and
HouseAPIView.initial (core.api.base), so a new endpoint is covered without a line of its own.
"""

import json
from decimal import Decimal
from urllib.parse import quote

import pytest
from django.conf import settings
from django.test import Client
from drf_spectacular.generators import SchemaGenerator

from casino.models import Market, Player, PlayerSession, Position, ReferencePrice, Trade
from core.models import Event, IdempotencyRecord
from settlement.models import Settlement
from tests.fuzzing import MARKET, known_values, security_headers, seed_house
from wallets.models import LedgerEntry, WalletOperation
from webhooks.models import WebhookEndpoint

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("no_rate_limits")]

HTTP_METHODS = {"get", "post", "put", "patch", "delete"}
STORED = [Trade, Position, LedgerEntry, Event, IdempotencyRecord, Player, PlayerSession, Market, ReferencePrice, Settlement]
STORED += [WalletOperation, WebhookEndpoint]
CONTROL = ["a\x00b", "a\x01b", "a\x1bb", "a\x7fb", "\x00"]


def _served_schema() -> dict:
    return SchemaGenerator().get_schema(request=None, public=True)


SCHEMA = json.loads(json.dumps(_served_schema(), default=str))
OPERATIONS = [
    (method.upper(), path, operation)
    for path, item in sorted(SCHEMA["paths"].items())
    for method, operation in item.items()
    if method in HTTP_METHODS
]
BODY_OPERATIONS = [op for op in OPERATIONS if "requestBody" in op[2]]


def _ids(operations):
    return [f"{method} {path}" for method, path, _ in operations]


def _resolve(schema: dict) -> dict:
    while "$ref" in schema:
        schema = SCHEMA["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def _request_schema(operation) -> dict:
    return _resolve(operation["requestBody"]["content"]["application/json"]["schema"])


def _valid_value(name: str, prop: dict, known: dict):
    if name in known:
        return known[name]
    prop = _resolve(prop) if "$ref" in prop else prop
    if "enum" in prop:
        return next(value for value in prop["enum"] if value is not None)
    if "allOf" in prop or "oneOf" in prop:
        return _valid_value(name, (prop.get("allOf") or prop.get("oneOf"))[0], known)
    kind = prop.get("type")
    if kind == "string":
        if prop.get("format") == "decimal" or "pattern" in prop:
            return "5"
        if prop.get("format") == "uri":
            return "https://example.com/hook"
        if prop.get("format") == "uuid":
            return known["targetUserId"]
        return "x"
    if kind in ("number", "integer"):
        return 5
    if kind == "boolean":
        return False
    if kind == "array":
        return []
    return {}


def _valid_body(operation, known) -> dict:
    schema = _request_schema(operation)
    return {name: _valid_value(name, prop, known) for name, prop in schema.get("properties", {}).items()}


def _text_fields(operation) -> list[str]:
    fields = []
    for name, prop in _request_schema(operation).get("properties", {}).items():
        prop = _resolve(prop) if "$ref" in prop else prop
        if prop.get("type") == "string" or "enum" in prop:
            fields.append(name)
    return fields


def _path(path: str, operation, known: dict, *, poison: str | None = None) -> str:
    for parameter in operation.get("parameters", []):
        if parameter["in"] == "path":
            name = parameter["name"]
            value = poison if poison == name else known.get(name, "00000000-0000-0000-0000-000000000000")
            path = path.replace("{" + name + "}", quote("a\x00b" if poison == name else value, safe=""))
    return path


@pytest.fixture
def house(db):
    credentials = seed_house(players=1)
    return credentials, known_values(credentials)


def _stored() -> dict:
    return {model.__name__: model.objects.count() for model in STORED}


def _send(method: str, path: str, *, headers: dict, body: bytes | None = None, content_type: str = "application/json", query=None):
    client = Client()
    call = getattr(client, method.lower())
    if method == "GET":
        return call(path, query or {}, headers=headers)
    if query:
        path = f"{path}?{'&'.join(f'{quote(k)}={quote(v)}' for k, v in query.items())}"
    return call(path, data=body if body is not None else b"", content_type=content_type, headers=headers)


def _assert_refused(response, before: dict, what: str) -> None:
    assert 400 <= response.status_code < 500, f"{what}: {response.status_code} {response.content[:300]!r}"
    body = json.loads(response.content)
    assert set(body) >= {"error", "code"}, f"{what}: {body}"
    assert isinstance(body["error"], str) and isinstance(body["code"], str)
    assert _stored() == before, f"{what} stored something"


@pytest.mark.parametrize(("method", "path", "operation"), OPERATIONS, ids=_ids(OPERATIONS))
def test_control_characters_in_query_path_and_headers_are_refused(house, method, path, operation):
    credentials, known = house
    headers = security_headers(operation.get("security") or [], credentials)
    url = _path(path, operation, known)
    body = json.dumps(_valid_body(operation, known)).encode() if "requestBody" in operation else None
    before = _stored()
    names = [p["name"] for p in operation.get("parameters", []) if p["in"] == "query"] or ["q"]
    for name in names:
        for value in CONTROL:
            response = _send(method, url, headers=headers, body=body, query={name: value})
            _assert_refused(response, before, f"{method} {path} ?{name}={value!r}")
    for parameter in [p for p in operation.get("parameters", []) if p["in"] == "path"]:
        response = _send(method, _path(path, operation, known, poison=parameter["name"]), headers=headers, body=body)
        _assert_refused(response, before, f"{method} {path} path {parameter['name']}")
    for value in ["k\x00", "\x01key", "key\x7f"]:
        response = _send(method, url, headers={**headers, "Idempotency-Key": value}, body=body)
        _assert_refused(response, before, f"{method} {path} Idempotency-Key {value!r}")
    # A hostile X-Request-Id is not echoed (nor logged): the house makes up its own.
    response = _send(method, url, headers={**headers, "X-Request-Id": "id\x00\r\nX-Evil: 1"}, body=body, query={names[0]: "\x00"})
    _assert_refused(response, before, f"{method} {path} X-Request-Id")
    assert "\x00" not in response["X-Request-Id"] and "Evil" not in response["X-Request-Id"]


@pytest.mark.parametrize(("method", "path", "operation"), BODY_OPERATIONS, ids=_ids(BODY_OPERATIONS))
def test_hostile_json_bodies_are_refused(house, method, path, operation):
    credentials, known = house
    headers = security_headers(operation.get("security") or [], credentials)
    url = _path(path, operation, known)
    valid = _valid_body(operation, known)
    before = _stored()
    bodies: dict[str, bytes] = {}
    # A control character (or a lone surrogate) in each text field of an otherwise valid body, and in a key.
    for field in _text_fields(operation):
        for value in CONTROL:
            bodies[f"{field}={value!r}"] = json.dumps({**valid, field: value}).encode()
        bodies[f"{field}=lone surrogate"] = json.dumps({**valid, field: "a\ud800b"}).encode()
    bodies["key with NUL"] = json.dumps({**valid, "no\x00te": "x"}).encode()
    bodies["nested NUL"] = json.dumps({**valid, "extra": {"deep": ["\x00"]}}).encode()
    # Numbers of 1,000 digits, whole and decimal, in each field.
    for field in list(valid) or ["amount"]:
        bodies[f"{field}=1000 digits"] = json.dumps({**valid, field: 0}).replace(f'"{field}": 0', f'"{field}": {"9" * 1000}').encode()
        decimal = f"0.{'1' * 999}"
        bodies[f"{field}=1000 decimals"] = json.dumps({**valid, field: 0}).replace(f'"{field}": 0', f'"{field}": {decimal}').encode()
    bodies["invalid UTF-8"] = b'{"x": "\xff\xfe\xc3\x28"}'
    bodies["invalid UTF-8 in a field"] = json.dumps(valid).encode()[:-1] + b', "note": "\xed\xa0\x80"}'
    bodies["deep JSON 100,000"] = b"[" * 100_000 + b"]" * 100_000
    bodies["deep object 100,000"] = b'{"a":' * 100_000 + b"1" + b"}" * 100_000
    bodies["nested 40"] = json.dumps({**valid, "extra": json.loads("[" * 40 + "]" * 40)}).encode()
    bodies["huge body"] = json.dumps({**valid, "pad": "x" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 10)}).encode()
    bodies["NaN"] = json.dumps(valid).encode()[:-1] + b', "n": NaN}'
    bodies["not an object"] = b"[1, 2]"
    for what, raw in bodies.items():
        response = _send(method, url, headers=headers, body=raw)
        _assert_refused(response, before, f"{method} {path} {what}")


@pytest.mark.parametrize(("method", "path", "operation"), BODY_OPERATIONS, ids=_ids(BODY_OPERATIONS))
def test_bodies_of_another_content_type_are_415(house, method, path, operation):
    credentials, known = house
    headers = security_headers(operation.get("security") or [], credentials)
    url = _path(path, operation, known)
    valid = _valid_body(operation, known)
    before = _stored()
    client = Client()
    call = getattr(client, method.lower())
    as_form = "&".join(f"{quote(k)}={quote(str(v))}" for k, v in valid.items()).encode()
    for content_type, body in [
        ("text/plain", json.dumps(valid).encode()),
        ("application/x-www-form-urlencoded", as_form),
        ("application/xml", b"<a/>"),
    ]:
        response = call(url, data=body, content_type=content_type, headers=headers)
        _assert_refused(response, before, f"{method} {path} as {content_type}")
        assert response.status_code == 415
    # multipart/form-data, as a browser form would send it (Django's test client encodes the dict).
    response = call(url, data={k: str(v) for k, v in valid.items()}, headers=headers) if method == "POST" else None
    if response is not None:
        _assert_refused(response, before, f"{method} {path} as multipart")
        assert response.status_code == 415


def test_a_control_character_in_an_optional_text_field_is_400_not_500(house, staff_api, make_player, market):
    """The issue's finding: staff adjustment, trade and session with a NUL in an optional text field."""
    credentials, known = house
    player, player_api = make_player(Decimal("50"))
    before = _stored()
    staff = Client()
    cases = [
        (
            "/api/casino/admin/balance",
            {"Authorization": f"Bearer {credentials.staff}"},
            {"targetUserId": str(player.pk), "amount": "5", "action": "deposit", "description": "bonus\x00"},
        ),
        (
            "/api/casino/trade",
            player_api.headers,
            {"marketId": MARKET, "side": "buy", "outcome": "yes", "amount": "5", "midPrice": 50, "marketTitle": "t\x00"},
        ),
        ("/api/casino/operator/sessions", {"X-Operator-Key": credentials.operator}, {"playerId": "p\x00"}),
        (
            "/api/casino/admin/prices",
            {"Authorization": f"Bearer {credentials.staff}"},
            {"marketId": "m-1", "midPrice": 40, "category": "\x00"},
        ),
    ]
    for path, headers, body in cases:
        response = staff.post(path, data=json.dumps(body), content_type="application/json", headers=headers)
        assert response.status_code == 400, (path, response.content)
        assert json.loads(response.content) == {"error": "Control characters are not allowed", "code": "invalid_characters"}
    assert _stored() == before


def test_tab_and_newline_stay_allowed_in_text(house, make_player):
    """Only the characters nothing legitimate sends are refused: a reason may span lines."""
    credentials, _ = house
    player, _ = make_player(Decimal("0"))
    response = Client().post(
        "/api/casino/admin/balance",
        data=json.dumps({"targetUserId": str(player.pk), "amount": "5", "action": "deposit", "description": "line 1\n\tline 2"}),
        content_type="application/json",
        headers={"Authorization": f"Bearer {credentials.staff}"},
    )
    assert response.status_code == 200, response.content
    assert LedgerEntry.objects.filter(player=player).get().description == "line 1\n\tline 2"
