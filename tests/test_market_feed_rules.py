"""The feed's rules on the house's records (SPEC §11), driven through the board and the catalogue
with a controlled clock: listing, reference prices and ticks, each suspension at and just past
its threshold, resumption after the cool-down, and how the trade and the catalogue see them.
(The wire, over real HTTP and websocket, is tests/test_marketdata_wire.py and tests/test_market_feed.py.)"""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from casino.models import Market, MarketEvent, MarketPricePoint, ReferencePrice, ReferencePriceTick
from casino.services.markets import casino_settings
from marketdata.adapters.polymarket import SourceMarket
from marketdata.models import MarketSource
from marketdata.services import rules
from marketdata.services.board import PriceBoard
from marketdata.services.catalogue import catalogue_apply
from tests.conftest import decimal_json

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("no_rate_limits", "no_velocity_limits")]

D = Decimal


def source(n: int = 1, **overrides) -> SourceMarket:
    fields = {
        "condition_id": f"0x{n:064x}",
        "question": f"Will thing {n} happen?",
        "category": "crypto",
        "liquidity": D("150000"),
        "volume_24h": D(1000 * n),
        "end_date": timezone.now() + timedelta(days=90),
        "yes_token": f"{n}1" * 20,
        "no_token": f"{n}2" * 20,
        "yes_label": "Yes",
        "no_label": "No",
        "active": True,
        "closed": False,
        "accepting_orders": True,
        "resolution_status": None,
        "outcome_prices": None,
        "raw": {},
    }
    return SourceMarket(**{**fields, **overrides})


class Clock:
    """Wall and monotonic time that only move when the test says so."""

    def __init__(self):
        self.wall = timezone.now()
        self.mono = 1000.0

    def now(self):
        return self.wall

    def monotonic(self):
        return self.mono

    def advance(self, seconds: float):
        self.wall += timedelta(seconds=seconds)
        self.mono += seconds


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def feed(clock):
    """One listed market tracked by a board on the controlled clock; feed(bid, ask) folds a YES book in and flushes."""
    market = source(1)
    catalogue_apply(sources=[market], extra=[], at=clock.now())
    board = PriceBoard(now=clock.now, monotonic=clock.monotonic)
    board.load()

    def book(bid, ask):
        board.on_book(market.yes_token, None if bid is None else D(bid), None if ask is None else D(ask), clock.now())
        return board.flush()

    book.market, book.board = market, board
    return book


def state(market_id: str) -> tuple[str, object]:
    m = Market.objects.get(pk=market_id)
    return m.suspended_reason, m.suspended_until


def yes_mid(market_id: str) -> Decimal:
    return ReferencePrice.objects.get(market_id=market_id, outcome="yes").mid_price


# -- pure rules ---------------------------------------------------------------------------------


def test_the_reference_mid_is_the_middle_of_the_yes_book_in_cents():
    assert rules.yes_mid(D("0.60"), D("0.64")) == D("62.0000")
    assert rules.yes_mid(D("0.535"), D("0.545")) == D("54.0000")
    assert rules.yes_mid(None, D("0.64")) is None and rules.yes_mid(D("0.6"), None) is None
    assert rules.yes_mid(D("0.65"), D("0.64")) is None  # crossed: not a price


@pytest.mark.parametrize(
    ("closed", "status", "prices", "expected"),
    [
        (True, "resolved", ("1", "0"), ("resolve", "yes")),
        (True, "resolved", ("0", "1"), ("resolve", "no")),
        (True, "resolved", ("0.5", "0.5"), ("void", None)),
        (True, "proposed", ("1", "0"), None),
        (True, "disputed", ("0", "1"), None),
        (False, "resolved", ("1", "0"), None),
        (True, "resolved", ("0.7", "0.3"), None),
        (True, "resolved", None, None),
    ],
)
def test_only_a_closed_and_resolved_source_is_a_decision(closed, status, prices, expected):
    decision = rules.resolution_from_source(closed=closed, resolution_status=status, outcome_prices=prices)
    assert (None if decision is None else (decision.action, decision.outcome)) == expected


# -- the board on the database -------------------------------------------------------------------


def test_a_book_stamps_the_reference_and_ticks_the_history(feed, clock):
    result = feed("0.60", "0.64")
    market_id = feed.market.condition_id
    assert (result.written, result.ticks) == (1, 1)
    assert yes_mid(market_id) == D("62.0000") and ReferencePrice.objects.get(market_id=market_id, outcome="no").mid_price == D("38")
    clock.advance(5)
    feed("0.60", "0.64")  # unchanged: stamped again, no new tick
    assert ReferencePrice.objects.get(market_id=market_id, outcome="yes").updated_at == clock.now()
    assert ReferencePriceTick.objects.filter(market_id=market_id, outcome="yes").count() == 1
    clock.advance(2)
    feed("0.62", "0.66")
    assert yes_mid(market_id) == D("64.0000")
    assert list(
        ReferencePriceTick.objects.filter(market_id=market_id, outcome="yes").order_by("at").values_list("mid_price", flat=True)
    ) == [
        D("62"),
        D("64"),
    ]
    assert MarketPricePoint.objects.filter(market_id=market_id).latest("at").yes_mid == D("64")


def test_a_mid_moving_twice_within_a_second_is_ticked_once_and_caught_up(feed, clock):
    feed("0.60", "0.64")
    clock.advance(0.3)
    feed("0.61", "0.65")  # 63: too soon for a tick
    market_id = feed.market.condition_id
    assert ReferencePriceTick.objects.filter(market_id=market_id, outcome="yes").count() == 1
    clock.advance(1)
    feed.board.flush()  # nothing new arrived, but the last mid gets its tick
    assert ReferencePriceTick.objects.filter(market_id=market_id, outcome="yes").latest("at").mid_price == D("63")


def test_a_source_spread_at_the_limit_trades_and_just_past_it_suspends(feed, make_player):
    market_id = feed.market.condition_id
    feed("0.57", "0.67")  # 10 points: the limit itself is allowed
    assert state(market_id) == ("", None)
    result = feed("0.57", "0.6701")
    assert result.suspended == 1 and state(market_id) == ("source_spread_too_wide", None)
    _, api = make_player(D("100"))
    refused = api.post("trade", {"marketId": market_id, "side": "buy", "outcome": "yes", "amount": 10})
    assert refused.status_code == 400
    assert decimal_json(refused) == {"error": "Market not tradeable", "code": "source_spread_too_wide", "reason": "source_spread_too_wide"}
    feed("0.60", "0.64")
    assert state(market_id) == ("", None)
    kinds = list(MarketEvent.objects.filter(market_id=market_id).order_by("at", "id").values_list("kind", "code"))
    assert kinds == [("listed", ""), ("suspended", "source_spread_too_wide"), ("resumed", "source_spread_too_wide")]


def test_a_tighter_spread_limit_applies_to_every_market_at_the_next_flush(feed):
    market_id = feed.market.condition_id
    feed("0.57", "0.67")  # 10 points: within the default limit
    assert state(market_id) == ("", None)
    row = casino_settings()
    row.feed_max_source_spread = D("8")
    row.save()  # staff edit (admin or PATCH admin/risk): the cached configuration follows
    feed.board.flush()  # no new book: the market is looked at because the thresholds changed
    assert state(market_id) == ("source_spread_too_wide", None)


def test_an_empty_side_of_the_source_book_suspends(feed):
    feed("0.60", "0.64")
    feed(None, "0.64")
    assert state(feed.market.condition_id)[0] == "source_spread_too_wide"


def test_a_jump_of_exactly_the_threshold_trades_and_more_suspends_for_the_cool_down(feed, clock):
    market_id = feed.market.condition_id
    feed("0.60", "0.64")  # 62
    clock.advance(10)
    feed("0.75", "0.79")  # 77: +15 points, not more than 15
    assert state(market_id) == ("", None)
    clock.advance(10)
    feed("0.7502", "0.7902")  # 77.02: +15.02 from 62 within 60 s
    suspended_at = clock.now()
    assert state(market_id) == ("price_jump", suspended_at + timedelta(seconds=120))
    clock.advance(119)
    feed("0.7502", "0.7902")
    assert state(market_id)[0] == "price_jump"
    clock.advance(2)
    feed("0.7502", "0.7902")  # the price held through the cool-down
    assert state(market_id) == ("", None)


def test_a_move_already_suspended_for_is_not_counted_again_but_a_new_jump_is(feed, clock):
    market_id = feed.market.condition_id
    feed("0.40", "0.44")  # 42
    clock.advance(5)
    feed("0.60", "0.64")  # 62: jump
    assert state(market_id)[0] == "price_jump"
    clock.advance(121)
    feed("0.60", "0.64")
    assert state(market_id) == ("", None)  # 62 vs 42 is not counted again
    clock.advance(5)
    feed("0.79", "0.83")  # 81: +19 from 62
    assert state(market_id)[0] == "price_jump"


def test_a_jump_during_the_cool_down_extends_it(feed, clock):
    market_id = feed.market.condition_id
    feed("0.40", "0.44")
    clock.advance(5)
    feed("0.60", "0.64")
    clock.advance(60)
    feed("0.79", "0.83")  # a second jump, 60 s into the cool-down
    assert state(market_id) == ("price_jump", clock.now() + timedelta(seconds=120))
    clock.advance(100)  # 160 s after the first jump: its cool-down would have ended
    feed("0.79", "0.83")
    assert state(market_id)[0] == "price_jump"


def test_a_cool_down_ends_without_a_new_book_at_the_next_sweep(feed, clock):
    """Flushes between sweeps look only at the markets a book or the source touched; time rules
    (the end of a cool-down, an end date) are looked at in a sweep of every market, once a second."""
    market_id = feed.market.condition_id
    feed("0.40", "0.44")
    clock.advance(5)
    feed("0.60", "0.64")  # jump: 120 s of cool-down from now
    until = state(market_id)[1]
    clock.advance(119.5)
    feed.board.flush()  # a sweep (the last one was 119.5 s ago): the cool-down still runs
    clock.advance(0.6)
    assert clock.now() > until
    feed.board.flush()  # 0.6 s after the sweep, and no book: the market is not looked at
    assert state(market_id) == ("price_jump", until)
    clock.advance(0.4)
    feed.board.flush()  # a second after the sweep: the next one resumes it
    assert state(market_id) == ("", None)


def test_an_end_date_passing_without_a_book_suspends_at_the_next_sweep(feed, clock):
    market_id = feed.market.condition_id
    feed("0.60", "0.64")
    Market.objects.filter(pk=market_id).update(end_date=clock.now() + timedelta(seconds=0.5))
    feed.board.load()
    feed.board.flush()  # a load sweeps at once
    assert state(market_id) == ("", None)
    clock.advance(0.7)
    feed.board.flush()
    assert state(market_id) == ("", None)  # past the end date, between two sweeps
    clock.advance(0.3)
    feed.board.flush()
    assert state(market_id) == ("market_closed_at_source", None)


def test_a_market_closed_at_the_source_is_suspended_and_refuses_even_sells(feed, clock, make_player):
    market_id = feed.market.condition_id
    feed("0.60", "0.64")
    _, api = make_player(D("100"))
    assert api.post("trade", {"marketId": market_id, "side": "buy", "outcome": "yes", "amount": 10}).status_code == 200
    closed = source(1, closed=True, accepting_orders=False)
    result = catalogue_apply(sources=[], extra=[closed], at=clock.now())
    (tracked,) = result.tracked  # open positions: still tracked until settled
    feed.board.on_source(tracked.market_id, source_closed=tracked.source_closed, end_date=tracked.end_date)
    feed.board.flush()
    assert state(market_id) == ("market_closed_at_source", None)
    assert Market.objects.get(pk=market_id).listed is False
    sell = api.post("trade", {"marketId": market_id, "side": "sell", "outcome": "yes", "amount": 1})
    assert decimal_json(sell)["code"] == "market_closed_at_source"


def test_a_closed_market_nobody_holds_is_marked_closed_and_no_longer_tracked(clock):
    market = source(8)
    catalogue_apply(sources=[market], extra=[], at=clock.now())
    result = catalogue_apply(sources=[], extra=[source(8, closed=True)], at=clock.now())
    assert result.untracked == [market.condition_id] and not result.tracked
    assert state(market.condition_id) == ("market_closed_at_source", None)
    assert MarketSource.objects.get(pk=market.condition_id).tracked is False


def test_a_past_end_date_stops_trading_before_the_feed_notices(feed, make_player):
    market_id = feed.market.condition_id
    feed("0.60", "0.64")
    Market.objects.filter(pk=market_id).update(end_date=timezone.now() - timedelta(seconds=1))
    _, api = make_player(D("100"))
    refused = api.post("trade", {"marketId": market_id, "side": "buy", "outcome": "yes", "amount": 10})
    assert decimal_json(refused)["code"] == "market_closed_at_source"


def test_a_reference_older_than_the_max_age_is_refused_as_price_moved(clock, make_player):
    market = source(3)
    catalogue_apply(sources=[market], extra=[], at=clock.now())
    board = PriceBoard(now=lambda: clock.now() - timedelta(seconds=31), monotonic=clock.monotonic)
    board.load()
    board.on_book(market.yes_token, D("0.60"), D("0.64"), None)
    board.flush()
    assert casino_settings().price_max_age_seconds == 30
    _, api = make_player(D("100"))
    refused = api.post("trade", {"marketId": market.condition_id, "side": "buy", "outcome": "yes", "amount": 10})
    assert decimal_json(refused) == {"error": "Price moved", "code": "price_moved", "reason": "reference_price_stale"}


# -- listing -------------------------------------------------------------------------------------


def test_listing_takes_the_most_traded_eligible_markets_and_keeps_those_with_positions(clock, make_player):
    row = casino_settings()
    row.max_listed_markets, row.blocked_categories, row.allowed_categories = 2, ["politics"], []
    row.save()
    markets = [
        source(1, volume_24h=D("100")),
        source(2, volume_24h=D("500")),
        source(3, volume_24h=D("900"), category="politics"),  # blocked
        source(4, volume_24h=D("800"), liquidity=D("100")),  # below the minimum liquidity
        source(5, volume_24h=D("300")),
        source(6, volume_24h=D("999"), closed=True),  # closed at the source
    ]
    result = catalogue_apply(sources=markets, extra=[], at=clock.now())
    assert sorted(Market.objects.filter(listed=True).values_list("pk", flat=True)) == [markets[1].condition_id, markets[4].condition_id]
    assert result.listed == 2 and len(result.tracked) == 2
    # market 5 gets a position, then drops out of the listing: it stays tracked, unlisted
    board = PriceBoard(now=clock.now, monotonic=clock.monotonic)
    board.load()
    board.on_book(markets[4].yes_token, D("0.60"), D("0.64"), None)
    board.flush()
    _, api = make_player(D("100"))
    assert api.post("trade", {"marketId": markets[4].condition_id, "side": "buy", "outcome": "yes", "amount": 10}).status_code == 200
    result = catalogue_apply(sources=[markets[0], markets[1], source(7, volume_24h=D("600"))], extra=[markets[4]], at=clock.now())
    assert {t.market_id for t in result.tracked} == {markets[1].condition_id, source(7).condition_id, markets[4].condition_id}
    fifth = Market.objects.get(pk=markets[4].condition_id)
    assert fifth.listed is False and MarketSource.objects.get(market=fifth).tracked is True
    # unlisted: no new buys, but the player can sell
    buy = api.post("trade", {"marketId": fifth.pk, "side": "buy", "outcome": "yes", "amount": 10})
    assert decimal_json(buy) == {"error": "Market not tradeable", "code": "market_not_tradeable", "reason": "market_not_listed"}
    assert api.post("trade", {"marketId": fifth.pk, "side": "sell", "outcome": "yes", "amount": 5}).status_code == 200


def test_an_allow_list_of_categories_lists_only_those(clock):
    row = casino_settings()
    row.allowed_categories = ["sports"]
    row.save()
    catalogue_apply(sources=[source(1), source(2, category="sports")], extra=[], at=clock.now())
    assert list(Market.objects.filter(listed=True).values_list("category", flat=True)) == ["sports"]


# -- is the feed alive -------------------------------------------------------------------------


def test_readyz_and_metrics_tell_whether_the_feed_is_alive(feed, clock, client):
    from marketdata.models import FeedState

    assert client.get("/readyz").json()["feed"] == {"status": "absent"}
    feed("0.60", "0.64")
    feed("0.57", "0.70")  # suspended: spread too wide
    FeedState.objects.create(pk=1, holder="feed-host:42", heartbeat_at=timezone.now(), stream_connected=True, stats={"lag": {"p99_ms": 80}})
    ready = client.get("/readyz").json()
    assert ready["feed"]["status"] == "alive" and ready["feed"]["holder"] == "feed-host:42"
    metrics = client.get("/metrics").content.decode()
    assert "house_feed_up 1.0" in metrics and "house_feed_stream_connected 1.0" in metrics
    assert 'house_markets_suspended{code="source_spread_too_wide"} 1.0' in metrics
    assert "house_feed_lag_p99_seconds 0.08" in metrics
    FeedState.objects.filter(pk=1).update(heartbeat_at=timezone.now() - timedelta(seconds=60))
    assert client.get("/readyz").json()["feed"]["status"] == "stale"
    assert "house_feed_up 0.0" in client.get("/metrics").content.decode()
