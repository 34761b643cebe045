"""Both sides of Polymarket's market-data wire (SPEC §11): the adapter against the reference
market-data server over real sockets (HTTP and websocket on loopback). No database."""

import asyncio
import json
import math
import subprocess
import sys
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from websockets.asyncio.client import connect

from marketdata.adapters.polymarket import (
    BookTop,
    MarketResolved,
    MarketStream,
    PolymarketClient,
    PriceEvent,
    SourceUnavailable,
    parse_frame,
)
from marketdata.reference_server import FIXTURE, ReferenceMarketDataServer, serve_in_thread

ROOT = Path(__file__).resolve().parent.parent
CATALOGUE = json.loads(FIXTURE.read_text())["markets"]


def _two_outcomes(raw: dict) -> bool:
    return len(json.loads(raw["outcomes"])) == 2


OPEN_BINARY = [m for m in CATALOGUE if _two_outcomes(m) and not m["closed"]]
NON_BINARY = [m for m in CATALOGUE if not _two_outcomes(m)]
CLOSED = [m for m in CATALOGUE if m["closed"]]


def tokens_of(raw: dict) -> list[str]:
    return json.loads(raw["clobTokenIds"])


def by_question(text: str) -> dict:
    return next(m for m in CATALOGUE if m["question"].startswith(text))


@pytest.fixture
def reference():
    server = ReferenceMarketDataServer(seed=7)
    http_url, ws_url, stop = serve_in_thread(server)
    yield SimpleNamespace(server=server, http=http_url, ws=ws_url)
    stop()


def client_for(reference, **options) -> PolymarketClient:
    options = {"backoff_base": 0.01, "backoff_max": 0.05, **options}
    return PolymarketClient(gamma_url=reference.http, clob_url=reference.http, **options)


def run(coroutine_function, *args, **kwargs):
    """Run an async test body on a fresh loop, bounded so that a hang fails instead of blocking the suite."""

    async def bounded():
        return await asyncio.wait_for(coroutine_function(*args, **kwargs), timeout=15)

    return asyncio.run(bounded())


async def eventually(predicate, timeout: float = 3.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


async def all_markets(client: PolymarketClient, **options) -> list:
    try:
        return [m async for m in client.markets(**options)]
    finally:
        await client.aclose()


# --- Gamma ------------------------------------------------------------------------------------


def test_keyset_paging_follows_after_cursor_to_the_end(reference):
    markets = run(all_markets, client_for(reference), page_size=7)

    assert sorted(m.condition_id for m in markets) == sorted(m["conditionId"] for m in OPEN_BINARY)
    open_markets = len(OPEN_BINARY) + len(NON_BINARY)  # the server pages them all; the client drops three
    assert reference.server.stats()["requests"]["GET /markets/keyset"] == math.ceil(open_markets / 7)


def test_a_page_size_above_gammas_maximum_is_clamped_not_refused(reference):
    markets = run(all_markets, client_for(reference), page_size=500)

    assert len(markets) == len(OPEN_BINARY)
    assert reference.server.stats()["requests"]["GET /markets/keyset"] == 1


def test_the_cursor_parameter_is_ignored_like_the_real_api_only_after_cursor_pages(reference):
    with httpx.Client(base_url=reference.http) as http:
        first = http.get("/markets/keyset", params={"limit": 5}).json()
        again = http.get("/markets/keyset", params={"limit": 5, "cursor": first["next_cursor"]}).json()
        second = http.get("/markets/keyset", params={"limit": 5, "after_cursor": first["next_cursor"]}).json()
        last = http.get("/markets/keyset", params={"limit": 100}).json()
        too_many = http.get("/markets/keyset", params={"limit": 101})
        ids = http.get("/markets/keyset", params={"condition_ids": ",".join(f"0x{i:064x}" for i in range(101))})

    ids_of = lambda page: [m["id"] for m in page["markets"]]  # noqa: E731
    assert ids_of(again) == ids_of(first)  # a client sending `cursor` would loop on page 1
    assert set(ids_of(second)).isdisjoint(ids_of(first))
    assert [int(i) for i in ids_of(first) + ids_of(second)] == sorted(int(i) for i in ids_of(first) + ids_of(second))
    assert "next_cursor" not in last  # absent, not null, on the last page
    assert too_many.status_code == 422 and too_many.json()["type"] == "validation error"
    assert ids.status_code == 422
    assert isinstance(first["markets"][0]["clobTokenIds"], str) and "tags" not in first["markets"][0]


def test_string_encoded_fields_are_parsed_into_typed_values(reference):
    markets = {m.condition_id: m for m in run(all_markets, client_for(reference))}
    raw = by_question("Will Bitcoin reach $150,000")
    market = markets[raw["conditionId"]]

    assert (market.yes_token, market.no_token) == tuple(tokens_of(raw))
    assert (market.yes_label, market.no_label) == ("Yes", "No")
    assert market.outcome_prices == (Decimal(json.loads(raw["outcomePrices"])[0]), Decimal(json.loads(raw["outcomePrices"])[1]))
    assert market.liquidity == Decimal(str(raw["liquidityNum"])) and isinstance(market.volume_24h, Decimal)
    assert market.end_date == datetime(2027, 6, 30, 12, tzinfo=UTC)
    assert (market.active, market.closed, market.accepting_orders, market.resolution_status) == (True, False, True, None)
    assert market.raw["id"] == raw["id"]
    head_to_head = markets[by_question("Ryder Cup 2027")["conditionId"]]
    assert (head_to_head.yes_label, head_to_head.no_label) == ("Europe", "USA")


def test_non_binary_markets_are_skipped(reference):
    listed = {m.condition_id for m in run(all_markets, client_for(reference))}

    assert len(NON_BINARY) == 3
    assert not listed & {m["conditionId"] for m in NON_BINARY}


def test_category_comes_from_the_first_tag_slug_when_missing(reference):
    markets = {m.condition_id: m for m in run(all_markets, client_for(reference))}
    untagged = by_question("Will SpaceX land")
    without_category = by_question("Will Ethereum close above")
    padded = by_question("Will GTA VI")

    assert "category" not in without_category
    assert markets[without_category["conditionId"]].category == without_category["tags"][0]["slug"] == "crypto"
    assert padded["category"] == "Pop-Culture " and markets[padded["conditionId"]].category == "pop-culture"
    assert markets[by_question("Will Bitcoin reach")["conditionId"]].category == "crypto"
    assert markets[untagged["conditionId"]].category == ""


def test_markets_by_ids_finds_open_and_closed_markets_in_batches_of_100(reference):
    synthetic = reference.server.add_synthetic_markets(150)
    wanted = [m["conditionId"] for m in CATALOGUE if _two_outcomes(m)] + synthetic + ["0x" + "0" * 64]

    async def body():
        client = client_for(reference)
        try:
            return await client.markets_by_ids(wanted)
        finally:
            await client.aclose()

    found = run(body)

    assert [m.condition_id for m in found] == wanted[:-1]  # in the order asked; the unknown id is absent
    batches = math.ceil(len(wanted) / 100)
    assert reference.server.stats()["requests"]["GET /markets/keyset"] == 2 * batches  # closed=false and closed=true
    resolved = next(m for m in found if m.condition_id == by_question("Will Bitcoin trade above $100,000")["conditionId"])
    assert (resolved.closed, resolved.resolution_status, resolved.outcome_prices) == (True, "resolved", (Decimal(1), Decimal(0)))
    proposed = next(m for m in found if m.condition_id == by_question("Will the 2026 FIFA")["conditionId"])
    assert proposed.resolution_status == "proposed" and proposed.raw["closedTime"] == "2026-07-20 02:15:48+00"


# --- CLOB -------------------------------------------------------------------------------------


async def fetch_books(reference, tokens, **options):
    client = client_for(reference, **options)
    try:
        return await client.books(tokens)
    finally:
        await client.aclose()


def test_best_bid_and_ask_are_the_last_entries_of_the_book(reference):
    raw = by_question("Will the Fed cut rates at its March 2027")
    yes, no = tokens_of(raw)
    book = httpx.get(f"{reference.http}/book", params={"token_id": yes}).json()

    bids = [Decimal(level["price"]) for level in book["bids"]]
    asks = [Decimal(level["price"]) for level in book["asks"]]
    assert bids == sorted(bids) and asks == sorted(asks, reverse=True) and len(bids) > 1  # best = last entry
    tops = run(fetch_books, reference, [yes, no])
    assert tops[yes] == BookTop(yes, bids[-1], asks[-1], datetime.fromtimestamp(int(book["timestamp"]) / 1000, UTC))
    assert (tops[no].best_bid, tops[no].best_ask) == (1 - asks[-1], 1 - bids[-1])  # the NO book mirrors the YES book


def test_an_empty_side_of_the_book_is_none(reference):
    raw = by_question("Will gold trade above")
    yes, no = tokens_of(raw)
    reference.server.set_book(raw["conditionId"], None, "0.55")

    tops = run(fetch_books, reference, [yes, no])

    assert (tops[yes].best_bid, tops[yes].best_ask) == (None, Decimal("0.55"))
    assert (tops[no].best_bid, tops[no].best_ask) == (Decimal("0.45"), None)


def test_tokens_without_a_book_are_absent(reference):
    closed_yes = tokens_of(CLOSED[0])[0]
    open_yes = tokens_of(OPEN_BINARY[0])[0]

    tops = run(fetch_books, reference, [open_yes, closed_yes, "12345"])

    assert set(tops) == {open_yes}
    missing = httpx.get(f"{reference.http}/book", params={"token_id": "12345"})
    assert missing.status_code == 404 and missing.json() == {"error": "No orderbook exists for the requested token id"}


def test_more_than_500_tokens_are_split_into_batches(reference):
    reference.server.add_synthetic_markets(300)
    tokens = [t for m in reference.server.state()["markets"] if m["binary"] and not m["closed"] for t in m["tokens"]]
    assert len(tokens) > 500

    tops = run(fetch_books, reference, tokens)

    assert set(tops) == set(tokens)
    assert reference.server.stats()["requests"]["POST /books"] == math.ceil(len(tokens) / 500)
    oversized = httpx.post(f"{reference.http}/books", json=[{"token_id": t} for t in tokens[:501]])
    assert oversized.status_code == 400 and "error" in oversized.json()


def test_a_429_with_retry_after_and_a_500_are_retried_then_succeed(reference):
    token = tokens_of(OPEN_BINARY[0])[0]
    reference.server.fail("/books", status=429, times=1, retry_after=1)
    reference.server.fail("/books", status=500, times=1)

    started = time.monotonic()
    tops = run(fetch_books, reference, [token])

    assert set(tops) == {token}
    assert time.monotonic() - started >= 1.0  # Retry-After honoured
    assert reference.server.stats()["requests"]["POST /books"] == 3


def test_a_malformed_answer_and_a_timeout_are_retried(reference):
    token = tokens_of(OPEN_BINARY[0])[0]
    reference.server.fail("/books", status=200, times=1)  # an HTML page with status 200
    reference.server.stall("/books", seconds=0.5, times=1)

    tops = run(fetch_books, reference, [token], timeout=0.2)

    assert set(tops) == {token}
    assert reference.server.stats()["requests"]["POST /books"] == 3


def test_a_persistent_500_raises_source_unavailable(reference):
    reference.server.fail("/markets", status=500, times=None)

    with pytest.raises(SourceUnavailable, match="HTTP 500 after 3 attempts"):
        run(all_markets, client_for(reference, attempts=3))
    assert reference.server.stats()["requests"]["GET /markets/keyset"] == 3


# --- the market websocket ---------------------------------------------------------------------


class Recorder:
    def __init__(self):
        self.events: list = []

    def __call__(self, event):
        self.events.append(event)

    def prices(self, token: str) -> list[PriceEvent]:
        return [e for e in self.events if isinstance(e, PriceEvent) and e.token_id == token]


def stream_for(reference, recorder, **options) -> MarketStream:
    options = {"idle_seconds": 5, "ping_seconds": 0.1, "backoff_base": 0.05, "backoff_max": 0.2, **options}
    return MarketStream(reference.ws, on_event=recorder, **options)


async def streaming(stream: MarketStream, body):
    """Run ``stream`` while ``body`` runs; returns what ``body`` returns."""
    task = asyncio.create_task(stream.run())
    try:
        return await body()
    finally:
        await stream.stop()
        await task


def test_the_first_array_of_books_becomes_events_then_price_changes_follow(reference):
    raw = by_question("Will Bitcoin reach $150,000")
    yes, no = tokens_of(raw)
    recorder = Recorder()
    stream = stream_for(reference, recorder)

    async def body():
        await stream.set_assets({yes, no, "12345"})
        await eventually(lambda: len(recorder.events) >= 2, what="the book snapshot")
        assert {(e.token_id, e.kind) for e in recorder.events} == {(yes, "book"), (no, "book")}
        assert stream.frames == 1  # one array frame: both books (the unknown token has none)
        before = recorder.prices(yes)[0]
        await asyncio.to_thread(reference.server.jump, raw["conditionId"], 3)
        await eventually(lambda: any(e.kind == "price_change" for e in recorder.prices(yes)), what="a price change")
        moved = [e for e in recorder.prices(yes) if e.kind != "book"][-1]
        assert (moved.best_bid, moved.best_ask) == (before.best_bid + Decimal("0.03"), before.best_ask + Decimal("0.03"))
        assert isinstance(moved.source_time, datetime)

    run(streaming, stream, body)


def test_frames_come_as_objects_or_arrays_and_both_parse(reference):
    raw = by_question("Will Arsenal win")
    yes, no = tokens_of(raw)

    async def body():
        async with connect(reference.ws, ping_interval=None) as ws:
            await ws.send(json.dumps({"assets_ids": [yes, no], "type": "market", "custom_feature_enabled": True}))
            frames = [json.loads(await ws.recv())]
            for _ in range(12):
                await asyncio.to_thread(reference.server.jump, raw["conditionId"], 1)
                await asyncio.to_thread(reference.server.jump, raw["conditionId"], -1)
            try:
                while True:
                    frames.append(json.loads(await asyncio.wait_for(ws.recv(), 0.3)))
            except TimeoutError:
                pass
        return frames

    frames = run(body)

    assert isinstance(frames[0], list) and [e["event_type"] for e in frames[0]] == ["book", "book"]
    shapes = {type(frame).__name__ for frame in frames[1:]}
    assert shapes == {"list", "dict"}
    events = [e for frame in frames for e in parse_frame(json.dumps(frame))]
    kinds = {e.kind for e in events}
    assert {"book", "price_change", "best_bid_ask"} <= kinds
    assert parse_frame(
        '{"event_type": "best_bid_ask", "asset_id": "7", "best_bid": "", "best_ask": "0.6", "timestamp": "1767225600000"}'
    ) == [PriceEvent("7", None, Decimal("0.6"), datetime(2026, 1, 1, tzinfo=UTC), "best_bid_ask")]


def test_silence_is_caught_by_the_idle_watchdog_while_ping_pong_keeps_going(reference):
    raw = by_question("Will Keir Starmer")
    yes, no = tokens_of(raw)
    recorder = Recorder()
    stream = stream_for(reference, recorder, idle_seconds=0.5)

    async def body():
        await stream.set_assets({yes, no})
        await eventually(lambda: len(recorder.events) == 2, what="the book snapshot")
        await asyncio.to_thread(reference.server.silence, True)
        pongs = stream.pongs
        await asyncio.to_thread(reference.server.jump, raw["conditionId"], 2)  # sent into the void
        await eventually(lambda: stream.reconnects >= 1, what="the watchdog's reconnect")
        assert stream.pongs > pongs  # the socket kept answering PING while silent
        assert len(recorder.events) == 2
        await eventually(lambda: reference.server.stats()["subscriptions"] == [2], what="the resubscription")
        await asyncio.to_thread(reference.server.silence, False)
        await asyncio.to_thread(reference.server.jump, raw["conditionId"], 2)
        await eventually(lambda: len(recorder.prices(yes)) > 1, what="events after the silence")
        assert recorder.prices(yes)[-1].best_bid == recorder.prices(yes)[0].best_bid + Decimal("0.04")

    run(streaming, stream, body)


@pytest.mark.parametrize("abrupt", [False, True])
def test_dropped_connections_reconnect_and_resubscribe_everything(reference, abrupt):
    first, second = by_question("Will the S&P 500"), by_question("Will Nvidia be")
    tokens = set(tokens_of(first) + tokens_of(second))
    recorder = Recorder()
    stream = stream_for(reference, recorder)

    async def body():
        await stream.set_assets(tokens)
        await eventually(lambda: len(recorder.events) == 4, what="the book snapshot")
        dropped = await asyncio.to_thread(reference.server.drop_connections, abrupt=abrupt)
        assert dropped == 1
        await eventually(lambda: stream.reconnects == 1, what="the reconnect")
        await eventually(lambda: len([e for e in recorder.events if e.kind == "book"]) == 8, what="the books again")
        assert reference.server.stats()["subscriptions"] == [4]
        await asyncio.to_thread(reference.server.jump, second["conditionId"], -2)
        await eventually(lambda: any(e.kind == "price_change" for e in recorder.events), what="events after the reconnect")

    run(streaming, stream, body)


def test_set_assets_subscribes_and_unsubscribes_live(reference):
    first, second = by_question("Will Dogecoin"), by_question("Will the Senate")
    recorder = Recorder()
    stream = stream_for(reference, recorder)

    async def body():
        await stream.set_assets(tokens_of(first))
        await eventually(lambda: len(recorder.events) == 2, what="the first market's books")
        await stream.set_assets(tokens_of(first) + tokens_of(second))
        await eventually(lambda: len(recorder.prices(tokens_of(second)[0])) == 1, what="the second market's book")
        await stream.set_assets(tokens_of(second))
        await eventually(lambda: reference.server.stats()["subscriptions"] == [2], what="the unsubscription")
        before = len(recorder.events)
        await asyncio.to_thread(reference.server.jump, first["conditionId"], 1)  # no longer subscribed
        await asyncio.to_thread(reference.server.jump, second["conditionId"], 1)
        await eventually(lambda: recorder.prices(tokens_of(second)[0])[-1].kind != "book", what="the second market's change")
        assert all(e.token_id in tokens_of(second) for e in recorder.events[before:])
        assert stream.reconnects == 0 and reference.server.stats()["connections"] == 1

    run(streaming, stream, body)


def test_assets_are_sharded_over_connections(reference):
    tokens = [t for raw in OPEN_BINARY[:4] for t in tokens_of(raw)]
    recorder = Recorder()
    stream = stream_for(reference, recorder, max_assets_per_connection=3)

    async def body():
        await stream.set_assets(tokens)
        await eventually(lambda: len(recorder.events) == 8, what="every book")
        assert sorted(reference.server.stats()["subscriptions"]) == [2, 3, 3]
        assert stream.connections == 3
        await stream.set_assets(tokens[:2])
        await eventually(lambda: reference.server.stats()["connections"] == 1, what="the emptied connections to close")

    run(streaming, stream, body)


def test_market_resolved_names_the_winning_token(reference):
    resolved, void = by_question("Will Canada hold"), by_question("Will Spain hold")
    recorder = Recorder()
    stream = stream_for(reference, recorder)

    async def body():
        await stream.set_assets(tokens_of(resolved) + tokens_of(void))
        await eventually(lambda: len(recorder.events) == 4, what="the books")
        await asyncio.to_thread(reference.server.resolve, void["conditionId"], "void")
        await asyncio.to_thread(reference.server.resolve, resolved["conditionId"], "no")
        await eventually(lambda: any(isinstance(e, MarketResolved) for e in recorder.events), what="market_resolved")
        client = client_for(reference)
        try:
            return await client.markets_by_ids([void["conditionId"]])
        finally:
            await client.aclose()

    [voided] = run(streaming, stream, body)
    [event] = [e for e in recorder.events if isinstance(e, MarketResolved)]
    assert (event.condition_id, event.winning_token) == (resolved["conditionId"], tokens_of(resolved)[1])
    assert voided.outcome_prices == (Decimal("0.5"), Decimal("0.5")) and voided.resolution_status == "resolved"


# --- switches over HTTP and the management command ---------------------------------------------


def test_control_api_drives_the_server_over_http():
    server = ReferenceMarketDataServer(seed=1, control=True)
    http_url, _, stop = serve_in_thread(server)
    raw = by_question("Will Real Madrid")
    try:
        with httpx.Client(base_url=http_url) as http:
            book = {"action": "set_book", "market": raw["conditionId"], "bid": "0.2", "ask": "0.3"}
            assert http.post("/_control", json=book).json()["ok"]
            assert http.post("/_control", json={"action": "fail", "prefix": "/book", "status": 503, "times": 1}).json()["ok"]
            assert http.get("/book", params={"token_id": tokens_of(raw)[0]}).status_code == 503
            book = http.get("/book", params={"token_id": tokens_of(raw)[0]}).json()
            assert (book["bids"][-1]["price"], book["asks"][-1]["price"]) == ("0.2", "0.3")
            assert http.post("/_control", json={"action": "nope"}).status_code == 400
            state = http.get("/_state").json()
    finally:
        stop()
    [market] = [m for m in state["markets"] if m["conditionId"] == raw["conditionId"]]
    assert (market["bestBid"], market["bestAsk"]) == ("0.2", "0.3")
    assert state["stats"]["requests"]["GET /book"] == 2


def test_run_market_data_server_prints_its_addresses_once_bound():
    command = [sys.executable, "manage.py", "run_market_data_server", "--port", "0", "--control", "--events-per-second", "50"]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        line = json.loads(process.stdout.readline())
        assert line["control"] is True and line["ws"].endswith("/ws/market")
        state = httpx.get(f"{line['http']}/_state").json()
        assert len(state["markets"]) == len(CATALOGUE)
    finally:
        process.terminate()
        process.wait(timeout=10)
