"""Polymarket's public market data (SPEC §11): the one module that speaks its wire formats and knows its quirks.

Gamma (the catalogue) and the CLOB (order books) over httpx, the market websocket over
``websockets``; no trading SDK. The rest of the house sees ``SourceMarket``, ``BookTop``,
``PriceEvent`` and ``MarketResolved`` (Decimals, aware datetimes) and one failure,
``SourceUnavailable``. The facts behind each quirk are in ``shared/reference/polymarket-market-data.md``;
``marketdata.reference_server`` serves the same wire on loopback for the tests and ``make run``.
"""

import asyncio
import email.utils
import json
import logging
import random
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import httpx
from django.conf import settings
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, WebSocketException

from core.metrics import FEED_HTTP_ERRORS

logger = logging.getLogger("house.marketdata")

DEFAULT_GAMMA_URL = "https://gamma-api.polymarket.com"
DEFAULT_CLOB_URL = "https://clob.polymarket.com"
DEFAULT_WS_URL = "wss://ws-subscriptions-clob.polymarket.com/ws/market"

# Gamma answers 422 for a keyset page above 100 markets, and takes at most 100 condition ids a call.
GAMMA_PAGE_LIMIT = 100
CONDITION_IDS_PER_CALL = 100
# The CLOB takes at most 500 token ids per POST /books.
BOOKS_PER_CALL = 500
# Published limits (Cloudflare sliding windows): requests per window of seconds, per endpoint family.
DEFAULT_RATE_LIMITS: dict[str, tuple[int, float]] = {"gamma_markets": (300, 10.0), "clob_books": (500, 10.0)}
# The keyset's last page has no next_cursor; "" and the CLOB's own end marker ("LTE=", base64 of -1)
# are read as the end too, in case a proxy or a future version sends them.
_END_CURSORS = frozenset({"", "LTE="})
# A first book dump of 500 tokens with deep books runs to megabytes; websockets' default cap is 1 MiB.
_MAX_FRAME_BYTES = 32 * 2**20


# --- typed values ----------------------------------------------------------------------------


@dataclass(frozen=True)
class SourceMarket:
    condition_id: str
    question: str
    category: str  # lowercased; `category`, else the first tag's slug, else ""
    liquidity: Decimal | None
    volume_24h: Decimal | None
    end_date: datetime | None
    yes_token: str
    no_token: str
    yes_label: str
    no_label: str
    active: bool
    closed: bool
    accepting_orders: bool
    resolution_status: str | None  # umaResolutionStatus
    outcome_prices: tuple[Decimal, Decimal] | None
    raw: dict  # the source object, for evidence


@dataclass(frozen=True)
class BookTop:
    token_id: str
    best_bid: Decimal | None  # 0-1 probabilities; None = empty side
    best_ask: Decimal | None
    source_time: datetime | None


@dataclass(frozen=True)
class PriceEvent:
    """A token's top of book from a websocket ``book``, ``price_change`` or ``best_bid_ask`` event."""

    token_id: str
    best_bid: Decimal | None
    best_ask: Decimal | None
    source_time: datetime | None
    kind: str


@dataclass(frozen=True)
class MarketResolved:
    condition_id: str
    winning_token: str
    source_time: datetime | None


class SourceUnavailable(Exception):
    """The source could not answer usefully: 5xx, 429, timeouts or malformed answers after the retries, or a refusal."""


# --- parsing: every wire quirk is read here --------------------------------------------------


def _loads(content: bytes | str) -> Any:
    # Prices and money never go through float.
    return json.loads(content, parse_float=Decimal)


def _decimal(value: Any) -> Decimal | None:
    """A number that may come as a JSON number or a string; "" (an empty book side) and junk are None."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, float):
        raise TypeError("a float reached the market-data parser: parse JSON with parse_float=Decimal")
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, Decimal):
        return value if value.is_finite() else None
    if isinstance(value, str) and value.strip():
        try:
            number = Decimal(value.strip())
        except InvalidOperation:
            return None
        return number if number.is_finite() else None
    return None


def _encoded_list(value: Any) -> list | None:
    """Gamma sends ``outcomes``, ``outcomePrices`` and ``clobTokenIds`` as JSON-encoded strings; accept a list too."""
    if isinstance(value, list):
        return value
    if isinstance(value, str) and value.strip():
        try:
            decoded = _loads(value)
        except ValueError:
            return None
        return decoded if isinstance(decoded, list) else None
    return None


def _flag(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.strip().lower() == "true")


def _time(value: Any) -> datetime | None:
    """ISO 8601 (``endDate``), Gamma's ``"2026-07-07 21:25:17+00"`` (``closedTime``), or a CLOB epoch in ms (or s)."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, int | Decimal):
        # int / 1000 rounds once to the nearest float, as the Decimal quotient did: no Decimal per event.
        seconds = value / 1000 if value > 10**11 else value
        try:
            return datetime.fromtimestamp(float(seconds), UTC)
        except (OverflowError, OSError, ValueError):
            return None
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _category(raw: dict) -> str:
    # ``category`` is missing on many markets (and carries stray spaces on some); the first tag stands in.
    category = raw.get("category")
    if isinstance(category, str) and category.strip():
        return category.strip().lower()
    for tag in raw.get("tags") or []:
        if isinstance(tag, dict) and isinstance(tag.get("slug"), str) and tag["slug"].strip():
            return tag["slug"].strip().lower()
    return ""


def parse_market(raw: dict) -> SourceMarket | None:
    """A Gamma market object as a ``SourceMarket``; None for what the house cannot list (not two outcomes, no tokens)."""
    if not isinstance(raw, dict):
        return None
    outcomes = _encoded_list(raw.get("outcomes"))
    tokens = _encoded_list(raw.get("clobTokenIds"))
    condition_id = raw.get("conditionId")
    # Only two-outcome markets map onto YES/NO; markets without an order book have no token ids.
    if not outcomes or len(outcomes) != 2 or not tokens or len(tokens) != 2 or not isinstance(condition_id, str) or not condition_id:
        return None
    prices = _encoded_list(raw.get("outcomePrices"))
    outcome_prices = None
    if prices and len(prices) == 2:
        first, second = _decimal(prices[0]), _decimal(prices[1])
        if first is not None and second is not None:
            outcome_prices = (first, second)
    liquidity = _decimal(raw.get("liquidityNum"))
    if liquidity is None:
        liquidity = _decimal(raw.get("liquidity"))  # the string twin
    status = raw.get("umaResolutionStatus")
    return SourceMarket(
        condition_id=condition_id,
        question=str(raw.get("question") or ""),
        category=_category(raw),
        liquidity=liquidity,
        volume_24h=_decimal(raw.get("volume24hr")),
        end_date=_time(raw.get("endDate")),
        yes_token=str(tokens[0]),
        no_token=str(tokens[1]),
        yes_label=str(outcomes[0]),
        no_label=str(outcomes[1]),
        active=_flag(raw.get("active")),
        closed=_flag(raw.get("closed")),
        accepting_orders=_flag(raw.get("acceptingOrders")),
        resolution_status=status if isinstance(status, str) and status else None,
        outcome_prices=outcome_prices,
        raw=raw,
    )


def _level_prices(levels: Any) -> list[Decimal]:
    prices = []
    for level in levels if isinstance(levels, list) else []:
        price = _decimal(level.get("price")) if isinstance(level, dict) else None
        if price is not None:
            prices.append(price)
    return prices


def parse_book(entry: Any) -> BookTop | None:
    """A CLOB book (REST, or a websocket ``book`` event) as its top; None for an error entry."""
    if not isinstance(entry, dict) or "error" in entry or not entry.get("asset_id"):
        return None
    # The CLOB lists bids ascending and asks descending, so the best of each side is the LAST entry
    # (the guide says so; the API reference page claims the opposite order). max/min read the
    # same best prices whichever way a side is sorted, so a silent flip cannot hand us the worst level.
    bids, asks = _level_prices(entry.get("bids")), _level_prices(entry.get("asks"))
    return BookTop(
        token_id=str(entry["asset_id"]),
        best_bid=max(bids) if bids else None,
        best_ask=min(asks) if asks else None,
        source_time=_time(entry.get("timestamp")),
    )


def parse_frame(text: str | bytes) -> list[PriceEvent | MarketResolved]:
    """One websocket data frame: an event object OR an array of them (raises ValueError if not JSON)."""
    data = _loads(text)
    items = data if isinstance(data, list) else [data]
    events: list[PriceEvent | MarketResolved] = []
    for item in items:
        if not isinstance(item, dict):
            continue
        kind = item.get("event_type")
        when = _time(item.get("timestamp"))
        if kind == "book":
            top = parse_book(item)
            if top is not None:
                events.append(PriceEvent(top.token_id, top.best_bid, top.best_ask, top.source_time, "book"))
        elif kind == "price_change":
            # Since 2025-09 each entry of ``price_changes`` carries its token's best bid/ask ("" = empty side).
            # The older form (``asset_id`` + ``changes``) carried no top of book and is skipped.
            for change in item.get("price_changes") or []:
                if isinstance(change, dict) and change.get("asset_id") and ("best_bid" in change or "best_ask" in change):
                    events.append(
                        PriceEvent(str(change["asset_id"]), _decimal(change.get("best_bid")), _decimal(change.get("best_ask")), when, kind)
                    )
        elif kind == "best_bid_ask":
            if item.get("asset_id"):
                events.append(PriceEvent(str(item["asset_id"]), _decimal(item.get("best_bid")), _decimal(item.get("best_ask")), when, kind))
        elif kind == "market_resolved":
            # The winner is ``winning_asset_id``; ``winning_outcome`` is only a display label.
            if item.get("market") and item.get("winning_asset_id"):
                events.append(MarketResolved(str(item["market"]), str(item["winning_asset_id"]), when))
        # last_trade_price, tick_size_change, new_market: no top of book; they still count as data.
    return events


def _chunks(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _retry_after(value: str | None) -> float | None:
    """Retry-After in seconds or as an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (moment - datetime.now(UTC)).total_seconds())


def _backoff(attempt: int, base: float, cap: float) -> float:
    """Exponential backoff with jitter (half fixed, half random), so that many clients do not retry in step."""
    delay = min(cap, base * 2 ** max(attempt - 1, 0))
    return delay * (0.5 + random.random() / 2)


# --- REST ------------------------------------------------------------------------------------


class RateLimiter:
    """A token bucket per endpoint family: ``rate`` requests per ``per`` seconds, bursts up to ``rate``.

    A 429 pauses the whole family, not just the request that got it. Single event loop: the check
    and the take happen without an await between them, so no lock is needed.
    """

    def __init__(self, rate: int, per: float):
        self.capacity = float(rate)
        self.fill_rate = rate / per
        self.tokens = self.capacity
        self.updated = time.monotonic()
        self.paused_until = 0.0

    async def acquire(self) -> None:
        while True:
            now = time.monotonic()
            wait = self.paused_until - now
            if wait <= 0:
                self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.fill_rate)
                self.updated = now
                if self.tokens >= 1:
                    self.tokens -= 1
                    return
                wait = (1 - self.tokens) / self.fill_rate
            await asyncio.sleep(wait)

    def pause(self, seconds: float) -> None:
        self.paused_until = max(self.paused_until, time.monotonic() + seconds)


class PolymarketClient:
    """Gamma and CLOB reads over one ``httpx.AsyncClient``: one per process and event loop; ``aclose`` when done."""

    def __init__(
        self,
        *,
        gamma_url: str | None = None,
        clob_url: str | None = None,
        timeout: float = 10.0,
        attempts: int = 4,
        backoff_base: float = 0.5,
        backoff_max: float = 8.0,
        max_retry_after: float = 60.0,
        rate_limits: dict[str, tuple[int, float]] | None = None,
        books_concurrency: int = 4,
    ):
        self.gamma_url = (gamma_url or getattr(settings, "POLYMARKET_GAMMA_URL", DEFAULT_GAMMA_URL)).rstrip("/")
        self.clob_url = (clob_url or getattr(settings, "POLYMARKET_CLOB_URL", DEFAULT_CLOB_URL)).rstrip("/")
        self.attempts = max(1, attempts)
        self.backoff_base, self.backoff_max = backoff_base, backoff_max
        # A Retry-After longer than this is not waited out inside one call: the caller's next pass retries.
        self.max_retry_after = max_retry_after
        self.books_concurrency = max(1, books_concurrency)
        self.limiters = {family: RateLimiter(*limit) for family, limit in {**DEFAULT_RATE_LIMITS, **(rate_limits or {})}.items()}
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout),
            headers={"Accept": "application/json", "User-Agent": "house-marketdata/1.0"},
            limits=httpx.Limits(max_connections=16, max_keepalive_connections=8),
        )

    async def __aenter__(self) -> "PolymarketClient":
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def markets(self, *, closed: bool = False, page_size: int = GAMMA_PAGE_LIMIT) -> AsyncIterator[SourceMarket]:
        """Every two-outcome market of the catalogue (open ones by default), following the keyset to its end."""
        params = {"limit": min(max(page_size, 1), GAMMA_PAGE_LIMIT), "closed": "true" if closed else "false", "include_tag": "true"}
        skipped = 0
        async for raw in self._keyset(params):
            market = parse_market(raw)
            if market is None:
                skipped += 1
                continue
            yield market
        if skipped:
            logger.debug("gamma: skipped %d markets that are not two-outcome order-book markets", skipped)

    async def markets_by_ids(self, condition_ids: Iterable[str]) -> list[SourceMarket]:
        """The markets with these condition ids, open or closed (unknown ids are absent), in the order asked."""
        wanted = list(dict.fromkeys(c for c in condition_ids if c))
        found: dict[str, SourceMarket] = {}
        for batch in _chunks(wanted, CONDITION_IDS_PER_CALL):
            # Gamma drops closed markets unless closed=true, and closed=true lists only closed ones: ask both.
            for closed in ("false", "true"):
                params = {"condition_ids": batch, "closed": closed, "limit": GAMMA_PAGE_LIMIT, "include_tag": "true"}
                async for raw in self._keyset(params):
                    market = parse_market(raw)
                    if market is not None:
                        found[market.condition_id] = market
        return [found[c] for c in wanted if c in found]

    async def books(self, token_ids: Iterable[str]) -> dict[str, BookTop]:
        """Top of book per token (POST /books, 500 a call); a token without a book is absent."""
        wanted = list(dict.fromkeys(t for t in token_ids if t))
        asked = set(wanted)
        tops: dict[str, BookTop] = {}
        gate = asyncio.Semaphore(self.books_concurrency)

        async def fetch(batch: list[str]) -> None:
            async with gate:
                answer = await self._request_json("clob_books", "POST", f"{self.clob_url}/books", json=[{"token_id": t} for t in batch])
            if not isinstance(answer, list):
                raise SourceUnavailable(f"POST /books answered {type(answer).__name__}, not a list")
            # A token without a book is left out of the answer, or (older behaviour) comes as an error entry.
            for entry in answer:
                top = parse_book(entry)
                if top is not None and top.token_id in asked:
                    tops[top.token_id] = top

        tasks = [asyncio.ensure_future(fetch(batch)) for batch in _chunks(wanted, BOOKS_PER_CALL)]
        try:
            await asyncio.gather(*tasks)
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        return tops

    async def _keyset(self, params: dict) -> AsyncIterator[dict]:
        """Gamma's keyset paging: the cursor goes back as ``after_cursor`` with the same filters."""
        cursor: str | None = None
        seen: set[str] = set()
        while True:
            # ``cursor`` would be silently ignored (page 1 again, forever): the parameter is after_cursor.
            query = {**params, "after_cursor": cursor} if cursor else params
            page = await self._request_json("gamma_markets", "GET", f"{self.gamma_url}/markets/keyset", params=query)
            if not isinstance(page, dict) or not isinstance(page.get("markets"), list):
                raise SourceUnavailable("GET /markets/keyset answered without a markets list")
            for raw in page["markets"]:
                if isinstance(raw, dict):
                    yield raw
            cursor = page.get("next_cursor")
            if not isinstance(cursor, str) or cursor in _END_CURSORS:
                return  # no next_cursor: the last page
            if cursor in seen:
                raise SourceUnavailable("Gamma sent a cursor twice: paging would loop")
            seen.add(cursor)

    async def _request_json(self, family: str, method: str, url: str, *, params: dict | None = None, json: Any = None) -> Any:
        """One request with the family's rate limit, retried on 429 (Retry-After), 425/5xx, timeouts and malformed JSON."""
        limiter = self.limiters[family]
        where = f"{method} {httpx.URL(url).path}"
        problem = ""
        for attempt in range(1, self.attempts + 1):
            await limiter.acquire()
            wait = _backoff(attempt, self.backoff_base, self.backoff_max)
            try:
                response = await self._http.request(method, url, params=params, json=json)
            except httpx.TimeoutException as exc:
                problem = f"timed out ({type(exc).__name__})"
            except httpx.TransportError as exc:
                problem = f"transport error ({exc!r})"
            else:
                status = response.status_code
                if status == 429:
                    # Cloudflare's limiter: honour Retry-After for the whole endpoint family.
                    retry_after = _retry_after(response.headers.get("Retry-After"))
                    wait = wait if retry_after is None else retry_after
                    problem = f"429 rate limited (Retry-After {response.headers.get('Retry-After')!r})"
                    if wait > self.max_retry_after:
                        FEED_HTTP_ERRORS.labels(endpoint=family).inc()
                        raise SourceUnavailable(f"{where}: {problem}, longer than {self.max_retry_after:g}s")
                    limiter.pause(wait)
                elif status >= 500 or status == 425:  # 425 "service not ready": the CLOB restarting
                    problem = f"HTTP {status}"
                elif status >= 400:
                    # Our request is wrong (validation error, unknown path): retrying cannot help.
                    FEED_HTTP_ERRORS.labels(endpoint=family).inc()
                    raise SourceUnavailable(f"{where}: HTTP {status} {response.text[:200]!r}")
                else:
                    try:
                        return _loads(response.content)
                    except ValueError:
                        # A proxy's HTML page with status 200 happens in front of these services.
                        problem = f"malformed JSON ({response.headers.get('content-type', '?')})"
            FEED_HTTP_ERRORS.labels(endpoint=family).inc()
            if attempt == self.attempts:
                break
            logger.warning("polymarket %s: %s; attempt %d of %d, retrying in %.2fs", where, problem, attempt, self.attempts, wait)
            await asyncio.sleep(wait)
        raise SourceUnavailable(f"{where}: {problem} after {self.attempts} attempts")


# --- websocket -------------------------------------------------------------------------------


class _Connection:
    """One websocket of the market channel and the assets it carries (a shard of the stream)."""

    def __init__(self, stream: "MarketStream", number: int, assets: set[str]):
        self.stream = stream
        self.number = number
        self.assets = assets
        self.ws: ClientConnection | None = None
        self.task: asyncio.Task | None = None
        self.last_data = self.last_pong = time.monotonic()
        self.had_data = False

    def start(self) -> None:
        if self.task is None or self.task.done():
            self.task = asyncio.create_task(self._run(), name=f"polymarket-ws-{self.number}")

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
            self.task = None

    async def change(self, operation: str, assets: set[str]) -> None:
        """Subscribe or unsubscribe live; without an open socket the next connection subscribes the full set."""
        if self.ws is None or not assets:
            return
        message = {"operation": operation, "assets_ids": sorted(assets), "custom_feature_enabled": True}
        try:
            await self.ws.send(json.dumps(message))
        except ConnectionClosed:
            pass  # the reconnect resubscribes everything

    async def _run(self) -> None:
        failures = 0
        stream = self.stream
        while True:
            self.had_data = False
            try:
                async with connect(
                    stream.url, ping_interval=None, open_timeout=stream.open_timeout, close_timeout=2, max_size=_MAX_FRAME_BYTES
                ) as ws:
                    reason = await self._session(ws)
                logger.warning("polymarket ws %d: %s; reconnecting", self.number, reason)
            except asyncio.CancelledError:
                raise
            except (OSError, TimeoutError, WebSocketException) as exc:
                logger.warning("polymarket ws %d: %s; reconnecting", self.number, exc or type(exc).__name__)
            except Exception:  # a bug in a frame's handling must not end the feed: log it and reconnect
                logger.exception("polymarket ws %d: unexpected failure; reconnecting", self.number)
            finally:
                self.ws = None
            # A connection that delivered data resets the backoff; one that stayed silent does not.
            failures = 1 if self.had_data else failures + 1
            stream.reconnects += 1
            await asyncio.sleep(_backoff(failures, stream.backoff_base, stream.backoff_max))

    async def _session(self, ws: ClientConnection) -> str:
        """Subscribe, then read, PING and watch until one of them ends the connection; returns why."""
        stream = self.stream
        subscribed = set(self.assets)
        self.ws = ws  # from here set_assets sends live changes
        # Subscribe before the first PING: the server closes a socket that PINGs unsubscribed (1008).
        await ws.send(json.dumps({"assets_ids": sorted(subscribed), "type": "market", "custom_feature_enabled": True}))
        self.last_data = self.last_pong = time.monotonic()
        tasks = {
            asyncio.create_task(self._read(ws)): "read",
            asyncio.create_task(self._ping(ws)): "ping",
            asyncio.create_task(self._watch()): "watch",
        }
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        task = done.pop()
        if task.exception() is not None:
            raise task.exception()
        return task.result() or f"{tasks[task]} ended (close code {ws.close_code}, {ws.close_reason!r}), {stream.pongs} PONGs so far"

    async def _read(self, ws: ClientConnection) -> str:
        stream = self.stream
        async for message in ws:
            if isinstance(message, bytes):
                message = message.decode("utf-8", "replace")
            if message == "PONG":
                self.last_pong = time.monotonic()
                stream.pongs += 1
                continue
            now = time.monotonic()
            self.last_data = stream.last_data_at = now
            self.had_data = True
            stream.frames += 1
            try:
                events = parse_frame(message)
            except ValueError:
                logger.warning("polymarket ws %d: unparsable frame %r", self.number, message[:200])
                continue
            for event in events:
                stream.events += 1
                try:
                    stream.on_event(event)
                except Exception:
                    logger.exception("polymarket ws %d: on_event failed for %r", self.number, event)
        return f"server closed the connection (code {ws.close_code}, {ws.close_reason!r})"

    async def _ping(self, ws: ClientConnection) -> str:
        # Polymarket's heartbeat is the text PING every 10 s (answered by the text PONG), not protocol pings.
        stream = self.stream
        while True:
            await asyncio.sleep(stream.ping_seconds)
            silent_for = time.monotonic() - self.last_pong
            if silent_for > stream.pong_timeout:
                return f"no PONG for {silent_for:.1f}s"
            await ws.send("PING")

    async def _watch(self) -> str:
        # The known failure: the socket stays open and answers PING but sends no data. Only a data
        # watchdog sees it (a quiet market cannot be told from a dead socket: the REST refresh backs this up).
        stream = self.stream
        while True:
            idle = time.monotonic() - self.last_data
            if idle >= stream.idle_seconds:
                return f"no data for {idle:.1f}s ({stream.pongs} PONGs so far: the socket answers but is silent)"
            await asyncio.sleep(stream.idle_seconds - idle + 0.01)


class MarketStream:
    """The market channel for a set of tokens: shards over connections, PINGs, a data-idle watchdog,
    reconnects with backoff and jitter that resubscribe everything. Counters for metrics:
    ``reconnects``, ``frames``, ``events``, ``pongs``, ``last_data_at`` (monotonic seconds or None)."""

    def __init__(
        self,
        url: str | None = None,
        *,
        on_event: Callable[[PriceEvent | MarketResolved], None],
        idle_seconds: float = 30,
        ping_seconds: float = 10,
        max_assets_per_connection: int = 500,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        open_timeout: float = 10.0,
        pong_timeout: float | None = None,
    ):
        self.url = url or getattr(settings, "POLYMARKET_WS_URL", DEFAULT_WS_URL)
        self.on_event = on_event
        self.idle_seconds = idle_seconds
        self.ping_seconds = ping_seconds
        # The per-connection cap is not published; 500 is what client projects report.
        self.max_assets_per_connection = max(1, max_assets_per_connection)
        self.backoff_base, self.backoff_max = backoff_base, backoff_max
        self.open_timeout = open_timeout
        self.pong_timeout = pong_timeout if pong_timeout is not None else 3 * ping_seconds
        self.reconnects = 0
        self.frames = 0
        self.events = 0
        self.pongs = 0
        self.last_data_at: float | None = None
        self._connections: list[_Connection] = []
        self._numbers = 0
        self._running = False
        self._stopping: asyncio.Event | None = None

    @property
    def assets(self) -> frozenset[str]:
        return frozenset().union(*(c.assets for c in self._connections))

    @property
    def connections(self) -> int:
        """Open sockets right now."""
        return sum(1 for c in self._connections if c.ws is not None)

    async def set_assets(self, token_ids: Iterable[str]) -> None:
        """Make the subscribed set ``token_ids``: unsubscribe and subscribe the difference on the live sockets."""
        wanted = {str(t) for t in token_ids if t}
        current = self.assets
        removed, added = current - wanted, sorted(wanted - current)
        for conn in self._connections:
            gone = conn.assets & removed
            if gone:
                conn.assets -= gone
                await conn.change("unsubscribe", gone)
        for conn in self._connections:
            room = self.max_assets_per_connection - len(conn.assets)
            if room > 0 and added and conn.assets:
                take, added = set(added[:room]), added[room:]
                conn.assets |= take
                await conn.change("subscribe", take)
        while added:
            take, added = set(added[: self.max_assets_per_connection]), added[self.max_assets_per_connection :]
            self._numbers += 1
            conn = _Connection(self, self._numbers, take)
            self._connections.append(conn)
            if self._running:
                conn.start()
        for conn in [c for c in self._connections if not c.assets]:
            self._connections.remove(conn)
            await conn.stop()

    async def run(self) -> None:
        """Connect and stream until ``stop``."""
        if self._running:
            raise RuntimeError("MarketStream.run is already running")
        self._stopping = asyncio.Event()
        self._running = True
        try:
            for conn in self._connections:
                conn.start()
            await self._stopping.wait()
        finally:
            self._running = False
            await asyncio.gather(*(conn.stop() for conn in self._connections))

    async def stop(self) -> None:
        self._running = False
        await asyncio.gather(*(conn.stop() for conn in self._connections))
        if self._stopping is not None:
            self._stopping.set()
