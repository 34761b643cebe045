"""The automatic circuit breakers of SPEC §16 on real PostgreSQL and Redis: the per-player loss halt and
the platform halt trip just past their thresholds (a loss *at* the halt does not trip it), the player
halt clears when its 24 h window passes (clock moved by time-machine), the platform halt stays until
staff reset it (REST and admin) and a reset starts a new window; each trip is one risk event; sells
go through while halted and while every wall would refuse; the windows rebuilt from the database
equal an independent computation from the trades and the ledger."""

import datetime
from collections import defaultdict
from decimal import Decimal

import pytest
import time_machine
from django.urls import reverse
from django.utils import timezone

from casino.models import Player, Trade
from casino.services.credentials import session_open
from casino.services.markets import reference_price_set
from casino.services.trade_executor import TradeRequest, trade_execute
from risk import counters
from risk.models import MarketRiskLimit, OperatorRiskLimit, PlayerRiskProfile, RiskDecision, RiskEvent, RiskSettings, Tier
from risk.services.breakers import (
    BUCKET_SECONDS,
    BUCKETS,
    breaker_platform_halt,
    breaker_windows_rebuild,
    platform_window_loss,
    player_window_key,
    player_window_loss,
)
from risk.services.config import risk_settings
from risk.tasks import breaker_platform_check_task, breaker_windows_rebuild_task
from tests.conftest import MARKET, Api, buy_body, decimal_json, requires_postgres
from tests.test_operator_reports import _settle, book, no_auto_start, s2s  # noqa: F401 - fixtures
from wallets.models import LedgerEntry

pytestmark = [requires_postgres, pytest.mark.usefixtures("no_rate_limits")]

REJECTED = "Trade rejected by risk engine"
PLAYER_HALTED = {"error": REJECTED, "code": "risk.breaker.player_loss", "wall": "breaker", "limit": "player_loss"}
PLATFORM_HALTED = {"error": "Trading is disabled", "code": "risk.breaker.platform_loss", "wall": "breaker", "limit": "platform_loss"}
LOSS_TYPES = ("payout", "refund", "payout_reversal", "refund_reversal", "debt_recovery")


def sell_body(shares, mid=62, outcome="yes"):
    return {"marketId": MARKET, "side": "sell", "outcome": outcome, "amount": Decimal(str(shares)), "midPrice": mid}


def answer(response) -> tuple[int, dict]:
    return response.status_code, decimal_json(response)


def lose_24_to(api) -> None:
    """The house loses 24.00 to this player: a $64 buy at mid 62 (100 shares at 64), sold at mid 90 (at 88)."""
    assert api.post("trade", buy_body(amount="64")).status_code == 200
    reference_price_set(market_id=MARKET, outcome="yes", mid_price=Decimal("90"))
    status, body = answer(api.post("trade", sell_body(100, mid=90)))
    assert (status, body["shares"], body["cost"]) == (200, Decimal("100"), Decimal("88.00"))


# -- per player ---------------------------------------------------------------------------------------


def test_player_halt_trips_just_past_the_halt_not_at_it_and_is_recorded_once(make_player, market, risk_limits):
    player, api = make_player(Decimal("200"))
    _, other = make_player(Decimal("200"))
    lose_24_to(api)
    assert player_window_loss(player_id=player.pk) == Decimal("26.00")  # live: the sale booked at mid (90), before its spread
    breaker_windows_rebuild()
    assert player_window_loss(player_id=player.pk) == Decimal("24.00")  # the database: 88 - 64

    risk_limits(player_loss_halt=Decimal("24"))
    assert api.post("trade", buy_body(amount="1", mid=90)).status_code == 200  # 24.00 is at the halt, not past it
    assert player_window_loss(player_id=player.pk) == Decimal("23.00")

    risk_limits(player_loss_halt=Decimal("22.99"))
    assert answer(api.post("trade", buy_body(amount="1", mid=90))) == (400, PLAYER_HALTED)
    assert answer(api.post("trade", buy_body(amount="2", mid=90))) == (400, PLAYER_HALTED)
    assert other.post("trade", buy_body(amount="1", mid=90)).status_code == 200  # only this player is halted

    events = list(RiskEvent.objects.filter(kind="player_halt").values_list("player_id", "severity", "values"))
    assert [(p, s, v["loss"], v["limit"]) for p, s, v in events] == [(player.pk, "warning", "23.00", "22.99")]
    decisions = RiskDecision.objects.filter(code="risk.breaker.player_loss").order_by("id")
    assert [(d.player_id, d.wall, d.limit, d.values) for d in decisions] == [
        (player.pk, "breaker", "player_loss", {"current": "2300", "limit": "2299"})
    ] * 2
    assert Trade.objects.filter(player=player).count() == 3  # the refused buys moved nothing


def test_player_halt_clears_by_itself_when_its_window_passes(make_player, operator, market, risk_limits):
    player, api = make_player(Decimal("200"), external_id="clock-player")
    lose_24_to(api)
    risk_limits(player_loss_halt=Decimal("10"))
    assert answer(api.post("trade", buy_body(amount="1", mid=90))) == (400, PLAYER_HALTED)
    start = timezone.now()

    def buy_at(moment) -> tuple[int, dict]:
        with time_machine.travel(moment, tick=False):
            reference_price_set(market_id=MARKET, outcome="yes", mid_price=Decimal("90"))  # fresh, not stale
            session = session_open(operator=operator.operator, external_player_id="clock-player")
            return answer(Api({"Authorization": f"Bearer {session.token}"}).post("trade", buy_body(amount="1", mid=90)))

    # Hourly buckets: a loss leaves the window between 23 h and 24 h after it was booked.
    assert buy_at(start + datetime.timedelta(hours=22, minutes=59)) == (400, PLAYER_HALTED)
    status, body = buy_at(start + datetime.timedelta(hours=24, minutes=1))
    assert (status, body["cost"]) == (200, Decimal("1.00"))
    assert RiskEvent.objects.filter(kind="player_halt", player=player).count() == 1


# -- platform -----------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)  # the reset clears the platform window when it commits
def test_platform_halt_trips_past_the_halt_stops_every_buy_and_only_staff_reset_it(make_player, market, risk_limits, staff_api):
    alice, a = make_player(Decimal("200"))
    _, b = make_player(Decimal("200"))
    lose_24_to(a)
    breaker_windows_rebuild()
    assert platform_window_loss() == Decimal("24.00")

    risk_limits(platform_loss_halt=Decimal("24"))
    assert b.post("trade", buy_body(amount="1", mid=90)).status_code == 200  # at the halt: not past it
    risk_limits(platform_loss_halt=Decimal("22.99"))
    assert answer(b.post("trade", buy_body(amount="1", mid=90))) == (503, PLATFORM_HALTED)  # 23.00 > 22.99: tripped
    assert answer(a.post("trade", buy_body(amount="5", mid=90))) == (503, PLATFORM_HALTED)  # every player, every operator
    assert answer(b.post("trade", buy_body(amount="1", mid=90))) == (503, PLATFORM_HALTED)

    events = list(RiskEvent.objects.filter(kind="platform_halt"))
    assert [(e.severity, e.values, e.actor) for e in events] == [
        ("critical", {"loss": "23.00", "limit": "22.99", "manual": False}, "system")
    ]
    config = decimal_json(staff_api.get("admin/risk"))
    halted_at = RiskSettings.objects.get().platform_halted_at
    assert config["breakers"] == {
        "platformHalted": True,
        "platformHaltedAt": halted_at.astimezone(datetime.UTC).isoformat(timespec="milliseconds")[:-6] + "Z",
        "playerLossHalt": Decimal("5000"),
        "platformLossHalt": Decimal("22.99"),
    }
    held = Trade.objects.filter(side="buy", player__in=Player.objects.exclude(pk=alice.pk)).get().shares
    status, body = answer(b.post("trade", sell_body(held, mid=90)))  # sells go on while halted
    assert (status, body["shares"]) == (200, held)

    response = staff_api.patch("admin/risk", {"breakers": {"platformHalted": False}})
    assert response.status_code == 200
    assert decimal_json(response)["breakers"] == {
        "platformHalted": False,
        "platformHaltedAt": None,
        "playerLossHalt": Decimal("5000"),
        "platformLossHalt": Decimal("22.99"),
    }
    # The reset starts a new window: the losses that tripped the halt do not trip it again.
    assert b.post("trade", buy_body(amount="1", mid=90)).status_code == 200
    assert platform_window_loss() == Decimal("-1.00")
    breaker_windows_rebuild()
    assert platform_window_loss() == Decimal("-1.00")  # the database agrees: only what came after the reset
    assert RiskSettings.objects.get().platform_halted is False
    reset = RiskEvent.objects.get(kind="platform_reset")
    assert (reset.severity, reset.actor) == ("info", "staff:risk-desk")
    assert RiskEvent.objects.filter(kind="platform_halt").count() == 1


def test_staff_halt_the_platform_by_hand_over_rest(make_player, market, staff_api):
    _, api = make_player(Decimal("100"))
    response = staff_api.patch("admin/risk", {"breakers": {"platformHalted": True, "playerLossHalt": 100}})
    assert response.status_code == 200
    breakers = decimal_json(response)["breakers"]
    assert (breakers["platformHalted"], breakers["playerLossHalt"]) == (True, Decimal("100"))
    assert answer(api.post("trade", buy_body())) == (503, PLATFORM_HALTED)
    event = RiskEvent.objects.get(kind="platform_halt")
    assert (event.severity, event.actor, event.values["manual"]) == ("critical", "staff:risk-desk", True)


def test_a_save_of_the_thresholds_read_before_a_trip_does_not_undo_it(db):
    row = risk_settings()  # e.g. an admin form opened before the halt
    assert breaker_platform_halt(actor="staff:test") is True
    row.max_trades_per_minute = 3
    row.save()
    after = RiskSettings.objects.get()
    assert (after.max_trades_per_minute, after.platform_halted, after.platform_halted_at is not None) == (3, True, True)


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"breakers": {"platformHaltedAt": None}}, "breakers.platformHaltedAt"),
        ({"breakers": {"platformHalted": "no"}}, "breakers.platformHalted"),
        ({"breakers": {"playerLossHalt": -1}}, "breakers.playerLossHalt"),
        ({"breakers": {"platformLossHalt": "1"}}, "breakers.platformLossHalt"),
        ({"breakers": {"halted": True}}, "breakers.halted"),
    ],
)
def test_a_bad_breakers_patch_is_refused_and_changes_nothing(staff_api, patch, field):
    response = staff_api.patch("admin/risk", {**patch, "velocity": {"maxTradesPerMinute": 1}})
    body = decimal_json(response)
    assert (response.status_code, body["code"], body["field"]) == (400, "invalid_risk_config", field)
    row = risk_settings()
    assert (row.max_trades_per_minute, row.platform_halted, row.player_loss_halt) == (15, False, Decimal("5000"))


@pytest.mark.django_db(transaction=True)
def test_staff_halt_and_reset_in_the_admin_and_the_dashboard_shows_it(admin_client, make_player, market):
    _, api = make_player(Decimal("100"))
    changelist = reverse("admin:risk_risksettings_changelist")
    RiskSettings.objects.get_or_create(pk=1)
    response = admin_client.post(changelist, {"action": "platform_halt_set", "_selected_action": ["1"]})
    assert response.status_code == 302
    assert answer(api.post("trade", buy_body())) == (503, PLATFORM_HALTED)
    page = admin_client.get(reverse("admin:index")).content.decode()
    assert 'id="platform-halted"' in page and "PLATFORM HALTED" in page
    assert "Platform halted by staff:" in page  # the critical event, listed

    admin_client.post(changelist, {"action": "platform_halt_reset", "_selected_action": ["1"]})
    assert api.post("trade", buy_body()).status_code == 200
    page = admin_client.get(reverse("admin:index")).content.decode()
    assert 'id="platform-halted"' not in page and 'id="platform-running"' in page
    assert list(RiskEvent.objects.order_by("created_at").values_list("kind", "severity")) == [
        ("platform_halt", "critical"),
        ("platform_reset", "info"),
    ]
    events_page = admin_client.get(reverse("admin:risk_riskevent_changelist"))
    assert events_page.status_code == 200 and "Platform halt reset by staff:" in events_page.content.decode()


@pytest.mark.django_db(transaction=True)
def test_a_settlement_payout_books_the_loss_and_trips_the_platform_halt(make_player, market, risk_limits, no_auto_start):  # noqa: F811
    risk_limits(platform_loss_halt=Decimal("35.99"))
    player, api = make_player(Decimal("100"))
    assert api.post("trade", buy_body(amount="64")).status_code == 200  # 100 shares at 64
    _settle(MARKET, "resolve", "yes")  # pays 100.00: the house lost 36.00
    assert player_window_loss(player_id=player.pk) == Decimal("36.00")
    assert RiskSettings.objects.get().platform_halted is True
    event = RiskEvent.objects.get(kind="platform_halt")
    assert (event.severity, event.values) == ("critical", {"loss": "36.00", "limit": "35.99", "manual": False})


def test_the_beat_rebuild_trips_the_platform_halt_when_old_stakes_leave_the_window(make_player, market, risk_limits):
    risk_limits(platform_loss_halt=Decimal("50"))
    player, api = make_player(Decimal("200"))
    start = timezone.now()
    assert api.post("trade", buy_body(amount="64")).status_code == 200  # the house takes 64
    with time_machine.travel(start + datetime.timedelta(hours=2), tick=False):  # two hourly buckets later, whatever the minute
        reference_price_set(market_id=MARKET, outcome="yes", mid_price=Decimal("90"))
        trade_execute(player=player, request=TradeRequest(MARKET, "sell", "yes", Decimal("100"), Decimal("90")))  # pays 88
        assert breaker_windows_rebuild_task() == {"players": 1, "platformLoss": "24.00", "tripped": False}
    with time_machine.travel(start + datetime.timedelta(hours=24, minutes=1), tick=False):
        assert breaker_windows_rebuild_task() == {"players": 1, "platformLoss": "88.00", "tripped": True}  # the 64 left
        assert breaker_windows_rebuild_task()["tripped"] is False  # halted already: not again
    event = RiskEvent.objects.get(kind="platform_halt")
    assert (event.severity, event.values) == ("critical", {"loss": "88.00", "limit": "50.00", "manual": False})


def test_the_minute_check_trips_the_platform_halt_from_the_rolling_window_without_a_rebuild(make_player, market, risk_limits):
    """The windows roll by themselves (a bucket past 24 h is no longer summed): the every-minute check reads
    the platform window, no database scan, and trips the halt once the 64.00 stake has left it."""
    risk_limits(platform_loss_halt=Decimal("50"))
    player, api = make_player(Decimal("200"))
    start = timezone.now()
    assert api.post("trade", buy_body(amount="64")).status_code == 200  # the house takes 64
    with time_machine.travel(start + datetime.timedelta(hours=2), tick=False):
        reference_price_set(market_id=MARKET, outcome="yes", mid_price=Decimal("90"))
        trade_execute(player=player, request=TradeRequest(MARKET, "sell", "yes", Decimal("100"), Decimal("90")))
        assert breaker_platform_check_task() is False
    with time_machine.travel(start + datetime.timedelta(hours=24, minutes=1), tick=False):
        assert breaker_platform_check_task() is True
        assert breaker_platform_check_task() is False  # halted already
    assert risk_settings().platform_halted and RiskEvent.objects.filter(kind="platform_halt").count() == 1


# -- sells are never refused --------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)  # the S2S wallet is never called inside a transaction
def test_an_s2s_player_sells_while_the_platform_is_halted(s2s):  # noqa: F811
    player, api = s2s.player(Decimal("100"))
    assert api.post("trade", buy_body(amount="25")).status_code == 200  # 39.0625 shares at 64
    breaker_platform_halt(actor="staff:test")
    assert answer(api.post("trade", buy_body(amount="1"))) == (503, PLATFORM_HALTED)
    status, body = answer(api.post("trade", sell_body("10")))
    assert (status, body["shares"], body["cost"]) == (200, Decimal("10"), Decimal("6.00"))
    s2s.assert_books_balance()


def test_sells_go_through_while_both_breakers_and_every_wall_would_refuse(make_player, operator, market, risk_limits):
    alice, a = make_player(Decimal("200"))
    _, bob = make_player(Decimal("200"))
    assert bob.post("trade", buy_body(amount="100", mid=38, outcome="no")).status_code == 200  # 250 NO: the house's worst case
    assert a.post("trade", buy_body(amount="64")).status_code == 200  # 100 YES at 64
    reference_price_set(market_id=MARKET, outcome="yes", mid_price=Decimal("90"))
    assert a.post("trade", sell_body(80, mid=90)).status_code == 200  # 70.40 back for 51.20 paid: the house lost 6.40 to alice
    # Every wall and both breakers refuse a buy now.
    risk_limits(
        max_trades_per_minute=0,
        max_stake_per_minute=Decimal("0"),
        market_burst_trades=0,
        default_market_exposure_cap=Decimal("0"),
        global_exposure_cap=Decimal("0"),
        sharp_refuse_at=Decimal("0.5"),
        player_loss_halt=Decimal("0"),
    )
    for tier in Tier.objects.all():
        tier.max_stake = tier.max_position_per_market = tier.max_daily_loss = Decimal("0")
        tier.save()
    MarketRiskLimit.objects.create(market_id=MARKET, exposure_cap=Decimal("0"))
    OperatorRiskLimit.objects.create(
        operator=operator.operator, max_open_exposure=Decimal("0"), max_daily_turnover=Decimal("0"), max_daily_net_loss=Decimal("0")
    )
    PlayerRiskProfile.objects.create(player=alice, sharp_score=Decimal("0.95"))
    assert answer(a.post("trade", buy_body(amount="1", mid=90))) == (400, PLAYER_HALTED)
    Player.objects.filter(pk=alice.pk).update(status="blocked")
    breaker_platform_halt(actor="staff:test")
    assert answer(a.post("trade", buy_body(amount="1", mid=90))) == (503, PLATFORM_HALTED)
    refusals = RiskDecision.objects.count()

    # Each sale pays cash out while NO stays the worst case: the market's worst case grows (past its cap of 0).
    # Priced as usual: mid 90 less half of the spread widened for a sharp player (4 + 2).
    for shares in ("10", "10"):
        status, body = answer(a.post("trade", sell_body(shares, mid=90)))
        assert (status, body["executionPrice"], body["shares"], body["cost"]) == (200, Decimal("87"), Decimal(shares), Decimal("8.70"))
    assert RiskDecision.objects.count() == refusals  # nothing refused, nothing recorded
    assert Trade.objects.filter(player=alice, side="sell").count() == 3


# -- the rebuild --------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_windows_rebuilt_equal_the_database(book):  # noqa: F811 - both wallet kinds: trades, payouts, refunds, reversals, debts
    expected: dict = defaultdict(Decimal)
    for t in Trade.objects.all():
        expected[t.player_id] += t.cost if t.side == "sell" else -t.cost
    for e in LedgerEntry.objects.filter(type__in=LOSS_TYPES):
        expected[e.player_id] += e.amount
    kinds = set(LedgerEntry.objects.filter(type__in=LOSS_TYPES).values_list("type", flat=True))
    assert kinds == {"payout", "refund", "payout_reversal", "debt_recovery"}  # every kind but a void's reversal
    drifted = next(iter(expected))
    counters.reserve([counters.Counter(player_window_key(drifted), BUCKET_SECONDS, BUCKETS, 777, -1)])  # a lost reservation

    result = breaker_windows_rebuild()

    assert result["players"] == len(expected)
    assert {pid: player_window_loss(player_id=pid) for pid in expected} == dict(expected)
    assert platform_window_loss() == sum(expected.values()) == result["platformLoss"]
