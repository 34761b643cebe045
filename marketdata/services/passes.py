"""One pass of each thing the feed does, over the adapter (async) and the database (in a worker
thread, never inside the event loop):

    catalogue_pass     list the source's open markets (keyset), look up tracked ones it no
                       longer lists, apply the listing rules, track what must be tracked
    prices_pass        tracked markets' books over REST (the safety net under the websocket:
                       those it brought nothing for lately), folded into the board and written
    resolutions_pass   proposals from the source's resolution evidence, and auto-confirm
    feed_pass          all three, once: `manage.py market_feed_sync`
"""

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict

from django.db import close_old_connections, connections
from django.utils import timezone

from marketdata.services.board import FlushResult, PriceBoard
from marketdata.services.catalogue import CatalogueResult, catalogue_apply, tracked_market_ids
from marketdata.services.resolutions import ResolutionResult, auto_confirm, auto_confirm_candidates, resolutions_apply

log = logging.getLogger("house.marketdata")


_executors: dict[asyncio.AbstractEventLoop, ThreadPoolExecutor] = {}


async def in_db(fn, /, *args, **kwargs):
    """Run ``fn`` (ORM code) on the event loop's database thread: one thread, so one connection
    (kept, as Django keeps them), and the feed's writes in the order they were made."""

    def call():
        close_old_connections()
        try:
            return fn(*args, **kwargs)
        finally:
            close_old_connections()

    loop = asyncio.get_running_loop()
    executor = _executors.get(loop)
    if executor is None:
        executor = _executors[loop] = ThreadPoolExecutor(max_workers=1, thread_name_prefix="feed-db")
    return await loop.run_in_executor(executor, call)


async def db_close() -> None:
    """Close the database thread's connection and the thread (the end of a pass, or of the feed)."""
    executor = _executors.pop(asyncio.get_running_loop(), None)
    if executor is not None:
        await asyncio.get_running_loop().run_in_executor(executor, connections.close_all)
        executor.shutdown(wait=True)


async def catalogue_pass(client, board: PriceBoard) -> tuple[CatalogueResult, list]:
    """Returns the result and the source records of tracked markets the open catalogue no
    longer lists (closed or resolved: the resolution pass reads them)."""
    sources = [market async for market in client.markets(closed=False)]
    listed_now = {s.condition_id for s in sources}
    missing = sorted((await in_db(tracked_market_ids)) - listed_now)
    extra = await client.markets_by_ids(missing) if missing else []
    result = await in_db(catalogue_apply, sources=sources, extra=extra, at=timezone.now())
    for tracked in result.tracked:
        board.track(
            market_id=tracked.market_id,
            yes_token=tracked.yes_token,
            no_token=tracked.no_token,
            source_closed=tracked.source_closed,
            end_date=tracked.end_date,
        )
    for market_id in result.untracked:
        board.untrack(market_id)
    return result, extra


async def prices_pass(client, board: PriceBoard, *, stream_quiet_for: float | None = None) -> FlushResult:
    """Books over REST, folded in and written: every tracked market's, or (``stream_quiet_for``,
    seconds) only those the websocket brought no book for in that long."""
    tokens = board.yes_tokens(stream_quiet_for=stream_quiet_for)
    books = await client.books(sorted(tokens)) if tokens else {}
    for token in tokens:
        top = books.get(token)
        if top is None:  # the source has no book for it: nothing to price at
            board.on_book(token, None, None, None)
        else:  # no source time: a REST book's timestamp is when it last changed, not a latency
            board.on_book(token, top.best_bid, top.best_ask, None)
    result = await in_db(board.flush)
    result.books = len(tokens)
    return result


async def resolutions_pass(client, *, closed_sources: list) -> ResolutionResult:
    at = timezone.now()
    result = await in_db(resolutions_apply, sources=closed_sources, at=at) if closed_sources else ResolutionResult()
    due = await in_db(auto_confirm_candidates, at=at)
    if due:
        fresh = {s.condition_id: s for s in await client.markets_by_ids(sorted({p.market_id for p in due}))}
        confirmed = await in_db(auto_confirm, proposals=due, sources=fresh, at=at)
        result.confirmed += confirmed.confirmed
        result.withdrawn += confirmed.withdrawn
    return result


async def feed_pass(client, board: PriceBoard | None = None) -> dict:
    """One full pass: catalogue, prices, resolution check. The summary `market_feed_sync` prints."""
    started = time.monotonic()
    board = board or PriceBoard()
    await in_db(board.load)
    catalogue, extra = await catalogue_pass(client, board)
    flushed = await prices_pass(client, board)
    resolutions = await resolutions_pass(client, closed_sources=[s for s in extra if s.closed])
    return {
        "markets": {"seen": catalogue.seen, "listed": catalogue.listed, "tracked": len(catalogue.tracked), "created": catalogue.created},
        "prices": {"written": flushed.written, "ticks": flushed.ticks, "suspended": flushed.suspended, "resumed": flushed.resumed},
        "resolutions": asdict(resolutions),
        "suspendedMarkets": board.suspended_count(),
        "seconds": round(time.monotonic() - started, 3),
    }
