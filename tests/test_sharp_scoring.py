"""Wall 4: sharp scores from markout and results, recomputed by a task, and what a sharp score does
to the player's quotes, prices and limits."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from casino.models import Market, Position, PositionStatus, ReferencePriceTick, Trade
from casino.services.credentials import operator_create
from casino.services.markets import reference_price_set
from risk import counters
from risk.models import PlayerRiskProfile, RiskSettings
from risk.services.assessment import operator_open_exposure_key
from risk.services.sharp import (
    PriceHistory,
    markout_edge,
    player_sharp_score,
    player_sharp_score_refresh,
    results_edge,
    sharp_scores_recompute,
)
from risk.tasks import operator_open_exposure_rebuild, sharp_scores_recompute_task
from tests.conftest import MARKET, Api, buy_body, decimal_json

pytestmark = pytest.mark.usefixtures("no_rate_limits")

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
OTHER = "0x1234abcd00000000000000000000000000000000000000000000000000000002"
HORIZONS = [60, 300, 3600]


def _trade(side="buy", outcome="yes", shares="50", price="64", cost="32.00", at=T0, market_id=MARKET, mid="62") -> Trade:
    return Trade(
        market_id=market_id,
        side=side,
        outcome=outcome,
        shares=Decimal(shares),
        price_mid=Decimal(mid),
        price_executed=Decimal(price),
        cost=Decimal(cost),
        created_at=at,
    )


def _history(*points, market_id=MARKET, outcome="yes") -> PriceHistory:
    """_history((seconds after T0, mid), ...)"""
    return PriceHistory((market_id, outcome, T0 + timedelta(seconds=s), Decimal(str(mid))) for s, mid in points)


# -- the formulas, on hand-computed examples -------------------------------------------------------


def test_price_history_gives_the_latest_tick_at_or_before_the_time():
    history = _history((0, 62), (60, 70), (60, 71), (300, 66))
    assert history(MARKET, "yes", T0 - timedelta(seconds=1)) is None
    assert history(MARKET, "yes", T0) == 62
    assert history(MARKET, "yes", T0 + timedelta(seconds=59)) == 62
    assert history(MARKET, "yes", T0 + timedelta(seconds=60)) == 71  # same time: the last one written
    assert history(MARKET, "yes", T0 + timedelta(days=1)) == 66
    assert history(MARKET, "no", T0) is None and history(OTHER, "yes", T0) is None


def test_markout_of_a_buy_is_the_mid_move_above_the_price_paid_per_dollar_staked():
    buy = _trade()  # 50 shares at 64 for $32
    history = _history((0, 62), (60, 70), (300, 66))
    # h=60: 50 x (70 - 64) / 100 = 3.00; h=300: 50 x (66 - 64) / 100 = 1.00; h=3600 not yet elapsed.
    edge = markout_edge([buy], history, HORIZONS, T0 + timedelta(seconds=600))
    assert edge.value == Decimal("4.00") / Decimal("64.00") == Decimal("0.0625")
    assert edge.trade_ids == {buy.pk}


def test_markout_of_a_sell_is_the_mid_move_below_the_price_received():
    sell = _trade(side="sell", shares="100", price="60", cost="60.00")
    history = _history((0, 62), (60, 54), (300, 57), (3600, 70))
    # h=60: 100 x (60 - 54) / 100 = 6; h=300: 3; h=3600: -10 -> -1 / (3 x 60)
    assert markout_edge([sell], history, [60, 300], T0 + timedelta(hours=2)).value == Decimal("9") / Decimal("120") == Decimal("0.075")
    assert markout_edge([sell], history, HORIZONS, T0 + timedelta(hours=2)).value == Decimal("-1") / Decimal("180")


def test_markout_pools_trades_and_horizons_by_stake():
    buy = _trade(shares="100", price="64", cost="64.00")
    no_buy = _trade(outcome="no", shares="25", price="40", cost="10.00")
    history = PriceHistory(
        [
            (MARKET, "yes", T0 + timedelta(seconds=60), Decimal("70")),
            (MARKET, "no", T0 + timedelta(seconds=60), Decimal("30")),
        ]
    )
    # yes: 100 x 6 / 100 = 6 at each of 2 horizons; no: 25 x (30 - 40) / 100 = -2.5 at each.
    edge = markout_edge([buy, no_buy], history, [60, 300], T0 + timedelta(seconds=300))
    assert edge.value == Decimal("7") / Decimal("148")


def test_markout_skips_horizons_not_yet_elapsed_and_missing_ticks():
    buy = _trade()
    history = _history((0, 62), (60, 70))
    assert markout_edge([buy], history, HORIZONS, T0 + timedelta(seconds=59)) == markout_edge([], history, HORIZONS, T0)
    assert markout_edge([buy], history, HORIZONS, T0 + timedelta(seconds=59)).value is None
    # Only h=60 has elapsed: the tick at 60 counts, the later ones do not exist yet.
    assert markout_edge([buy], history, HORIZONS, T0 + timedelta(seconds=299)).value == Decimal("3") / Decimal("32")
    # No tick at or before the horizon time: the pair is skipped.
    late = _history((120, 80))
    assert markout_edge([buy], late, [60, 300], T0 + timedelta(hours=1)).value == Decimal("8") / Decimal("32")
    assert markout_edge([_trade(market_id=OTHER)], history, HORIZONS, T0 + timedelta(days=1)).value is None


def test_results_count_payouts_on_resolved_markets_only():
    trades = [
        _trade(shares="50", cost="32.00"),  # won: 50 - 32 = +18
        _trade(outcome="no", shares="40", cost="15.00"),  # lost: -15
        _trade(side="sell", shares="10", cost="6.00"),  # sold the winner: 6 - 10 = -4
        _trade(side="sell", outcome="no", shares="20", cost="7.00"),  # sold the loser: +7
        _trade(market_id=OTHER, cost="500.00"),  # voided or not resolved: ignored
    ]
    edge = results_edge(trades, {MARKET: "yes"})
    assert edge.value == Decimal("6") / Decimal("60") == Decimal("0.1")
    assert edge.trade_ids == {t.pk for t in trades[:4]}
    assert results_edge(trades, {}).value is None


def _settings(**fields) -> RiskSettings:
    return RiskSettings(**{"sharp_full_edge": Decimal("1"), "sharp_min_trades": 1, "markout_horizons_seconds": HORIZONS, **fields})


def test_score_is_the_composite_over_100_and_nothing_below_the_minimum_trades():
    # Issue 14 (SPEC §16): the score is the five-factor composite / 100 (tests/test_player_classes.py
    # checks each component on a crafted history); here one buy, as the two-factor tests had it.
    buy = _trade()  # 50 shares at 64 for $32, mid 62
    history = _history((0, 62), (60, 70), (300, 66))
    now = T0 + timedelta(seconds=600)

    def score(resolved, price_at=history, **fields):
        return player_sharp_score(trades=[buy], price_at=price_at, resolved_outcomes=resolved, settings=_settings(**fields), now=now)

    # win rate 0.5 (1 resolved trade < 5); edge 0.0625 / full edge 1; timing 1 (70 - 62 = 8 >= 5);
    # sizing 0 (no stake >= 2 x the median); diversity 0 (one market):
    # 100 x (0.15 + 0.25 x 0.0625 + 0.15) = 31.5625 -> 31.56
    both = score({MARKET: "yes"})
    assert (both.score, both.markout_edge, both.results_edge) == (Decimal("0.3156"), Decimal("0.0625"), Decimal("0.5625"))
    assert (both.components.composite, both.components.player_class, both.trades_scored) == (Decimal("31.56"), "recreational", 1)
    assert score({}).score == Decimal("0.3156")
    # No markout at all: edge and timing 0, win rate neutral: 15.00
    assert score({MARKET: "yes"}, price_at=PriceHistory()).score == Decimal("0.15")
    assert score({}, price_at=PriceHistory()).trades_scored == 0
    # Full edge 0.05: edge component 1 -> 100 x (0.15 + 0.25 + 0.15) = 55
    assert score({}, sharp_full_edge=Decimal("0.05")).score == Decimal("0.55")
    # Too few trades: no score, but the edges and the components are still known.
    few = score({}, sharp_min_trades=2)
    assert (few.score, few.markout_edge, few.trades_scored, few.components.timing) == (0, Decimal("0.0625"), 1, 1)
    assert (few.components.composite, few.components.player_class) == (0, "recreational")


# -- the recompute task on real trades -------------------------------------------------------------


def _trade_then_move(player, api, mid, *, count=3, amount="6.40", market_id=MARKET):
    """``count`` buys of YES at 64 (10 shares for $6.40), backdated two hours; then the house mid
    moves to ``mid`` at every horizon after them (one market per player, so moves do not mix)."""
    if not Market.objects.filter(pk=market_id).exists():
        reference_price_set(market_id=market_id, outcome="yes", mid_price=Decimal("62"))
    for _ in range(count):
        response = api.post("trade", buy_body(amount=amount, market_id=market_id))
        assert response.status_code == 200, response.content
    start = timezone.now() - timedelta(hours=2)
    Trade.objects.filter(player=player).update(created_at=start)
    for h in HORIZONS:
        at = start + timedelta(seconds=h)
        ReferencePriceTick.objects.bulk_create(
            [
                ReferencePriceTick(market_id=market_id, outcome="yes", mid_price=Decimal(mid), at=at),
                ReferencePriceTick(market_id=market_id, outcome="no", mid_price=100 - Decimal(mid), at=at),
            ]
        )


def _profile(player) -> PlayerRiskProfile:
    return PlayerRiskProfile.objects.get(player=player)


def _quote(api):
    return decimal_json(api.get("quote", {"side": "buy", "outcome": "yes", "amount": "25", "midPrice": "62", "marketId": MARKET}))


@pytest.mark.django_db
def test_buying_before_the_price_rises_scores_high_and_before_it_falls_scores_zero(make_player, market, risk_limits):
    risk_limits(sharp_min_trades=3)
    sharp, sharp_api = make_player(Decimal("100"))
    unlucky, unlucky_api = make_player(Decimal("100"))
    _trade_then_move(sharp, sharp_api, 80)
    _trade_then_move(unlucky, unlucky_api, 50, market_id=OTHER)
    assert sharp_scores_recompute() == 2
    # sharp: 10 x (80 - 64) / 100 = 1.60 per $6.40 = 0.25 at every horizon, past the full edge 0.10;
    # composite (issue 14): win rate 0.5 (nothing resolved), edge 1, timing 1 (80 - mid 62 >= 5),
    # sizing 0 (equal stakes), diversity 0 (one market): 100 x (0.15 + 0.25 + 0.15) = 55
    assert (_profile(sharp).sharp_score, _profile(sharp).markout_edge, _profile(sharp).trades_scored) == (
        Decimal("0.55"),
        Decimal("0.25"),
        3,
    )
    # unlucky: 10 x (50 - 64) / 100 = -1.40 per $6.40 = -0.21875; composite: win rate 0.5 alone = 15
    profile = _profile(unlucky)
    assert (profile.sharp_score, profile.markout_edge, profile.results_edge, profile.trades_scored) == (
        Decimal("0.15"),
        Decimal("-0.2188"),
        0,
        3,
    )
    assert profile.computed_at is not None


@pytest.mark.django_db
def test_fewer_trades_than_the_minimum_get_no_score(make_player, market):
    player, api = make_player(Decimal("100"))
    _trade_then_move(player, api, 80)  # 3 trades; the default minimum is 10
    sharp_scores_recompute()
    profile = _profile(player)
    assert (profile.sharp_score, profile.markout_edge, profile.trades_scored) == (0, Decimal("0.25"), 3)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("status", "outcome", "results", "score"),
    [
        # 5 trades (issue 14: the win rate counts from 5 resolved trades); results (10 - 6.40) / 6.40 = 0.5625.
        # composite: 100 x (0.30 x win rate + 0.25 x edge 0.25 (full edge 1) + 0.15 x timing 1)
        ("resolved", "yes", Decimal("0.5625"), Decimal("0.5125")),  # win rate 1
        ("resolved", "no", Decimal("-1"), Decimal("0.2125")),  # win rate 0
        ("voided", None, Decimal("0"), Decimal("0.3625")),  # win rate 0.5 (neutral)
    ],
)
def test_results_on_resolved_markets_count_and_voided_markets_do_not(make_player, market, risk_limits, status, outcome, results, score):
    risk_limits(sharp_min_trades=3, sharp_full_edge=Decimal("1"))
    player, api = make_player(Decimal("100"))
    _trade_then_move(player, api, 80, count=5)
    Market.objects.filter(pk=MARKET).update(status=status, outcome=outcome)
    sharp_scores_recompute()
    profile = _profile(player)
    assert (profile.markout_edge, profile.results_edge, profile.sharp_score) == (Decimal("0.25"), results, score)


@pytest.mark.django_db
def test_only_recent_trades_are_scored_and_a_single_player_can_be_refreshed(make_player, market, risk_limits):
    risk_limits(sharp_min_trades=3)
    player, api = make_player(Decimal("100"))
    _trade_then_move(player, api, 80)
    assert sharp_scores_recompute(now=timezone.now() + timedelta(days=31)) == 0
    assert not PlayerRiskProfile.objects.exists()
    assert player_sharp_score_refresh(player=player).sharp_score == Decimal("0.55")
    Trade.objects.filter(player=player).update(created_at=timezone.now() - timedelta(days=40))
    profile = player_sharp_score_refresh(player=player)  # nothing left in the window: back to zero
    assert (profile.sharp_score, profile.trades_scored) == (0, 0)


@pytest.mark.django_db
def test_the_price_in_force_before_the_first_horizon_is_used(make_player, market, risk_limits):
    risk_limits(sharp_min_trades=3)
    player, api = make_player(Decimal("100"))
    _trade_then_move(player, api, 80)
    start = Trade.objects.filter(player=player).first().created_at
    ReferencePriceTick.objects.filter(at__gt=start).delete()  # no tick after the trades until now
    ReferencePriceTick.objects.bulk_create(
        [
            ReferencePriceTick(market_id=MARKET, outcome="yes", mid_price=Decimal("50"), at=start - timedelta(seconds=100)),
            ReferencePriceTick(market_id=MARKET, outcome="yes", mid_price=Decimal("72"), at=start - timedelta(seconds=10)),
        ]
    )
    sharp_scores_recompute()
    assert _profile(player).markout_edge == Decimal("0.125")  # 10 x (72 - 64) / 100 per $6.40, at every horizon


@pytest.mark.django_db
@pytest.mark.parametrize("trades_each", [1, 8])
def test_recompute_queries_do_not_grow_with_trades(make_player, market, no_velocity_limits, django_assert_max_num_queries, trades_each):
    for market_id in (MARKET, OTHER):
        player, api = make_player(Decimal("100"))
        _trade_then_move(player, api, 80, count=trades_each, amount="1", market_id=market_id)
    # player ids, trades, resolved markets, ticks in force before the range (2), ticks in the range, upsert
    with django_assert_max_num_queries(7):
        assert sharp_scores_recompute() == 2


# -- what the score does ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_player_marked_sharp_gets_a_wider_spread_in_quote_and_trade(make_player, market, risk_limits):
    # widening only, from 0.5 (issue 14: this history's composite is 55, the plain one's 15)
    risk_limits(sharp_min_trades=3, sharp_spread_widen_at=Decimal("0.5"), sharp_limit_at=Decimal("2"), sharp_refuse_at=Decimal("2"))
    sharp, sharp_api = make_player(Decimal("100"))
    plain, plain_api = make_player(Decimal("100"))
    _trade_then_move(sharp, sharp_api, 80)
    _trade_then_move(plain, plain_api, 62, market_id=OTHER)  # no move: pays the spread, edge < 0
    assert (_quote(sharp_api)["spreadPct"], _quote(sharp_api)["executionPrice"]) == (4, 64)

    assert sharp_scores_recompute() == 2
    assert _profile(sharp).sharp_score == Decimal("0.55") and _profile(plain).sharp_score == Decimal("0.15")

    quote = _quote(sharp_api)
    assert (quote["spreadPct"], quote["executionPrice"], quote["midPrice"]) == (6, 65, 62)  # 62 + (4 + 2) / 2
    trade = decimal_json(sharp_api.post("trade", buy_body(amount="25")))
    assert (trade["executionPrice"], trade["shares"]) == (65, Decimal("38.461538"))
    assert Trade.objects.filter(player=sharp).latest("created_at").spread_applied == 3

    for api in (plain_api, Api()):
        assert (_quote(api)["spreadPct"], _quote(api)["executionPrice"]) == (4, 64)
    assert decimal_json(plain_api.post("trade", buy_body(amount="25")))["executionPrice"] == 64


@pytest.mark.django_db
def test_a_player_scored_past_the_refuse_threshold_is_refused(make_player, market, risk_limits):
    risk_limits(sharp_min_trades=3, sharp_spread_widen_at=Decimal("0.5"), sharp_refuse_at=Decimal("0.55"))  # composite 55
    player, api = make_player(Decimal("100"))
    _trade_then_move(player, api, 80)
    sharp_scores_recompute()
    response = api.post("trade", buy_body(amount="1"))
    body = decimal_json(response)
    assert (response.status_code, body["error"], body["code"]) == (400, "Trade rejected by risk engine", "risk.sharp.refuse_at")
    assert _quote(api)["spreadPct"] == 6  # quotes still work, at the sharp price


@pytest.mark.django_db
def test_a_player_scored_past_the_limit_threshold_gets_lower_limits(make_player, market, risk_limits):
    # limits from 0.5 (composite 55): standard max stake 1000 x 0.5
    risk_limits(sharp_min_trades=3, sharp_limit_at=Decimal("0.5"), sharp_refuse_at=Decimal("2"))
    player, api = make_player(Decimal("1000"))
    _trade_then_move(player, api, 80)
    sharp_scores_recompute()
    response = api.post("trade", buy_body(amount="600"))
    assert (response.status_code, decimal_json(response)["code"]) == (400, "risk.tier.max_stake")
    assert api.post("trade", buy_body(amount="500")).status_code == 200


# -- the beat tasks ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_sharp_scores_task_runs(make_player, market, risk_limits):
    risk_limits(sharp_min_trades=3)
    player, api = make_player(Decimal("100"))
    _trade_then_move(player, api, 80)
    assert sharp_scores_recompute_task.apply().get() == 1
    assert (_profile(player).sharp_score, _profile(player).composite_score, _profile(player).player_class) == (
        Decimal("0.55"),
        Decimal("55"),
        "moderate",
    )
    # incremental: every horizon had elapsed at the last computation and nothing resolved since
    assert sharp_scores_recompute_task.apply(kwargs={"incremental": True}).get() == 0


@pytest.mark.django_db
def test_operator_open_exposure_rebuild_sets_the_exact_value(make_player, market, operator):
    _, api = make_player(Decimal("100"))
    assert api.post("trade", buy_body()).status_code == 200  # 39.0625 shares for $25
    idle = operator_create(name="idle-operator", wallet_mode="internal").operator
    position = Position.objects.get(status=PositionStatus.OPEN)
    assert position.shares - position.shares * position.avg_price / 100 == Decimal("14.0625")
    key = operator_open_exposure_key(operator.operator.pk)
    counters.reserve([counters.Counter.total(key, add=777, limit=None)])  # drift (e.g. a trade that died after reserving)

    assert operator_open_exposure_rebuild.apply().get() == 2
    assert counters.current_value(counters.Counter.total(key, add=0, limit=None)) == 1406  # cents(14.0625), half even
    assert counters.current_value(counters.Counter.total(operator_open_exposure_key(idle.pk), add=0, limit=None)) == 0
