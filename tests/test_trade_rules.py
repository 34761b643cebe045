"""Trade pipeline rules: validation, reference price, tradeability, balance/shares, positions, exposure cap."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from casino.models import Market, MarketStatus, Position, ReferencePrice, Trade
from casino.services.exposure import exposure_book
from casino.services.markets import casino_settings, reference_price_set
from risk.models import MarketRiskLimit
from tests.conftest import MARKET, buy_body, decimal_json

pytestmark = pytest.mark.django_db


def _error(response):
    return response.status_code, decimal_json(response)["error"]


def test_missing_fields(make_player, market):
    _, api = make_player(Decimal("10"))
    assert _error(api.post("trade", {"marketId": MARKET, "side": "buy"})) == (400, "Missing required fields")


def test_invalid_side_and_outcome(make_player, market):
    _, api = make_player(Decimal("10"))
    assert _error(api.post("trade", {**buy_body(), "side": "hold"})) == (400, "Invalid side")
    assert _error(api.post("trade", {**buy_body(), "outcome": "YES"})) == (400, "Invalid outcome")


def test_amount_must_be_positive(make_player, market):
    _, api = make_player(Decimal("10"))
    assert _error(api.post("trade", buy_body(amount="-5"))) == (400, "Amount must be positive")


@pytest.mark.parametrize("mid", [0, 100, -1, 150])
def test_mid_price_outside_0_100_is_400(make_player, market, mid):
    _, api = make_player(Decimal("10"))
    assert _error(api.post("trade", buy_body(mid=mid))) == (400, "Invalid midPrice")


def test_mid_price_far_from_reference_is_price_moved(make_player, market):
    _, api = make_player(Decimal("10"))
    response = api.post("trade", buy_body(mid=66))  # reference 62, tolerance 2
    assert _error(response) == (400, "Price moved")
    assert decimal_json(response)["code"] == "price_moved"
    assert api.post("trade", buy_body(amount="1", mid=64)).status_code == 200  # within tolerance


def test_stale_reference_price_is_price_moved(make_player, market):
    _, api = make_player(Decimal("10"))
    ReferencePrice.objects.filter(market=market).update(
        updated_at=timezone.now() - timedelta(seconds=casino_settings().price_max_age_seconds + 1)
    )
    assert _error(api.post("trade", buy_body())) == (400, "Price moved")


def test_unknown_market_is_not_tradeable(make_player, market):
    _, api = make_player(Decimal("10"))
    assert _error(api.post("trade", buy_body(market_id="0xdoesnotexist"))) == (400, "Market not tradeable")


@pytest.mark.parametrize("status", [MarketStatus.RESOLVING, MarketStatus.RESOLVED, MarketStatus.VOIDED])
def test_resolved_or_voided_market_is_not_tradeable(make_player, market, status):
    _, api = make_player(Decimal("10"))
    Market.objects.filter(pk=MARKET).update(status=status, outcome="yes")
    assert _error(api.post("trade", buy_body())) == (400, "Market not tradeable")


def test_disabled_market_is_not_tradeable(make_player, market):
    _, api = make_player(Decimal("10"))
    Market.objects.filter(pk=MARKET).update(disabled=True)
    assert _error(api.post("trade", buy_body())) == (400, "Market not tradeable")


def test_blocked_category_from_market_or_request(make_player, market):
    _, api = make_player(Decimal("10"))
    config = casino_settings()
    config.blocked_categories = ["Crypto"]
    config.save()
    assert _error(api.post("trade", buy_body())) == (400, "Market not tradeable")
    config.blocked_categories = ["adult"]
    config.save()
    assert _error(api.post("trade", {**buy_body(), "category": "adult"})) == (400, "Market not tradeable")


def test_liquidity_and_price_criteria(make_player, market):
    _, api = make_player(Decimal("10"))
    assert _error(api.post("trade", {**buy_body(), "liquidity": 4999})) == (400, "Market not tradeable")
    reference_price_set(market_id=MARKET, outcome="yes", mid_price=Decimal("97"))
    assert _error(api.post("trade", buy_body(mid=97))) == (400, "Market not tradeable")
    assert api.post("trade", {**buy_body(amount="1"), "midPrice": 97, "outcome": "no", "marketId": MARKET}).status_code == 400  # no = 3


def test_insufficient_balance_moves_nothing(make_player, market):
    player, api = make_player(Decimal("10"))
    assert _error(api.post("trade", buy_body(amount="10.01"))) == (400, "Insufficient balance")
    assert Trade.objects.count() == 0 and Position.objects.count() == 0
    assert exposure_book(market_id=MARKET).cash_in == 0


def test_buy_amount_with_fractions_of_a_cent_is_refused(make_player, market):
    _, api = make_player(Decimal("10"))
    assert api.post("trade", buy_body(amount="1.005")).status_code == 400


def test_sell_more_shares_than_held_is_rejected(make_player, market):
    _, api = make_player(Decimal("100"))
    api.post("trade", buy_body())
    response = api.post("trade", {"marketId": MARKET, "side": "sell", "outcome": "yes", "amount": "39.062501", "midPrice": 62})
    assert _error(response) == (400, "Insufficient shares")
    assert _error(api.post("trade", {"marketId": MARKET, "side": "sell", "outcome": "no", "amount": 1, "midPrice": 38})) == (
        400,
        "Insufficient shares",
    )


def test_buys_average_in_and_selling_everything_closes(make_player, market):
    _, api = make_player(Decimal("100"))
    api.post("trade", buy_body(amount="32.00"))  # 50 shares at 64
    reference_price_set(market_id=MARKET, outcome="yes", mid_price=Decimal("78"))
    api.post("trade", buy_body(amount="40.00", mid=78))  # 50 shares at 80
    position = decimal_json(api.get("positions"))["positions"][0]
    assert position["shares"] == 100 and position["avg_price"] == 72
    response = api.post("trade", {"marketId": MARKET, "side": "sell", "outcome": "yes", "amount": 100, "midPrice": 78})
    body = decimal_json(response)
    assert body["cost"] == Decimal("76.00") and body["realizedPnl"] == Decimal("4.00")  # 100 x (76 - 72) / 100
    assert decimal_json(api.get("positions"))["positions"] == []
    closed = decimal_json(api.get("positions", {"status": "closed"}))["positions"]
    assert closed[0]["shares"] == 0 and closed[0]["realized_pnl"] == Decimal("4.00")
    assert decimal_json(api.get("balance"))["balance"] == Decimal("104.00")


def test_custom_market_spread_is_applied(make_player, market):
    _, api = make_player(Decimal("100"))
    Market.objects.filter(pk=MARKET).update(custom_spread=Decimal("6"))
    assert decimal_json(api.post("trade", buy_body(amount="26")))["executionPrice"] == 65
    quote = decimal_json(api.get("quote", {"side": "buy", "outcome": "yes", "amount": "26", "midPrice": "62", "marketId": MARKET}))
    assert quote["spreadPct"] == 6 and quote["executionPrice"] == 65


def test_execution_price_is_clamped(make_player, db):
    from casino.services.pricing import quote_build

    assert quote_build(side="buy", amount=Decimal("1"), mid_price=Decimal("98.5"), spread=Decimal("4")).execution_price == 99
    assert quote_build(side="sell", amount=Decimal("1"), mid_price=Decimal("1.5"), spread=Decimal("4")).execution_price == 1


def test_exposure_book_tracks_worst_case(make_player, market):
    _, api = make_player(Decimal("100"))
    api.post("trade", buy_body())  # house owes 39.0625 on YES, holds 25
    book = exposure_book(market_id=MARKET)
    assert book.yes_shares == Decimal("39.0625") and book.cash_in == Decimal("25.00")
    assert book.worst_case_loss == Decimal("14.0625")


def test_market_exposure_cap_refuses_and_moves_nothing(make_player, market):
    MarketRiskLimit.objects.create(market=market, exposure_cap=Decimal("20"))
    player, api = make_player(Decimal("100"))
    assert api.post("trade", buy_body()).status_code == 200  # worst case 14.06
    response = api.post("trade", buy_body(amount="20"))  # would add 11.25 -> 25.31 > 20
    assert _error(response) == (400, "Market exposure cap reached")
    assert decimal_json(response)["code"] == "risk.exposure.market_cap"
    assert Trade.objects.count() == 1
    assert decimal_json(api.get("balance"))["balance"] == Decimal("75.00")
    # A trade that reduces the worst case is always allowed, even past the cap.
    limit = MarketRiskLimit.objects.get(market=market)
    limit.exposure_cap = Decimal("1")
    limit.save()  # signals tell every worker's walls
    assert _error(api.post("trade", buy_body(amount="1"))) == (400, "Market exposure cap reached")
    assert api.post("trade", {"marketId": MARKET, "side": "sell", "outcome": "yes", "amount": 10, "midPrice": 62}).status_code == 200
    assert api.post("trade", buy_body(amount="1", outcome="no", mid=38)).status_code == 200  # hedges: NO adds cash, YES still max


def test_wagering_stats_count_stakes(make_player, market):
    player, api = make_player(Decimal("100"))
    api.post("trade", buy_body(amount="10"))
    api.post("trade", buy_body(amount="5"))
    player.refresh_from_db()
    assert player.total_wagered == Decimal("15.00")
