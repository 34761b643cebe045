"""Player classes (SPEC §16): the five components, the composite and the class, computed by the
scoring task from a crafted history and checked against numbers worked out by hand from the
definitions in risk/services/sharp.py's docstring (not by calling the code); wall 4 acts on
composite / 100; staff see the class and the components, players never do."""

from datetime import timedelta
from decimal import ROUND_HALF_UP, Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from casino.models import ReferencePriceTick, Trade
from risk.models import PlayerRiskProfile
from risk.services.sharp import sharp_scores_recompute
from tests.conftest import MARKET, buy_body, decimal_json
from tests.factories import MarketFactory

pytestmark = pytest.mark.usefixtures("no_rate_limits")

D = Decimal


def _trade(player, market, *, side="buy", outcome="yes", shares, price, mid, cost, at) -> Trade:
    trade = Trade.objects.create(
        player=player,
        operator_id=player.operator_id,
        market=market,
        side=side,
        outcome=outcome,
        shares=D(shares),
        price_mid=D(mid),
        price_executed=D(price),
        spread_applied=abs(D(price) - D(mid)),
        cost=D(cost),
        balance_before=D("0"),
        balance_after=D("0"),
    )
    Trade.objects.filter(pk=trade.pk).update(created_at=at)
    return trade


def _ticks(market, outcome, at, *points):
    """points: (seconds after ``at``, mid)"""
    ReferencePriceTick.objects.bulk_create(
        [ReferencePriceTick(market=market, outcome=outcome, mid_price=D(mid), at=at + timedelta(seconds=s)) for s, mid in points]
    )


def _crafted_history(player, now):
    """Ten trades two hours ago on three markets (every horizon 60 / 300 / 3600 s has elapsed).

    Ticks after the trades: at +60 s and +3600 s (the +300 s horizon reads the +60 s tick, the one in
    force); none before, so mid(t, h) is exactly these."""
    at = now - timedelta(hours=2)
    m1 = MarketFactory(status="resolved", outcome="yes")
    m2 = MarketFactory(status="resolved", outcome="no")
    m3 = MarketFactory()  # open
    _ticks(m1, "yes", at, (60, "65"), (3600, "70"))
    _ticks(m2, "no", at, (60, "41"), (3600, "45"))
    _ticks(m2, "yes", at, (60, "59"), (3600, "55"))
    _ticks(m3, "yes", at, (60, "52"), (3600, "60"))
    for _ in range(4):  # M1: buys of the winner, 10 shares at 60 (mid 58) for $6.00
        _trade(player, m1, shares="10", price="60", mid="58", cost="6.00", at=at)
    _trade(player, m1, side="sell", shares="10", price="56", mid="58", cost="5.60", at=at)  # sold the winner
    for _ in range(2):  # M2: buys of the winner "no", 10 shares at 40 (mid 38) for $4.00
        _trade(player, m2, outcome="no", shares="10", price="40", mid="38", cost="4.00", at=at)
    _trade(player, m2, shares="50", price="62", mid="60", cost="31.00", at=at)  # a large buy of the loser
    _trade(player, m3, shares="100", price="50", mid="48", cost="50.00", at=at)  # a large buy, right
    _trade(player, m3, shares="6", price="50", mid="48", cost="3.00", at=at)


# Worked out by hand from the definitions:
#
# win rate: 8 trades on resolved markets (M1: 5, M2: 3). Wins: the 4 buys of yes on M1 (yes won), the
#   2 buys of no on M2 (no won); losses: the sell of M1's winner, the buy of M2's loser. 6 / 8 = 0.75.
#
# markout(t, h) and stake per measured pair (3 pairs per trade):
#   M1 buy:  10 x (65-60)/100 = 0.5, 0.5, 10 x (70-60)/100 = 1.0  -> 2.0 per trade, x4 = 8.0; stake 3 x 6.00 x 4 = 72
#   M1 sell: 10 x (56-65)/100 = -0.9, -0.9, 10 x (56-70)/100 = -1.4 -> -3.2;                  stake 3 x 5.60 = 16.80
#   M2 no:   10 x (41-40)/100 = 0.1, 0.1, 10 x (45-40)/100 = 0.5   -> 0.7 per trade, x2 = 1.4; stake 3 x 4 x 2 = 24
#   M2 yes:  50 x (59-62)/100 = -1.5, -1.5, 50 x (55-62)/100 = -3.5 -> -6.5;                   stake 3 x 31 = 93
#   M3 big: 100 x (52-50)/100 = 2, 2, 100 x (60-50)/100 = 10       -> 14;                     stake 3 x 50 = 150
#   M3 small: 6 x 2/100 = 0.12, 0.12, 6 x 10/100 = 0.6              -> 0.84;                   stake 3 x 3 = 9
#   markout edge = 14.54 / 364.80; edge = that / full edge 0.10 = 0.3985745... -> 0.3986
MARKOUT_EDGE = D("14.54") / D("364.80")
#
# timing: largest favourable move (mid(t, h) - price_mid for a buy, price_mid - mid(t, h) for a sell):
#   M1 buys 70-58 = 12 (timed), M1 sell 58-65 = -7 (not), M2 no buys 45-38 = 7 (timed),
#   M2 yes buy 59-60 = -1 (not), M3 buys 60-48 = 12 (timed): 8 of 10 -> 0.8
#
# sizing: stakes sorted 3, 4, 4, 5.60, 6, 6, 6, 6, 31, 50: median (6 + 6) / 2 = 6; large >= 2 x 6 = 12:
#   the $31 buy (markout -6.5, wrong) and the $50 buy (markout 14, right): 1 / 2 = 0.5
#
# diversity: stake per market M1 4 x 6 + 5.60 = 29.60, M2 2 x 4 + 31 = 39, M3 53; total 121.60
#   1 - (29.60^2 + 39^2 + 53^2) / 121.60^2 = 1 - 5206.16 / 14786.56 = 0.64791... -> 0.6479
#
# composite = 100 x (0.30 x 0.75 + 0.25 x 0.3986 + 0.15 x 0.8 + 0.15 x 0.5 + 0.15 x 0.6479)
#           = 100 x (0.225 + 0.09965 + 0.12 + 0.075 + 0.097185) = 61.6835 -> 61.68: sharp (60 <= 61.68 < 80)
EXPECTED = {
    "win_rate": D("0.75"),
    "edge": D("0.3986"),
    "timing": D("0.8"),
    "sizing": D("0.5"),
    "diversity": D("0.6479"),
    "composite_score": D("61.68"),
    "player_class": "sharp",
    "sharp_score": D("0.6168"),
    "trades_scored": 10,
}


def _profile_values(player) -> dict:
    profile = PlayerRiskProfile.objects.get(player=player)
    return {name: getattr(profile, name) for name in EXPECTED}


def test_the_hand_worked_figures_are_what_the_definitions_give():
    """The arithmetic of the comments above, done once more in the test (no code under test)."""
    q = D("0.0001")
    assert (MARKOUT_EDGE / D("0.10")).quantize(q, rounding=ROUND_HALF_UP) == D("0.3986")
    assert (1 - (D("29.60") ** 2 + D("39") ** 2 + D("53") ** 2) / D("121.60") ** 2).quantize(q, rounding=ROUND_HALF_UP) == D("0.6479")
    weights = [(D("0.30"), D("0.75")), (D("0.25"), D("0.3986")), (D("0.15"), D("0.8")), (D("0.15"), D("0.5")), (D("0.15"), D("0.6479"))]
    assert (100 * sum(w * c for w, c in weights)).quantize(D("0.01"), rounding=ROUND_HALF_UP) == D("61.68")


@pytest.mark.django_db
def test_classes_from_a_crafted_history_match_the_definitions(make_player):
    player, _ = make_player()
    now = timezone.now()
    _crafted_history(player, now)
    assert sharp_scores_recompute(now=now) == 1
    assert _profile_values(player) == EXPECTED
    profile = PlayerRiskProfile.objects.get(player=player)
    assert profile.markout_edge == MARKOUT_EDGE.quantize(D("0.0001"), rounding=ROUND_HALF_UP) == D("0.0399")


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("thresholds", "expected_class"),
    [
        ({}, "sharp"),  # 40 / 60 / 80
        ({"class_professional_at": D("61.68")}, "professional"),  # at the threshold
        ({"class_sharp_at": D("61.69"), "class_professional_at": D("90")}, "moderate"),  # just below
        ({"class_moderate_at": D("70"), "class_sharp_at": D("75"), "class_professional_at": D("90")}, "recreational"),
    ],
)
def test_the_class_follows_the_thresholds(make_player, risk_limits, thresholds, expected_class):
    risk_limits(**thresholds)
    player, _ = make_player()
    now = timezone.now()
    _crafted_history(player, now)
    sharp_scores_recompute(now=now)
    assert PlayerRiskProfile.objects.get(player=player).player_class == expected_class


@pytest.mark.django_db
def test_below_the_minimum_trades_the_components_are_kept_but_there_is_no_verdict(make_player, risk_limits):
    risk_limits(sharp_min_trades=11)
    player, _ = make_player()
    now = timezone.now()
    _crafted_history(player, now)
    sharp_scores_recompute(now=now)
    values = _profile_values(player)
    assert values == {**EXPECTED, "composite_score": 0, "player_class": "recreational", "sharp_score": 0}


@pytest.mark.django_db
def test_a_quiet_player_is_recreational_with_neutral_win_rate(make_player):
    """Ten $5 buys on one open market whose mid never moves: win rate 0.5 (nothing resolved), edge 0
    (markout 10 x (60 - 62) / 100 < 0), timing 0, sizing 0 (equal stakes), diversity 0: composite 15."""
    player, _ = make_player()
    now = timezone.now()
    at = now - timedelta(hours=2)
    market = MarketFactory()
    _ticks(market, "yes", at, (60, "60"))
    for _ in range(10):
        _trade(player, market, shares="10", price="62", mid="60", cost="6.20", at=at)
    sharp_scores_recompute(now=now)
    assert _profile_values(player) == {
        "win_rate": D("0.5"),
        "edge": 0,
        "timing": 0,
        "sizing": 0,
        "diversity": 0,
        "composite_score": 15,
        "player_class": "recreational",
        "sharp_score": D("0.15"),
        "trades_scored": 10,
    }


@pytest.mark.django_db
def test_incremental_rescoring_takes_only_players_whose_score_can_have_changed(make_player):
    settled, _ = make_player()
    now = timezone.now()
    _crafted_history(settled, now)
    first = timezone.now()  # after the markets were written (resolved ones count when changed after a computation)
    assert sharp_scores_recompute(now=first) == 1
    # Every horizon of its trades had elapsed and nothing resolved since: nothing to do.
    later = first + timedelta(minutes=5)
    assert sharp_scores_recompute(now=later, incremental=True) == 0
    # A new player, and a new trade of the first one (its horizons are still running): both rescored.
    newcomer, _ = make_player()
    market = MarketFactory()
    _trade(newcomer, market, shares="10", price="62", mid="60", cost="6.20", at=later - timedelta(minutes=1))
    _trade(settled, market, shares="10", price="62", mid="60", cost="6.20", at=later - timedelta(minutes=1))
    assert sharp_scores_recompute(now=later, incremental=True) == 2
    assert sharp_scores_recompute(now=later + timedelta(hours=2), incremental=True) == 2  # their last horizon ran meanwhile
    assert sharp_scores_recompute(now=later + timedelta(hours=3), incremental=True) == 0
    # A market of theirs resolving: rescored.
    type(market).objects.filter(pk=market.pk).update(status="resolved", outcome="yes", updated_at=later + timedelta(hours=2, minutes=30))
    assert sharp_scores_recompute(now=later + timedelta(hours=3), incremental=True) == 2


@pytest.mark.django_db
def test_wall_four_reads_the_composite_over_100(make_player, market, risk_limits):
    """Composite 61.68 -> sharp score 0.6168: past spreadWidenAt 0.6 (wider spread), below limitAt 0.75."""
    player, api = make_player(D("100"))
    plain, plain_api = make_player(D("100"))
    now = timezone.now()
    _crafted_history(player, now)
    sharp_scores_recompute(now=now)

    def spread(client):
        quote = client.get("quote", {"side": "buy", "outcome": "yes", "amount": "25", "midPrice": "62", "marketId": MARKET})
        return decimal_json(quote)["spreadPct"]

    assert (spread(api), spread(plain_api)) == (6, 4)
    risk_limits(sharp_refuse_at=D("0.6168"))
    response = api.post("trade", buy_body(amount="1"))
    assert (response.status_code, decimal_json(response)["code"]) == (400, "risk.sharp.refuse_at")
    assert plain_api.post("trade", buy_body(amount="1")).status_code == 200


CLASS_WORDS = ("playerClass", "player_class", "composite", "winRate", "win_rate", "timing", "sizing", "diversity", "sharp", "professional")


@pytest.mark.django_db
def test_players_never_see_their_class_or_components(make_player, market):
    player, api = make_player(D("100"))
    now = timezone.now()
    _crafted_history(player, now)
    sharp_scores_recompute(now=now)
    assert PlayerRiskProfile.objects.get(player=player).player_class == "sharp"
    trade = api.post("trade", buy_body(amount="5"))
    responses = [
        trade,
        api.get("quote", {"side": "buy", "outcome": "yes", "amount": "25", "midPrice": "62", "marketId": MARKET}),
        api.get("balance"),
        api.get("positions"),
        api.get("trades"),
        api.get("markets"),
        api.get("catalog"),
        api.get(f"catalog/{MARKET}"),
    ]
    for response in responses:
        assert response.status_code == 200, response.content
        body = response.content.decode()
        for word in CLASS_WORDS:
            assert word not in body, (response.request["PATH_INFO"], word)


@pytest.mark.django_db
def test_staff_see_the_class_and_the_five_components(admin_client, make_player):
    player, _ = make_player()
    now = timezone.now()
    _crafted_history(player, now)
    sharp_scores_recompute(now=now)
    listing = admin_client.get(reverse("admin:risk_playerriskprofile_changelist"), {"player_class": "sharp"}).content.decode()
    for text in ("61.68", "0.7500", "0.3986", "0.8000", "0.5000", "0.6479", "sharp", player.external_id):
        assert text in listing, text
    page = admin_client.get(reverse("admin:casino_player_change", args=[player.pk])).content.decode()
    assert "sharp (composite 61.68 / 100, sharp score 0.6168)" in page
    assert "win rate 0.7500 · edge 0.3986 · timing 0.8000 · sizing 0.5000 · diversity 0.6479" in page
