"""The reference document's examples, exactly as a player sees them."""

from decimal import Decimal

import pytest

from tests.conftest import MARKET, Api, buy_body, decimal_json

pytestmark = pytest.mark.django_db


def test_quote_example_mid_62_for_25_dollars():
    response = Api().get("quote", {"side": "buy", "outcome": "yes", "amount": "25", "midPrice": "62"})
    assert response.status_code == 200
    assert response.content == b'{"executionPrice":64,"shares":39.0625,"cost":25.00,"spreadPct":4,"payout":39.06,"midPrice":62}'


def test_buy_example_from_100_balance_leaves_75(make_player, market):
    player, api = make_player(Decimal("100"))
    response = api.post("trade", buy_body())
    assert response.status_code == 200, response.content
    body = decimal_json(response)
    assert set(body) == {"success", "tradeId", "positionId", "executionPrice", "shares", "cost", "newBalance"}
    assert body["success"] is True
    assert (body["executionPrice"], body["shares"], body["cost"], body["newBalance"]) == (
        64,
        Decimal("39.0625"),
        Decimal("25.00"),
        Decimal("75.00"),
    )
    assert b'"cost":25.00' in response.content and b'"newBalance":75.00' in response.content


def test_sell_returns_proceeds_and_realized_pnl(make_player, market):
    _, api = make_player(Decimal("100"))
    api.post("trade", buy_body())
    from casino.services.markets import reference_price_set

    reference_price_set(market_id=MARKET, outcome="yes", mid_price=Decimal("68"))
    response = api.post("trade", {"marketId": MARKET, "side": "sell", "outcome": "yes", "amount": 20.00, "midPrice": 68})
    assert response.status_code == 200, response.content
    body = decimal_json(response)
    # 20 shares at the bid 66 = $13.20, onto the $75 left after the buy; pnl 20 x (66 - 64) / 100.
    assert body["executionPrice"] == 66
    assert body["shares"] == 20
    assert body["cost"] == Decimal("13.20")
    assert body["newBalance"] == Decimal("88.20")
    assert body["realizedPnl"] == Decimal("0.40")


def test_balance_with_and_without_ledger(make_player, market):
    player, api = make_player(Decimal("100"))
    api.post("trade", buy_body())
    plain = decimal_json(api.get("balance"))
    assert plain == {"balance": Decimal("75.00"), "ledger": None}
    body = decimal_json(api.get("balance", {"ledger": "true"}))
    assert body["balance"] == Decimal("75.00")
    newest = body["ledger"][0]
    assert newest["type"] == "trade_debit"
    assert newest["amount"] == Decimal("-25.00")
    assert newest["user_id"] == str(player.pk)
    assert newest["description"] == "Buy 39.0625 shares YES @ 64c"
    assert newest["created_at"].endswith("Z") and len(newest["created_at"]) == 24
    assert [e["type"] for e in body["ledger"]] == ["trade_debit", "deposit"]
    assert sum(e["amount"] for e in body["ledger"]) == body["balance"]


def test_deposit_and_withdraw_shapes(make_player):
    _, api = make_player()
    assert decimal_json(api.post("deposit", {"amount": Decimal("100.00")})) == {"balance": Decimal("100.00")}
    assert decimal_json(api.post("deposit", {"amount": Decimal("100.00")})) == {"balance": Decimal("200.00")}
    assert decimal_json(api.post("withdraw", {"amount": Decimal("50.00")})) == {
        "success": True,
        "newBalance": Decimal("150.00"),
        "amount": Decimal("50.00"),
    }


def test_deposit_caps(make_player):
    _, api = make_player(Decimal("99990"))
    over_request = api.post("deposit", {"amount": Decimal("100000.01")})
    assert over_request.status_code == 400
    over_balance = api.post("deposit", {"amount": Decimal("10.01")})
    assert over_balance.status_code == 400
    assert decimal_json(over_balance)["error"] == "Balance cap of $100,000 exceeded"
    assert decimal_json(api.post("deposit", {"amount": Decimal("10")})) == {"balance": Decimal("100000.00")}


def test_withdraw_caps_and_insufficient_balance(make_player):
    _, api = make_player(Decimal("100"))
    assert api.post("withdraw", {"amount": Decimal("100000.01")}).status_code == 400
    refused = api.post("withdraw", {"amount": Decimal("100.01")})
    assert refused.status_code == 400 and decimal_json(refused)["error"] == "Insufficient balance"
    assert decimal_json(api.get("balance"))["balance"] == Decimal("100.00")


def test_amount_must_be_positive(make_player):
    _, api = make_player()
    response = api.post("deposit", {"amount": 0})
    assert response.status_code == 400
    assert decimal_json(response)["error"] == "Amount must be positive"


def test_positions_shape_and_status_filter(make_player, market):
    player, api = make_player(Decimal("100"))
    api.post("trade", buy_body())
    positions = decimal_json(api.get("positions"))["positions"]
    assert len(positions) == 1
    p = positions[0]
    assert set(p) == {
        "id",
        "user_id",
        "market_id",
        "market_title",
        "outcome",
        "shares",
        "avg_price",
        "status",
        "realized_pnl",
        "operator_id",
        "created_at",
        "updated_at",
    }
    assert (p["market_id"], p["outcome"], p["shares"], p["avg_price"], p["status"], p["realized_pnl"]) == (
        MARKET,
        "yes",
        Decimal("39.0625"),
        64,
        "open",
        0,
    )
    assert p["market_title"] == "Will Bitcoin hit $100k by June?"
    assert decimal_json(api.get("positions", {"status": "closed"})) == {"positions": []}
    assert api.get("positions", {"status": "bogus"}).status_code == 400


def test_trades_shape_limit_and_market_filter(make_player, market):
    player, api = make_player(Decimal("100"))
    for _ in range(3):
        api.post("trade", buy_body(amount="1.00"))
    trades = decimal_json(api.get("trades"))["trades"]
    assert len(trades) == 3
    t = trades[0]
    assert set(t) == {
        "id",
        "user_id",
        "market_id",
        "market_title",
        "side",
        "outcome",
        "shares",
        "price_mid",
        "price_executed",
        "spread_applied",
        "cost",
        "balance_before",
        "balance_after",
        "realized_pnl",
        "operator_id",
        "s2s_transaction_id",
        "created_at",
    }
    assert (t["price_mid"], t["price_executed"], t["spread_applied"], t["cost"]) == (62, 64, 2, Decimal("1.00"))
    assert t["balance_before"] == Decimal("98.00") and t["balance_after"] == Decimal("97.00")
    assert t["s2s_transaction_id"] is None
    assert len(decimal_json(api.get("trades", {"limit": "2"}))["trades"]) == 2
    assert decimal_json(api.get("trades", {"marketId": "0xother"}))["trades"] == []
    assert api.get("trades", {"limit": "abc"}).status_code == 400


def test_markets_configuration(market):
    from casino.models import Market
    from casino.services.markets import casino_settings

    config = casino_settings()
    config.blocked_categories = ["adult", "drugs"]
    config.save()
    Market.objects.filter(pk=MARKET).update(custom_spread=Decimal("6"))
    Market.objects.create(id="0xabc123", disabled=True)
    body = decimal_json(Api().get("markets"))
    assert body["blockedCategories"] == ["adult", "drugs"]
    assert body["disabledMarketIds"] == ["0xabc123"]
    assert body["criteria"] == {"min_liquidity": 5000, "min_price": 5, "max_price": 95}
    assert body["customSpreads"] == {MARKET: 6}


def test_admin_balance_adjustment(make_player, staff_api):
    player, api = make_player(Decimal("100"))
    response = staff_api.post(
        "admin/balance", {"targetUserId": str(player.pk), "amount": 50.00, "action": "deposit", "description": "Promotional welcome bonus"}
    )
    assert decimal_json(response) == {"success": True, "newBalance": Decimal("150.00")}
    entry = decimal_json(api.get("balance", {"ledger": "true"}))["ledger"][0]
    assert (entry["type"], entry["amount"], entry["description"]) == ("adjustment", Decimal("50.00"), "Promotional welcome bonus")
    refused = staff_api.post("admin/balance", {"targetUserId": str(player.pk), "amount": 500, "action": "withdraw"})
    assert refused.status_code == 400 and decimal_json(refused)["error"] == "Insufficient balance"
    withdrawn = staff_api.post("admin/balance", {"targetUserId": str(player.pk), "amount": 20, "action": "withdraw"})
    assert decimal_json(withdrawn) == {"success": True, "newBalance": Decimal("130.00")}
    assert decimal_json(api.get("balance", {"ledger": "true"}))["ledger"][0]["description"] == "Admin withdrawal"


def test_admin_prices_sets_both_outcomes(staff_api, make_player):
    response = staff_api.post("admin/prices", {"marketId": "0xnew", "outcome": "no", "midPrice": 30, "marketTitle": "New market"})
    assert decimal_json(response) == {"success": True, "marketId": "0xnew", "yes": 70, "no": 30}
    _, api = make_player(Decimal("10"))
    assert api.post("trade", buy_body(amount="1", mid=70, market_id="0xnew")).status_code == 200
    assert api.post("trade", buy_body(amount="1", mid=30, market_id="0xnew", outcome="no")).status_code == 200


def test_operator_session_creates_player_once(operator_api):
    first = decimal_json(operator_api.post("operator/sessions", {"playerId": "casino-user-42", "tier": "vip"}))
    second = decimal_json(operator_api.post("operator/sessions", {"playerId": "casino-user-42"}))
    assert set(first) == {"token", "userId", "expiresAt"}
    assert first["userId"] == second["userId"] and first["token"] != second["token"]
    assert Api({"Authorization": f"Bearer {second['token']}"}).get("balance").status_code == 200
