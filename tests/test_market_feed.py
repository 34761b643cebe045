"""The market feed end to end (SPEC §11) against the reference market-data server over real HTTP
and a real websocket: one pass (`market_feed_sync`), the long-running feed reacting to the
stream (jumps, a silent socket, dropped connections, a resolved market, a closed one), and two
feed processes of which exactly one is active."""

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from decimal import Decimal
from io import StringIO
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command

from casino.models import Market, MarketEvent, ReferencePrice
from marketdata.models import FeedState, MarketSource
from marketdata.reference_server import FIXTURE, ReferenceMarketDataServer, serve_in_thread
from marketdata.services.feed import FeedTimings, MarketFeed
from settlement.models import ResolutionProposal
from tests.conftest import requires_postgres

pytestmark = pytest.mark.django_db(transaction=True)
ROOT = Path(__file__).resolve().parent.parent
CATALOGUE = json.loads(FIXTURE.read_text())["markets"]


def _listable(raw: dict) -> bool:
    return len(json.loads(raw["outcomes"])) == 2 and not raw["closed"] and raw.get("acceptingOrders", True) and raw["liquidityNum"] >= 5000


LISTABLE = [m["conditionId"] for m in CATALOGUE if _listable(m)]


@pytest.fixture
def source(settings):
    """The reference market-data server on loopback, and the house pointed at it."""
    server = ReferenceMarketDataServer(seed=3)
    http, ws, stop = serve_in_thread(server)
    settings.POLYMARKET_GAMMA_URL = settings.POLYMARKET_CLOB_URL = http
    settings.POLYMARKET_WS_URL = ws
    server.urls = (http, ws)
    yield server
    stop()


def sync() -> dict:
    out = StringIO()
    call_command("market_feed_sync", stdout=out)
    return json.loads(out.getvalue())


def yes_mid(market_id: str) -> Decimal:
    return ReferencePrice.objects.get(market_id=market_id, outcome="yes").mid_price


def wait_for(check, *, seconds: float = 10.0, what: str = "condition"):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_one_pass_lists_prices_and_tracks_the_catalogue(source):
    summary = sync()
    assert summary["markets"]["listed"] == len(LISTABLE) > 30
    assert sorted(Market.objects.filter(listed=True).values_list("pk", flat=True)) == sorted(LISTABLE)
    assert summary["prices"]["written"] == len(LISTABLE) and ReferencePrice.objects.count() == 2 * len(LISTABLE)
    market = LISTABLE[0]
    top = next(m for m in source.state()["markets"] if m["conditionId"] == market)
    assert yes_mid(market) == (Decimal(top["bestBid"]) + Decimal(top["bestAsk"])) * 50
    assert not Market.objects.exclude(suspended_reason="").filter(listed=True).exists()
    again = sync()  # idempotent
    assert again["markets"]["created"] == 0 and Market.objects.count() == len(LISTABLE)


def test_a_source_resolution_becomes_a_proposal_only_when_final(source):
    sync()
    yes, no, void, pending = LISTABLE[:4]
    source.resolve(yes, "yes")
    source.resolve(no, "no")
    source.resolve(void, "void")
    source.resolve(pending, "yes", status="proposed")
    summary = sync()
    assert summary["resolutions"]["proposed"] == 3
    proposals = {p.market_id: (p.action, p.outcome) for p in ResolutionProposal.objects.all()}
    assert proposals == {yes: ("resolve", "yes"), no: ("resolve", "no"), void: ("void", None)}
    assert Market.objects.get(pk=pending).suspended_reason == "market_closed_at_source"
    assert Market.objects.get(pk=yes).status == "open"  # staff confirm: nothing settles by itself


class FeedThread:
    """The long-running feed in a thread of its own (its own event loop), stopped cleanly."""

    def __init__(self, **timings):
        self.feed = MarketFeed(FeedTimings(**timings))
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._main, daemon=True)
        self.error = None

    def _main(self):
        async def main():
            self.loop, self.stop = asyncio.get_running_loop(), asyncio.Event()
            self.ready.set()
            await self.feed.run(self.stop)

        try:
            asyncio.run(main())
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc

    def __enter__(self):
        self.thread.start()
        self.ready.wait(5)
        return self

    def __exit__(self, *exc):
        self.loop.call_soon_threadsafe(self.stop.set)
        self.thread.join(15)
        assert not self.thread.is_alive(), "the feed did not stop"
        assert self.error is None, self.error


def test_the_running_feed_follows_the_stream_and_survives_a_silent_socket(source):
    timings = {"flush_seconds": 0.05, "refresh_seconds": 60, "catalogue_seconds": 60, "resolution_seconds": 60}
    with FeedThread(**timings, heartbeat_seconds=0.2, idle_seconds=1.0) as running:
        wait_for(lambda: FeedState.objects.filter(stream_connected=True).exists(), what="the feed's stream")
        market = LISTABLE[0]
        token = MarketSource.objects.get(pk=market).yes_token

        # A book over the websocket reaches the reference long before the REST refresh would.
        source.set_book(token, "0.41", "0.45")
        wait_for(lambda: yes_mid(market) == Decimal("43"), what="the streamed book")

        # A jump suspends the market at once.
        source.jump(market, 20)
        wait_for(lambda: Market.objects.get(pk=market).suspended_reason == "price_jump", what="the jump suspension")
        assert MarketEvent.objects.filter(market_id=market, kind="suspended", code="price_jump").exists()

        # The socket goes silent (PONGs still come): the idle watchdog reconnects and resubscribes.
        other = LISTABLE[1]
        other_token = MarketSource.objects.get(pk=other).yes_token
        reconnects = running.feed.stream.reconnects
        source.silence(True)
        wait_for(lambda: running.feed.stream.reconnects > reconnects, seconds=8, what="a reconnect after silence")
        source.silence(False)
        source.set_book(other_token, "0.20", "0.24")
        wait_for(lambda: yes_mid(other) == Decimal("22"), what="events after the silence")

        # The server drops every connection: the stream comes back with its subscriptions.
        source.drop_connections()
        time.sleep(0.3)
        source.set_book(other_token, "0.30", "0.34")
        wait_for(lambda: yes_mid(other) == Decimal("32"), what="events after a dropped connection")

        # The market resolves at the source: the websocket says so, Gamma confirms, a proposal waits for staff.
        resolved = LISTABLE[2]
        source.resolve(resolved, "no")
        wait_for(lambda: ResolutionProposal.objects.filter(market_id=resolved, outcome="no").exists(), what="the proposal")

        state = FeedState.objects.get()
        assert state.stats["events"] > 0 and state.stats["reconnects"] >= 1
    assert Market.objects.get(pk=resolved).status == "open"


def test_a_quiet_market_is_kept_fresh_by_the_rest_refresh(source):
    timings = {"flush_seconds": 0.05, "refresh_seconds": 0.5, "catalogue_seconds": 60, "resolution_seconds": 60}
    with FeedThread(**timings, heartbeat_seconds=0.2, idle_seconds=30):
        market = LISTABLE[3]
        first = wait_for(
            lambda: ReferencePrice.objects.filter(market_id=market, outcome="yes").values_list("updated_at", flat=True).first()
        )
        wait_for(
            lambda: ReferencePrice.objects.get(market_id=market, outcome="yes").updated_at > first,
            seconds=5,
            what="a refreshed stamp",
        )


def test_the_refresh_reads_only_the_books_the_stream_did_not_bring(source):
    timings = {"flush_seconds": 0.05, "refresh_seconds": 0.6, "catalogue_seconds": 60, "resolution_seconds": 60}
    with FeedThread(**timings, heartbeat_seconds=0.2, idle_seconds=30) as running:
        wait_for(lambda: FeedState.objects.filter(stream_connected=True).exists(), what="the feed's stream")
        tracked = MarketSource.objects.filter(tracked=True).count()
        token = MarketSource.objects.get(pk=LISTABLE[0]).yes_token
        stats = running.feed._stats

        # The stream keeps bringing one market's book (every 50 ms, within the half interval): the refreshes leave it out.
        def streamed_one_skipped():
            source.set_book(token, "0.41", "0.45")
            return stats["refreshes"] >= 2 and stats["refresh_books"] == tracked - 1

        wait_for(streamed_one_skipped, what="a refresh without the streamed market")
        assert yes_mid(LISTABLE[0]) == Decimal("43")

        # The stream goes quiet for it: the next refreshes read its book again.
        refreshes = stats["refreshes"]
        wait_for(lambda: stats["refreshes"] >= refreshes + 2 and stats["refresh_books"] == tracked, what="a refresh of every market")


# -- two processes, one active -------------------------------------------------------------------


def _feed_process(source, log_path: Path) -> subprocess.Popen:
    database = settings.DATABASES["default"]["NAME"]
    base = os.environ["DATABASE_URL"].rsplit("/", 1)[0]
    http, ws = source.urls
    env = {
        **os.environ,
        "DATABASE_URL": f"{base}/{database}",
        "POLYMARKET_GAMMA_URL": http,
        "POLYMARKET_CLOB_URL": http,
        "POLYMARKET_WS_URL": ws,
        "CELERY_TASK_ALWAYS_EAGER": "1",
        "LOG_LEVEL": "INFO",
    }
    command = [sys.executable, "manage.py", "run_market_feed", "--standby-seconds", "0.3", "--heartbeat-seconds", "0.2"]
    with open(log_path, "wb") as log:
        return subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


@requires_postgres
def test_two_feed_processes_one_active_and_the_standby_takes_over(source, tmp_path):
    first = _feed_process(source, tmp_path / "first.log")
    second = _feed_process(source, tmp_path / "second.log")
    processes = {first.pid: first, second.pid: second}
    try:
        holder = wait_for(lambda: FeedState.objects.filter(heartbeat_at__isnull=False).values_list("holder", flat=True).first(), seconds=20)
        active_pid = int(holder.rsplit(":", 1)[1])
        standby_pid = next(pid for pid in processes if pid != active_pid)
        standby_log = tmp_path / ("first.log" if processes[standby_pid] is first else "second.log")
        wait_for(lambda: "standby" in standby_log.read_text(), what="the standby's log line")
        time.sleep(1.0)
        assert FeedState.objects.get().holder == holder  # the standby never took over while the active one lived
        os.killpg(active_pid, signal.SIGKILL)  # dies without letting go: its session ends, the lock with it
        processes[active_pid].wait(10)
        wait_for(lambda: FeedState.objects.filter(holder__endswith=f":{standby_pid}").exists(), seconds=20, what="the standby taking over")
        beat = FeedState.objects.get().heartbeat_at
        wait_for(lambda: FeedState.objects.get().heartbeat_at > beat, what="the new active feed's heartbeat")
    finally:
        for process in processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
