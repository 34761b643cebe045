"""The feed's view of every tracked market between two writes, and the write itself.

Books arrive one at a time (a websocket event, a REST refresh); each is folded into the
market's state at once (the jump watch sees every mid). ``flush`` then writes, in one short
transaction per kind, what changed since the last flush: the reference of every market seen
(stamped even when unchanged), its tick when the mid moved, and the suspensions and
resumptions that the rules of SPEC §11 now call for. A flush looks at the markets a book or
the source touched since the last one; a sweep of every market, once a second (and at once
after a change of the thresholds), catches what time alone changes: an end date passed, a
cool-down over. The long-running feed flushes every few hundred milliseconds; the one-pass
sync flushes once.

Thread-safe: the websocket's event loop folds books in while a worker thread flushes.
"""

import logging
import statistics
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from django.utils import timezone

from casino.models import Outcome, ReferencePrice
from casino.services.market_state import ReferenceWrite, market_resume, market_suspend, reference_prices_write
from core.metrics import FEED_LAG, FEED_SUSPENSIONS, FEED_TICKS
from marketdata.models import MarketSource
from marketdata.services import rules
from risk.services.config import risk_config

log = logging.getLogger("house.marketdata")

TICK_SECONDS = 1.0  # a market's tick history keeps at most one mid a second
SWEEP_SECONDS = 1.0  # every market's time rules (end date, end of a cool-down) are looked at this often
LAG_SAMPLES = 5000


@dataclass
class _Market:
    market_id: str
    yes_token: str
    no_token: str
    end_date: datetime | None = None
    source_closed: bool = False  # closed, inactive or not accepting orders at the source
    bid: Decimal | None = None  # YES book top, probability
    ask: Decimal | None = None
    source_time: datetime | None = None
    has_book: bool = False
    written_mid: Decimal | None = None
    ticked_mid: Decimal | None = None
    ticked_at: float = 0.0
    seen: bool = False  # a book arrived since the last flush
    received: float | None = None  # monotonic time of the first unflushed book
    streamed_at: float | None = None  # monotonic time of the last book from the websocket
    problem_of: tuple | None = None  # (bid, ask, max spread) the cached book problem was found for
    problem: str | None = None
    jump: rules.JumpWatch = field(default_factory=rules.JumpWatch)
    jump_until: datetime | None = None
    suspended: str = ""
    suspended_until: datetime | None = None


@dataclass
class FlushResult:
    written: int = 0
    ticks: int = 0
    suspended: int = 0
    resumed: int = 0
    lags_ms: list = field(default_factory=list)  # source time -> written, per written market with a source time
    books: int = 0  # books asked of the source (prices_pass)


class PriceBoard:
    def __init__(self, *, now=timezone.now, monotonic=time.monotonic):
        """``now`` and ``monotonic`` are the clocks (tests drive time through them)."""
        self._now, self._mono = now, monotonic
        self._lock = threading.Lock()
        self._markets: dict[str, _Market] = {}
        self._by_token: dict[str, tuple[str, bool]] = {}  # token -> (market id, is the YES token)
        # What the next flush must look at besides a sweep: markets a book or a source change
        # touched, and markets whose last mid waits for its tick (the tick interval had not passed).
        self._touched: set[str] = set()
        self._tick_pending: set[str] = set()
        self._swept_at: datetime | None = None  # the last flush that looked at every market
        self._swept_settings = None
        self.recent_lags_ms: deque[float] = deque(maxlen=LAG_SAMPLES)
        self.events = 0

    # -- what is tracked ---------------------------------------------------------------------

    def load(self) -> None:
        """Every tracked market, its suspension and last written mid, from the database."""
        self.refresh_settings()
        sources = list(MarketSource.objects.filter(tracked=True).select_related("market"))
        mids = dict(
            ReferencePrice.objects.filter(market_id__in=[s.market_id for s in sources], outcome=Outcome.YES).values_list(
                "market_id", "mid_price"
            )
        )
        with self._lock:
            self._markets.clear()
            self._by_token.clear()
            self._touched.clear()
            self._tick_pending.clear()
            self._swept_at = None  # the next flush looks at every market
            for source in sources:
                state = self._track(source.market_id, source.yes_token, source.no_token)
                state.end_date = source.market.end_date
                state.source_closed = source.closed or not source.active or not source.accepting_orders
                state.suspended, state.suspended_until = source.market.suspended_reason, source.market.suspended_until
                if state.suspended == rules.PRICE_JUMP:
                    state.jump_until = state.suspended_until
                state.written_mid = state.ticked_mid = mids.get(source.market_id)

    def track(self, *, market_id: str, yes_token: str, no_token: str, source_closed: bool, end_date: datetime | None) -> None:
        with self._lock:
            state = self._track(market_id, yes_token, no_token)
            state.source_closed, state.end_date = source_closed, end_date

    def untrack(self, market_id: str) -> None:
        with self._lock:
            state = self._markets.pop(market_id, None)
            self._touched.discard(market_id)
            self._tick_pending.discard(market_id)
            if state is not None:
                self._by_token.pop(state.yes_token, None)
                self._by_token.pop(state.no_token, None)

    def _track(self, market_id: str, yes_token: str, no_token: str) -> _Market:
        state = self._markets.get(market_id)
        if state is None or (state.yes_token, state.no_token) != (yes_token, no_token):
            state = self._markets[market_id] = _Market(market_id, yes_token, no_token)
            self._by_token[yes_token] = (market_id, True)
            self._by_token[no_token] = (market_id, False)
        self._touched.add(market_id)
        return state

    def market_ids(self) -> set[str]:
        with self._lock:
            return set(self._markets)

    def yes_tokens(self, *, stream_quiet_for: float | None = None) -> dict[str, str]:
        """YES token -> market id: the books the feed reads (the NO book mirrors it). With
        ``stream_quiet_for`` (seconds), only the markets the websocket brought no book for in that
        long: the REST refresh reads those only, since a book from the stream is a whole top of
        book, as current as a REST one, and stamped the reference when it was written."""
        with self._lock:
            if stream_quiet_for is None:
                return {s.yes_token: s.market_id for s in self._markets.values()}
            since = self._mono() - stream_quiet_for
            return {s.yes_token: s.market_id for s in self._markets.values() if s.streamed_at is None or s.streamed_at < since}

    def market_of(self, token_id: str) -> str | None:
        entry = self._by_token.get(token_id)
        return entry[0] if entry else None

    # -- what arrives ------------------------------------------------------------------------

    def on_book(
        self, token_id: str, best_bid: Decimal | None, best_ask: Decimal | None, source_time: datetime | None, *, streamed: bool = False
    ) -> bool:
        """Fold a book top in (YES token; a NO book is turned into the YES one). False if the
        token is not tracked. ``streamed``: it came over the websocket (the REST refresh skips the market)."""
        entry = self._by_token.get(token_id)
        if entry is None:
            return False
        market_id, is_yes = entry
        if not is_yes:  # NO bid = 1 - YES ask: the books mirror each other
            best_bid, best_ask = (1 - best_ask if best_ask is not None else None), (1 - best_bid if best_bid is not None else None)
        settings = self._settings
        with self._lock:
            state = self._markets.get(market_id)
            if state is None:
                return False
            state.bid, state.ask, state.source_time, state.has_book = best_bid, best_ask, source_time, True
            if not state.seen:
                state.seen, state.received = True, self._mono()
                self._touched.add(market_id)
            if streamed:
                state.streamed_at = self._mono()
            mid = rules.yes_mid(best_bid, best_ask)
            if mid is not None and settings is not None:
                jumped = state.jump.observe(
                    self._mono(), mid, window_seconds=settings.feed_jump_window_seconds, points=settings.feed_jump_points
                )
                if jumped:
                    state.jump_until = self._now() + timedelta(seconds=settings.feed_jump_cooldown_seconds)
            self.events += 1
        return True

    def on_source(self, market_id: str, *, source_closed: bool, end_date: datetime | None) -> None:
        with self._lock:
            state = self._markets.get(market_id)
            if state is not None:
                state.source_closed, state.end_date = source_closed, end_date
                self._touched.add(market_id)

    # -- the write ---------------------------------------------------------------------------

    _settings = None

    def refresh_settings(self) -> None:
        """The thresholds, as of the next flush after staff edit them: the process's cached risk
        configuration (casino settings included), checked against the shared version number
        and read again only after a change, not queried on every flush."""
        self._settings = risk_config().casino

    def flush(self) -> FlushResult:
        self.refresh_settings()
        settings, now, mono = self._settings, self._now(), self._mono()
        writes, transitions, received = [], [], []
        with self._lock:
            # Most flushes look only at what changed since the last one: a market's suspension can
            # change with its book or its source record (both mark it touched), or with time (its end
            # date, the end of a cool-down), which a sweep of every market catches within SWEEP_SECONDS.
            # A change of the thresholds is swept at once.
            sweep = (
                self._swept_at is None
                or settings is not self._swept_settings
                or not timedelta(0) <= now - self._swept_at < timedelta(seconds=SWEEP_SECONDS)
            )
            if sweep:
                looked_at = list(self._markets.values())
                self._swept_at, self._swept_settings = now, settings
            else:
                looked_at = [self._markets[m] for m in self._touched if m in self._markets]
            self._touched = set()
            for state in looked_at:
                desired, until = self._desired(state, settings, now)
                if (desired, until) != (state.suspended, state.suspended_until):
                    transitions.append((state.market_id, desired, until, state.suspended))
                    state.suspended, state.suspended_until = desired, until
                if not state.seen:
                    continue
                state.seen = False
                mid = rules.yes_mid(state.bid, state.ask)
                if mid is None:
                    continue  # no usable book: the reference is not stamped and goes stale
                tick = mid != state.ticked_mid and mono - state.ticked_at >= TICK_SECONDS
                if tick:
                    state.ticked_mid, state.ticked_at = mid, mono
                state.written_mid = mid
                writes.append(ReferenceWrite(state.market_id, mid, tick))
                received.append(state.source_time)
                if mid != state.ticked_mid:
                    self._tick_pending.add(state.market_id)
            # A mid that moved again within the tick interval is ticked once the interval passed.
            for market_id in list(self._tick_pending):
                state = self._markets.get(market_id)
                if state is None or state.written_mid is None or state.written_mid == state.ticked_mid:
                    self._tick_pending.discard(market_id)
                elif mono - state.ticked_at >= TICK_SECONDS:  # a seen market was looked at above: not seen now
                    state.ticked_mid, state.ticked_at = state.written_mid, mono
                    writes.append(ReferenceWrite(state.market_id, state.written_mid, True))
                    received.append(None)
                    self._tick_pending.discard(market_id)
        result = FlushResult()
        reference_prices_write(writes=writes, at=now)
        written_at = self._now()
        result.written = len(writes)
        result.ticks = sum(1 for w in writes if w.tick)
        for source_time in received:
            if source_time is not None:
                lag = max(0.0, (written_at - source_time).total_seconds() * 1000)
                result.lags_ms.append(lag)
                FEED_LAG.observe(lag / 1000)
        self.recent_lags_ms.extend(result.lags_ms)
        FEED_TICKS.inc(result.ticks)
        for market_id, desired, until, previous in transitions:
            if desired:
                if market_suspend(market_id=market_id, code=desired, until=until, at=now, detail={"previous": previous}):
                    result.suspended += 1
                    FEED_SUSPENSIONS.labels(code=desired).inc()
            elif market_resume(market_id=market_id, at=now):
                result.resumed += 1
        return result

    @staticmethod
    def _desired(state: _Market, settings, now: datetime) -> tuple[str, datetime | None]:
        """The suspension the rules call for now, strongest cause first."""
        if state.source_closed or rules.ended(state.end_date, now):
            return rules.CLOSED_AT_SOURCE, None
        if state.has_book:
            # Every market is looked at on every flush; its book's problem only changes with the book or the limit.
            key = (state.bid, state.ask, settings.feed_max_source_spread)
            if key != state.problem_of:
                state.problem_of = key
                state.problem = rules.book_problem(state.bid, state.ask, max_spread_points=settings.feed_max_source_spread)
            if state.problem:
                return state.problem, None
        elif state.suspended == rules.SPREAD_TOO_WIDE:
            return state.suspended, None  # no book seen since start: keep what was decided
        if state.jump_until is not None and now < state.jump_until:
            return rules.PRICE_JUMP, state.jump_until
        return "", None

    def lag_percentiles(self) -> dict:
        samples = sorted(self.recent_lags_ms)
        if not samples:
            return {}
        return {
            "p50_ms": round(statistics.median(samples), 1),
            "p99_ms": round(samples[min(len(samples) - 1, int(len(samples) * 0.99))], 1),
            "samples": len(samples),
        }

    def suspended_count(self) -> int:
        with self._lock:
            return sum(1 for s in self._markets.values() if s.suspended)
