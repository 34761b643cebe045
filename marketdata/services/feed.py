"""The long-running market feed (`manage.py run_market_feed`): one active instance per deployment.

    standby      wait for the leadership lock (leader.py); a second instance waits here
    start        load the board, one full pass (catalogue, prices, resolutions)
    stream       the market websocket: every book event folded into the board at once; a
                 silent socket is detected by the adapter's idle watchdog and reconnected
    flush        every ``flush_seconds``: what changed is written (references, ticks,
                 suspensions and resumptions; cool-downs that ended and end dates that
                 passed within a second, by the board's sweep)
    refresh      every ``refresh_seconds``: over REST, the book of every tracked market the
                 stream brought no book for in the last half interval (all of them while the
                 socket is down or silent): the safety net that stamps quiet markets and
                 repairs anything the stream missed. Every reference is stamped at least
                 every 1.5 intervals plus a pass (the stream's books stamp it too)
    catalogue    every ``catalogue_seconds``: listing rules, new and closed markets, the
                 stream's subscriptions follow
    resolutions  every ``resolution_seconds``, and at once for a ``market_resolved`` event
    heartbeat    the feed's state row (FeedState) for /metrics and /readyz; leadership checked

Losing the lock (its database session died) stops every task and goes back to standby.
"""

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from core.metrics import FEED_RECONNECTS
from marketdata.adapters.polymarket import MarketResolved, MarketStream, PolymarketClient, PriceEvent, SourceUnavailable
from marketdata.models import FeedState
from marketdata.services.board import PriceBoard
from marketdata.services.leader import FeedLeadership, holder_name
from marketdata.services.passes import catalogue_pass, db_close, in_db, prices_pass, resolutions_pass

log = logging.getLogger("house.marketdata")


@dataclass(frozen=True)
class FeedTimings:
    flush_seconds: float = 0.2
    refresh_seconds: float = 10.0
    catalogue_seconds: float = 60.0
    resolution_seconds: float = 30.0
    heartbeat_seconds: float = 2.0
    standby_seconds: float = 2.0
    idle_seconds: float = 30.0


class _LostLeadership(Exception):
    pass


class MarketFeed:
    def __init__(self, timings: FeedTimings | None = None):
        self.timings = timings or FeedTimings()
        self.leadership = FeedLeadership()
        self.board: PriceBoard | None = None
        self.stream: MarketStream | None = None
        self._resolve_now: set[str] = set()
        self._stats = {"flushes": 0, "ticks": 0, "written": 0, "refreshes": 0, "refresh_books": 0, "catalogues": 0, "errors": 0}
        self._times: dict[str, object] = {}
        self._reconnects_seen = 0

    async def run(self, stop: asyncio.Event) -> None:
        standby_logged = False
        while not stop.is_set():
            if await asyncio.to_thread(self.leadership.acquire):
                log.info("market feed %s is active", holder_name())
                standby_logged = False
                try:
                    await self._lead(stop)
                except _LostLeadership:
                    log.warning("market feed %s lost leadership", holder_name())
                finally:
                    await asyncio.to_thread(self.leadership.release)
            else:
                if not standby_logged:
                    log.info("market feed %s is on standby: another instance holds the lock", holder_name())
                    standby_logged = True
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.timings.standby_seconds)

    async def _lead(self, stop: asyncio.Event) -> None:
        client = PolymarketClient()
        self.board = PriceBoard()
        try:
            await in_db(self.board.load)
            await in_db(_announce, holder_name())
            await self._catalogue(client)
            await self._refresh(client)
            self.stream = MarketStream(settings.POLYMARKET_WS_URL, on_event=self._on_event, idle_seconds=self.timings.idle_seconds)
            await self.stream.set_assets(set(self.board.yes_tokens()))
            tasks = [
                asyncio.create_task(self.stream.run(), name="stream"),
                asyncio.create_task(self._every(self.timings.flush_seconds, self._flush, from_start=True), name="flush"),
                asyncio.create_task(self._every(self.timings.refresh_seconds, self._refresh, client), name="refresh"),
                asyncio.create_task(self._every(self.timings.catalogue_seconds, self._catalogue, client), name="catalogue"),
                asyncio.create_task(self._every(self.timings.resolution_seconds, self._resolutions, client), name="resolutions"),
                asyncio.create_task(self._every(self.timings.heartbeat_seconds, self._heartbeat), name="heartbeat"),
                asyncio.create_task(stop.wait(), name="stop"),
            ]
            done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            for task in done:
                if task.get_name() != "stop" and task.exception() is not None:
                    raise task.exception()
        finally:
            if self.stream is not None:
                await self.stream.stop()
            await client.aclose()
            await in_db(_step_down, holder_name())
            await db_close()

    async def _every(self, seconds: float, step, *args, from_start: bool = False) -> None:
        """Run ``step`` every ``seconds``; a source or database hiccup is logged and retried next time.

        ``from_start``: the interval runs from one start to the next, so the step's own time is
        not added to it (a book that just missed a flush waits ``seconds``, not ``seconds`` plus
        the write); a step that overran starts again as soon as it ends, once. Otherwise the
        interval is a pause between two runs (the source is never asked back to back)."""
        loop = asyncio.get_running_loop()
        next_start = loop.time() + seconds
        while True:
            await asyncio.sleep(max(0.0, next_start - loop.time()) if from_start else seconds)
            next_start = loop.time() + seconds
            try:
                await step(*args)
            except _LostLeadership:
                raise
            except (SourceUnavailable, OSError) as exc:
                self._stats["errors"] += 1
                log.warning("market feed %s failed: %s", getattr(step, "__name__", step), exc)
            except Exception:  # noqa: BLE001 - the feed keeps running; the next pass repairs
                self._stats["errors"] += 1
                log.exception("market feed step %s failed", getattr(step, "__name__", step))

    def _on_event(self, event) -> None:
        if isinstance(event, PriceEvent):
            self.board.on_book(event.token_id, event.best_bid, event.best_ask, event.source_time, streamed=True)
        elif isinstance(event, MarketResolved):
            market_id = event.condition_id or self.board.market_of(event.winning_token)
            if market_id:
                self._resolve_now.add(market_id)  # confirmed against Gamma by the resolution step

    async def _flush(self) -> None:
        result = await in_db(self.board.flush)
        self._stats["flushes"] += 1
        self._stats["ticks"] += result.ticks
        self._stats["written"] += result.written
        if self._resolve_now:
            await self._resolutions_for(sorted(self._resolve_now))

    async def _refresh(self, client) -> None:
        # A market the stream brought a book for in the last half interval was stamped by it and is
        # left out: skipped now, it is read at the next refresh unless the stream brings it again.
        result = await prices_pass(client, self.board, stream_quiet_for=self.timings.refresh_seconds / 2)
        self._stats["refreshes"] += 1
        self._stats["refresh_books"] = result.books  # the last refresh's
        self._times["last_refresh_at"] = timezone.now()

    async def _catalogue(self, client) -> None:
        _result, extra = await catalogue_pass(client, self.board)
        self._stats["catalogues"] += 1
        self._times["last_catalogue_at"] = timezone.now()
        if self.stream is not None:
            await self.stream.set_assets(set(self.board.yes_tokens()))
        closed = [s for s in extra if s.closed]
        if closed:
            await resolutions_pass(client, closed_sources=closed)

    async def _resolutions(self, client) -> None:
        await resolutions_pass(client, closed_sources=[])  # auto-confirm of due proposals

    async def _resolutions_for(self, market_ids: list[str]) -> None:
        self._resolve_now.difference_update(market_ids)
        client = PolymarketClient()
        try:
            sources = await client.markets_by_ids(market_ids)
            await resolutions_pass(client, closed_sources=[s for s in sources if s.closed])
        finally:
            await client.aclose()

    async def _heartbeat(self) -> None:
        if not await asyncio.to_thread(self.leadership.still_held):
            raise _LostLeadership()
        stream = self.stream
        reconnects = stream.reconnects if stream is not None else 0
        if reconnects > self._reconnects_seen:
            FEED_RECONNECTS.inc(reconnects - self._reconnects_seen)
            self._reconnects_seen = reconnects
        stats = {
            **self._stats,
            "events": self.board.events,
            "reconnects": reconnects,
            "tracked": len(self.board.market_ids()),
            "suspended": self.board.suspended_count(),
            "lag": self.board.lag_percentiles(),
        }
        times = dict(self._times)
        if stream is not None and stream.last_data_at is not None:
            times["last_event_at"] = timezone.now() - timedelta(seconds=time.monotonic() - stream.last_data_at)
        await in_db(_beat, holder_name(), stats, connected=stream is not None and stream.connections > 0, times=times)


def _announce(holder: str) -> None:
    now = timezone.now()
    FeedState.objects.update_or_create(pk=1, defaults={"holder": holder, "started_at": now, "heartbeat_at": now, "stats": {}})


def _beat(holder: str, stats: dict, *, connected: bool, times: dict) -> None:
    now = timezone.now()
    FeedState.objects.update_or_create(
        pk=1,
        defaults={"holder": holder, "heartbeat_at": now, "stream_connected": connected, "stats": stats, **times},
    )


def _step_down(holder: str) -> None:
    FeedState.objects.filter(pk=1, holder=holder).update(stream_connected=False)
