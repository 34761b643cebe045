"""Hostile and malformed input gets a 4xx with {"error": ...}, never a 5xx, and moves nothing."""

import json
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from casino.models import Trade
from tests.conftest import MARKET, decimal_json

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("no_rate_limits", "no_velocity_limits")]

json_scalars = (
    st.none() | st.booleans() | st.integers(min_value=-(10**30), max_value=10**30) | st.text(max_size=300) | st.floats(allow_nan=False)
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=10,
)
weird_numbers = st.sampled_from(
    ["1e400", "-0", "0.0000001", "1E+2", "99.99999", "100", "0", "NaN", "Infinity", "1_000", " 5 ", "0x10", "", "٣"]
)
field_values = (
    json_values | weird_numbers | st.decimals(allow_nan=False, allow_infinity=False, places=8, min_value=-(10**12), max_value=10**12)
)

trade_bodies = st.fixed_dictionaries(
    {},
    optional={
        "marketId": st.just(MARKET) | st.text(max_size=300) | json_values,
        "side": st.sampled_from(["buy", "sell", "BUY", ""]) | json_values,
        "outcome": st.sampled_from(["yes", "no", "maybe"]) | json_values,
        "amount": field_values,
        "midPrice": field_values | st.sampled_from([62, 61.5, 64]),
        "marketTitle": json_values,
        "category": json_values,
        "liquidity": field_values,
    },
)

COMMON = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def _encode(body) -> str:
    return json.dumps(body, default=str)


@COMMON
@given(body=trade_bodies)
def test_trade_never_5xx(make_player, market, body):
    _, api = make_player(Decimal("50"))
    response = api.post("trade", raw=_encode(body))
    assert response.status_code < 500, response.content
    if response.status_code != 200:
        assert "error" in decimal_json(response)


@COMMON
@given(
    params=st.dictionaries(
        st.sampled_from(["side", "outcome", "amount", "midPrice", "marketId"]), st.text(max_size=60) | weird_numbers, max_size=5
    )
)
def test_quote_never_5xx(market, params):
    from tests.conftest import Api

    response = Api().get("quote", params)
    assert response.status_code < 500, response.content
    if response.status_code != 200:
        assert "error" in decimal_json(response)


@COMMON
@given(raw=st.text(max_size=200) | st.binary(max_size=200).map(lambda b: b.decode("latin-1")))
def test_malformed_json_is_400(make_player, market, raw):
    _, api = make_player(Decimal("50"))
    response = api.post("trade", raw=raw)
    assert response.status_code < 500
    assert "error" in decimal_json(response)


@pytest.mark.parametrize("raw", ["", "[]", "null", "1", '"x"', "{", '{"amount": NaN}', '{"amount": Infinity}', '{"a": ' * 2000])
def test_non_object_bodies(make_player, market, raw):
    _, api = make_player(Decimal("50"))
    response = api.post("trade", raw=raw)
    assert 400 <= response.status_code < 500
    assert "error" in decimal_json(response)
    assert Trade.objects.count() == 0


@pytest.mark.parametrize(
    "field,value",
    [
        ("amount", True),
        ("amount", "abc"),
        ("amount", [1]),
        ("midPrice", {"v": 1}),
        ("amount", "1e999"),
        ("marketId", "x" * 1000),
        ("marketId", 12),
        ("side", None),
    ],
)
def test_wrong_types_are_400_with_error(make_player, market, field, value):
    _, api = make_player(Decimal("50"))
    body = {"marketId": MARKET, "side": "buy", "outcome": "yes", "amount": 5, "midPrice": 62, field: value}
    response = api.post("trade", raw=_encode(body))
    assert response.status_code == 400
    assert set(decimal_json(response)) >= {"error", "code"}


def test_wrong_content_type_is_415(make_player):
    _, api = make_player()
    response = api.client.post(
        "/api/casino/deposit", data="amount=5", content_type="application/x-www-form-urlencoded", headers=api.headers
    )
    assert response.status_code == 415
    assert decimal_json(response)["error"] == "Content-Type must be application/json"


def test_unknown_api_path_is_json_404(db):
    from django.test import Client

    response = Client().get("/api/casino/nope")
    assert response.status_code == 404
    assert json.loads(response.content)["error"] == "Not found"


def test_wrong_method_is_405(make_player):
    _, api = make_player()
    response = api.get("trade")
    assert response.status_code == 405
    assert decimal_json(response)["error"] == "Method not allowed"
