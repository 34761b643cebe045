"""SPEC §16 "Dynamic spread": the full spread (extreme prices, thin liquidity, tier and sharp
extras, the clamps at 1 and 15), the exposure skew on buys of the adverse outcome only, and
quote, catalogue and trade pricing alike; the "pricing" section of admin/risk."""

from decimal import Decimal as D

import pytest

from casino.models import CasinoSettings, Market, MarketExposure, Player, Position
from casino.services.exposure import Book
from casino.services.markets import reference_price_set
from casino.services.pricing import quote_price, skew_for, spread_full
from risk.models import MarketRiskLimit, PlayerRiskProfile, Tier
from risk.services.config import risk_settings
from tests.conftest import MARKET, Api, buy_body, decimal_json

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("no_rate_limits")]


def _spread(mid, liquidity=None, custom=None, tier_extra=D("0"), sharp_extra=D("0")):
    market = Market(id="m", custom_spread=custom, liquidity=liquidity)
    return spread_full(
        casino=CasinoSettings(default_spread=D("4")),
        rules=risk_settings(),
        market=market,
        mid_price=D(mid),
        tier_extra=tier_extra,
        sharp_extra=sharp_extra,
    )


# -- the full spread: every term, exact ---------------------------------------------------------


@pytest.mark.parametrize(
    ("mid", "liquidity", "expected"),
    [
        ("5", D("5000"), D("7.3")),  # 4 + 1.5 (extreme) + 1.8 (thin)
        ("5", D("50000"), D("5.5")),
        ("5", None, D("5.5")),  # no figure: 100,000, no widening
        ("50", D("5000"), D("5.8")),
        ("50", D("50000"), D("4")),
        ("50", None, D("4")),
        ("95", D("5000"), D("7.3")),
        ("95", D("50000"), D("5.5")),
        ("95", None, D("5.5")),
    ],
)
def test_spread_at_mid_5_50_95_by_liquidity(mid, liquidity, expected):
    assert _spread(mid, liquidity) == expected


@pytest.mark.parametrize(
    ("mid", "liquidity", "expected"),
    [("5", D("5000"), D("5.3")), ("50", D("5000"), D("3.8")), ("50", None, D("2")), ("95", D("50000"), D("3.5"))],
)
def test_spread_with_a_custom_spread_as_base(mid, liquidity, expected):
    assert _spread(mid, liquidity, custom=D("2")) == expected


def test_tier_and_sharp_extras_add_and_the_clamps_hold_at_1_and_15():
    assert _spread("50", tier_extra=D("3")) == D("7")
    assert _spread("50", sharp_extra=D("2")) == D("6")
    assert _spread("5", D("5000"), tier_extra=D("3"), sharp_extra=D("2")) == D("12.3")
    assert _spread("50", custom=D("0")) == D("1")  # min spread
    assert _spread("50", custom=D("0.5"), tier_extra=D("0.4")) == D("1")
    assert _spread("5", D("5000"), custom=D("10"), tier_extra=D("3"), sharp_extra=D("2")) == D("15")  # 18.3 -> max spread
    assert _spread("50", custom=D("15")) == D("15")


def test_defaults_are_specs():
    row = risk_settings()
    values = [row.min_spread, row.max_spread, row.extreme_zone, row.extreme_widening, row.liquidity_reference, row.liquidity_widening]
    assert values == [1, 15, 10, D("0.3"), 50000, 2]
    assert (row.skew_start, row.skew_max) == (D("0.25"), 2)


@pytest.mark.parametrize(
    ("worst", "skew"), [(D("0"), D("0")), (D("250"), D("0")), (D("625"), D("1")), (D("1000"), D("2")), (D("1500"), D("2"))]
)
def test_skew_at_0_25_62_5_and_100_percent_of_the_cap(worst, skew):
    book = Book(yes_shares=D("1000") + worst, no_shares=D("0"), cash_in=D("1000"))
    rules, cap = risk_settings(), D("1000")
    assert skew_for(rules=rules, book=book, cap=cap, side="buy", outcome="yes") == skew
    assert skew_for(rules=rules, book=book, cap=cap, side="buy", outcome="no") == 0  # not the adverse side
    assert skew_for(rules=rules, book=book, cap=cap, side="sell", outcome="yes") == 0  # never on sells
    quote = quote_price(
        side="buy", outcome="yes", amount=D("25"), mid_price=D("62"), casino=CasinoSettings(), rules=rules, book=book, cap=cap
    )
    assert (quote.execution_price, quote.spread_applied) == (64 + skew, 4 + 2 * skew)


def test_the_reference_example_holds():
    quote = quote_price(side="buy", outcome="yes", amount=D("25"), mid_price=D("62"), casino=CasinoSettings(), rules=risk_settings())
    assert (quote.execution_price, quote.shares, quote.payout, quote.spread_applied) == (64, D("39.0625"), D("39.06"), 4)


# -- over HTTP: quote, catalogue and trade agree ------------------------------------------------


def _quote(api, **params):
    return decimal_json(api.get("quote", {"marketId": MARKET, "side": "buy", "outcome": "yes", "amount": "25", **params}))


def _catalogue(api=None):
    return decimal_json((api or Api()).get(f"catalog/{MARKET}"))


def _book(market, *, yes=D("0"), no=D("0"), cash=D("0")):
    """The market's book as one shard holds it (the next trade re-cuts the quotas)."""
    MarketExposure.objects.update_or_create(market=market, shard=0, defaults={"yes_shares": yes, "no_shares": no, "cash_in": cash})


def test_reference_example_over_http_quote_catalogue_and_trade(make_player, market):
    _, api = make_player(D("100"))
    assert _quote(Api()) == {
        "executionPrice": 64,
        "shares": D("39.0625"),
        "cost": D("25.00"),
        "spreadPct": 4,
        "payout": D("39.06"),
        "midPrice": 62,
    }
    body = _catalogue()
    assert (body["yes"], body["no"], body["spreadPct"]) == ({"mid": 62, "bid": 60, "ask": 64}, {"mid": 38, "bid": 36, "ask": 40}, 4)
    trade = decimal_json(api.post("trade", buy_body()))
    assert (trade["executionPrice"], trade["shares"], trade["newBalance"]) == (64, D("39.0625"), D("75.00"))


def test_extreme_price_and_thin_liquidity_priced_alike_by_quote_catalogue_and_trade(make_player):
    market = reference_price_set(market_id=MARKET, outcome="yes", mid_price=D("5"), title="Long shot").market
    Market.objects.filter(pk=market.pk).update(liquidity=D("5000"))
    _, api = make_player(D("100"))
    quote = _quote(api, amount="8.65")
    assert (quote["executionPrice"], quote["spreadPct"], quote["shares"]) == (D("8.65"), D("7.3"), 100)  # 5 + 7.3 / 2
    body = _catalogue(api)
    assert (body["yes"], body["spreadPct"]) == ({"mid": 5, "bid": D("1.35"), "ask": D("8.65")}, D("7.3"))
    assert body["no"] == {"mid": 95, "bid": D("91.35"), "ask": D("98.65")}
    trade = decimal_json(api.post("trade", {**buy_body(amount="8.65", mid=5)}))
    assert (trade["executionPrice"], trade["shares"], trade["cost"]) == (D("8.65"), 100, D("8.65"))
    sell = _quote(api, side="sell", amount="100")
    assert (sell["executionPrice"], sell["spreadPct"], sell["cost"]) == (D("1.35"), D("7.3"), D("1.35"))


def test_the_houses_liquidity_wins_over_the_clients_and_the_clients_counts_without_it(make_player, market):
    _, api = make_player(D("100"))
    quote = _quote(api, liquidity="5000")  # the house has no figure: the client's 5,000 widens by 1.8
    assert (quote["executionPrice"], quote["spreadPct"], quote["shares"]) == (D("64.9"), D("5.8"), D("38.520801"))
    trade = decimal_json(api.post("trade", {**buy_body(), "liquidity": D("5000")}))
    assert (trade["executionPrice"], trade["shares"]) == (D("64.9"), D("38.520801"))
    Market.objects.filter(pk=market.pk).update(liquidity=D("50000"))
    assert _quote(api, liquidity="5000")["executionPrice"] == 64
    assert decimal_json(api.post("trade", {**buy_body(), "liquidity": D("5000")}))["executionPrice"] == 64
    assert decimal_json(api.get("quote", {"midPrice": "62", "side": "buy", "outcome": "yes", "amount": "1", "liquidity": "-1"})) == {
        "error": "Invalid liquidity",
        "code": "invalid_liquidity",
    }


def test_custom_spread_tier_and_sharp_extras_over_http(make_player, market):
    player, api = make_player(D("100"))
    Player.objects.filter(pk=player.pk).update(tier="restricted")
    PlayerRiskProfile.objects.create(player=player, sharp_score=D("0.7"))  # >= 0.6: +2, below the limit and refusal thresholds
    quote = _quote(api, amount="13.30")
    assert (quote["executionPrice"], quote["spreadPct"], quote["shares"]) == (D("66.5"), 9, 20)  # 4 + 3 + 2
    assert _catalogue(api)["yes"] == {"mid": 62, "bid": D("57.5"), "ask": D("66.5")}
    assert _catalogue()["yes"]["ask"] == 64  # anonymous: no extras
    trade = decimal_json(api.post("trade", buy_body(amount="13.30")))
    assert (trade["executionPrice"], trade["shares"]) == (D("66.5"), 20)
    Market.objects.filter(pk=market.pk).update(custom_spread=D("1"))
    assert (_quote(api)["executionPrice"], _quote(api)["spreadPct"]) == (D("65"), 6)  # 1 + 3 + 2
    assert _quote(Api())["spreadPct"] == 1


def test_the_clamps_at_1_and_15_over_http(make_player):
    market = reference_price_set(market_id=MARKET, outcome="yes", mid_price=D("5"), title="Long shot").market
    Market.objects.filter(pk=market.pk).update(liquidity=D("5000"), custom_spread=D("10"))
    player, api = make_player(D("100"))
    Player.objects.filter(pk=player.pk).update(tier="restricted")
    PlayerRiskProfile.objects.create(player=player, sharp_score=D("0.7"))
    quote = _quote(api)  # 10 + 1.5 + 1.8 + 3 + 2 = 18.3 -> 15
    assert (quote["executionPrice"], quote["spreadPct"]) == (D("12.5"), 15)
    sell = _quote(api, side="sell", amount="10")  # 5 - 7.5 -> clamped to 1: the spread applied is 8
    assert (sell["executionPrice"], sell["spreadPct"]) == (1, 8)
    Market.objects.filter(pk=market.pk).update(custom_spread=D("0"), liquidity=None)
    reference_price_set(market_id=MARKET, outcome="yes", mid_price=D("50"))
    assert (_quote(Api())["executionPrice"], _quote(Api())["spreadPct"]) == (D("50.5"), 1)  # 0 -> min spread 1


# -- the exposure skew, over HTTP ---------------------------------------------------------------


@pytest.mark.parametrize(("worst", "price"), [(D("0"), 64), (D("250"), 64), (D("625"), 65), (D("1000"), 66)])
def test_skew_in_quote_and_catalogue_at_0_25_62_5_and_100_percent(market, worst, price):
    MarketRiskLimit.objects.create(market=market, exposure_cap=D("1000"))
    if worst:
        _book(market, yes=D("1000") + worst, cash=D("1000"))
    quote = _quote(Api())
    assert (quote["executionPrice"], quote["spreadPct"]) == (price, 2 * (price - 62))
    body = _catalogue()
    assert body["yes"] == {"mid": 62, "bid": 60, "ask": price}
    assert body["no"] == {"mid": 38, "bid": 36, "ask": 40}  # the other outcome: no skew
    assert body["spreadPct"] == 2 * (price - 62)
    no = _quote(Api(), outcome="no")
    assert (no["executionPrice"], no["spreadPct"]) == (40, 4)
    sell = _quote(Api(), side="sell", amount="10")
    assert (sell["executionPrice"], sell["spreadPct"]) == (60, 4)


def test_skew_on_trades_only_on_the_adverse_side_never_on_sells(make_player, market):
    MarketRiskLimit.objects.create(market=market, exposure_cap=D("1000"))
    _book(market, yes=D("1625"), cash=D("1000"))  # worst case 625: 62.5% of the cap, YES is adverse
    _, api = make_player(D("200"))
    assert _quote(Api(), amount="26")["executionPrice"] == 65
    buy = decimal_json(api.post("trade", buy_body(amount="26")))
    assert (buy["executionPrice"], buy["shares"], buy["newBalance"]) == (65, 40, D("174.00"))  # 62 + 2 + 1
    no = decimal_json(api.post("trade", buy_body(amount="20", mid=38, outcome="no")))
    assert (no["executionPrice"], no["shares"]) == (40, 50)  # no skew on the other outcome
    sell = decimal_json(api.post("trade", {"marketId": MARKET, "side": "sell", "outcome": "yes", "amount": D("10"), "midPrice": 62}))
    assert (sell["executionPrice"], sell["cost"]) == (60, D("6.00"))  # sells: mid - spread/2, no skew
    position = Position.objects.get(market_id=MARKET, outcome="yes")
    assert (position.shares, position.avg_price) == (30, 65)


def test_skew_follows_the_adverse_side_when_no_is_the_houses_worst_case(make_player, market):
    MarketRiskLimit.objects.create(market=market, exposure_cap=D("1000"))
    _book(market, no=D("2000"), cash=D("1000"))  # NO wins: the house loses 1000, at the cap
    body = _catalogue()
    assert (body["yes"]["ask"], body["no"]["ask"], body["spreadPct"]) == (64, 42, 8)
    assert _quote(Api(), outcome="no", midPrice="38")["executionPrice"] == 42
    _, api = make_player(D("100"))
    assert decimal_json(api.post("trade", buy_body(amount="32")))["executionPrice"] == 64  # YES lowers the worst case


def test_the_restricted_tier_exists_with_3_points_and_the_lowest_limits():
    restricted = Tier.objects.get(name="restricted")
    others = Tier.objects.exclude(name="restricted")
    assert restricted.extra_spread == 3
    assert {t.extra_spread for t in others} == {0}
    for field in ("max_stake", "max_position_per_market", "max_daily_loss"):
        assert getattr(restricted, field) <= min(getattr(t, field) for t in others)


# -- admin/risk "pricing" -----------------------------------------------------------------------


def _patch(api, body):
    return api.patch("admin/risk", body)


def test_admin_risk_pricing_get_and_patch(staff_api, make_player, market):
    config = decimal_json(staff_api.get("admin/risk"))
    assert config["pricing"] == {
        "minSpread": 1,
        "maxSpread": 15,
        "extremeZone": 10,
        "extremeWidening": D("0.3"),
        "liquidityReference": 50000,
        "liquidityWidening": 2,
        "skewStart": D("0.25"),
        "skewMax": 2,
        "defaultSpread": 4,
    }
    assert config["tiers"]["restricted"]["extraSpread"] == 3
    response = _patch(
        staff_api, {"pricing": {"defaultSpread": 3, "maxSpread": 12, "skewMax": 1.5}, "tiers": {"standard": {"extraSpread": 1}}}
    )
    assert response.status_code == 200, response.content
    after = decimal_json(response)
    assert after["pricing"] == {**config["pricing"], "defaultSpread": 3, "maxSpread": 12, "skewMax": D("1.5")}
    assert after["tiers"]["standard"]["extraSpread"] == 1
    assert CasinoSettings.objects.get(pk=1).default_spread == 3
    _, api = make_player(D("100"))
    assert _quote(api)["executionPrice"] == 64  # 3 + 1 (standard tier) = 4
    assert _quote(Api())["executionPrice"] == D("63.5")  # anonymous: 3
    assert decimal_json(api.post("trade", buy_body()))["executionPrice"] == 64


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"pricing": {"minSpread": 16}}, "pricing.minSpread"),  # above maxSpread 15
        ({"pricing": {"minSpread": 5, "maxSpread": 4}}, "pricing.minSpread"),
        ({"pricing": {"maxSpread": -1}}, "pricing.maxSpread"),
        ({"pricing": {"skewStart": 1}}, "pricing.skewStart"),
        ({"pricing": {"liquidityReference": 0}}, "pricing.liquidityReference"),
        ({"pricing": {"extremeWidening": "0.3"}}, "pricing.extremeWidening"),
        ({"pricing": {"defaultSpread": 100.5}}, "pricing.defaultSpread"),
        ({"pricing": {"spread": 4}}, "pricing.spread"),
        ({"pricing": []}, "pricing"),
        ({"tiers": {"vip": {"extraSpread": -1}}}, "tiers.vip.extraSpread"),
    ],
)
def test_admin_risk_pricing_refuses_bad_values_and_changes_nothing(staff_api, body, field):
    before = decimal_json(staff_api.get("admin/risk"))
    response = _patch(staff_api, body)
    assert response.status_code == 400
    error = decimal_json(response)
    assert (error["code"], error["field"]) == ("invalid_risk_config", field)
    assert error["error"].startswith(f"Invalid risk configuration: {field} ")
    if field == "pricing.spread":
        assert error["error"].endswith(
            "(expected one of: minSpread, maxSpread, extremeZone, extremeWidening, liquidityReference, "
            "liquidityWidening, skewStart, skewMax, defaultSpread)"
        )
    assert decimal_json(staff_api.get("admin/risk")) == before


def test_pricing_patch_with_the_default_spread_alone_leaves_the_risk_row(staff_api):
    before = risk_settings().updated_at
    response = _patch(staff_api, {"pricing": {"defaultSpread": 5}})
    assert response.status_code == 200 and decimal_json(response)["pricing"]["defaultSpread"] == 5
    assert risk_settings().updated_at == before


@pytest.mark.django_db(transaction=True)
def test_skew_on_an_s2s_trade_and_none_on_its_sell(market, settings, no_velocity_limits):
    from tests.test_s2s_wallet import S2SWorld

    settings.HOUSE_WALLET_RETRY_BASE_SECONDS = 0
    world = S2SWorld()
    try:
        MarketRiskLimit.objects.create(market=market, exposure_cap=D("1000"))
        _book(market, yes=D("1625"), cash=D("1000"))
        player, api = world.player()
        buy = decimal_json(api.post("trade", buy_body(amount="26")))
        assert (buy["executionPrice"], buy["shares"], buy["newBalance"]) == (65, 40, D("74.00"))
        sell = decimal_json(api.post("trade", {"marketId": MARKET, "side": "sell", "outcome": "yes", "amount": D("10"), "midPrice": 62}))
        assert (sell["executionPrice"], sell["cost"], sell["newBalance"]) == (60, D("6.00"), D("80.00"))
        world.assert_books_balance()
    finally:
        world.stop()


def test_admin_edits_pricing_and_a_tiers_extra_spread(admin_client):
    from django.urls import reverse

    from tests.test_risk_admin import _settings_form

    url = reverse("admin:risk_risksettings_change", args=[1])
    response = admin_client.get(url)
    assert "Pricing (SPEC §16 dynamic spread)" in response.content.decode()
    assert {"min_spread", "max_spread", "skew_start", "skew_max", "liquidity_reference"} <= set(response.context["adminform"].form.fields)
    bad = admin_client.post(url, _settings_form(min_spread="5", max_spread="4"))
    assert bad.status_code == 200 and "min_spread" in bad.context["adminform"].form.errors
    bad = admin_client.post(url, _settings_form(skew_start="1"))
    assert bad.status_code == 200 and "skew_start" in bad.context["adminform"].form.errors
    assert admin_client.post(url, _settings_form(skew_max="3", liquidity_reference="40000")).status_code == 302
    row = risk_settings()
    assert (row.skew_max, row.liquidity_reference, row.min_spread) == (3, 40000, 1)  # the fields not sent keep their values
    tier = reverse("admin:risk_tier_change", args=["restricted"])
    form = {"max_stake": "100", "max_position_per_market": "500", "max_daily_loss": "200", "extra_spread": "2.5"}
    assert admin_client.post(tier, form).status_code == 302
    assert Tier.objects.get(name="restricted").extra_spread == D("2.5")
    del form["extra_spread"]
    assert admin_client.post(tier, form).status_code == 302
    assert Tier.objects.get(name="restricted").extra_spread == D("2.5")  # left out: kept
