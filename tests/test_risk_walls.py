"""Each wall at and just past each of its limits; every refusal is recorded and costs nothing."""

import threading
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest
from django.db import connections

from casino.models import Position, Trade
from casino.services.credentials import session_open
from casino.services.exposure import exposure_book, global_exposure_bound
from casino.services.markets import reference_price_set
from risk.models import MarketRiskLimit, OperatorRiskLimit, PlayerRiskProfile, RiskDecision, Tier
from tests.conftest import MARKET, Api, buy_body, decimal_json, requires_postgres
from wallets.models import PlayerWallet
from wallets.services.transfers import wallet_deposit

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("no_rate_limits")]
OTHER_MARKET = "0x1234abcd00000000000000000000000000000000000000000000000000000009"


def refused(response, code: str, message: str = "Trade rejected by risk engine", status: int = 400):
    body = decimal_json(response)
    assert (response.status_code, body["error"], body["code"]) == (status, message, code), body
    wall, limit = code.split(".")[1:]
    decision = RiskDecision.objects.order_by("-id").first()
    assert (decision.wall, decision.limit, decision.code) == (wall, limit, code)
    return decision


def sell_body(shares, mid=62, market_id=MARKET):
    return {"marketId": market_id, "side": "sell", "outcome": "yes", "amount": shares, "midPrice": mid}


# -- kill switches ------------------------------------------------------------------------------


def test_global_kill_switch_stops_trading_but_not_reads(make_player, market, risk_limits):
    _, api = make_player(Decimal("100"))
    risk_limits(trading_enabled=False)
    refused(api.post("trade", buy_body()), "risk.kill_switch.global", "Trading is disabled", 503)
    assert api.get("balance").status_code == 200
    assert api.get("quote", {"side": "buy", "outcome": "yes", "amount": "5", "midPrice": "62"}).status_code == 200
    assert api.get("positions").status_code == 200 and api.get("trades").status_code == 200
    risk_limits(trading_enabled=True)
    assert api.post("trade", buy_body()).status_code == 200


def test_operator_kill_switch(make_player, market, operator):
    _, api = make_player(Decimal("100"))
    OperatorRiskLimit.objects.create(operator=operator.operator, trading_enabled=False)
    refused(api.post("trade", buy_body()), "risk.kill_switch.operator", "Trading is disabled", 503)
    limit = OperatorRiskLimit.objects.get(operator=operator.operator)
    limit.trading_enabled = True
    limit.save()
    assert api.post("trade", buy_body()).status_code == 200


# -- wall 1: velocity -----------------------------------------------------------------------------


def test_max_trades_per_minute(make_player, market, risk_limits):
    risk_limits(max_trades_per_minute=3)
    _, api = make_player(Decimal("100"))
    for _ in range(3):
        assert api.post("trade", buy_body(amount="1")).status_code == 200
    refused(api.post("trade", buy_body(amount="1")), "risk.velocity.max_trades_per_minute")
    assert Trade.objects.count() == 3


def test_trades_that_fail_later_do_not_use_up_the_velocity_limit(make_player, market, risk_limits):
    risk_limits(max_trades_per_minute=2)
    _, api = make_player(Decimal("1"))
    for _ in range(3):
        assert decimal_json(api.post("trade", buy_body(amount="5")))["error"] == "Insufficient balance"
    assert api.post("trade", buy_body(amount="0.50")).status_code == 200
    assert api.post("trade", buy_body(amount="0.50")).status_code == 200
    refused(api.post("trade", buy_body(amount="0.50")), "risk.velocity.max_trades_per_minute")


def test_max_stake_per_minute(make_player, market, risk_limits):
    risk_limits(max_stake_per_minute=Decimal("50"))
    _, api = make_player(Decimal("100"))
    assert api.post("trade", buy_body(amount="30")).status_code == 200
    assert api.post("trade", buy_body(amount="20")).status_code == 200  # exactly at the limit
    refused(api.post("trade", buy_body(amount="0.01")), "risk.velocity.max_stake_per_minute")
    assert api.post("trade", sell_body(5)).status_code == 200  # sells stake nothing


def test_market_burst_across_players(make_player, market, risk_limits):
    risk_limits(market_burst_trades=2, market_burst_window_seconds=10)
    apis = [make_player(Decimal("10"))[1] for _ in range(3)]
    assert apis[0].post("trade", buy_body(amount="1")).status_code == 200
    assert apis[1].post("trade", buy_body(amount="1")).status_code == 200
    decision = refused(apis[2].post("trade", buy_body(amount="1")), "risk.velocity.market_burst")
    assert decision.market_id == MARKET


# -- wall 2: tier limits --------------------------------------------------------------------------


def _tiered_player(operator, tier: str, balance: Decimal):
    session = session_open(operator=operator.operator, external_player_id=f"{tier}-player", tier=tier)
    wallet_deposit(player=session.player, amount=balance)
    return session.player, Api({"Authorization": f"Bearer {session.token}"})


def test_max_stake_per_trade(operator, market):
    _, api = _tiered_player(operator, "restricted", Decimal("300"))  # restricted: max stake 100
    refused(api.post("trade", buy_body(amount="100.01")), "risk.tier.max_stake")
    assert api.post("trade", buy_body(amount="100")).status_code == 200


def test_max_position_per_market(operator, market):
    reference_price_set(market_id=OTHER_MARKET, outcome="yes", mid_price=Decimal("50"))
    Tier.objects.create(name="small", max_stake=Decimal("100"), max_position_per_market=Decimal("50"), max_daily_loss=Decimal("1000"))
    player, api = _tiered_player(operator, "small", Decimal("300"))
    assert api.post("trade", buy_body(amount="30")).status_code == 200
    held = sum(p.shares * p.avg_price / 100 for p in Position.objects.filter(player=player))
    room = Decimal("50") - held
    assert api.post("trade", buy_body(amount=str(room.quantize(Decimal("0.01"), rounding="ROUND_FLOOR")))).status_code == 200
    refused(api.post("trade", buy_body(amount="0.05")), "risk.tier.max_position_per_market")
    assert api.post("trade", buy_body(amount="5", market_id=OTHER_MARKET, mid=50)).status_code == 200  # per market


def test_max_daily_loss(operator, market):
    reference_price_set(market_id=OTHER_MARKET, outcome="yes", mid_price=Decimal("50"))
    player, api = _tiered_player(operator, "restricted", Decimal("500"))  # restricted: daily loss 200
    assert api.post("trade", buy_body(amount="100")).status_code == 200
    assert api.post("trade", buy_body(amount="100", market_id=OTHER_MARKET, mid=50)).status_code == 200  # at the limit
    refused(api.post("trade", buy_body(amount="1", market_id=OTHER_MARKET, mid=50)), "risk.tier.max_daily_loss")
    assert api.post("trade", sell_body(50)).status_code == 200  # proceeds come back: room again
    assert api.post("trade", buy_body(amount="1", market_id=OTHER_MARKET, mid=50)).status_code == 200


def test_operators_set_the_tier_when_opening_a_session(operator_api, market):
    body = decimal_json(operator_api.post("operator/sessions", {"playerId": "whale-1", "tier": "vip"}))
    from casino.models import Player

    assert Player.objects.get(pk=body["userId"]).tier == "vip"


# -- wall 3: exposure caps ------------------------------------------------------------------------


def test_market_cap_at_and_past_the_limit(make_player, market, risk_limits):
    risk_limits(skew_max=Decimal("0"))  # SPEC §16: the exposure skew would price the second buy above 64
    MarketRiskLimit.objects.create(market=market, exposure_cap=Decimal("36"))  # exactly two $32 buys at 64 (50 shares each)
    _, api = make_player(Decimal("100"))
    assert api.post("trade", buy_body(amount="32")).status_code == 200
    assert api.post("trade", buy_body(amount="32")).status_code == 200
    assert exposure_book(market_id=MARKET).worst_case_loss == Decimal("36")
    refused(api.post("trade", buy_body(amount="0.10")), "risk.exposure.market_cap", "Market exposure cap reached")


def test_global_cap_across_markets(make_player, market, risk_limits):
    reference_price_set(market_id=OTHER_MARKET, outcome="yes", mid_price=Decimal("62"))
    risk_limits(global_exposure_cap=Decimal("36"))
    _, api = make_player(Decimal("200"))
    assert api.post("trade", buy_body(amount="32")).status_code == 200
    assert api.post("trade", buy_body(amount="32", market_id=OTHER_MARKET)).status_code == 200  # 18 + 18: at the global cap
    assert global_exposure_bound() == Decimal("36")
    refused(api.post("trade", buy_body(amount="0.10", market_id=OTHER_MARKET)), "risk.exposure.global_cap")
    refused(api.post("trade", buy_body(amount="0.10")), "risk.exposure.global_cap")
    assert api.post("trade", sell_body(10)).status_code == 200  # lowers the worst case: always allowed


# -- wall 4: sharp ----------------------------------------------------------------------------------


def _sharp(player, score):
    PlayerRiskProfile.objects.update_or_create(player=player, defaults={"sharp_score": Decimal(score), "trades_scored": 50})


def test_sharp_player_is_refused_at_the_threshold(make_player, market):
    player, api = make_player(Decimal("100"))
    _sharp(player, "0.8999")
    assert api.post("trade", buy_body(amount="1")).status_code == 200
    _sharp(player, "0.9")
    refused(api.post("trade", buy_body(amount="1")), "risk.sharp.refuse_at")


def test_sharp_player_gets_a_wider_spread_in_quote_and_trade(make_player, market):
    player, api = make_player(Decimal("100"))
    _sharp(player, "0.6")
    quote = decimal_json(api.get("quote", {"side": "buy", "outcome": "yes", "amount": "25", "midPrice": "62"}))
    assert (quote["spreadPct"], quote["executionPrice"]) == (6, 65)
    assert decimal_json(api.post("trade", buy_body()))["executionPrice"] == 65
    anonymous = decimal_json(Api().get("quote", {"side": "buy", "outcome": "yes", "amount": "25", "midPrice": "62"}))
    assert (anonymous["spreadPct"], anonymous["executionPrice"]) == (4, 64)


def test_sharp_player_gets_lower_limits(make_player, market):
    player, api = make_player(Decimal("1000"))
    _sharp(player, "0.75")  # standard max stake 1000 x 0.5
    refused(api.post("trade", buy_body(amount="500.01")), "risk.tier.max_stake")


# -- wall 5: operator limits ------------------------------------------------------------------------


def test_operator_daily_turnover(make_player, market, operator):
    OperatorRiskLimit.objects.create(operator=operator.operator, max_daily_turnover=Decimal("50"))
    _, alice = make_player(Decimal("100"))
    _, bob = make_player(Decimal("100"))
    assert alice.post("trade", buy_body(amount="30")).status_code == 200
    assert bob.post("trade", buy_body(amount="20")).status_code == 200  # the operator's players together: at the limit
    refused(bob.post("trade", buy_body(amount="0.01")), "risk.operator.max_daily_turnover")


def test_operator_daily_net_loss(make_player, market, operator):
    """Sells are never refused (SPEC §16): a sale may take the day past the limit; the buys after it are refused."""
    limit = OperatorRiskLimit.objects.create(operator=operator.operator, max_daily_net_loss=Decimal("26"))
    _, api = make_player(Decimal("100"))
    assert api.post("trade", buy_body(amount="64")).status_code == 200  # 100 shares; the house took 64
    reference_price_set(market_id=MARKET, outcome="yes", mid_price=Decimal("90"))
    assert api.post("trade", sell_body(100, mid=90)).status_code == 200  # ~90 paid vs 64 taken: 26, at the limit
    assert api.post("trade", buy_body(amount="1", mid=90)).status_code == 200  # at the limit: not past it
    limit.max_daily_net_loss = Decimal("24.99")
    limit.save()
    decision = refused(api.post("trade", buy_body(amount="1", mid=90)), "risk.operator.max_daily_net_loss")
    assert decision.values == {"current": "2500", "adding": "0", "limit": "2499"}
    assert api.post("trade", sell_body(1, mid=90)).status_code == 200  # a sale still goes through


def test_operator_open_exposure(make_player, market, operator):
    OperatorRiskLimit.objects.create(operator=operator.operator, max_open_exposure=Decimal("20"))
    _, api = make_player(Decimal("100"))
    assert api.post("trade", buy_body()).status_code == 200  # owes ~40 shares for 25: +15.3
    refused(api.post("trade", buy_body()), "risk.operator.max_open_exposure")


def test_refusals_cost_the_player_nothing(make_player, market, risk_limits):
    player, api = make_player(Decimal("100"))
    risk_limits(max_trades_per_minute=1)
    api.post("trade", buy_body())
    refused(api.post("trade", buy_body()), "risk.velocity.max_trades_per_minute")
    assert PlayerWallet.objects.get(player=player).balance == Decimal("75.00")
    assert Trade.objects.filter(player=player).count() == 1


# -- concurrency ------------------------------------------------------------------------------------


@requires_postgres
@pytest.mark.django_db(transaction=True)
def test_fifty_simultaneous_trades_near_the_cap_never_pass_it(make_player, market, no_velocity_limits, risk_limits):
    risk_limits(skew_max=Decimal("0"))  # SPEC §16: the exposure skew would price the buys above 64
    cap = Decimal("300")
    MarketRiskLimit.objects.create(market=market, exposure_cap=cap)
    _, filler = make_player(Decimal("1000"))
    for _ in range(15):  # 15 x 14.0625 = 210.9375 of 300 used
        assert filler.post("trade", buy_body()).status_code == 200
    players = [make_player(Decimal("100")) for _ in range(50)]
    barrier = threading.Barrier(50)

    def trade(api):
        try:
            barrier.wait(timeout=30)
            return api.post("trade", buy_body())
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=50) as pool:
        responses = list(pool.map(trade, [api for _, api in players]))
    ok = [r for r in responses if r.status_code == 200]
    assert len(ok) == 6  # (300 - 210.9375) / 14.0625 = 6.33
    assert all(decimal_json(r)["error"] == "Market exposure cap reached" for r in responses if r.status_code != 200)
    book = exposure_book(market_id=MARKET)
    assert book.worst_case_loss <= cap
    assert book.worst_case_loss == 21 * Decimal("14.0625")
    balances = [PlayerWallet.objects.get(player=p).balance for p, _ in players]
    assert balances.count(Decimal("100.00")) == 44 and balances.count(Decimal("75.00")) == 6
    assert RiskDecision.objects.filter(code="risk.exposure.market_cap").count() == 44
