"""Per-user rate limits of the reference table, with X-RateLimit-* headers and 429 + Retry-After."""

import time
from decimal import Decimal

import pytest

from tests.conftest import Api, buy_body, decimal_json

pytestmark = pytest.mark.django_db


def test_trade_limit_is_20_per_minute_per_player(make_player, market, risk_limits):
    risk_limits(max_trades_per_minute=100)  # the velocity wall would stop the player first
    _, api = make_player(Decimal("100"))
    _, other = make_player(Decimal("100"))
    for i in range(20):
        response = api.post("trade", buy_body(amount="1"))
        assert response.status_code == 200
        assert response["X-RateLimit-Limit"] == "20"
        assert response["X-RateLimit-Remaining"] == str(19 - i)
        assert 0 < int(response["X-RateLimit-Reset"]) - time.time() <= 61
    limited = api.post("trade", buy_body(amount="1"))
    assert limited.status_code == 429
    assert decimal_json(limited)["error"] == "Rate limit exceeded"
    assert 1 <= int(limited["Retry-After"]) <= 60
    assert limited["X-RateLimit-Remaining"] == "0"
    assert other.post("trade", buy_body(amount="1")).status_code == 200  # per user


@pytest.mark.parametrize("path,limit", [("balance", 60), ("positions", 30), ("trades", 30)])
def test_read_endpoint_limits(make_player, path, limit):
    _, api = make_player()
    for _ in range(limit):
        assert api.get(path).status_code == 200
    assert api.get(path).status_code == 429


def test_deposit_limit_is_5_per_minute(make_player):
    _, api = make_player()
    for _ in range(5):
        assert api.post("deposit", {"amount": 1}).status_code == 200
    assert api.post("deposit", {"amount": 1}).status_code == 429


def test_anonymous_quote_is_limited_per_client_address(db):
    api = Api()
    params = {"side": "buy", "outcome": "yes", "amount": "1", "midPrice": "50"}
    for _ in range(60):
        assert api.get("quote", params)["X-RateLimit-Limit"] == "60"
    assert api.get("quote", params).status_code == 429


def test_rejected_requests_also_carry_the_headers(make_player, market):
    _, api = make_player(Decimal("0"))
    response = api.post("trade", buy_body())
    assert response.status_code == 400
    assert response["X-RateLimit-Remaining"] == "19"
