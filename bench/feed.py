"""Market feed benchmark (SPEC §11): the long-running feed against the reference market-data server.

    make bench-feed   (= PG_DURABLE=1 scripts/with-services .venv/bin/python bench/feed.py --write)

Scenarios (``--scenarios``, default all, in this order):

  stream     the reference server (``manage.py run_market_data_server --synthetic N``, its own
             process) random-walks ``--rate`` price moves a second over ``--markets`` listed
             markets; the feed (``manage.py run_market_feed``, its own process, default timings
             but a REST refresh every hour, so the stream is what is measured) writes the
             references to PostgreSQL. Measured for ``--duration`` s after ``--warmup`` s:
             events sent (the server's counters) and applied (the feed's FeedState), event ->
             reference latency (probes, below, and the feed's own lag), CPU per process tree,
             and whether a backlog grew.
  catalogue  the catalogue pass over ``--refresh-markets`` markets (keyset paging, 100 a page,
             and the bulk write), in this process, timed: the first (every market new), then again.
  refresh    one full REST refresh of the same ``--refresh-markets`` tracked markets
             (``prices_pass``: POST /books in batches of 500, the fold, the bulk write), timed
             end to end: the first (every reference new), then ``--refresh-reps`` more after the
             server moved most prices (so most markets also get a tick).
  trade      ``make bench``'s http-spread trade (wrk -> gunicorn -> PostgreSQL, bench/run.py's
             code) with and without the feed running: ``--trade-rounds`` rounds of three arms
             (nothing else; the server streaming, no feed; the server streaming and the feed).

Latency probes (stream): every ``--probe-interval`` s the bench sets the book of one of
``--probe-markets`` markets through the server's control API to a price whose YES mid carries
a marker in its last decimals (a count k, as 0.0001-cent units: ``mid * 10^4 mod 5000``; the
random walk moves prices by whole ticks, so the marker survives later moves), and notes the
wall-clock time before the request. It polls the markets' YES references every
``--poll-interval`` s (one SELECT); a probe's latency ends at the start of the first poll that
sees its marker or a later one. So it covers the whole path (control request, the server's
publish and websocket write, the feed's read and parse, the fold, the wait for the next flush,
the write and its commit, a reader's SELECT) and over-states it by up to one poll interval.
The feed's own figure (FeedState.stats["lag"], source time -> written, over its last 5,000
written markets) is reported beside it.

CPU is measured per process tree (the feed, the server, PostgreSQL, this process) and for
everything else on the machine; a window disturbed by more than ``--max-other-cpus`` CPUs of
other work is measured again (``--retries``) and the least disturbed kept. ``--write``
rewrites the ``## Market feed`` block of bench/RESULTS.md and keeps the rest of the file.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import contextlib
import datetime as dt
import importlib.util
import json
import os
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
# bench/settlement.py is named like the Django app "settlement": keep bench/ off the import path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != BENCH]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")


def _load_trade_bench():
    spec = importlib.util.spec_from_file_location("bench_run", BENCH / "run.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


tb = _load_trade_bench()  # bench/run.py: CPU accounting, gunicorn, wrk, machine description
PY = sys.executable
SCENARIOS = ["stream", "catalogue", "refresh", "trade"]
TARGET_P99_MS = 500.0
TARGET_REFRESH_S = 5.0
MARKER_MOD = 5000  # mid in 0.0001-cent units mod 5000 (a half cent): the probe's marker
PRICE_KINDS = ("book", "price_change", "best_bid_ask")  # the events that carry a top of book
BEGIN_MARK = "<!-- BEGIN bench/feed.py output: rewritten by every run with --write -->"
END_MARK = "<!-- END bench/feed.py output -->"


def log(msg: str) -> None:
    print(f"[bench-feed] {msg}", file=sys.stderr, flush=True)


def pct(values: list[float], p: float) -> float:
    return tb.percentile(sorted(values), p)


# -- processes ----------------------------------------------------------------------------------


def child_env() -> dict:
    return {**os.environ, "DJANGO_DEBUG": "0", "LOG_LEVEL": "WARNING"}


class MarketDataServer:
    """``manage.py run_market_data_server`` in its own process, with its control API."""

    def __init__(self, *, synthetic: int, rate: float, workdir: Path, seed: int = 1):
        self.log_path = workdir / f"market-data-server-{synthetic}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        cmd = [
            PY,
            str(ROOT / "manage.py"),
            "run_market_data_server",
            "--port",
            "0",
            "--events-per-second",
            str(rate),
            "--synthetic",
            str(synthetic),
            "--seed",
            str(seed),
            "--control",
        ]
        self.cmd = cmd
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=child_env(), stdout=subprocess.PIPE, stderr=self._log, start_new_session=True)
        atexit.register(self.stop)
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"run_market_data_server exited:\n{self.log_path.read_text()[-3000:]}")
        urls = json.loads(line)
        self.http, self.ws = urls["http"], urls["ws"]

    def control(self, action: str, **arguments) -> dict:
        body = json.dumps({"action": action, **arguments}).encode()
        request = urllib.request.Request(f"{self.http}/_control", data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - loopback server we started
            return json.loads(response.read())

    def stats(self) -> dict:
        return self.control("stats")["stats"]

    def stop(self) -> None:
        _stop_group(self.proc)
        if not self._log.closed:
            self._log.close()


class FeedProcess:
    """``manage.py run_market_feed`` in its own process, pointed at the reference server."""

    def __init__(self, server: MarketDataServer, workdir: Path, *, refresh_seconds: float):
        self.log_path = workdir / "market-feed.log"
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        env = {**child_env(), "POLYMARKET_GAMMA_URL": server.http, "POLYMARKET_CLOB_URL": server.http, "POLYMARKET_WS_URL": server.ws}
        self.cmd = [PY, str(ROOT / "manage.py"), "run_market_feed", "--refresh-seconds", str(refresh_seconds)]
        self.started = time.time()
        self.proc = subprocess.Popen(self.cmd, cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        atexit.register(self.stop)

    def stop(self) -> None:
        _stop_group(self.proc, timeout=20)
        if not self._log.closed:
            self._log.close()


def _stop_group(proc: subprocess.Popen, timeout: float = 10) -> None:
    """SIGTERM the process group of a child started with start_new_session (ours), SIGKILL if it lingers."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=timeout)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)


def meter(**roots: int | None):
    """CPU per process tree: this process (``runner``), PostgreSQL, and the given roots."""
    m = tb.CpuMeter()
    m.trees.update({name: pid for name, pid in roots.items() if pid})
    return m


# -- database -----------------------------------------------------------------------------------


def setup_django() -> None:
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)


def reset_market_data() -> None:
    """Forget every market (and what hangs off one): each scenario starts from an empty catalogue."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE casino_markets, marketdata_sources, marketdata_feed_state CASCADE")


def listing_settings(*, listed: int) -> None:
    """List exactly ``listed`` markets (the most traded) and leave no synthetic market out for want of liquidity."""
    from casino.models import CasinoSettings

    CasinoSettings.objects.update_or_create(pk=1, defaults={"max_listed_markets": listed, "min_liquidity": Decimal("0")})


def feed_state() -> dict | None:
    from marketdata.models import FeedState

    row = FeedState.objects.filter(pk=1).first()
    if row is None:
        return None
    return {
        "holder": row.holder,
        "heartbeat": row.heartbeat_at.timestamp() if row.heartbeat_at else None,
        "connected": row.stream_connected,
        "stats": row.stats or {},
    }


def wait_feed_ready(feed: FeedProcess, server: MarketDataServer, *, tracked: int, timeout: float = 180) -> dict:
    """Until the feed is active, tracks every listed market, has done its first REST refresh and
    every YES token is subscribed at the server."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if feed.proc.poll() is not None:
            raise RuntimeError(f"run_market_feed exited with {feed.proc.returncode}:\n{feed.log_path.read_text()[-3000:]}")
        state = feed_state()
        if state and state["connected"] and state["heartbeat"] and state["heartbeat"] > feed.started:
            stats = state["stats"]
            subscribed = sum(server.stats()["subscriptions"])
            if stats.get("tracked") == tracked and stats.get("refreshes", 0) >= 1 and subscribed >= tracked:
                return state
        time.sleep(0.5)
    raise RuntimeError(f"the feed was not ready within {timeout:.0f} s:\n{feed.log_path.read_text()[-3000:]}")


# -- stream -------------------------------------------------------------------------------------


class Prober:
    """Latency probes: a marked book per probe, its marker looked for in the written references."""

    def __init__(self, server: MarketDataServer, markets: list[str]):
        from django.db import connection

        self.server, self.markets, self.connection = server, markets, connection
        self.next_k = dict.fromkeys(markets, 1)
        self.outstanding: dict[str, list[tuple[int, float, bool]]] = {m: [] for m in markets}  # (k, sent at, counted)
        self.mids = self.poll()[1]
        self.turn = 0
        self.latencies: list[tuple[float, float]] = []  # (sent at, seconds) of counted probes
        self.sent = self.sent_counted = 0
        self.poll_seconds: list[float] = []

    def poll(self) -> tuple[float, dict[str, Decimal]]:
        started = time.time()
        with self.connection.cursor() as cursor:
            cursor.execute(
                "SELECT market_id, mid_price FROM casino_reference_prices WHERE outcome = 'yes' AND market_id = ANY(%s)", [self.markets]
            )
            mids = dict(cursor.fetchall())
        return started, mids

    def send(self, *, counted: bool) -> None:
        market = self.markets[self.turn % len(self.markets)]
        self.turn += 1
        k = self.next_k[market]
        if k >= MARKER_MOD:
            return
        self.next_k[market] = k + 1
        # A 2-tick book around the current mid (far from the jump threshold), both sides carrying k millionths.
        base = (self.mids[market] / 100).quantize(Decimal("0.01")) - Decimal("0.01")
        base = min(max(base, Decimal("0.02")), Decimal("0.95"))
        offset = Decimal(k) / 1_000_000
        sent = time.time()
        self.server.control("set_book", market=market, bid=str(base + offset), ask=str(base + Decimal("0.02") + offset))
        self.outstanding[market].append((k, sent, counted))
        self.sent += 1
        self.sent_counted += counted

    def check(self) -> None:
        seen_at, mids = self.poll()
        self.poll_seconds.append(time.time() - seen_at)
        self.mids.update(mids)
        for market, mid in mids.items():
            marker = int(mid * 10_000) % MARKER_MOD
            waiting = self.outstanding[market]
            if waiting and waiting[0][0] <= marker:
                for k, sent, counted in list(waiting):
                    if k <= marker:
                        waiting.remove((k, sent, counted))
                        if counted:
                            self.latencies.append((sent, seen_at - sent))

    def unanswered(self) -> int:
        return sum(1 for waiting in self.outstanding.values() for _, _, counted in waiting if counted)


def probe_markets(count: int) -> list[str]:
    """Tracked synthetic markets spread over the catalogue, whose mid carries no marker yet."""
    from casino.models import ReferencePrice

    rows = list(
        ReferencePrice.objects.filter(outcome="yes", market__source__tracked=True, market__title__startswith="Will synthetic")
        .order_by("market_id")
        .values_list("market_id", "mid_price")
    )
    rows = [(m, mid) for m, mid in rows if int(mid * 10_000) % MARKER_MOD == 0]
    step = max(1, len(rows) // count)
    return [m for m, _ in rows[::step][:count]]


def probe_for(prober: Prober, seconds: float, args, *, counted: bool, each_second=None) -> None:
    """Send probes and poll for ``seconds``; ``each_second()`` is called once a second."""
    now = time.monotonic()
    end, next_probe, next_poll, next_second = now + seconds, now, now, now if each_second else float("inf")
    while (now := time.monotonic()) < end:
        if now >= next_probe:
            prober.send(counted=counted)
            next_probe = max(next_probe + args.probe_interval, now - 1.0)  # late by more than a second: no burst
        if now >= next_poll:
            prober.check()
            next_poll = now + args.poll_interval
        if now >= next_second:
            each_second()
            next_second += 1.0
        time.sleep(max(0.0, min(next_probe, next_poll, next_second, end) - time.monotonic()))


def probe_drain(prober: Prober, args, seconds: float = 5.0) -> None:
    """Follow the probes already sent for up to ``seconds`` more (the unanswered ones are reported)."""
    end = time.monotonic() + seconds
    while prober.unanswered() and time.monotonic() < end:
        prober.check()
        time.sleep(args.poll_interval)


def probe_latencies(prober: Prober, wall_start: float, wall_end: float, parts: int = 1) -> list[list[float]]:
    """Latencies (ms) of the probes sent in [wall_start, wall_end), split into ``parts`` equal spans by send time."""
    span = (wall_end - wall_start) / parts
    bounds = [(wall_start + i * span, wall_start + (i + 1) * span) for i in range(parts)]
    return [[lat * 1000 for sent, lat in prober.latencies if lo <= sent < hi] for lo, hi in bounds]


def stream_window(server: MarketDataServer, feed: FeedProcess, prober: Prober, args) -> dict:
    """One measured window (warm-up first), probes throughout; returns the figures."""
    probe_for(prober, args.warmup, args, counted=False)  # probes during the warm-up too (not counted)
    cpu_meter = meter(feed=feed.proc.pid, server=server.proc.pid)
    spy = None
    if args.py_spy:  # a sampling profile of the feed during the window (py-spy costs CPU itself: not for the recorded run)
        out = feed.log_path.with_name(f"feed-py-spy-{int(time.time())}.txt")
        cmd = [args.py_spy, "record", "--pid", str(feed.proc.pid), "--duration", str(args.duration), "--rate", "200", "--threads"]
        spy = subprocess.Popen([*cmd, "--format", "raw", "-o", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        log(f"stream: py-spy profile of the feed to {out}")
    before_cpu, before_server, before_feed = cpu_meter.snapshot(), server.stats(), feed_state()
    wall_start = time.time()
    sent_before = prober.sent_counted
    samples = []  # (t, server stats, feed state) once a second
    probe_for(prober, args.duration, args, counted=True, each_second=lambda: samples.append((time.time(), server.stats(), feed_state())))
    after_cpu, after_server = cpu_meter.snapshot(), server.stats()
    wall_end = time.time()
    cpu = tb.CpuMeter.usage(before_cpu, after_cpu)
    if spy is not None:
        spy.wait(timeout=60)
    probe_drain(prober, args)
    after_feed = feed_state()
    seconds = wall_end - wall_start
    latencies_ms = probe_latencies(prober, wall_start, wall_end)[0]
    thirds = probe_latencies(prober, wall_start, wall_end, parts=3)

    def delta(key: str) -> int:
        return after_server[key] - before_server[key]

    kinds = {k: after_server["events_sent_by_kind"].get(k, 0) - before_server["events_sent_by_kind"].get(k, 0) for k in PRICE_KINDS}
    heartbeats = [s[2] for s in samples if s[2]] + [after_feed]
    fs0, fs1 = before_feed, after_feed
    feed_seconds = fs1["heartbeat"] - fs0["heartbeat"]

    def feed_delta(key: str) -> int:
        return fs1["stats"].get(key, 0) - fs0["stats"].get(key, 0)

    own_lags = [h["stats"].get("lag", {}) for h in heartbeats if h["heartbeat"] and wall_start < h["heartbeat"] <= wall_end + 2]
    queued = [s[1]["queued_frames"] for s in samples]
    return {
        "seconds": seconds,
        "cpu": cpu,
        "walk_steps_per_s": delta("walk_steps") / seconds,
        "events_sent_per_s": delta("events_sent") / seconds,
        "price_events_sent_per_s": sum(kinds.values()) / seconds,
        "events_by_kind_per_s": {k: round(v / seconds, 1) for k, v in kinds.items()},
        "dropped_events": delta("dropped_events"),
        "queued_frames": {"start": before_server["queued_frames"], "max": max(queued, default=0), "end": after_server["queued_frames"]},
        "connections": after_server["connections"],
        "subscribed": sum(after_server["subscriptions"]),
        "applied_per_s": feed_delta("events") / feed_seconds if feed_seconds > 0 else 0.0,
        "written_per_s": feed_delta("written") / feed_seconds if feed_seconds > 0 else 0.0,
        "flushes_per_s": feed_delta("flushes") / feed_seconds if feed_seconds > 0 else 0.0,
        "feed_window_s": feed_seconds,
        "feed_errors": feed_delta("errors"),
        "feed_reconnects": feed_delta("reconnects"),
        "feed_catalogues": feed_delta("catalogues"),
        "feed_refreshes": feed_delta("refreshes"),
        "suspended": fs1["stats"].get("suspended"),
        "probes": len(latencies_ms),
        "probes_sent": prober.sent_counted - sent_before,
        "probes_unanswered": prober.unanswered(),
        "p50_ms": pct(latencies_ms, 50),
        "p90_ms": pct(latencies_ms, 90),
        "p99_ms": pct(latencies_ms, 99),
        "max_ms": max(latencies_ms, default=float("nan")),
        "p50_by_third_ms": [round(pct(t, 50), 1) for t in thirds],
        "p99_by_third_ms": [round(pct(t, 99), 1) for t in thirds],
        "poll_ms_p50": pct([x * 1000 for x in prober.poll_seconds], 50),
        "own_lag_p50_ms": statistics.median([lag["p50_ms"] for lag in own_lags if lag]) if any(own_lags) else float("nan"),
        "own_lag_p99_ms": max((lag["p99_ms"] for lag in own_lags if lag), default=float("nan")),
        "own_lag_heartbeats": sum(1 for lag in own_lags if lag),
    }


def kept_up(w: dict) -> tuple[bool, str]:
    """No dropped events, no queue left at the server, the feed applying what was sent, latency not drifting up."""
    reasons = []
    if w["dropped_events"]:
        reasons.append(f"{w['dropped_events']} events dropped at the server (queue full)")
    if w["queued_frames"]["end"] > max(100, w["events_sent_per_s"] * 0.5):
        reasons.append(f"{w['queued_frames']['end']} frames still queued at the server at the end")
    if w["applied_per_s"] < 0.97 * w["price_events_sent_per_s"]:
        reasons.append(f"applied {w['applied_per_s']:.0f}/s of {w['price_events_sent_per_s']:.0f}/s sent")
    first, last = w["p50_by_third_ms"][0], w["p50_by_third_ms"][-1]
    if first == first and last == last and last > 2 * first + 50:
        reasons.append(f"probe p50 grew from {first:.0f} to {last:.0f} ms over the window")
    if w["probes_unanswered"]:
        reasons.append(f"{w['probes_unanswered']} probes never written")
    return not reasons, "; ".join(reasons)


def run_stream(args, workdir: Path) -> dict:
    reset_market_data()
    listing_settings(listed=args.markets)
    server = MarketDataServer(synthetic=args.markets, rate=args.rate, workdir=workdir)
    feed = None
    try:
        feed = FeedProcess(server, workdir, refresh_seconds=args.stream_refresh_seconds)
        t0 = time.monotonic()
        ready = wait_feed_ready(feed, server, tracked=args.markets)
        log(f"stream: feed ready in {time.monotonic() - t0:.1f} s ({ready['stats'].get('tracked')} markets tracked)")
        prober = Prober(server, probe_markets(args.probe_markets))
        log(f"stream: {len(prober.markets)} probe markets, one probe every {args.probe_interval * 1000:.0f} ms")
        windows = []
        for attempt in range(1 + args.retries):
            tb.wait_quiet(args.quiet_wait)
            w = stream_window(server, feed, prober, args)
            windows.append(w)
            log(
                f"stream: {w['walk_steps_per_s']:.0f} moves/s, {w['price_events_sent_per_s']:.0f} price events/s sent, "
                f"{w['applied_per_s']:.0f}/s applied; probes {w['probes']} p50 {w['p50_ms']:.0f} ms p99 {w['p99_ms']:.0f} ms; "
                f"own lag p50 {w['own_lag_p50_ms']:.0f} p99 {w['own_lag_p99_ms']:.0f} ms; CPU {w['cpu']}"
            )
            if w["cpu"]["other_cpus"] <= args.max_other_cpus or attempt == args.retries:
                break
            log(f"stream: {w['cpu']['other_cpus']:.2f} CPUs of other work during the window; measuring again")
        best = min(windows, key=lambda w: w["cpu"]["other_cpus"])
        best["attempts"] = len(windows)
        best["markets"] = args.markets
        best["rate"] = args.rate
        return best
    finally:
        if feed is not None:
            feed.stop()
        server.stop()


# -- catalogue and refresh (in this process) ----------------------------------------------------


def run_passes(args, workdir: Path, scenarios: list[str]) -> dict:
    """The catalogue pass and the full REST refresh over ``--refresh-markets`` markets, timed here."""
    from django.conf import settings

    from marketdata.adapters.polymarket import PolymarketClient
    from marketdata.services.board import PriceBoard
    from marketdata.services.passes import catalogue_pass, db_close, in_db, prices_pass

    class TimedClient:
        """The product's client; the time spent in POST /books (requests and parsing) noted."""

        def __init__(self, client):
            self.client, self.books_seconds = client, 0.0

        async def books(self, token_ids):
            started = time.perf_counter()
            try:
                return await self.client.books(token_ids)
            finally:
                self.books_seconds += time.perf_counter() - started

    class TimedBoard(PriceBoard):
        flush_seconds = 0.0

        def flush(self):
            started = time.perf_counter()
            try:
                return super().flush()
            finally:
                self.flush_seconds = time.perf_counter() - started

    n = args.refresh_markets
    reset_market_data()
    listing_settings(listed=n)
    server = MarketDataServer(synthetic=n, rate=0, workdir=workdir)
    settings.POLYMARKET_GAMMA_URL = settings.POLYMARKET_CLOB_URL = server.http
    settings.POLYMARKET_WS_URL = server.ws
    result = {"markets": n, "catalogue": [], "refresh": []}
    try:
        cpu_meter = meter(server=server.proc.pid)

        async def passes() -> None:
            client = PolymarketClient()
            board = TimedBoard()
            try:
                await in_db(board.load)
                reps = args.catalogue_reps if "catalogue" in scenarios else 1
                for rep in range(reps):
                    if "catalogue" in scenarios:
                        tb.wait_quiet(args.quiet_wait if rep else 0)
                    before, started = cpu_meter.snapshot(), time.perf_counter()
                    outcome, _ = await catalogue_pass(client, board)
                    seconds = time.perf_counter() - started
                    row = {"rep": rep + 1, "seconds": seconds, "tracked": len(outcome.tracked), "created": outcome.created}
                    row["cpu"] = tb.CpuMeter.usage(before, cpu_meter.snapshot())
                    result["catalogue"].append(row)
                    log(f"catalogue pass {rep + 1}: {seconds:.2f} s, {row['tracked']} tracked, {row['created']} created, CPU {row['cpu']}")
                if len(board.market_ids()) != n:
                    raise RuntimeError(f"{len(board.market_ids())} markets tracked, expected {n}")
                if "refresh" not in scenarios:
                    return
                for rep in range(1 + args.refresh_reps):
                    moved = 0
                    if rep:  # move most prices (each market's mid changes, so it also gets a tick)
                        steps = server.stats()["walk_steps"]
                        server.control("random_walk", events_per_second=2 * n)
                        await asyncio.sleep(2.0)
                        server.control("random_walk", events_per_second=0)
                        moved = server.stats()["walk_steps"] - steps
                    tb.wait_quiet(args.quiet_wait)
                    timed = TimedClient(client)
                    before, started = cpu_meter.snapshot(), time.perf_counter()
                    flushed = await prices_pass(timed, board)
                    seconds = time.perf_counter() - started
                    row = {
                        "rep": rep + 1,
                        "seconds": seconds,
                        "books_s": timed.books_seconds,
                        "write_s": board.flush_seconds,
                        "fold_s": seconds - timed.books_seconds - board.flush_seconds,
                        "written": flushed.written,
                        "ticks": flushed.ticks,
                        "walk_steps": moved,
                        "cpu": tb.CpuMeter.usage(before, cpu_meter.snapshot()),
                    }
                    result["refresh"].append(row)
                    log(
                        f"refresh {rep + 1}: {seconds:.2f} s (books {row['books_s']:.2f}, fold {row['fold_s']:.2f}, "
                        f"write {row['write_s']:.2f}), {flushed.written} written, {flushed.ticks} ticks, CPU {row['cpu']}"
                    )
            finally:
                await client.aclose()
                await db_close()

        asyncio.run(passes())
    finally:
        server.stop()
    return result


# -- trade throughput with and without the feed -------------------------------------------------


def run_trade(args, workdir: Path) -> dict:
    wrk = tb.ensure_wrk()
    if not wrk:
        raise RuntimeError("the trade scenario needs wrk (bench/run.py installs the Debian package when run as root)")
    reset_market_data()
    listing_settings(listed=args.markets)
    log(f"trade: seeding {args.trade_players} players, {args.trade_markets} markets (bench/seed.py)")
    seeded = subprocess.run(
        [PY, str(BENCH / "seed.py"), "--players", str(args.trade_players), "--markets", str(args.trade_markets), "--out", str(workdir)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if seeded.returncode != 0:
        raise RuntimeError(f"seeding failed:\n{seeded.stdout}\n{seeded.stderr}")
    listing_settings(listed=args.markets)  # seed.py rewrites the casino settings row's price max age only; listing again to be sure
    shipped = tb.SHIPPED
    gunicorn_args = SimpleNamespace(workers=shipped["workers"], worker_class=shipped["worker_class"], threads=shipped["threads"])
    env = {**os.environ, "RATELIMIT_ENABLE": "0", "DJANGO_DEBUG": "0"}
    gunicorn = tb.Server(gunicorn_args, env, workdir)
    server = feed = None
    arms: dict[str, list[dict]] = {"plain": [], "server": [], "feed": []}
    try:
        gunicorn.wait_ready()
        server = MarketDataServer(synthetic=args.markets, rate=0, workdir=workdir)
        # A first run of the feed lists the markets (its cold start is not measured) and gives the probe markets.
        feed = FeedProcess(server, workdir, refresh_seconds=10.0)
        wait_feed_ready(feed, server, tracked=args.markets)
        feed.stop()
        feed = None
        prober = Prober(server, probe_markets(args.probe_markets))
        url, tokens, markets = gunicorn.url + "/api/casino/trade", workdir / "tokens.txt", workdir / "markets.txt"

        def wrk_run(seconds: int, box: dict) -> None:
            box["data"] = tb.http_run_wrk(wrk, url, tokens, markets, seconds=seconds, connections=args.concurrency, threads=1)

        order = ["plain", "server", "feed"]
        plan = [arm for r in range(args.trade_rounds) for arm in (order if r % 2 == 0 else order[::-1])]
        for arm in plan:
            server.control("random_walk", events_per_second=0 if arm == "plain" else args.rate)
            if arm == "feed" and feed is None:
                feed = FeedProcess(server, workdir, refresh_seconds=10.0)  # the default timings: as deployed
                wait_feed_ready(feed, server, tracked=args.markets)
            elif arm != "feed" and feed is not None:
                feed.stop()
                feed = None
            tb.wait_quiet(args.quiet_wait)
            # The probes run in every arm (the same control requests and SELECTs: the same load on the
            # server and PostgreSQL); only with the feed do they come back.
            with_feed = feed is not None
            warm: dict = {}
            runner = threading.Thread(target=wrk_run, args=(args.trade_warmup, warm))
            runner.start()
            probe_for(prober, args.trade_warmup, args, counted=False)
            runner.join()
            cpu_meter = meter(gunicorn=gunicorn.proc.pid, server=server.proc.pid, feed=feed.proc.pid if feed else None)
            before, state0, stats0 = cpu_meter.snapshot(), feed_state(), server.stats()
            box: dict = {}
            wall_start = time.time()
            runner = threading.Thread(target=wrk_run, args=(args.trade_duration, box))
            runner.start()
            probe_for(prober, args.trade_duration, args, counted=with_feed)
            runner.join()
            wall_end = time.time()
            cpu = tb.CpuMeter.usage(before, cpu_meter.snapshot())
            stats1 = server.stats()
            data = box["data"]
            row = {
                "tps": data["ok"] / data["seconds"],
                "p50_ms": data["p50_ms"],
                "p99_ms": data["p99_ms"],
                "failures": data["failures"],
                "cpu": cpu,
                "price_events_per_s": sum(
                    stats1["events_sent_by_kind"].get(k, 0) - stats0["events_sent_by_kind"].get(k, 0) for k in PRICE_KINDS
                )
                / data["seconds"],
                "moves_per_s": (stats1["walk_steps"] - stats0["walk_steps"]) / data["seconds"],
            }
            if with_feed:
                probe_drain(prober, args)
                state1 = feed_state()
                span = state1["heartbeat"] - state0["heartbeat"]
                row["applied_per_s"] = (state1["stats"]["events"] - state0["stats"]["events"]) / span if span > 0 else 0.0
                probes = probe_latencies(prober, wall_start, wall_end)[0]
                row["probes"], row["probe_p50_ms"], row["probe_p99_ms"] = len(probes), pct(probes, 50), pct(probes, 99)
            arms[arm].append(row)
            log(
                f"trade [{arm}]: {row['tps']:.0f} trades/s, p50 {row['p50_ms']:.1f} ms, p99 {row['p99_ms']:.1f} ms, "
                f"failures {row['failures']}, {row['moves_per_s']:.0f} moves/s, {row['price_events_per_s']:.0f} price events/s"
                + (
                    f", feed applied {row['applied_per_s']:.0f}/s, probes {row['probes']} p50 {row['probe_p50_ms']:.0f} ms "
                    f"p99 {row['probe_p99_ms']:.0f} ms"
                    if with_feed
                    else ""
                )
                + f", CPU {cpu}"
            )
    finally:
        if feed is not None:
            feed.stop()
        if server is not None:
            server.stop()
        gunicorn.stop()
    return {"arms": arms, "players": args.trade_players, "trade_markets": args.trade_markets, "markets": args.markets}


# -- results ------------------------------------------------------------------------------------


def fmt_cpu(cpu: dict, names: list[str]) -> str:
    return " + ".join(f"{cpu.get(f'{n}_cpus', 0):.2f}" for n in names) + f" / {cpu.get('other_cpus', 0):.2f}"


def render(results: dict, args, argv: list[str], started: dt.datetime, code: str) -> str:
    durable = os.environ.get("PG_DURABLE") == "1"
    command = (
        "make bench-feed"
        if argv == ["--write"] and durable
        else f"PG_DURABLE={os.environ.get('PG_DURABLE', '0')} "
        + ("scripts/with-services .venv/bin/python bench/feed.py " + shlex.join(argv))
    )
    lines = [
        "## Market feed",
        "",
        "Generated by `bench/feed.py` (see `bench/README.md`); a new run with `--write` rewrites this block, the rest of the file is kept.",
        "",
        f"- Command: `{command}` (from the repository root)",
        f"- Date: {started:%Y-%m-%d %H:%M} UTC",
        f"- Machine: {tb.machine()}",
        f"- Code measured: {code} (as the run started)",
        "- PostgreSQL: " + ("fsync and synchronous_commit on (PG_DURABLE=1)" if durable else "**fsync off** (PG_DURABLE not set)"),
        "- The reference market-data server and the feed are separate processes on the same 2-CPU machine as PostgreSQL "
        "(and, in the trade scenario, gunicorn and wrk): in production the source is remote and its CPU is not ours.",
    ]
    summary_at = len(lines)
    if s := results.get("stream"):
        ok, why = kept_up(s)
        c = s["cpu"]
        lines += [
            "",
            f"### Stream: {s['markets']:,} listed markets, the server walking {s['rate']:,.0f} price moves/s",
            "",
            f"The server (`run_market_data_server --synthetic {s['markets']} --events-per-second {s['rate']:g} --control`) and the feed "
            f"(`run_market_feed --refresh-seconds {args.stream_refresh_seconds:g}`, every other timing the default: flush every 0.2 s, "
            "catalogue every 60 s, resolutions every 30 s, heartbeat every 2 s) in their own processes; "
            f"{args.warmup} s warm-up, then {s['seconds']:.0f} s measured. Each price move is a `price_change` and a `best_bid_ask` "
            "event for the YES token the feed subscribes (and a `last_trade_price` for 30% of them, no top of book).",
            "",
            "| Measure | Value | Target |",
            "| --- | ---: | --- |",
            f"| price moves/s (server's random walk, counted by the server) | {s['walk_steps_per_s']:,.0f} | |",
            f"| events/s sent on the websocket (all kinds) | {s['events_sent_per_s']:,.0f} | |",
            f"| price events/s sent (book, price_change, best_bid_ask) | {s['price_events_sent_per_s']:,.0f} | >= 1,000 |",
            f"| price events/s applied by the feed (FeedState `events`) | {s['applied_per_s']:,.0f} | = sent |",
            f"| references written/s (markets stamped; {s['flushes_per_s']:.1f} flushes/s) | {s['written_per_s']:,.0f} | |",
            f"| **event -> reference p50 / p90 / p99 / max (probes, ms)** | **{s['p50_ms']:.0f} / {s['p90_ms']:.0f} / "
            f"{s['p99_ms']:.0f} / {s['max_ms']:.0f}** | p99 <= {TARGET_P99_MS:.0f} ms: {tb.verdict(s['p99_ms'] <= TARGET_P99_MS)} |",
            f"| probes counted / sent / never written | {s['probes']} / {s['probes_sent']} / {s['probes_unanswered']} | |",
            f"| probe p50 by third of the window (ms) | {' / '.join(f'{x:.0f}' for x in s['p50_by_third_ms'])} | not growing |",
            f"| feed's own lag, source time -> written (ms): median p50 / worst p99 over {s['own_lag_heartbeats']} heartbeats "
            f"| {s['own_lag_p50_ms']:.0f} / {s['own_lag_p99_ms']:.0f} | |",
            f"| frames queued at the server: start / max / end; events dropped | {s['queued_frames']['start']} / "
            f"{s['queued_frames']['max']} / {s['queued_frames']['end']}; {s['dropped_events']} | 0 dropped |",
            f"| kept up | {'yes' if ok else 'no: ' + why} | {tb.verdict(ok)} |",
            f"| CPUs: feed + PostgreSQL + server + this bench / other | {fmt_cpu(c, ['feed', 'postgres', 'server', 'runner'])} | |",
            f"| feed CPU ms per applied price event | {c.get('feed_cpus', 0) * 1000 / max(s['applied_per_s'], 1e-9):.3f} | |",
            "",
            f"Window: websocket connections {s['connections']} ({s['subscribed']:,} YES tokens subscribed); during it the feed ran "
            f"{s['feed_catalogues']} catalogue pass(es) and {s['feed_refreshes']} REST refresh(es), {s['feed_errors']} errors, "
            f"{s['feed_reconnects']} reconnects, {s['suspended']} markets suspended at the end; price events/s by kind "
            f"{json.dumps(s['events_by_kind_per_s'])}; the probe poll (one SELECT of {args.probe_markets} rows every "
            f"{args.poll_interval * 1000:.0f} ms) took {s['poll_ms_p50']:.1f} ms at p50; measured {s['attempts']} time(s), "
            f"the least disturbed kept. The feed's own lag takes, per flush, the latest book of each market written (a book "
            "replaced before the flush is not counted), so it reads lower than the probes.",
        ]
    if results.get("passes"):
        p = results["passes"]
        if p["catalogue"]:
            lines += [
                "",
                f"### Catalogue pass over {p['markets']:,} markets (keyset paging, 100 a page, in this process)",
                "",
                "| Pass | Seconds | Tracked | Created | CPUs: this process + PostgreSQL + server / other |",
                "| --- | ---: | ---: | ---: | ---: |",
            ]
            for row in p["catalogue"]:
                label = "first (every market new)" if row["rep"] == 1 else f"again ({row['rep']})"
                lines.append(
                    f"| {label} | {row['seconds']:.2f} | {row['tracked']:,} | {row['created']:,} | "
                    f"{fmt_cpu(row['cpu'], ['runner', 'postgres', 'server'])} |"
                )
        if p["refresh"]:
            worst = max(r["seconds"] for r in p["refresh"])
            lines += [
                "",
                f"### Full REST refresh of {p['markets']:,} tracked markets (`prices_pass`, in this process)",
                "",
                "POST /books in batches of 500 (4 at a time, the client's default), every book folded into the board, one bulk "
                f"write. Target: <= {TARGET_REFRESH_S:.0f} s. Before every pass but the first the server moved prices for 2 s "
                "(random walk), so most markets also get a tick.",
                "",
                "| Pass | Seconds | POST /books (s) | fold (s) | write (s) | References written | Ticks | CPUs: this process + "
                "PostgreSQL + server / other |",
                "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
            ]
            for row in p["refresh"]:
                label = "first (every reference new)" if row["rep"] == 1 else f"after {row['walk_steps']:,} moves"
                lines.append(
                    f"| {label} | {row['seconds']:.2f} | {row['books_s']:.2f} | {row['fold_s']:.2f} | {row['write_s']:.2f} | "
                    f"{row['written']:,} | {row['ticks']:,} | {fmt_cpu(row['cpu'], ['runner', 'postgres', 'server'])} |"
                )
            lines += ["", f"Slowest pass {worst:.2f} s: {tb.verdict(worst <= TARGET_REFRESH_S)} (target <= {TARGET_REFRESH_S:.0f} s)."]
    if t := results.get("trade"):
        lines += [
            "",
            f"### `make bench` trade throughput with the feed running ({t['players']} players, {t['trade_markets']} markets)",
            "",
            f"bench/run.py's http-spread scenario (wrk, {args.concurrency} connections, gunicorn as shipped, {args.trade_warmup} s "
            f"warm-up + {args.trade_duration} s measured per arm), {args.trade_rounds} round(s) of three arms (in turn in this "
            "order and the reverse): "
            "*plain* (nothing else runs; the server idle), *server* (the reference server streaming "
            f"{args.rate:g} moves/s to nobody: what the stand-in for Polymarket costs this machine), *feed* (the same, and the "
            f"feed with its default timings following {t['markets']:,} markets). The feed's markets are not the traded ones. "
            "The latency probes run in every arm (the same control requests and SELECTs); only with the feed do they come back.",
            "",
            "| Arm | Trades/s (each round) | Mean trades/s | p50 / p99 (ms) | Non-200 | CPUs: gunicorn + PostgreSQL + feed + server + "
            "this bench and wrk / other | Feed: price events applied/s; event -> reference p50 / p99 (ms), each round |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
        ]
        means = {}
        for arm, rows in t["arms"].items():
            if not rows:
                continue
            means[arm] = statistics.mean(r["tps"] for r in rows)
            cpu = {k: statistics.mean(r["cpu"].get(k, 0) for r in rows) for k in rows[0]["cpu"]}
            feed_note = (
                "; ".join(f"{r['applied_per_s']:,.0f}/s, {r['probe_p50_ms']:.0f} / {r['probe_p99_ms']:.0f}" for r in rows)
                if arm == "feed"
                else ""
            )
            each = ", ".join(f"{r['tps']:,.0f}" for r in rows)
            lines.append(
                f"| {arm} | {each} | {means[arm]:,.0f} | "
                f"{statistics.mean(r['p50_ms'] for r in rows):.1f} / {statistics.mean(r['p99_ms'] for r in rows):.1f} | "
                f"{sum(r['failures'] for r in rows)} | {fmt_cpu(cpu, ['gunicorn', 'postgres', 'feed', 'server', 'runner'])} | {feed_note} |"
            )
        lines += [
            "",
            "Feed column: price events applied/s counts the stream's books and the REST refresh's (every 10 s, "
            f"{t['markets']:,} books); the latency is the probes' (as in the stream scenario), sent during the measured window.",
        ]
        if comparison := trade_comparison(t):
            lines += ["", comparison]
    lines[summary_at:summary_at] = summary(results)
    return "\n".join(lines).rstrip() + "\n"


def trade_means(t: dict) -> dict[str, float]:
    return {arm: statistics.mean(r["tps"] for r in rows) for arm, rows in t["arms"].items() if rows}


def trade_comparison(t: dict) -> str:
    means = trade_means(t)
    parts = []
    if "feed" in means and "server" in means:
        parts.append(f"with the feed against without it (the server streaming in both): {means['feed'] / means['server'] - 1:+.1%}")
    if "feed" in means and "plain" in means:
        parts.append(f"against the plain run: {means['feed'] / means['plain'] - 1:+.1%}")
    if "server" in means and "plain" in means:
        parts.append(f"the streaming server alone against the plain run: {means['server'] / means['plain'] - 1:+.1%}")
    return ("Trades/s " + "; ".join(parts) + ".") if parts else ""


def summary(results: dict) -> list[str]:
    """The targets of the issue, measured."""
    rows = []
    if s := results.get("stream"):
        ok, why = kept_up(s)
        rows.append(
            f"| stream: event -> reference p99 <= {TARGET_P99_MS:.0f} ms, {s['markets']:,} listed markets, >= 1,000 price events/s "
            f"| p99 {s['p99_ms']:.0f} ms (p50 {s['p50_ms']:.0f}) at {s['price_events_sent_per_s']:,.0f} price events/s | "
            f"{tb.verdict(s['p99_ms'] <= TARGET_P99_MS and s['price_events_sent_per_s'] >= 1000)} |"
        )
        rows.append(f"| stream: the feed keeps up (no growing backlog) | {'yes' if ok else why} | {tb.verdict(ok)} |")
        rows.append(
            f"| stream: CPU of the feed (information) | {s['cpu'].get('feed_cpus', 0):.2f} CPUs; PostgreSQL "
            f"{s['cpu'].get('postgres_cpus', 0):.2f}, server {s['cpu'].get('server_cpus', 0):.2f} | |"
        )
    if (p := results.get("passes")) and p["refresh"]:
        worst = max(r["seconds"] for r in p["refresh"])
        rows.append(
            f"| full REST refresh of {p['markets']:,} markets <= {TARGET_REFRESH_S:.0f} s | slowest of {len(p['refresh'])}: {worst:.2f} s "
            f"| {tb.verdict(worst <= TARGET_REFRESH_S)} |"
        )
    if t := results.get("trade"):
        means = trade_means(t)
        if "feed" in means and "server" in means:
            rows.append(
                f"| `make bench` trades/s with the feed running (information) | {means['feed']:,.0f} against {means['server']:,.0f} "
                f"without ({means['feed'] / means['server'] - 1:+.1%}) | |"
            )
    if not rows:
        return []
    return ["", "| Target | Measured | Verdict |", "| --- | --- | --- |", *rows]


def write_results(text: str, path: Path) -> None:
    """Rewrite the ``## Market feed`` block of RESULTS.md (between its marks); keep the rest of the file."""
    block = f"{BEGIN_MARK}\n{text.rstrip()}\n{END_MARK}\n"
    old = path.read_text() if path.exists() else ""
    if BEGIN_MARK in old and END_MARK in old:
        before, rest = old.split(BEGIN_MARK, 1)
        after = rest.split(END_MARK, 1)[1].lstrip("\n")
        path.write_text(before + block + ("\n" + after if after else ""))
    else:
        path.write_text(old.rstrip("\n") + "\n\n" + block)


def parse_args(argv: list[str]):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scenarios", default=",".join(SCENARIOS), help=f"comma-separated, from {', '.join(SCENARIOS)} (default: all)")
    p.add_argument("--markets", type=int, default=2000, help="listed markets of the stream and trade scenarios (default 2000)")
    p.add_argument("--rate", type=float, default=1000, help="price moves/s of the server's random walk (default 1000)")
    p.add_argument("--warmup", type=int, default=10, help="stream: seconds before the measured window (default 10)")
    p.add_argument("--duration", type=int, default=30, help="stream: measured seconds (default 30)")
    p.add_argument("--stream-refresh-seconds", type=float, default=3600, help="the feed's REST refresh interval in the stream scenario")
    p.add_argument("--probe-markets", type=int, default=20)
    p.add_argument("--probe-interval", type=float, default=0.05, help="seconds between two latency probes (default 0.05)")
    p.add_argument("--poll-interval", type=float, default=0.01, help="seconds between two reads of the probed references (default 0.01)")
    p.add_argument("--refresh-markets", type=int, default=5000, help="tracked markets of the catalogue and refresh scenarios")
    p.add_argument("--catalogue-reps", type=int, default=3)
    p.add_argument("--refresh-reps", type=int, default=4, help="refresh passes after the first (default 4)")
    p.add_argument("--trade-rounds", type=int, default=2)
    p.add_argument("--trade-warmup", type=int, default=5)
    p.add_argument("--trade-duration", type=int, default=20)
    p.add_argument("--trade-players", type=int, default=200)
    p.add_argument("--trade-markets", type=int, default=100)
    p.add_argument("--concurrency", type=int, default=64, help="trade: wrk connections (default 64, as make bench)")
    p.add_argument("--quiet-wait", type=float, default=30, help="wait up to this many seconds for other processes to go quiet")
    p.add_argument("--max-other-cpus", type=float, default=0.2, help="a stream window with more CPUs of other work is measured again")
    p.add_argument("--retries", type=int, default=1)
    p.add_argument("--py-spy", metavar="PATH", help="stream: record a py-spy profile of the feed during the window (the py-spy binary)")
    p.add_argument("--write", action="store_true", help="rewrite the Market feed block of --results")
    p.add_argument("--results", type=Path, default=BENCH / "RESULTS.md", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    unknown = set(args.scenarios.split(",")) - set(SCENARIOS) - {""}
    if unknown:
        p.error(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    return args


def _exit_on_signal(signum, frame) -> None:
    raise SystemExit(128 + signum)  # unwinds through the finally blocks and atexit: our children are stopped


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _exit_on_signal)
    if not os.environ.get("DATABASE_URL", "").startswith("postgres"):
        log("DATABASE_URL must point at PostgreSQL: run through scripts/with-services (see bench/README.md)")
        return 2
    scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    started = dt.datetime.now(dt.UTC)
    code = tb.code_version()
    workdir = Path(tempfile.mkdtemp(prefix="house-bench-feed."))
    log(f"logs in {workdir}")
    setup_django()
    results: dict = {}
    if "stream" in scenarios:
        results["stream"] = run_stream(args, workdir)
    if "catalogue" in scenarios or "refresh" in scenarios:
        results["passes"] = run_passes(args, workdir, scenarios)
    if "trade" in scenarios:
        results["trade"] = run_trade(args, workdir)
    text = render(results, args, argv, started, code)
    print(text)
    (workdir / "results.json").write_text(json.dumps(results, indent=2, default=str))
    if args.write:
        write_results(text, args.results)
        log(f"wrote {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
