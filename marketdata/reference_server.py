"""Reference market-data server: Polymarket's public Gamma, CLOB and market-websocket wire formats (SPEC §11).

Shipped with the product like the reference wallet server: tests and ``make run`` talk to it over
real sockets. One object (``ReferenceMarketDataServer``) holds the state; ``serve_in_thread`` serves
it on loopback with two listeners, an HTTP one (standard library, threaded) for the Gamma- and
CLOB-shaped endpoints and a websocket one (``websockets`` asyncio server, in its own thread with
its own event loop) for the market channel. No Django here.

The catalogue is ``fixtures/catalogue.json``: markets in Gamma's wire shape (questions, ids and
numbers invented), ``add_synthetic_markets(n)`` adds thousands more for benchmarks.

Wire, as the real services answer (``/work/shared/reference/polymarket-market-data.md``), and the
choices made where the public documentation is silent
--------------------------------------------------------------------------------------------------
* ``GET /markets/keyset?limit=&after_cursor=&closed=&condition_ids=&include_tag=``:
  ``{"markets": [...], "next_cursor": "..."}``, ``next_cursor`` absent on the last page; markets in
  ascending numeric ``id`` order. ``limit`` defaults to 20, above 100 (or not a positive integer)
  is 422 ``{"type": "validation error", "error": ...}``. Only ``after_cursor`` pages: a ``cursor``
  parameter is ignored exactly as the real API ignores it (page 1 again). ``closed`` defaults to
  false (closed markets dropped); ``closed=true`` lists only closed markets. ``condition_ids`` is
  comma-separated or repeated, at most 100 (else 422). ``tags`` (``{id, label, slug, ...}``) only
  with ``include_tag=true``. A bad ``after_cursor`` is 422.
* Market objects keep Gamma's quirks: ``outcomes``, ``outcomePrices``, ``clobTokenIds`` are
  JSON-encoded strings; ``liquidity``/``volume`` strings beside ``liquidityNum``/``volumeNum``/
  ``volume24hr`` numbers; ``closedTime`` as ``"2026-07-07 21:25:17+00"``; ``category`` on some
  markets only; ``umaResolutionStatus`` once a resolution was requested. Gamma's price fields
  (``bestBid``, ``bestAsk``, ``lastTradePrice``, ``outcomePrices`` before resolution) stay as
  recorded: the real Gamma lags the CLOB, the reference never reads them as a price.
* ``GET /markets/{id}``: by Gamma id or condition id; 404 ``{"error": "market not found"}``.
* ``POST /books`` (body ``[{"token_id": ...}]``, at most 500, else 400 ``{"error": ...}``) → a list
  of books. A token without a book (unknown, or its market is closed) is **omitted** from the list:
  the public reference documents only the found books, and compatible servers omit the missing
  ones; clients must also tolerate an ``{"error": ...}`` entry. ``GET /book?token_id=`` → the book,
  or 404 ``{"error": "No orderbook exists for the requested token id"}``.
* Book: ``market``, ``asset_id``, ``timestamp`` (ms, string), ``hash``, ``bids``, ``asks``
  (``{"price", "size"}`` strings; **bids ascending, asks descending: the best is the last entry**),
  ``min_order_size``, ``tick_size``, ``neg_risk``, ``last_trade_price``. Four levels a side.
  A closed market has no book (REST and websocket alike).
* ``GET /midpoint?token_id=`` → ``{"mid": "0.535"}``; ``POST /midpoints`` → ``{"<token>": "0.45"}``.
  A token with an empty side has no midpoint (404 / omitted).
* Websocket ``/ws/market``: first message ``{"assets_ids": [...], "type": "market",
  "custom_feature_enabled": true}`` (``initial_dump: false`` skips the snapshot); later
  ``{"operation": "subscribe"|"unsubscribe", "assets_ids": [...]}``. The answer to a subscription is
  one ARRAY frame of ``book`` events for the known, open tokens (``[]`` for none). Text ``PING``
  answers ``PONG``; a ``PING`` (or anything unparsable) before the first subscription closes the
  socket with 1008 ``invalid subscription payload``, as the real server does. Events:
  ``price_change`` (array form, an entry per token of the market with its ``best_bid``/``best_ask``),
  ``book`` (after ``set_book``), ``last_trade_price``; with ``custom_feature_enabled``: ``best_bid_ask``
  and ``market_resolved``. ``best_bid``/``best_ask`` are ``""`` for an empty side. A frame is one
  event object or an array of them, mixed deterministically by the seed.

Switches (methods; the same over HTTP when built with ``control=True``)
----------------------------------------------------------------------
``set_book(market_or_token, bid, ask)`` (None = empty side; a NO token sets the mirror),
``jump(market, points)`` (YES mid moves by ``points`` cents at once, with events),
``close(market)`` (closed, active and acceptingOrders false), ``resolve(market, outcome="yes"|"no"|
"void", status="resolved"|"proposed"|"disputed")`` (closed; ``outcomePrices`` set only when resolved;
``market_resolved`` pushed when resolved and not void), ``silence(True|False)`` (the socket stays
open and answers PING, but no data is sent: the real failure), ``fail(endpoint_prefix, status=500,
times=1, retry_after=None)`` (``status=200``: a Cloudflare-style HTML body, i.e. malformed JSON;
``times=None``: until ``clear_faults``), ``stall(endpoint_prefix, seconds, times=1)`` (sleep, then
answer), ``clear_faults()``, ``drop_connections(abrupt=False)`` (close every websocket, 1012; abrupt:
cut the TCP connection), ``random_walk(events_per_second)`` (0 stops), ``step()`` (one walk step),
``add_synthetic_markets(n)``, ``stats()``.
Over HTTP: ``POST /_control`` ``{"action": "<method name>", ...arguments}`` (``silence`` takes
``on``); ``GET /_state``. Markets are named by condition id, Gamma id or (``set_book``) token id.

``serve_in_thread(server)`` -> ``(http_base_url, ws_url, stop)``; ``manage.py run_market_data_server``.
"""

import asyncio
import base64
import bisect
import hashlib
import json
import logging
import random
import socketserver
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import ROUND_FLOOR, Decimal, InvalidOperation
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

logger = logging.getLogger("house.marketdata.reference")

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "catalogue.json"
WS_PATH = "/ws/market"
DEFAULT_KEYSET_LIMIT = 20
MAX_KEYSET_LIMIT = 100
MAX_CONDITION_IDS = 100
MAX_BOOKS = 500
DEPTH = 4
WALK_TICK_SECONDS = 0.02  # the random walk wakes at most this often (its steps due are taken together)
NO_ORDERBOOK = "No orderbook exists for the requested token id"
OUTCOME_PRICES = {"yes": ["1", "0"], "no": ["0", "1"], "void": ["0.5", "0.5"]}
RESOLUTION_STATUSES = ("resolved", "proposed", "disputed")
ONE = Decimal(1)
ZERO = Decimal(0)
_SUBSCRIBER_QUEUE = 10_000
_CLOUDFLARE_PAGE = b"<!DOCTYPE html><html><head><title>Just a moment...</title></head><body>Checking your browser</body></html>"


def _text(value: Decimal) -> str:
    """A price or size the way the CLOB writes it: a plain decimal string (``"0.5"``, ``"1200"``)."""
    return format(value.normalize(), "f")


def _side_text(value: Decimal | None) -> str:
    return "" if value is None else _text(value)


def _decimal_arg(value: Any, name: str) -> Decimal | None:
    if value is None or isinstance(value, Decimal):
        return value
    if isinstance(value, bool | float):
        raise TypeError(f"{name} must be a decimal string or None, not {type(value).__name__}")
    try:
        return Decimal(str(value))
    except InvalidOperation as exc:
        raise ValueError(f"{name} is not a number: {value!r}") from exc


def _closed_time(moment: float) -> str:
    # Gamma writes closedTime in PostgreSQL's text form, not ISO 8601.
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%d %H:%M:%S+00")


@dataclass
class _Market:
    gamma: dict  # the wire object (``tags`` included; stripped unless include_tag)
    number: int  # Gamma's numeric id: the keyset order
    condition_id: str
    tokens: list[str]
    outcomes: list[str]
    tick: Decimal
    yes_bid: Decimal | None = None  # binary markets: the YES book is the state, NO mirrors it
    yes_ask: Decimal | None = None
    yes_last: Decimal | None = None
    other_tops: list[tuple[Decimal | None, Decimal | None]] = field(default_factory=list)  # non-binary: static tops
    updated_ms: int = 0

    @property
    def binary(self) -> bool:
        return len(self.tokens) == 2 and len(self.outcomes) == 2

    @property
    def open(self) -> bool:
        return not self.gamma.get("closed")

    def top(self, index: int) -> tuple[Decimal | None, Decimal | None]:
        if not self.binary:
            return self.other_tops[index]
        if index == 0:
            return self.yes_bid, self.yes_ask
        # NO bid = 1 - YES ask, NO ask = 1 - YES bid.
        return (None if self.yes_ask is None else ONE - self.yes_ask), (None if self.yes_bid is None else ONE - self.yes_bid)

    def last_trade(self, index: int) -> Decimal | None:
        if not self.binary:
            bid, ask = self.other_tops[index]
            return bid if bid is not None else ask
        if self.yes_last is None:
            return None
        return self.yes_last if index == 0 else ONE - self.yes_last


@dataclass
class _Fault:
    prefix: str
    status: int | None  # None: stall only
    times: int | None
    retry_after: int | None = None
    seconds: float = 0.0
    fired: int = 0

    def view(self) -> dict:
        return {
            "prefix": self.prefix,
            "status": self.status,
            "times": self.times,
            "retry_after": self.retry_after,
            "seconds": self.seconds,
            "fired": self.fired,
        }


@dataclass(eq=False)
class _Subscriber:
    conn: ServerConnection
    queue: asyncio.Queue
    assets: set[str] = field(default_factory=set)
    subscribed: bool = False
    custom: bool = False


class _ValidationError(ValueError):
    pass


class ReferenceMarketDataServer:
    """The state of the reference market-data server and its switches; see the module docstring."""

    def __init__(
        self,
        *,
        markets: Iterable[dict] | None = None,
        seed: int | None = 0,
        control: bool = False,
        clock: Callable[[], float] = time.time,
    ):
        self.control = control
        self.clock = clock
        self._lock = threading.RLock()
        self._markets: dict[int, _Market] = {}
        self._numbers: list[int] = []  # sorted numeric ids: the keyset order
        self._by_condition: dict[str, _Market] = {}
        self._by_token: dict[str, tuple[_Market, int]] = {}
        self._walkable: list[_Market] | None = None
        self._faults: list[_Fault] = []
        self._requests: Counter = Counter()
        self._silenced = False
        self._counts: Counter = Counter()  # websocket: events_sent, frames_sent, pings, suppressed, dropped; walk_steps
        self._kinds_sent: Counter = Counter()  # events_sent by event_type
        self._subscribers: dict[int, _Subscriber] = {}
        self._ws_loop: asyncio.AbstractEventLoop | None = None
        self._walk_thread: threading.Thread | None = None
        self._walk_stop: threading.Event | None = None
        self._batch: list[list[dict]] | None = None  # the walk's current steps' events, sent together
        self._hash_counter = 0
        self.seed(seed)
        if markets is None:
            markets = json.loads(FIXTURE.read_text())["markets"]
        for gamma in markets:
            self._add(gamma)

    # --- catalogue -------------------------------------------------------------------------

    def seed(self, seed: int | None) -> None:
        """Reseed the random walk and the object-or-array mixing of websocket frames."""
        base = random.Random(seed).getrandbits(32) if seed is not None else random.getrandbits(32)
        self._seed = seed
        self._walk_rng = random.Random(base)
        self._frame_rng = random.Random(base ^ 0x5F3759DF)

    def _add(self, gamma: dict) -> _Market:
        gamma = dict(gamma)
        outcomes = json.loads(gamma["outcomes"])
        tokens = json.loads(gamma.get("clobTokenIds") or "[]")
        tick = Decimal(str(gamma.get("orderPriceMinTickSize") or "0.01"))
        market = _Market(
            gamma=gamma,
            number=int(gamma["id"]),
            condition_id=gamma["conditionId"],
            tokens=tokens,
            outcomes=outcomes,
            tick=tick,
            updated_ms=int(self.clock() * 1000),
        )
        prices = [Decimal(p) for p in json.loads(gamma.get("outcomePrices") or "[]")]
        if market.binary:
            if gamma.get("bestBid") is not None and gamma.get("bestAsk") is not None:
                bid, ask = Decimal(str(gamma["bestBid"])), Decimal(str(gamma["bestAsk"]))
            else:
                mid = prices[0] if prices else Decimal("0.5")
                bid, ask = mid - tick, mid + tick
            market.yes_bid, market.yes_ask = self._on_tick(bid, tick), self._on_tick(ask, tick)
            market.yes_last = Decimal(str(gamma["lastTradePrice"])) if gamma.get("lastTradePrice") is not None else None
        else:
            market.other_tops = [(self._on_tick(p - tick, tick), self._on_tick(p + tick, tick)) for p in prices]
        with self._lock:
            if market.number in self._markets or market.condition_id in self._by_condition:
                raise ValueError(f"market {gamma['id']} / {market.condition_id} already listed")
            self._markets[market.number] = market
            bisect.insort(self._numbers, market.number)
            self._by_condition[market.condition_id] = market
            for index, token in enumerate(tokens):
                self._by_token[token] = (market, index)
            self._walkable = None
        return market

    @staticmethod
    def _on_tick(price: Decimal, tick: Decimal) -> Decimal:
        price = (price / tick).to_integral_value(rounding=ROUND_FLOOR) * tick
        if price <= ZERO:
            return tick
        if price >= ONE:
            return ONE - tick
        return price

    def add_synthetic_markets(self, n: int) -> list[str]:
        """Add ``n`` open binary markets (for benchmarks); returns their condition ids."""
        rng = random.Random(f"synthetic:{self._seed}:{len(self._markets)}")
        categories = ["crypto", "politics", "sports", "economy", "culture"]
        with self._lock:
            start = (self._numbers[-1] if self._numbers else 500000) + 1
        added = []
        for i in range(n):
            number = start + i
            digest = hashlib.sha256(f"synthetic:{self._seed}:{number}".encode()).hexdigest()
            tokens = [str(int(hashlib.sha256(f"{digest}:{side}".encode()).hexdigest(), 16)) for side in ("yes", "no")]
            tick = Decimal("0.01")
            mid = Decimal(rng.randint(5, 95)) / 100
            liquidity = Decimal(rng.randint(2_000_0000, 2_000_000_0000)) / 10000
            volume24 = (liquidity * Decimal(rng.randint(1, 40)) / 100).quantize(Decimal("0.0001"))
            category = categories[number % len(categories)]
            question = f"Will synthetic indicator #{number} close above {rng.randint(10, 990)} on {rng.randint(1, 28)} Oct 2027?"
            gamma = {
                "id": str(number),
                "question": question,
                "conditionId": "0x" + digest,
                "slug": f"synthetic-indicator-{number}",
                "endDate": f"2027-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T12:00:00Z",
                "liquidity": _text(liquidity),
                "startDate": "2026-10-01T00:00:00Z",
                "outcomes": json.dumps(["Yes", "No"]),
                "outcomePrices": json.dumps([_text(mid), _text(ONE - mid)]),
                "volume": _text(volume24 * 30),
                "active": True,
                "closed": False,
                "archived": False,
                "enableOrderBook": True,
                "orderPriceMinTickSize": 0.01,
                "orderMinSize": 5,
                "volumeNum": float(volume24 * 30),
                "liquidityNum": float(liquidity),
                "volume24hr": float(volume24),
                "clobTokenIds": json.dumps(tokens),
                "acceptingOrders": True,
                "negRisk": False,
                "bestBid": float(mid - tick),
                "bestAsk": float(mid + tick),
                "umaResolutionStatuses": "[]",
                "tags": [{"id": str(100 + categories.index(category)), "label": category.title(), "slug": category}],
            }
            if number % 2:
                gamma["category"] = category.title()
            added.append(self._add(gamma).condition_id)
        return added

    def _market(self, ref: str) -> _Market:
        ref = str(ref)
        with self._lock:
            market = self._by_condition.get(ref)
            if market is None and ref.isdigit():
                market = self._markets.get(int(ref)) or (self._by_token[ref][0] if ref in self._by_token else None)
        if market is None:
            raise KeyError(f"unknown market {ref!r}")
        return market

    # --- switches --------------------------------------------------------------------------

    def set_book(self, market_or_token: str, bid: Decimal | str | None, ask: Decimal | str | None) -> None:
        """Set the top of a binary market's book (a NO token sets the mirror); pushes ``book`` events."""
        bid, ask = _decimal_arg(bid, "bid"), _decimal_arg(ask, "ask")
        for value in (bid, ask):
            if value is not None and not ZERO < value < ONE:
                raise ValueError("prices are probabilities strictly between 0 and 1")
        if bid is not None and ask is not None and bid >= ask:
            raise ValueError("bid must be below ask")
        market = self._market(market_or_token)
        if not market.binary:
            raise ValueError("set_book works on binary markets")
        with self._lock:
            if str(market_or_token) == market.tokens[1]:
                bid, ask = (None if ask is None else ONE - ask), (None if bid is None else ONE - bid)
            market.yes_bid, market.yes_ask = bid, ask
            market.updated_ms = self._now_ms()
            self._walkable = None
            events = [self._book_event(market, index) for index in (0, 1)]
            events += [self._best_bid_ask_event(market, index) for index in (0, 1)]
            self._publish(events)

    def jump(self, market: str, points: Decimal | int | str) -> None:
        """Move the YES mid by ``points`` cents at once (spread kept, clamped inside (0, 1)), with events."""
        points = _decimal_arg(points, "points")
        m = self._market(market)
        with self._lock:
            if not m.binary or m.yes_bid is None or m.yes_ask is None:
                raise ValueError("jump needs a binary market with both sides of the book")
            shift = (points / 100 / m.tick).to_integral_value() * m.tick
            shift = max(shift, m.tick - m.yes_bid)
            shift = min(shift, ONE - m.tick - m.yes_ask)
            m.yes_bid += shift
            m.yes_ask += shift
            self._price_moved(m, buy=shift > 0, trade=True)

    def close(self, market: str) -> None:
        m = self._market(market)
        with self._lock:
            m.gamma.update(closed=True, active=False, acceptingOrders=False, closedTime=_closed_time(self.clock()))
            m.updated_ms = self._now_ms()
            self._walkable = None

    def resolve(self, market: str, outcome: str = "yes", status: str = "resolved") -> None:
        """Close the market with a resolution status; a final one sets ``outcomePrices`` (and the socket hears it)."""
        if outcome not in OUTCOME_PRICES:
            raise ValueError(f"outcome must be one of {sorted(OUTCOME_PRICES)}")
        if status not in RESOLUTION_STATUSES:
            raise ValueError(f"status must be one of {RESOLUTION_STATUSES}")
        m = self._market(market)
        if not m.binary:
            raise ValueError("resolve works on binary markets")
        with self._lock:
            m.gamma.update(closed=True, acceptingOrders=False, umaResolutionStatus=status)
            m.gamma.setdefault("closedTime", _closed_time(self.clock()))
            statuses = json.loads(m.gamma.get("umaResolutionStatuses") or "[]")
            m.gamma["umaResolutionStatuses"] = json.dumps([*statuses, status])
            m.updated_ms = self._now_ms()
            self._walkable = None
            if status != "resolved":
                return
            m.gamma["outcomePrices"] = json.dumps(OUTCOME_PRICES[outcome])
            if outcome == "void":
                return  # a 50-50 has no winning token: the socket says nothing, Gamma's prices tell
            index = 0 if outcome == "yes" else 1
            event = {
                "id": m.gamma["id"],
                "question": m.gamma.get("question", ""),
                "market": m.condition_id,
                "slug": m.gamma.get("slug", ""),
                "assets_ids": list(m.tokens),
                "outcomes": list(m.outcomes),
                "winning_asset_id": m.tokens[index],
                "winning_outcome": m.outcomes[index],
                "timestamp": str(self._now_ms()),
                "event_type": "market_resolved",
            }
            self._publish([event])

    def silence(self, on: bool = True) -> None:
        """Keep sockets open and answering PING but send no data (the real feed's known failure)."""
        self._silenced = bool(on)

    def fail(self, endpoint_prefix: str, status: int = 500, times: int | None = 1, retry_after: int | None = None) -> None:
        """The next ``times`` requests whose path starts with ``endpoint_prefix`` answer ``status``
        (429 with ``Retry-After`` when given; 200 with an HTML page instead of JSON)."""
        if not endpoint_prefix.startswith("/"):
            raise ValueError("endpoint_prefix is a path such as /books or /markets")
        with self._lock:
            self._faults.append(_Fault(endpoint_prefix, int(status), times, None if retry_after is None else int(retry_after)))

    def stall(self, endpoint_prefix: str, seconds: float, times: int | None = 1) -> None:
        """The next ``times`` matching requests sleep ``seconds`` before being answered normally."""
        with self._lock:
            self._faults.append(_Fault(endpoint_prefix, None, times, seconds=float(seconds)))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def drop_connections(self, *, abrupt: bool = False) -> int:
        """Close every websocket (1012 service restart; ``abrupt``: cut the TCP connection). Not from the server's loop."""
        loop = self._ws_loop
        if loop is None:
            return 0

        async def drop() -> int:
            subscribers = list(self._subscribers.values())
            if abrupt:
                for subscriber in subscribers:
                    subscriber.conn.transport.abort()
            else:
                await asyncio.gather(*(s.conn.close(1012, "service restart") for s in subscribers), return_exceptions=True)
            return len(subscribers)

        return asyncio.run_coroutine_threadsafe(drop(), loop).result(timeout=15)

    def random_walk(self, events_per_second: float) -> None:
        """Move random open markets' prices ``events_per_second`` times a second (0 stops).

        The walk runs on the websocket loop when there is one (else in a thread of its own). It
        wakes at most every WALK_TICK_SECONDS and takes the steps due since its last wake, their
        events fanned out together: each step's events still go out as that step's own frame(s),
        but a fast walk costs a wake-up per tick, not per step, and no thread hand-off (the server
        stands in for a remote source: its CPU is not the house's)."""
        if self._walk_stop is not None:
            self._walk_stop.set()
            if self._walk_thread is not None and self._walk_thread is not threading.current_thread():
                self._walk_thread.join(timeout=5)
            self._walk_thread = self._walk_stop = None
        if not events_per_second or events_per_second <= 0:
            return
        interval = 1.0 / float(events_per_second)
        tick = max(interval, WALK_TICK_SECONDS)
        stop = threading.Event()
        owed, last = 0.0, time.monotonic() - interval  # the first wake takes a step at once

        def take_steps() -> list[list[dict]]:
            """The steps due since the last call; their events, a list per step."""
            nonlocal owed, last
            now = time.monotonic()
            # Behind (a stalled machine): do not try to catch up in a burst.
            owed, last = min(owed + (now - last) / interval, 2 * tick / interval + 1), now
            steps = int(owed)
            owed -= steps
            if not steps:
                return []
            with self._lock:
                self._batch = []
            try:
                for _ in range(steps):
                    self.step()
            except Exception:  # a walk step must never kill the demo's prices
                logger.exception("random walk step failed")
            finally:
                with self._lock:
                    batch, self._batch = self._batch, None
            return batch

        self._walk_stop = stop
        loop = self._ws_loop
        if loop is not None:

            def on_loop() -> None:
                if stop.is_set():
                    return
                self._fan_out_groups(take_steps())
                loop.call_later(tick, on_loop)

            loop.call_soon_threadsafe(on_loop)
            return

        def walk() -> None:
            while not stop.is_set():
                self._publish_groups(take_steps())
                stop.wait(tick)

        self._walk_thread = threading.Thread(target=walk, name="reference-market-walk", daemon=True)
        self._walk_thread.start()

    def step(self) -> str | None:
        """One random-walk step on a random open binary market; returns its condition id."""
        with self._lock:
            if self._walkable is None:
                self._walkable = [
                    m
                    for m in (self._markets[n] for n in self._numbers)
                    if m.binary and m.open and m.yes_bid is not None and m.yes_ask is not None
                ]
            if not self._walkable:
                return None
            rng = self._walk_rng
            m = self._walkable[rng.randrange(len(self._walkable))]
            tick, bid, ask = m.tick, m.yes_bid, m.yes_ask
            direction = rng.choice((-1, 1)) * tick * (2 if rng.random() < 0.1 else 1)
            kind = rng.random()
            widest = max(6 * tick, ask - bid)  # the walk never widens a book past this
            if kind < 0.2 and tick <= bid + direction < ask and ask - bid - direction <= widest:
                bid += direction  # only the bid moves: the spread breathes
            elif kind < 0.4 and bid < ask + direction <= ONE - tick and ask + direction - bid <= widest:
                ask += direction
            else:
                if not (tick <= bid + direction and ask + direction <= ONE - tick):
                    direction = -direction
                if not (tick <= bid + direction and ask + direction <= ONE - tick):
                    return None  # a book spanning the whole range has nowhere to go
                bid, ask = bid + direction, ask + direction
            buy = bid > m.yes_bid or ask > m.yes_ask
            m.yes_bid, m.yes_ask = bid, ask
            self._price_moved(m, buy=buy, trade=rng.random() < 0.3)
            self._counts["walk_steps"] += 1
            return m.condition_id

    def stats(self) -> dict:
        """Connections, subscriptions per connection, websocket counters (events sent, also by kind; frames
        sent and still queued), random-walk steps, requests per endpoint."""
        with self._lock:
            subscribers = list(self._subscribers.values())
            return {
                "connections": len(subscribers),
                "subscriptions": [len(s.assets) for s in subscribers],
                "events_sent": self._counts["events_sent"],
                "events_sent_by_kind": dict(self._kinds_sent),
                "queued_frames": sum(s.queue.qsize() for s in subscribers),  # written to no socket yet: a slow reader's backlog
                "walk_steps": self._counts["walk_steps"],
                "frames_sent": self._counts["frames_sent"],
                "pings": self._counts["pings"],
                "suppressed_events": self._counts["suppressed"],
                "dropped_events": self._counts["dropped"],
                "requests": dict(self._requests),
                "silenced": self._silenced,
            }

    def state(self) -> dict:
        """JSON-ready picture of the whole state (what ``GET /_state`` returns)."""
        with self._lock:
            markets = []
            for number in self._numbers:
                m = self._markets[number]
                yes_bid, yes_ask = m.top(0)
                markets.append(
                    {
                        "id": m.gamma["id"],
                        "conditionId": m.condition_id,
                        "question": m.gamma.get("question"),
                        "binary": m.binary,
                        "tokens": m.tokens,
                        "active": m.gamma.get("active"),
                        "closed": m.gamma.get("closed"),
                        "acceptingOrders": m.gamma.get("acceptingOrders"),
                        "umaResolutionStatus": m.gamma.get("umaResolutionStatus"),
                        "outcomePrices": m.gamma.get("outcomePrices"),
                        "bestBid": _side_text(yes_bid),
                        "bestAsk": _side_text(yes_ask),
                    }
                )
            return {"markets": markets, "faults": [f.view() for f in self._faults], "stats": self.stats()}

    # --- prices and events -----------------------------------------------------------------

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    def _next_hash(self, *parts: Any) -> str:
        self._hash_counter += 1
        return hashlib.sha1(":".join(map(str, (*parts, self._hash_counter))).encode()).hexdigest()

    @staticmethod
    def _size(token: str, price: Decimal) -> Decimal:
        digest = hashlib.blake2b(f"{token}:{price}".encode(), digest_size=4).digest()
        return Decimal(50 + int.from_bytes(digest, "big") % 20000) + Decimal(int.from_bytes(digest[:1], "big") % 100) / 100

    def _book(self, market: _Market, index: int) -> dict:
        """The CLOB's book: bids ascending and asks descending, so the best of each is the last entry."""
        token, tick = market.tokens[index], market.tick
        bid, ask = market.top(index)
        bids = [] if bid is None else [p for p in (bid - k * tick for k in range(DEPTH - 1, -1, -1)) if p > ZERO]
        asks = [] if ask is None else [p for p in (ask + k * tick for k in range(DEPTH - 1, -1, -1)) if p < ONE]
        levels = {
            "bids": [{"price": _text(p), "size": _text(self._size(token, p))} for p in bids],
            "asks": [{"price": _text(p), "size": _text(self._size(token, p))} for p in asks],
        }
        last = market.last_trade(index)
        return {
            "market": market.condition_id,
            "asset_id": token,
            "timestamp": str(market.updated_ms),
            "hash": hashlib.sha1(json.dumps([token, market.updated_ms, levels]).encode()).hexdigest(),
            **levels,
            "min_order_size": _text(Decimal(str(market.gamma.get("orderMinSize", 5)))),
            "tick_size": _text(tick),
            "neg_risk": bool(market.gamma.get("negRisk", False)),
            "last_trade_price": _side_text(last),
        }

    def _book_event(self, market: _Market, index: int) -> dict:
        return {**self._book(market, index), "event_type": "book"}

    def _best_bid_ask_event(self, market: _Market, index: int) -> dict:
        bid, ask = market.top(index)
        return {
            "market": market.condition_id,
            "asset_id": market.tokens[index],
            "best_bid": _side_text(bid),
            "best_ask": _side_text(ask),
            "spread": "" if bid is None or ask is None else _text(ask - bid),
            "timestamp": str(market.updated_ms),
            "event_type": "best_bid_ask",
        }

    def _price_moved(self, m: _Market, *, buy: bool, trade: bool) -> None:
        """After a change of the YES top (lock held): stamp it and push the matching events."""
        m.updated_ms = self._now_ms()
        stamp = str(m.updated_ms)
        yes_bid, yes_ask = m.top(0)
        no_bid, no_ask = m.top(1)
        # A YES bid level is a NO ask level at 1 - price: one change, seen from both tokens.
        yes_price = yes_bid if buy else yes_ask
        changes = [
            (m.tokens[0], yes_price, "BUY" if buy else "SELL", yes_bid, yes_ask),
            (m.tokens[1], ONE - yes_price, "SELL" if buy else "BUY", no_bid, no_ask),
        ]
        events = [
            {
                "market": m.condition_id,
                "timestamp": stamp,
                "price_changes": [
                    {
                        "asset_id": token,
                        "price": _text(price),
                        "size": _text(self._size(token, price)),
                        "side": side,
                        "hash": self._next_hash(token, stamp),
                        "best_bid": _side_text(best_bid),
                        "best_ask": _side_text(best_ask),
                    }
                    for token, price, side, best_bid, best_ask in changes
                ],
                "event_type": "price_change",
            },
            self._best_bid_ask_event(m, 0),
            self._best_bid_ask_event(m, 1),
        ]
        if trade:
            m.yes_last = yes_ask if buy else yes_bid
            for index in (0, 1):
                price = m.last_trade(index)
                events.append(
                    {
                        "asset_id": m.tokens[index],
                        "market": m.condition_id,
                        "price": _text(price),
                        "side": ("BUY" if buy else "SELL") if index == 0 else ("SELL" if buy else "BUY"),
                        "size": _text(self._size(m.tokens[index], price) / 10),
                        "fee_rate_bps": "0",
                        "timestamp": stamp,
                        "event_type": "last_trade_price",
                    }
                )
        self._publish(events)

    def _publish(self, events: list[dict]) -> None:
        """A step's or a switch's events (lock held): into the walk's batch when one is open, else sent at once."""
        if not events:
            return
        if self._batch is not None:
            self._batch.append(events)
        else:
            self._publish_groups([events])

    def _publish_groups(self, groups: list[list[dict]]) -> None:
        loop = self._ws_loop
        if loop is None or not groups:
            return
        try:
            loop.call_soon_threadsafe(self._fan_out_groups, groups)
        except RuntimeError:  # the loop is closing: nobody is listening any more
            pass

    def _fan_out_groups(self, groups: list[list[dict]]) -> None:
        for events in groups:
            self._fan_out(events)

    # --- HTTP ------------------------------------------------------------------------------

    def handle_http(self, method: str, target: str, body: bytes) -> tuple[int, dict[str, str], bytes]:
        """Answer one HTTP request: (status, headers, body)."""
        parts = urlsplit(target)
        path = parts.path.rstrip("/") or "/"
        query = parse_qs(parts.query, keep_blank_values=True)
        if path in ("/_control", "/_state"):
            if not self.control:
                return _json(404, {"error": "not found"})
            return self._control_request(method, path, body)
        route, handler = self._route(method, path)
        with self._lock:
            self._requests[f"{method} {route}"] += 1
            fault = next((f for f in self._faults if path.startswith(f.prefix) and (f.times is None or f.fired < f.times)), None)
            if fault is not None:
                fault.fired += 1
        if fault is not None:
            if fault.seconds:
                time.sleep(fault.seconds)
            if fault.status == 200:
                return 200, {"Content-Type": "text/html"}, _CLOUDFLARE_PAGE
            if fault.status is not None:
                headers = {} if fault.retry_after is None else {"Retry-After": str(fault.retry_after)}
                status, extra, payload = _json(fault.status, {"error": HTTPStatus(fault.status).phrase})
                return status, {**extra, **headers}, payload
        if handler is None:
            return _json(404 if route == "unknown" else 405, {"error": "not found" if route == "unknown" else "method not allowed"})
        try:
            return handler(path, query, body)
        except _ValidationError as exc:
            return _json(422, {"type": "validation error", "error": str(exc)})

    def _route(self, method: str, path: str) -> tuple[str, Callable | None]:
        routes = {
            ("GET", "/markets/keyset"): self._http_keyset,
            ("POST", "/books"): self._http_books,
            ("GET", "/book"): self._http_book,
            ("POST", "/midpoints"): self._http_midpoints,
            ("GET", "/midpoint"): self._http_midpoint,
        }
        if (method, path) in routes:
            return path, routes[method, path]
        if path in {p for _, p in routes}:
            return path, None
        if path.startswith("/markets/") and path.count("/") == 2:
            return "/markets/{id}", self._http_market if method == "GET" else None
        return "unknown", None

    def _gamma_view(self, market: _Market, include_tag: bool) -> dict:
        view = dict(market.gamma)
        if not include_tag:
            view.pop("tags", None)
        return view

    def _http_keyset(self, path: str, query: dict, body: bytes) -> tuple[int, dict, bytes]:
        limit = _int_param(query, "limit", DEFAULT_KEYSET_LIMIT)
        if not 1 <= limit <= MAX_KEYSET_LIMIT:
            raise _ValidationError(f"limit must be between 1 and {MAX_KEYSET_LIMIT}")
        closed = _bool_param(query, "closed", False)
        include_tag = _bool_param(query, "include_tag", False)
        wanted = [c.strip() for value in query.get("condition_ids", []) for c in value.split(",") if c.strip()]
        if len(wanted) > MAX_CONDITION_IDS:
            raise _ValidationError(f"at most {MAX_CONDITION_IDS} condition_ids")
        after = _decode_cursor(query["after_cursor"][-1]) if query.get("after_cursor", [""])[-1] else None
        # ``cursor`` is deliberately not read: the real endpoint ignores it and answers page 1 again.
        with self._lock:
            if wanted:
                numbers = sorted({self._by_condition[c].number for c in wanted if c in self._by_condition})
            else:
                numbers = self._numbers
            start = bisect.bisect_right(numbers, after) if after is not None else 0
            page, more = [], False
            for number in numbers[start:]:
                market = self._markets[number]
                if bool(market.gamma.get("closed")) != closed:
                    continue
                if len(page) == limit:
                    more = True
                    break
                page.append(market)
            answer: dict[str, Any] = {"markets": [self._gamma_view(m, include_tag) for m in page]}
        if more:
            answer["next_cursor"] = _encode_cursor(page[-1].number)
        return _json(200, answer)

    def _http_market(self, path: str, query: dict, body: bytes) -> tuple[int, dict, bytes]:
        try:
            market = self._market(path.rsplit("/", 1)[1])
        except KeyError:
            return _json(404, {"error": "market not found"})
        with self._lock:
            return _json(200, self._gamma_view(market, _bool_param(query, "include_tag", False)))

    def _open_token(self, token: str) -> tuple[_Market, int] | None:
        found = self._by_token.get(token)
        if found is None or not found[0].open:
            return None
        return found

    def _tokens_body(self, body: bytes) -> list[str] | tuple[int, dict, bytes]:
        try:
            items = json.loads(body or b"null")
            if not isinstance(items, list) or not all(isinstance(i, dict) and isinstance(i.get("token_id"), str) for i in items):
                raise ValueError
        except ValueError:
            return _json(400, {"error": "Invalid payload"})
        if len(items) > MAX_BOOKS:
            return _json(400, {"error": f"Too many token ids: at most {MAX_BOOKS} per request"})
        return [i["token_id"] for i in items]

    def _http_books(self, path: str, query: dict, body: bytes) -> tuple[int, dict, bytes]:
        tokens = self._tokens_body(body)
        if not isinstance(tokens, list):
            return tokens
        with self._lock:
            books = [self._book(*found) for found in map(self._open_token, tokens) if found is not None]
        return _json(200, books)

    def _http_book(self, path: str, query: dict, body: bytes) -> tuple[int, dict, bytes]:
        token = query.get("token_id", [""])[-1]
        if not token:
            return _json(400, {"error": "Invalid payload"})
        with self._lock:
            found = self._open_token(token)
            if found is None:
                return _json(404, {"error": NO_ORDERBOOK})
            return _json(200, self._book(*found))

    def _mid(self, token: str) -> str | None:
        found = self._open_token(token)
        if found is None:
            return None
        bid, ask = found[0].top(found[1])
        return None if bid is None or ask is None else _text((bid + ask) / 2)

    def _http_midpoint(self, path: str, query: dict, body: bytes) -> tuple[int, dict, bytes]:
        with self._lock:
            mid = self._mid(query.get("token_id", [""])[-1])
        if mid is None:
            return _json(404, {"error": NO_ORDERBOOK})
        return _json(200, {"mid": mid})

    def _http_midpoints(self, path: str, query: dict, body: bytes) -> tuple[int, dict, bytes]:
        tokens = self._tokens_body(body)
        if not isinstance(tokens, list):
            return tokens
        with self._lock:
            mids = {token: self._mid(token) for token in tokens}
        return _json(200, {token: mid for token, mid in mids.items() if mid is not None})

    def _control_request(self, method: str, path: str, body: bytes) -> tuple[int, dict, bytes]:
        if path == "/_state":
            return _json(200, self.state()) if method == "GET" else _json(405, {"error": "method not allowed"})
        if method != "POST":
            return _json(405, {"error": "method not allowed"})
        try:
            command = json.loads(body or b"{}", parse_float=Decimal)
            if not isinstance(command, dict):
                raise ValueError("body must be a JSON object")
            result = self._control(command)
        except (ValueError, TypeError, KeyError) as exc:
            return _json(400, {"ok": False, "error": f"{type(exc).__name__}: {exc}"})
        return _json(200, {"ok": True, **result})

    def _control(self, command: dict) -> dict:
        action = command.pop("action", None)
        if action == "set_book":
            self.set_book(command.get("market") or command["token"], command.get("bid"), command.get("ask"))
        elif action == "jump":
            self.jump(command["market"], command["points"])
        elif action == "close":
            self.close(command["market"])
        elif action == "resolve":
            self.resolve(command["market"], command.get("outcome", "yes"), command.get("status", "resolved"))
        elif action == "silence":
            self.silence(command.get("on", True))
        elif action == "fail":
            self.fail(command["prefix"], **{k: command[k] for k in ("status", "times", "retry_after") if k in command})
        elif action == "stall":
            self.stall(command["prefix"], float(command["seconds"]), command.get("times", 1))
        elif action == "clear_faults":
            self.clear_faults()
        elif action == "drop_connections":
            return {"dropped": self.drop_connections(abrupt=bool(command.get("abrupt", False)))}
        elif action == "random_walk":
            self.random_walk(float(command["events_per_second"]))
        elif action == "step":
            return {"market": self.step()}
        elif action == "add_synthetic_markets":
            return {"condition_ids": self.add_synthetic_markets(int(command["n"]))}
        elif action == "stats":
            return {"stats": self.stats()}
        else:
            raise ValueError(f"unknown action {action!r}")
        return {}

    # --- websocket -------------------------------------------------------------------------

    def _attach(self, loop: asyncio.AbstractEventLoop | None) -> None:
        self._ws_loop = loop

    def _ws_process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        if request.path.split("?", 1)[0] != WS_PATH:
            return connection.respond(HTTPStatus.NOT_FOUND, "not found\n")
        return None

    async def _ws_handler(self, conn: ServerConnection) -> None:
        subscriber = _Subscriber(conn, asyncio.Queue(maxsize=_SUBSCRIBER_QUEUE))
        with self._lock:
            self._subscribers[id(subscriber)] = subscriber
        writer = asyncio.create_task(self._ws_write(subscriber))
        try:
            async for message in conn:
                if isinstance(message, bytes):
                    message = message.decode("utf-8", "replace")
                if message == "PING" and subscriber.subscribed:
                    with self._lock:
                        self._counts["pings"] += 1
                    await conn.send("PONG")  # answered even while silenced: that is the failure
                    continue
                try:
                    request = json.loads(message)
                except ValueError:
                    request = None
                if not isinstance(request, dict) or not isinstance(request.get("assets_ids"), list):
                    await conn.close(1008, "invalid subscription payload")
                    break
                self._ws_subscription(subscriber, request)
        except ConnectionClosed:
            pass
        finally:
            with self._lock:
                self._subscribers.pop(id(subscriber), None)
            writer.cancel()

    def _ws_subscription(self, subscriber: _Subscriber, request: dict) -> None:
        assets = [str(a) for a in request["assets_ids"]]
        if "custom_feature_enabled" in request:
            subscriber.custom = bool(request["custom_feature_enabled"])
        if request.get("operation") == "unsubscribe":
            subscriber.assets.difference_update(assets)
            return
        subscriber.subscribed = True
        new = [a for a in dict.fromkeys(assets) if a not in subscriber.assets]
        subscriber.assets.update(new)
        if request.get("initial_dump", True) is False:
            return
        with self._lock:
            books = [self._book_event(*found) for found in map(self._open_token, new) if found is not None]
        if self._silenced:
            self._counts["suppressed"] += len(books)
            return
        self._enqueue(subscriber, [books], books)  # the answer to a subscription is always one array

    def _for_subscriber(self, event: dict, subscriber: _Subscriber) -> dict | None:
        kind = event["event_type"]
        if kind == "price_change":
            changes = [c for c in event["price_changes"] if c["asset_id"] in subscriber.assets]
            return {**event, "price_changes": changes} if changes else None
        if kind == "market_resolved":
            return event if subscriber.custom and subscriber.assets.intersection(event["assets_ids"]) else None
        if kind == "best_bid_ask" and not subscriber.custom:
            return None
        return event if event.get("asset_id") in subscriber.assets else None

    def _fan_out(self, events: list[dict]) -> None:
        """On the websocket loop: send each subscriber its share, as objects or arrays (by the seed)."""
        if self._silenced:
            self._counts["suppressed"] += len(events)
            return
        for subscriber in list(self._subscribers.values()):
            if not subscriber.subscribed:
                continue
            chosen = [e for e in (self._for_subscriber(event, subscriber) for event in events) if e is not None]
            if not chosen:
                continue
            if self._frame_rng.random() < 0.5:
                frames: list = [chosen]  # one array frame
            else:
                frames = chosen  # one object per frame
            self._enqueue(subscriber, frames, chosen)

    def _enqueue(self, subscriber: _Subscriber, frames: list, events: list[dict]) -> None:
        try:
            for frame in frames:
                subscriber.queue.put_nowait(json.dumps(frame))
        except asyncio.QueueFull:
            self._counts["dropped"] += len(events)
            return
        self._counts["events_sent"] += len(events)
        self._kinds_sent.update(event["event_type"] for event in events)

    async def _ws_write(self, subscriber: _Subscriber) -> None:
        try:
            while True:
                frame = await subscriber.queue.get()
                await subscriber.conn.send(frame)
                self._counts["frames_sent"] += 1
        except ConnectionClosed:
            pass


def _json(status: int, document: Any) -> tuple[int, dict[str, str], bytes]:
    return status, {"Content-Type": "application/json"}, json.dumps(document, default=_json_default).encode()


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return _text(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def _int_param(query: dict, name: str, default: int) -> int:
    raw = query.get(name, [""])[-1]
    if raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise _ValidationError(f"{name} must be an integer") from None


def _bool_param(query: dict, name: str, default: bool) -> bool:
    raw = query.get(name, [""])[-1].lower()
    if raw == "":
        return default
    if raw not in ("true", "false"):
        raise _ValidationError(f"{name} must be true or false")
    return raw == "true"


def _encode_cursor(number: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"id": number}).encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> int:
    try:
        return int(json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))["id"])
    except (ValueError, KeyError, TypeError):
        raise _ValidationError("invalid after_cursor") from None


# --- serving ---------------------------------------------------------------------------------


class _HttpHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the real services behind Cloudflare
    server: "MarketDataHTTPServer"

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def _serve(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        status, headers, payload = self.server.app.handle_http(method, self.path, body)
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class MarketDataHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, app: ReferenceMarketDataServer, host: str, port: int):
        self.app = app
        super().__init__((host, port), _HttpHandler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind looks the host name up (getfqdn), which can take seconds offline.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def handle_error(self, request, client_address) -> None:
        # A client that timed out and hung up during a stall is not the server's error.
        pass


class _WebsocketListener:
    """The websocket server in its own thread with its own event loop."""

    def __init__(self, app: ReferenceMarketDataServer, host: str, port: int):
        self.app = app
        self.loop = asyncio.new_event_loop()
        self.server: Server | None = None
        ready = threading.Event()
        failure: list[BaseException] = []

        async def start() -> Server:
            return await serve(app._ws_handler, host, port, process_request=app._ws_process_request, close_timeout=2, max_size=2**22)

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            try:
                self.server = self.loop.run_until_complete(start())
            except BaseException as exc:  # reported to the caller of serve_in_thread
                failure.append(exc)
                ready.set()
                return
            app._attach(self.loop)
            ready.set()
            self.loop.run_forever()
            self.loop.close()

        self.thread = threading.Thread(target=run, name="reference-market-ws", daemon=True)
        self.thread.start()
        ready.wait()
        if failure:
            raise failure[0]
        self.port = self.server.sockets[0].getsockname()[1]
        self.host = host

    def stop(self) -> None:
        self.app._attach(None)

        async def close() -> None:
            self.server.close()
            await self.server.wait_closed()

        try:
            asyncio.run_coroutine_threadsafe(close(), self.loop).result(timeout=10)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=5)


def serve_in_thread(
    server: ReferenceMarketDataServer, host: str = "127.0.0.1", http_port: int = 0, ws_port: int = 0
) -> tuple[str, str, Callable[[], None]]:
    """Serve ``server`` on loopback (HTTP and websocket, daemon threads); returns (http base URL, ws URL, stop)."""
    httpd = MarketDataHTTPServer(server, host, http_port)
    try:
        listener = _WebsocketListener(server, host, ws_port)
    except BaseException:
        httpd.server_close()
        raise
    http_thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="reference-market-http", daemon=True)
    http_thread.start()

    def stop() -> None:
        server.random_walk(0)
        httpd.shutdown()
        httpd.server_close()
        http_thread.join(timeout=5)
        listener.stop()

    http_host, http_bound = httpd.server_address[:2]
    return f"http://{http_host}:{http_bound}", f"ws://{host}:{listener.port}{WS_PATH}", stop
