"""Category exposure caps (SPEC §16): the worst-case loss summed over a category's markets stays under
the category's cap, on every trade path, under concurrency, through settlement and reversal, and when
a market changes category; configured in admin/risk (global.categoryExposureCap, categories)."""

import threading
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest
from django.db import connections
from django.urls import reverse

from casino.models import CategoryExposure, Market, MarketExposure, Trade
from casino.services.exposure import (
    category_bounds_from_books,
    category_exposure_bound,
    category_exposure_bounds,
    exposure_book,
    global_exposure_bound,
)
from casino.services.markets import reference_price_set
from risk.models import CategoryRiskLimit, RiskDecision
from tests.conftest import MARKET, buy_body, decimal_json, requires_postgres
from tests.test_risk_api import config_of, patch
from tests.test_settlement import _settle_all
from wallets.models import PlayerWallet

pytestmark = [requires_postgres, pytest.mark.usefixtures("no_rate_limits", "no_velocity_limits")]

CRYPTO_2 = "0x1234abcd00000000000000000000000000000000000000000000000000000c02"
SPORTS = "0x1234abcd00000000000000000000000000000000000000000000000000000b01"
REFUSED = {"error": "Trade rejected by risk engine", "code": "risk.exposure.category_cap", "wall": "exposure", "limit": "category_cap"}
# A $32 YES buy at mid 62 is 50 shares at 64: the house's worst case on the market grows by 50 - 32 = 18.
EIGHTEEN = Decimal("18")


def sell_body(shares, mid=62, market_id=MARKET, outcome="yes"):
    return {"marketId": market_id, "side": "sell", "outcome": outcome, "amount": shares, "midPrice": mid}


def assert_bounds_match_books():
    """Each category's bound is the sum of the worst cases of the market shards counted under it."""
    bounds = {c: b for c, b in category_exposure_bounds().items() if b}
    assert bounds == {c: b for c, b in category_bounds_from_books().items() if b}


@pytest.fixture
def crypto_markets(market):
    """MARKET (category "crypto", from conftest), a second crypto market and a sports market, all at mid 62."""
    reference_price_set(market_id=CRYPTO_2, outcome="yes", mid_price=Decimal("62"), title="ETH above $5k?", category="Crypto")
    reference_price_set(market_id=SPORTS, outcome="yes", mid_price=Decimal("62"), title="Cup final", category="sports")
    return market


# -- the cap ------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_category_cap_refuses_exactly_past_the_limit_with_the_exact_body(make_player, crypto_markets, risk_limits):
    risk_limits(category_exposure_cap=Decimal("36"))
    player, api = make_player(Decimal("200"))
    assert api.post("trade", buy_body(amount="32")).status_code == 200
    # "Crypto" and "crypto" are one category: the second market's book adds up with the first.
    assert api.post("trade", buy_body(amount="32", market_id=CRYPTO_2)).status_code == 200
    assert category_exposure_bound(category="crypto") == 2 * EIGHTEEN  # exactly at the cap: allowed

    for market_id in (MARKET, CRYPTO_2):
        response = api.post("trade", buy_body(amount="0.10", market_id=market_id))
        assert (response.status_code, decimal_json(response)) == (400, REFUSED)
    decision = RiskDecision.objects.order_by("-id").first()
    assert (decision.wall, decision.limit, decision.code, decision.market_id) == ("exposure", "category_cap", REFUSED["code"], CRYPTO_2)
    assert decision.values == {"category": "crypto", "bound": "36.000000", "limit": "36.00"}
    assert RiskDecision.objects.filter(code=REFUSED["code"]).count() == 2
    # Refusals cost nothing and leave the books alone.
    assert PlayerWallet.objects.get(player=player).balance == Decimal("136.00")
    assert Trade.objects.filter(player=player).count() == 2
    assert category_exposure_bound(category="crypto") == 2 * EIGHTEEN

    # Another category has its own room; the global bound counts everything.
    assert api.post("trade", buy_body(amount="32", market_id=SPORTS)).status_code == 200
    assert category_exposure_bound(category="sports") == EIGHTEEN
    assert global_exposure_bound() == 3 * EIGHTEEN
    # A sell lowering the worst case goes through, and makes room for a buy again.
    assert api.post("trade", sell_body(10)).status_code == 200
    assert api.post("trade", buy_body(amount="0.10")).status_code == 200
    assert_bounds_match_books()


@pytest.mark.django_db
def test_a_sell_is_never_refused_by_the_category_cap_even_when_it_grows_the_worst_case(make_player, crypto_markets, risk_limits, settings):
    # One shard per book: the category's bound is then each market's exact worst case (with several shards it is
    # the sum of the shards' worst cases, an upper bound, until a locked pass consolidates the market's book).
    settings.HOUSE_EXPOSURE_SHARDS = 1
    _, api = make_player(Decimal("200"))
    assert api.post("trade", buy_body(amount="32")).status_code == 200  # YES 50 shares, cash 32
    assert api.post("trade", buy_body(amount="3.80", outcome="no", mid=38)).status_code == 200  # NO 9.5 shares at 40
    assert api.post("trade", buy_body(amount="32", market_id=CRYPTO_2)).status_code == 200
    at_cap = category_exposure_bound(category="crypto")
    assert at_cap == (Decimal("50") - Decimal("35.80")) + EIGHTEEN
    risk_limits(category_exposure_cap=at_cap)
    assert decimal_json(api.post("trade", buy_body(amount="0.10")))["code"] == REFUSED["code"]

    # Selling the NO shares pays 9.5 x 36 = 3.42 and the house still owes the 50 YES: worst case +3.42.
    response = api.post("trade", sell_body("9.5", mid=38, outcome="no"))
    assert response.status_code == 200, response.content
    assert exposure_book(market_id=MARKET).worst_case_loss == Decimal("50") - Decimal("32.38")
    assert category_exposure_bound(category="crypto") == at_cap + Decimal("3.42")  # over the cap: only a sell gets there
    assert decimal_json(api.post("trade", buy_body(amount="0.10", market_id=CRYPTO_2)))["code"] == REFUSED["code"]
    assert api.post("trade", sell_body(10, market_id=CRYPTO_2)).status_code == 200
    assert_bounds_match_books()


@pytest.mark.django_db
def test_a_category_override_applies_and_null_removes_it(make_player, crypto_markets, staff_api):
    _, api = make_player(Decimal("200"))
    response = patch(staff_api, {"categories": {" Crypto ": {"exposureCap": 18}}})
    assert response.status_code == 200, response.content
    assert decimal_json(response)["categories"] == {"crypto": {"exposureCap": Decimal("18")}}
    assert config_of(staff_api)["categories"] == {"crypto": {"exposureCap": Decimal("18")}}
    assert CategoryRiskLimit.objects.get().exposure_cap == Decimal("18")

    assert api.post("trade", buy_body(amount="32")).status_code == 200  # 18: at the category's own cap
    assert decimal_json(api.post("trade", buy_body(amount="32", market_id=CRYPTO_2))) == REFUSED
    assert api.post("trade", buy_body(amount="32", market_id=SPORTS)).status_code == 200  # the default cap there

    # null for the cap removes the override (the default 100,000 applies again) ...
    response = patch(staff_api, {"categories": {"crypto": {"exposureCap": None}}})
    assert response.status_code == 200 and decimal_json(response)["categories"] == {}
    assert api.post("trade", buy_body(amount="32", market_id=CRYPTO_2)).status_code == 200
    # ... and so does null for the whole entry.
    assert patch(staff_api, {"categories": {"crypto": {"exposureCap": 36}}}).status_code == 200
    assert decimal_json(api.post("trade", buy_body(amount="1"))) == REFUSED
    assert patch(staff_api, {"categories": {"crypto": None}}).status_code == 200
    assert not CategoryRiskLimit.objects.exists()
    assert api.post("trade", buy_body(amount="1")).status_code == 200


@pytest.mark.django_db
def test_the_default_category_cap_is_a_global_setting(make_player, crypto_markets, staff_api):
    assert config_of(staff_api)["global"]["categoryExposureCap"] == Decimal("100000")
    response = patch(staff_api, {"global": {"categoryExposureCap": 18}})
    assert response.status_code == 200
    assert decimal_json(response)["global"]["categoryExposureCap"] == Decimal("18")
    _, api = make_player(Decimal("200"))
    assert api.post("trade", buy_body(amount="32", market_id=SPORTS)).status_code == 200
    assert decimal_json(api.post("trade", buy_body(amount="1", market_id=SPORTS))) == REFUSED
    assert '"categoryExposureCap":18.00' in staff_api.get("admin/risk").content.decode()


@pytest.mark.django_db
@pytest.mark.parametrize(
    "body, field",
    [
        ({"categories": {"crypto": {"exposureCap": -1}}}, "categories.crypto.exposureCap"),
        ({"categories": {"crypto": {"exposureCap": "100"}}}, "categories.crypto.exposureCap"),
        ({"categories": {"crypto": {"exposureCap": 1.005}}}, "categories.crypto.exposureCap"),
        ({"categories": {"crypto": {"exposureCap": True}}}, "categories.crypto.exposureCap"),
        ({"categories": {"crypto": {"cap": 100}}}, "categories.crypto.cap"),
        ({"categories": {"crypto": 100}}, "categories.crypto"),
        ({"categories": {"  ": {"exposureCap": 100}}}, "categories.  "),
        ({"categories": {"x" * 65: {"exposureCap": 100}}}, f"categories.{'x' * 65}"),
        ({"categories": {"Crypto": {"exposureCap": 1}, "crypto": {"exposureCap": 2}}}, "categories"),
        ({"categories": [{"crypto": 1}]}, "categories"),
        ({"global": {"categoryExposureCap": -5}}, "global.categoryExposureCap"),
        ({"global": {"categoryExposureCap": None}}, "global.categoryExposureCap"),
    ],
)
def test_bad_category_settings_are_refused_and_change_nothing(staff_api, body, field):
    before = config_of(staff_api)
    response = patch(staff_api, {**body, "velocity": {"maxTradesPerMinute": 1}})  # nothing of a refused patch applies
    assert response.status_code == 400, response.content
    error = decimal_json(response)
    assert (error["code"], error["field"]) == ("invalid_risk_config", field)
    assert error["error"].startswith(f"Invalid risk configuration: {field} ")
    assert config_of(staff_api) == before


# -- settlement, reversal, a market changing category -----------------------------------------------------


@pytest.mark.django_db
def test_settlement_releases_the_category_bound_and_new_trades_fit_again(make_player, crypto_markets, risk_limits, staff_api):
    risk_limits(category_exposure_cap=Decimal("36"))
    _, api = make_player(Decimal("300"))
    assert api.post("trade", buy_body(amount="32")).status_code == 200
    assert api.post("trade", buy_body(amount="32", market_id=CRYPTO_2)).status_code == 200
    assert decimal_json(api.post("trade", buy_body(amount="32", market_id=CRYPTO_2))) == REFUSED

    assert staff_api.post("resolve", {"marketId": MARKET, "outcome": "no"}).status_code == 200
    _settle_all()
    assert category_exposure_bound(category="crypto") == EIGHTEEN
    assert global_exposure_bound() == EIGHTEEN
    assert api.post("trade", buy_body(amount="32", market_id=CRYPTO_2)).status_code == 200  # fits again
    assert category_exposure_bound(category="crypto") == 2 * EIGHTEEN
    assert decimal_json(api.post("trade", buy_body(amount="0.10", market_id=CRYPTO_2))) == REFUSED
    assert_bounds_match_books()


@pytest.mark.django_db
def test_a_void_releases_and_a_reversal_restores_the_category_bound(make_player, crypto_markets, staff_api):
    from tests.test_settlement_reversal import _reverse, _reverse_all

    _, api = make_player(Decimal("300"))
    assert api.post("trade", buy_body(amount="32")).status_code == 200
    assert api.post("trade", buy_body(amount="32", market_id=CRYPTO_2)).status_code == 200
    assert staff_api.post("resolve", {"marketId": MARKET, "action": "void", "reason": "cancelled at source"}).status_code == 200
    _settle_all()
    assert category_exposure_bound(category="crypto") == EIGHTEEN
    assert _reverse(staff_api).status_code == 200
    _reverse_all()
    assert category_exposure_bound(category="crypto") == 2 * EIGHTEEN
    assert global_exposure_bound() == 2 * EIGHTEEN
    assert_bounds_match_books()


@pytest.mark.django_db
def test_a_market_changing_category_takes_its_book_along(make_player, crypto_markets, risk_limits, admin_client):
    _, api = make_player(Decimal("300"))
    assert api.post("trade", buy_body(amount="32")).status_code == 200
    assert api.post("trade", buy_body(amount="32", market_id=CRYPTO_2)).status_code == 200
    CategoryRiskLimit.objects.create(category="sports", exposure_cap=Decimal("30"))

    # The feed (or a price set) moves MARKET to "Sports": its 18 leave crypto and count against sports' 30.
    reference_price_set(market_id=MARKET, outcome="yes", mid_price=Decimal("62"), category="Sports")
    assert (category_exposure_bound(category="crypto"), category_exposure_bound(category="sports")) == (EIGHTEEN, EIGHTEEN)
    assert set(MarketExposure.objects.filter(market_id=MARKET).values_list("category", flat=True)) == {"sports"}
    assert decimal_json(api.post("trade", buy_body(amount="32", market_id=SPORTS))) == REFUSED  # 18 + 18 > 30
    assert api.post("trade", buy_body(amount="16", market_id=SPORTS)).status_code == 200  # 18 + 9 <= 30

    # Staff move it back in the admin: the book follows at once.
    form = {
        "title": Market.objects.get(pk=MARKET).title,
        "category": "crypto",
        "liquidity": "",
        "custom_spread": "",
        "risk_limit-TOTAL_FORMS": "0",
        "risk_limit-INITIAL_FORMS": "0",
        "risk_limit-MIN_NUM_FORMS": "0",
        "risk_limit-MAX_NUM_FORMS": "1",
    }
    response = admin_client.post(reverse("admin:casino_market_change", args=[MARKET]), form)
    assert response.status_code == 302, response.context and response.context["adminform"].form.errors
    assert (category_exposure_bound(category="crypto"), category_exposure_bound(category="sports")) == (2 * EIGHTEEN, Decimal("9"))

    # Written behind the house's back (no service): the next trade on the market moves its book first.
    Market.objects.filter(pk=MARKET).update(category="sports")
    assert decimal_json(api.post("trade", buy_body(amount="32"))) == REFUSED  # 9 + 18 (moved) + 18 > 30
    assert category_exposure_bound(category="crypto") == 2 * EIGHTEEN  # the refused trade moved nothing
    assert api.post("trade", sell_body(5)).status_code == 200  # a sell moves it
    assert category_exposure_bound(category="crypto") == EIGHTEEN
    assert category_exposure_bound(category="sports") == Decimal("9") + exposure_book(market_id=MARKET).worst_case_loss
    assert_bounds_match_books()


@pytest.mark.django_db
def test_the_category_caps_admin(admin_client, crypto_markets, make_player):
    _, api = make_player(Decimal("100"))
    assert api.post("trade", buy_body(amount="32")).status_code == 200
    add = reverse("admin:risk_categoryrisklimit_add")
    assert admin_client.post(add, {"category": "  Crypto ", "exposure_cap": "30"}).status_code == 302
    assert CategoryRiskLimit.objects.get().category == "crypto"
    changelist = admin_client.get(reverse("admin:risk_categoryrisklimit_changelist")).content.decode()
    assert "18.00" in changelist and "60.0" in changelist  # the bound now and the share of the cap used
    response = admin_client.post(add, {"category": "sports", "exposure_cap": "-1"})
    assert response.status_code == 200 and "exposure_cap" in response.context["adminform"].form.errors
    assert decimal_json(api.post("trade", buy_body(amount="32"))) == REFUSED  # 18 + 18 > 30
    assert api.post("trade", buy_body(amount="32", market_id=SPORTS)).status_code == 200

    # The exposure overview lists the categories, fullest first, against their caps.
    overview = admin_client.get(reverse("admin:risk_exposure_overview"))
    rows = [(r["category"], r["bound"], r["cap"], r["own_cap"], r["cap_used_pct"]) for r in overview.context["category_rows"]]
    assert rows == [
        ("crypto", EIGHTEEN, Decimal("30"), True, Decimal("60.0")),
        ("sports", EIGHTEEN, Decimal("100000"), False, Decimal("0.0")),
    ]
    assert 'data-category="crypto"' in overview.content.decode()


# -- concurrency ------------------------------------------------------------------------------------


def run_at_once(calls):
    barrier = threading.Barrier(len(calls))

    def run(call):
        try:
            barrier.wait(timeout=60)
            return call()
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return list(pool.map(run, calls))


POLITICS = [f"0x{'e' * 60}{i:04d}" for i in range(5)]


@pytest.mark.django_db(transaction=True)
def test_fifty_concurrent_buys_across_a_category_never_pass_its_cap(make_player, risk_limits, settings):
    for i, market_id in enumerate(POLITICS):
        reference_price_set(market_id=market_id, outcome="yes", mid_price=Decimal("62"), title=f"Election {i}", category="politics")
    cap = Decimal("400")
    risk_limits(category_exposure_cap=cap)
    players = [make_player(Decimal("100"))[1] for _ in range(50)]
    # Each $25 YES buy at 64 adds 39.0625 - 25 = 14.0625 to the category: 28 fit under 400 (28 x 14.0625 = 393.75).
    responses = run_at_once(
        [lambda api=api, m=POLITICS[i % len(POLITICS)]: api.post("trade", buy_body(market_id=m)) for i, api in enumerate(players)]
    )
    ok = [r for r in responses if r.status_code == 200]
    refused = [decimal_json(r) for r in responses if r.status_code != 200]
    assert len(ok) == 28, [r for r in refused if r != REFUSED][:3]
    assert all(body == REFUSED for body in refused)
    worst = sum((exposure_book(market_id=m).worst_case_loss for m in POLITICS), Decimal("0"))
    assert worst == 28 * Decimal("14.0625") <= cap
    assert category_exposure_bound(category="politics") == worst
    assert Trade.objects.filter(market_id__in=POLITICS).count() == 28
    assert RiskDecision.objects.filter(code=REFUSED["code"]).count() == 22
    assert CategoryExposure.objects.filter(category="politics").count() == settings.HOUSE_EXPOSURE_SHARDS
    assert_bounds_match_books()


@pytest.mark.django_db(transaction=True)
def test_the_category_cap_holds_on_the_s2s_path(market, settings, risk_limits):
    from tests.test_s2s_wallet import S2SWorld

    settings.HOUSE_WALLET_RETRY_BASE_SECONDS = 0
    reference_price_set(market_id=CRYPTO_2, outcome="yes", mid_price=Decimal("62"), category="crypto")
    risk_limits(category_exposure_cap=Decimal("60"))
    world = S2SWorld()
    try:
        player, api = world.player(Decimal("200"))
        # On S2S a buy reserves its shares before the stake comes back from the operator's wallet (as for the
        # market cap): $32 reserves 50, then counts 50 - 32 = 18.
        assert api.post("trade", buy_body(amount="32")).status_code == 200
        assert category_exposure_bound(category="crypto") == EIGHTEEN
        assert decimal_json(api.post("trade", buy_body(amount="32", market_id=CRYPTO_2))) == REFUSED  # 18 + 50 > 60
        assert api.post("trade", buy_body(amount="20", market_id=CRYPTO_2)).status_code == 200  # 18 + 31.25 <= 60
        assert category_exposure_bound(category="crypto") == EIGHTEEN + Decimal("11.25")
        assert world.server.balance(player.external_id) == Decimal("148.00")
        assert api.post("trade", sell_body(10)).status_code == 200
        world.settle_everything()
        exact = sum((exposure_book(market_id=m).worst_case_loss for m in (MARKET, CRYPTO_2)), Decimal("0"))
        assert category_exposure_bound(category="crypto") >= exact == Decimal("14") + Decimal("11.25")
        world.assert_books_balance()
        assert_bounds_match_books()
    finally:
        world.stop()


@pytest.mark.django_db
def test_the_migration_counts_existing_books_under_their_category(make_player, crypto_markets):
    import importlib

    from django.apps import apps

    _, api = make_player(Decimal("200"))
    assert api.post("trade", buy_body(amount="32")).status_code == 200
    assert api.post("trade", buy_body(amount="32", market_id=SPORTS)).status_code == 200
    # The books as they were before the migration: no category on the shards, no category bounds.
    MarketExposure.objects.update(category="")
    CategoryExposure.objects.all().delete()
    migration = importlib.import_module("casino.migrations.0012_category_exposure")
    migration.books_into_categories(apps, None)
    assert set(MarketExposure.objects.filter(market_id=MARKET).values_list("category", flat=True)) == {"crypto"}
    assert category_exposure_bounds() == {"crypto": EIGHTEEN, "sports": EIGHTEEN}
    assert list(CategoryExposure.objects.values_list("shard", "bound", "quota")) == [(0, EIGHTEEN, EIGHTEEN)] * 2
    assert_bounds_match_books()
    # The next trade cuts fresh quotas from the cap and goes on as usual.
    assert api.post("trade", buy_body(amount="32", market_id=CRYPTO_2)).status_code == 200
    assert category_exposure_bound(category="crypto") == 2 * EIGHTEEN
    assert_bounds_match_books()
