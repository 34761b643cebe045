"""Per-user rate limits of the reference table, with X-RateLimit-* headers and 429 + Retry-After."""

import time
from decimal import Decimal

import pytest

from tests.conftest import Api, buy_body, decimal_json

pytestmark = pytest.mark.django_db


def _requests_used(send, *, seconds: float = 20) -> int:
    """Sends one request and answers how many of the caller's window it used. A window is fixed, its start
    staggered per key; requests after its end count afresh, so a test that fills it must not straddle one.
    When this request shows the window ending within ``seconds``, wait for the next window: 0 used."""
    response = send()
    assert response.status_code == 200, response.content
    if int(response["X-RateLimit-Reset"]) - time.time() < seconds:
        time.sleep(max(0.0, int(response["X-RateLimit-Reset"]) - time.time()) + 1.5)
        return 0
    return 1


def test_trade_limit_is_20_per_minute_per_player(make_player, market, risk_limits):
    risk_limits(max_trades_per_minute=100)  # the velocity wall would stop the player first
    _, api = make_player(Decimal("100"))
    _, other = make_player(Decimal("100"))
    for i in range(_requests_used(lambda: api.post("trade", buy_body(amount="1"))), 20):
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
    for _ in range(_requests_used(lambda: api.get(path)), limit):
        assert api.get(path).status_code == 200
    assert api.get(path).status_code == 429


def test_deposit_limit_is_5_per_minute(make_player):
    _, api = make_player()
    for _ in range(_requests_used(lambda: api.post("deposit", {"amount": 1})), 5):
        assert api.post("deposit", {"amount": 1}).status_code == 200
    assert api.post("deposit", {"amount": 1}).status_code == 429


def test_anonymous_quote_is_limited_per_client_address(db):
    api = Api()
    params = {"side": "buy", "outcome": "yes", "amount": "1", "midPrice": "50"}
    for _ in range(_requests_used(lambda: api.get("quote", params)), 60):
        assert api.get("quote", params)["X-RateLimit-Limit"] == "60"
    assert api.get("quote", params).status_code == 429


def test_rejected_requests_also_carry_the_headers(make_player, market):
    _, api = make_player(Decimal("0"))
    response = api.post("trade", buy_body())
    assert response.status_code == 400
    assert response["X-RateLimit-Remaining"] == "19"
