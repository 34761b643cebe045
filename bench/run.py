"""Trade throughput benchmark: POST /api/casino/trade over HTTP (gunicorn + PostgreSQL)
against the same trade as one raw-SQL transaction driven by pgbench (the ceiling).

    make bench                                   # = PG_DURABLE=1 scripts/with-services .venv/bin/python bench/run.py
    PG_DURABLE=1 scripts/with-services .venv/bin/python bench/run.py --duration 60 --workers 6

Needs the environment of scripts/with-services (DATABASE_URL, REDIS_URL, PG_BINDIR, a
DJANGO_SECRET_KEY). Scenarios, each with the same warm-up, duration and concurrency:

  http-spread     many players over many markets           (wrk -> gunicorn -> Django -> PostgreSQL)
  http-open-half  the http-spread trades in an open loop at a fixed rate, half of http-spread's
                  trades/s (or --open-rate): latency from each request's intended send time
  http-hot        the same players, all on one hot market
  sql-spread      pgbench, raw-SQL trade transaction, many markets (the ceiling): the trade's whole
                  database work in its three round trips (bench/trade.pgbench.sql), as many
                  clients as the HTTP server holds database sessions
  sql-hot         pgbench, one hot market
  http-floor      baseline: bench/floor_app.py, the sql-spread SQL from a bare WSGI app
  http-healthz    baseline: GET /healthz on the same gunicorn

Rewrites its block of bench/RESULTS.md (unless --no-write) with trades/s, p50/p99 latency,
CPU per trade and the ratios against the targets: HTTP >= 25% of raw SQL, hot >= 80% of spread,
p99 <= 25 ms at half of the peak rate (open loop).
gunicorn runs in its own session and is killed (the whole process group) when the run ends.
"""

from __future__ import annotations

import argparse
import atexit
import datetime as dt
import json
import os
import platform
import re
import runpy
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
PY = sys.executable
# The production gunicorn settings (workers, worker class, threads, keep-alive): the defaults here.
SHIPPED = {k: v for k, v in runpy.run_path(str(ROOT / "gunicorn.conf.py")).items() if not k.startswith("_")}

SCENARIOS = ["http-spread", "http-open-half", "http-hot", "http-spread-feed", "http-healthz", "http-floor", "sql-spread", "sql-hot"]
TARGET_HTTP_VS_SQL = 0.25
TARGET_HOT_VS_SPREAD = 0.80
TARGET_OPEN_P99_MS = 25.0  # p99 latency at half of the http-spread peak rate, open loop
TARGET_FEED_VS_SQL = 0.25  # issue 10: HTTP spread with the market feed running, against the raw-SQL ceiling
PAIR_WARMUP = 3  # seconds of warm-up before each window of the back-to-back pairs


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


@dataclass
class Result:
    name: str
    tool: str
    trades: int
    seconds: float
    p50_ms: float
    p99_ms: float
    failures: int = 0
    detail: dict = field(default_factory=dict)
    cpu: dict = field(default_factory=dict)

    @property
    def tps(self) -> float:
        return self.trades / self.seconds if self.seconds else 0.0


# -- helpers ----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(sorted_values: list[float], pct: float) -> float:
    if not sorted_values:
        return float("nan")
    k = max(0, min(len(sorted_values) - 1, round(pct / 100 * len(sorted_values) + 0.5) - 1))
    return sorted_values[k]


def ensure_wrk() -> str | None:
    path = shutil.which("wrk")
    if path:
        return path
    if os.geteuid() == 0 and shutil.which("apt-get"):
        log("wrk not found; installing the Debian package")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], env=env, stdout=subprocess.DEVNULL, check=False)
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], env=env, stdout=subprocess.DEVNULL, check=False)
    path = shutil.which("wrk")
    if not path:
        log("wrk unavailable: falling back to the built-in asyncio load generator (less efficient)")
    return path


# -- CPU accounting ---------------------------------------------------------------------------
#
# The machine may be shared (another session running tests, say). Each scenario records how
# much CPU the whole machine used and how much of it was the benchmark's own: this process's
# tree (gunicorn, wrk, pgbench) and the PostgreSQL server's tree. Reaped children are counted
# through their parent's cutime/cstime, so a tree's total only grows.

CLK_TCK = os.sysconf("SC_CLK_TCK")


def _proc_stats() -> dict[int, tuple[int, int]]:
    """pid -> (ppid, utime + stime + cutime + cstime in ticks) of every live process."""
    stats = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                raw = fh.read()
        except OSError:
            continue
        fields = raw[raw.rfind(")") + 2 :].split()
        stats[int(entry)] = (int(fields[1]), sum(int(f) for f in fields[11:15]))
    return stats


def _machine_ticks() -> tuple[int, int]:
    with open("/proc/stat") as fh:
        values = [int(v) for v in fh.readline().split()[1:]]
    idle = values[3] + values[4]
    return sum(values[:8]) - idle, sum(values[:8])


def _postmaster_pid() -> int | None:
    port = str(urlparse(os.environ.get("DATABASE_URL", "")).port or "")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                args = fh.read().split(b"\0")
        except OSError:
            continue
        if args and args[0].endswith(b"postgres") and b"-p" in args and port.encode() in args:
            return int(entry)
    return None


# Process trees that belong to the benchmark while they run (the market feed of http-spread-feed).
EXTRA_TREES: dict[str, int] = {}


class CpuMeter:
    """CPU time of the machine and of the benchmark's process trees: ``runner`` (this process,
    wrk, pgbench), ``gunicorn`` (master and workers), ``postgres`` (server and backends), and
    while http-spread-feed runs ``feed`` (the market feed and the reference market-data server)."""

    def __init__(self, server_pid: int | None = None):
        self.trees = {"runner": os.getpid(), **EXTRA_TREES}
        if server_pid:
            self.trees["gunicorn"] = server_pid
        if pm := _postmaster_pid():
            self.trees["postgres"] = pm

    def snapshot(self) -> tuple[float, int, dict[str, int]]:
        stats = _proc_stats()
        children: dict[int, list[int]] = {}
        for pid, (ppid, _) in stats.items():
            children.setdefault(ppid, []).append(pid)
        roots = set(self.trees.values())
        ticks = {}
        for name, root in self.trees.items():
            total, stack = 0, [root]
            while stack:
                pid = stack.pop()
                if pid in stats:
                    total += stats[pid][1]
                stack.extend(c for c in children.get(pid, []) if c not in roots)
            ticks[name] = total
        busy, _ = _machine_ticks()
        return time.monotonic(), busy, ticks

    @staticmethod
    def usage(start, end) -> dict:
        """CPU over the window, in CPUs (2.0 = both cores of a 2-core machine busy)."""
        seconds = end[0] - start[0]
        busy = (end[1] - start[1]) / CLK_TCK / seconds
        trees = {name: (end[2][name] - start[2].get(name, 0)) / CLK_TCK / seconds for name in end[2]}
        own = sum(trees.values())
        return {
            "machine_cpus": round(busy, 2),
            "bench_cpus": round(own, 2),
            "other_cpus": round(max(0.0, busy - own), 2),
            **{f"{name}_cpus": round(v, 2) for name, v in trees.items()},
        }


def wait_quiet(max_wait: float, threshold: float = 0.25, quiet_seconds: int = 3) -> float:
    """Wait (up to max_wait s) until processes outside the benchmark have used < threshold CPUs
    for quiet_seconds seconds in a row."""
    meter, waited, quiet, other = CpuMeter(), 0, 0, 0.0
    a = meter.snapshot()
    while quiet < quiet_seconds and waited < max_wait:
        time.sleep(1.0)
        b = meter.snapshot()
        other = CpuMeter.usage(a, b)["other_cpus"]
        a = b
        quiet = quiet + 1 if other < threshold else 0
        waited += 1
        if quiet == 0 and waited == 1:
            log(f"machine busy outside the benchmark ({other:.2f} CPUs); waiting up to {max_wait:.0f} s for it to go quiet")
    if waited > quiet_seconds:
        log(f"waited {waited} s for other processes to go quiet (last second: {other:.2f} CPUs outside the benchmark)")
    return other


# -- gunicorn -----------------------------------------------------------------------------------


class Server:
    def __init__(self, args, env: dict, workdir: Path, app: str = "config.wsgi:application"):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [
            PY,
            "-m",
            "gunicorn",
            "--bind",
            f"127.0.0.1:{self.port}",
            "--workers",
            str(args.workers),
            "--worker-class",
            args.worker_class,
            "--backlog",
            "4096",
            "--timeout",
            "120",
            "--graceful-timeout",
            "10",
            "--log-level",
            "warning",
            "--chdir",
            str(ROOT),
            "--config",
            str(ROOT / "gunicorn.conf.py"),  # as shipped; the options above and below override it
        ]
        if args.worker_class == "gthread":
            cmd += ["--threads", str(args.threads), "--keep-alive", str(SHIPPED["keepalive"])]
        if app != "config.wsgi:application":
            cmd += ["--pythonpath", str(BENCH)]
        cmd += [app]
        self.cmd = cmd
        self.log_path = workdir / f"gunicorn-{app.split(':')[0]}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        atexit.register(self.stop)

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {self.proc.returncode}:\n{self.log_path.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=2) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.2)
        raise RuntimeError("gunicorn did not become ready in time")

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)  # the group of the gunicorn we started (new session)
                self.proc.wait(timeout=20)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(timeout=5)
        if not self._log.closed:
            self._log.close()


# -- load generators ----------------------------------------------------------------------------


def http_run_wrk(
    wrk: str, url: str, tokens: Path, markets: Path, *, seconds: int, connections: int, threads: int, get_path: str | None = None
) -> dict:
    env = {**os.environ, "BENCH_TOKENS": str(tokens), "BENCH_MARKETS": str(markets)}
    if get_path:
        env.update(BENCH_GET="1", BENCH_PATH=get_path)
    cmd = [wrk, "-t", str(threads), "-c", str(connections), "-d", f"{seconds}s", "--timeout", "60s", "-s", str(BENCH / "trade.lua"), url]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True, timeout=seconds + 120)
    match = re.search(r"^BENCH_RESULT (\{.*\})$", out.stdout, re.M)
    if not match:
        raise RuntimeError(f"wrk output not understood:\n{out.stdout}\n{out.stderr}")
    data = json.loads(match.group(1))
    ok = int(data["statuses"].get("200", 0))
    errors = sum(data["errors"].values()) - data["errors"]["status"]
    return {
        "ok": ok,
        "failures": data["requests"] - ok + errors,
        "seconds": data["duration_us"] / 1e6,
        "p50_ms": data["latency_us"]["p50"] / 1000,
        "p99_ms": data["latency_us"]["p99"] / 1000,
        "raw": data,
    }


def http_run_python(url: str, tokens: Path, markets: Path, *, seconds: int, connections: int, threads: int = 1) -> dict:
    """Fallback when wrk is missing: asyncio, one keep-alive connection per virtual client."""
    import asyncio
    import random

    host, port = urlparse(url).hostname, urlparse(url).port
    token_list = tokens.read_text().split()
    market_list = markets.read_text().split()
    latencies: list[float] = []
    statuses: dict[str, int] = {}

    def request_bytes() -> bytes:
        body = json.dumps(
            {"marketId": random.choice(market_list), "side": "buy", "outcome": random.choice(("yes", "no")), "amount": 1.00, "midPrice": 50}
        ).encode()
        head = (
            f"POST /api/casino/trade HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {random.choice(token_list)}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        return head.encode() + body

    async def client(stop_at: float) -> None:
        reader = writer = None
        while time.perf_counter() < stop_at:
            if writer is None:
                reader, writer = await asyncio.open_connection(host, port)
            started = time.perf_counter()
            try:
                writer.write(request_bytes())
                status_line = await reader.readline()
                headers = {}
                while (line := await reader.readline()) not in (b"\r\n", b""):
                    name, _, value = line.decode("latin-1").partition(":")
                    headers[name.strip().lower()] = value.strip()
                await reader.readexactly(int(headers.get("content-length", "0")))
                code = status_line.split()[1].decode()
            except (ConnectionError, asyncio.IncompleteReadError, IndexError):
                code = "error"
                headers = {"connection": "close"}
            latencies.append(time.perf_counter() - started)
            statuses[code] = statuses.get(code, 0) + 1
            if headers.get("connection", "").lower() == "close":
                writer.close()
                reader = writer = None
        if writer is not None:
            writer.close()

    async def main() -> float:
        started = time.perf_counter()
        await asyncio.gather(*(client(started + seconds) for _ in range(connections)))
        return time.perf_counter() - started

    elapsed = asyncio.run(main())
    latencies.sort()
    ok = statuses.get("200", 0)
    return {
        "ok": ok,
        "failures": sum(statuses.values()) - ok,
        "seconds": elapsed,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "raw": {"statuses": statuses},
    }


OPEN_MAX_CONNECTIONS = 1024  # the pool grows on demand up to this many connections
OPEN_LATE_S = 0.005  # a request written more than this after its intended time started late
OPEN_DRAIN_S = 30.0  # after the last intended send, wait this long for the answers still out


def http_run_open(url: str, tokens: Path, markets: Path, *, seconds: float, rate: float, connections: int) -> dict:
    """Open loop (wrk2-style): request i is intended at t0 + i / rate whatever happened to the
    earlier ones, and its latency runs from that intended time to the end of its response, so
    time spent waiting for the server (or for a free connection) is not left out (coordinated
    omission). ``connections`` keep-alive connections are opened before t0, each with a worker
    coroutine; an idle worker takes a request at its intended time, and when none is idle a new
    connection is opened (up to OPEN_MAX_CONNECTIONS; beyond that the request waits in a queue).
    Idle workers are reused in FIFO order, so no connection sits idle long enough for the
    server's keep-alive timeout to close it. Request bytes are built before t0."""
    import asyncio
    import random
    from collections import deque

    host, port = urlparse(url).hostname, urlparse(url).port
    token_list = tokens.read_text().split()
    market_list = markets.read_text().split()
    count = max(1, round(seconds * rate))
    requests = []
    for _ in range(count):
        body = (
            f'{{"marketId":"{random.choice(market_list)}","side":"buy","outcome":"{random.choice(("yes", "no"))}",'
            f'"amount":1.00,"midPrice":50}}'
        ).encode()
        head = (
            f"POST /api/casino/trade HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {random.choice(token_list)}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        requests.append(head.encode() + body)

    latencies: list[float] = []  # from the intended send time (corrected)
    service: list[float] = []  # from the actual write (what a closed-loop tool reports)
    statuses: dict[str, int] = {}
    stats = {"late": 0, "max_lag": 0.0, "dispatch_late": 0, "max_dispatch_lag": 0.0, "queued": 0, "reconnects": 0, "last_done": 0.0}
    idle: deque = deque()  # futures of idle workers, longest idle first
    backlog: deque = deque()  # (intended, request) when every connection is busy and the pool is full
    workers: list = []
    pending: set[int] = set(range(count))  # ids of requests not answered yet
    answered_all = asyncio.Event()

    async def connect():
        return await asyncio.open_connection(host, port)

    async def exchange(conn, item):
        """Send one request on conn (reconnecting if the server closed it); returns the connection to keep, or None."""
        loop = asyncio.get_running_loop()
        i, intended = item
        reader, writer = conn if conn else (None, None)
        code, keep = "error", False
        written = None
        try:
            if reader is None or reader.at_eof() or writer.is_closing():
                if writer is not None:
                    writer.close()
                    stats["reconnects"] += 1
                reader, writer = await connect()
            written = loop.time()
            writer.write(requests[i])
            head = await reader.readuntil(b"\r\n\r\n")
            code = head[9:12].decode()
            lower = head.lower()
            at = lower.find(b"\r\ncontent-length:")
            if at < 0:
                raise ConnectionError("response without Content-Length")
            await reader.readexactly(int(lower[at + 17 : lower.index(b"\r\n", at + 2)]))
            keep = b"\r\nconnection: close" not in lower
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            code = "error"
        done = loop.time()
        lag = (written if written is not None else done) - intended
        if lag > OPEN_LATE_S:
            stats["late"] += 1
        stats["max_lag"] = max(stats["max_lag"], lag)
        latencies.append(done - intended)
        if written is not None:
            service.append(done - written)
        statuses[code] = statuses.get(code, 0) + 1
        pending.discard(i)
        stats["last_done"] = done
        if not pending:
            answered_all.set()
        if keep:
            return reader, writer
        if writer is not None:
            writer.close()
        return None

    async def worker(conn, item):
        loop = asyncio.get_running_loop()
        while True:
            if item is None:
                if backlog:
                    item = backlog.popleft()
                else:
                    waiter = loop.create_future()
                    idle.append(waiter)
                    item = await waiter
                    if item is None:  # the run is over
                        break
            conn = await exchange(conn, item)
            item = None
        if conn:
            conn[1].close()

    async def run() -> tuple[float, float]:
        loop = asyncio.get_running_loop()
        conns = await asyncio.gather(*(connect() for _ in range(connections)))
        workers.extend(asyncio.create_task(worker(c, None)) for c in conns)
        await asyncio.sleep(0)  # every worker waits in `idle`
        t0 = loop.time() + 0.01
        interval = 1.0 / rate
        for i in range(count):
            intended = t0 + i * interval
            delay = intended - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            lag = loop.time() - intended  # the generator's own lag: a late timer or a busy event loop
            if lag > OPEN_LATE_S:
                stats["dispatch_late"] += 1
            stats["max_dispatch_lag"] = max(stats["max_dispatch_lag"], lag)
            item = (i, intended)
            if idle:
                idle.popleft().set_result(item)
                continue
            stats["queued"] += 1
            if len(workers) < OPEN_MAX_CONNECTIONS:
                workers.append(asyncio.create_task(worker(None, item)))
            else:
                backlog.append(item)
        try:
            await asyncio.wait_for(answered_all.wait(), OPEN_DRAIN_S)
        except TimeoutError:
            pass
        stopped = loop.time() if pending else stats["last_done"]
        while idle:
            idle.popleft().set_result(None)
        for task in workers:
            if not task.done():
                task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        # unanswered requests count as failures, with the time waited so far as their latency (a lower bound)
        latencies.extend(stopped - (t0 + i * interval) for i in pending)
        statuses["unanswered"] = len(pending)
        return t0, stopped

    t0, stopped = asyncio.run(run())
    elapsed = max(seconds, stopped - t0)  # the schedule's span, or longer if the answers came later
    if not statuses["unanswered"]:
        del statuses["unanswered"]
    latencies.sort()
    service.sort()
    ok = statuses.get("200", 0)
    ms = {pct: round(percentile(latencies, pct) * 1000, 2) for pct in (50, 90, 99)}
    return {
        "ok": ok,
        "failures": sum(statuses.values()) - ok,
        "seconds": elapsed,
        "p50_ms": ms[50],
        "p99_ms": ms[99],
        "raw": {
            "rate_target": round(rate, 1),
            "rate_achieved": round((count - statuses.get("unanswered", 0)) / elapsed, 1),
            "requests": count,
            "duration_s": round(elapsed, 3),
            "statuses": statuses,
            "latency_ms": {"p50": ms[50], "p90": ms[90], "p99": ms[99], "max": round(latencies[-1] * 1000, 2)},
            "latency_from_actual_send_ms": {
                "p50": round(percentile(service, 50) * 1000, 2),
                "p99": round(percentile(service, 99) * 1000, 2),
            },
            "late_over_5ms": stats["late"],
            "max_start_lag_ms": round(stats["max_lag"] * 1000, 2),
            "generator_late_over_5ms": stats["dispatch_late"],
            "generator_max_lag_ms": round(stats["max_dispatch_lag"] * 1000, 2),
            "no_idle_connection": stats["queued"],
            "connections": len(workers),
            "reconnects": stats["reconnects"],
        },
    }


# -- pgbench --------------------------------------------------------------------------------------


def pgbench_run(name: str, meta: dict, workdir: Path, *, hot: bool, args) -> Result:
    db = urlparse(os.environ["DATABASE_URL"])
    pgbench = str(Path(os.environ.get("PG_BINDIR", "")) / "pgbench")
    if not os.path.exists(pgbench):
        pgbench = shutil.which("pgbench") or "pgbench"
    script = (
        (BENCH / "trade.pgbench.sql")
        .read_text()
        .format(
            players=meta["players"],
            market_lo=0 if hot else 1,
            market_hi=0 if hot else meta["markets"],
            shards_max=meta["shards"] - 1,
            stake=meta["stake"],
            shares=meta["shares"],
            price=meta["price"],
            mid=meta["mid"],
            half_spread=meta["half_spread"],
            market_cap=meta["market_cap"],
            category_cap=meta["category_cap"],
            global_cap=meta["global_cap"],
        )
    )
    script_path = workdir / f"{name}.sql"
    script_path.write_text(script)
    logdir = Path(tempfile.mkdtemp(prefix=f"{name}-logs.", dir=workdir))
    total = args.warmup + args.duration
    cmd = [
        pgbench,
        "-h",
        db.hostname,
        "-p",
        str(db.port or 5432),
        "-U",
        db.username or "postgres",
        "-n",
        "-M",
        "prepared",
        "-c",
        str(args.pgbench_clients),
        "-j",
        str(args.pgbench_jobs),
        "-T",
        str(total),
        "-f",
        str(script_path),
        "-l",
        "--log-prefix",
        str(logdir / "tx"),
        db.path.lstrip("/"),
    ]
    log(f"{name}: {shlex.join(cmd[:1] + ['...'] + cmd[7:-1])}")
    wait_quiet(max(0.0, min(args.quiet_wait, slack(args))))
    meter = CpuMeter()
    before = meter.snapshot()
    started = time.time()
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=total + 120, env={**os.environ, "PGPASSWORD": db.password or ""})
    cpu = CpuMeter.usage(before, meter.snapshot())
    if out.returncode != 0 and "aborted" not in out.stdout + out.stderr:
        raise RuntimeError(f"pgbench failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
    lo, hi = started + args.warmup, started + args.warmup + args.duration
    latencies, in_window, failed = [], 0, 0
    for path in logdir.iterdir():
        with open(path) as fh:
            for line in fh:
                parts = line.split()
                # client_id transaction_no time script_no time_epoch time_us [...]
                done_at = int(parts[4]) + int(parts[5]) / 1e6
                if lo <= done_at < hi:
                    if parts[2] == "failed":
                        failed += 1
                        continue
                    in_window += 1
                    latencies.append(int(parts[2]) / 1000)
    latencies.sort()
    aborted = re.search(r"number of failed transactions: (\d+)", out.stdout)
    summary = "\n".join(line for line in out.stdout.splitlines() if re.match(r"(number of|latency average|tps|initial)", line))
    return Result(
        name,
        "pgbench",
        in_window,
        float(args.duration),
        percentile(latencies, 50),
        percentile(latencies, 99),
        failures=failed + (int(aborted.group(1)) if aborted else 0) + out.stderr.count("aborted"),
        detail={"pgbench_summary": summary, "stderr": out.stderr.strip()[-2000:]},
        cpu=cpu,
    )


# -- the run --------------------------------------------------------------------------------------


class MarketFeedRun:
    """The reference market-data server (synthetic markets, prices walking at a fixed event rate)
    and the market feed against it, each its own process, both in one process group; the
    trades of http-spread-feed run while the feed follows the stream."""

    def __init__(self, args, env: dict, workdir: Path):
        self.log = open(workdir / "feed.log", "wb")  # noqa: SIM115 - closed in stop()
        port = free_port()
        command = [PY, "manage.py", "run_market_data_server", "--port", str(port), "--ws-port", str(free_port())]
        command += ["--synthetic", str(args.feed_markets), "--events-per-second", str(args.feed_events_per_second)]
        self.server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=self.log, start_new_session=True)
        urls = json.loads(self.server.stdout.readline())
        feed_env = {**env, "POLYMARKET_GAMMA_URL": urls["http"], "POLYMARKET_CLOB_URL": urls["http"], "POLYMARKET_WS_URL": urls["ws"]}
        listed = "from casino.services.markets import casino_settings; s = casino_settings(); "
        listed += f"s.max_listed_markets = {args.feed_markets}; s.save()"
        subprocess.run([PY, "manage.py", "shell", "-c", listed], cwd=ROOT, env=env, check=True, capture_output=True)
        self.feed = subprocess.Popen(
            [PY, "manage.py", "run_market_feed"], cwd=ROOT, env=feed_env, stdout=self.log, stderr=self.log, start_new_session=True
        )
        EXTRA_TREES.update(feed=self.feed.pid, marketdata=self.server.pid)

    def wait_streaming(self, timeout: float = 120) -> dict:
        """Until the feed is active with its stream connected; its state row."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = feed_state()
            if state and state.get("stream_connected") and state.get("stats", {}).get("events", 0) > 0:
                return state
            if self.feed.poll() is not None:
                raise RuntimeError("the market feed exited; see its log")
            time.sleep(0.5)
        raise RuntimeError("the market feed did not start streaming")

    def pause(self) -> None:
        """Freeze the feed and the market-data server (SIGSTOP): while a raw-SQL window of the feed
        pairs runs, they take no CPU, as if they were not running (sockets and sessions kept)."""
        for proc in (self.server, self.feed):
            os.killpg(proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        for proc in (self.feed, self.server):
            os.killpg(proc.pid, signal.SIGCONT)

    def stop(self) -> None:
        EXTRA_TREES.clear()
        for proc in (self.feed, self.server):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGCONT)  # a paused one must run to end on SIGTERM
        for proc in (self.feed, self.server):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
        self.log.close()


def feed_state() -> dict | None:
    import psycopg

    with psycopg.connect(os.environ["DATABASE_URL"], autocommit=True) as conn:
        row = conn.execute("SELECT holder, stream_connected, stats FROM marketdata_feed_state WHERE id = 1").fetchone()
    return {"holder": row[0], "stream_connected": row[1], "stats": row[2] or {}} if row else None


def feed_scenario(server: Server, tokens: Path, markets: Path, args, wrk: str | None, workdir: Path, env: dict) -> Result:
    feed = MarketFeedRun(args, env, workdir)
    try:
        state = feed.wait_streaming()
        log(f"http-spread-feed: feed {state['holder']} streaming {args.feed_markets} markets at {args.feed_events_per_second} events/s")
        return feed_window(server, tokens, markets, args, wrk)
    finally:
        feed.stop()


def feed_window(server: Server, tokens: Path, markets: Path, args, wrk: str | None) -> Result:
    """http-spread with the market feed running; what the feed did meanwhile in the result's detail."""
    before = feed_state()["stats"]
    result = http_scenario("http-spread-feed", server, tokens, markets, args, wrk)
    after = feed_state()["stats"]
    result.detail = {
        **result.detail,
        "feed": {
            "events_applied": after.get("events", 0) - before.get("events", 0),
            "references_written": after.get("written", 0) - before.get("written", 0),
            "lag": after.get("lag", {}),
            "errors": after.get("errors", 0) - before.get("errors", 0),
        },
    }
    return result


def http_scenario(name: str, server: Server, tokens: Path, markets: Path, args, wrk: str | None) -> Result:
    baseline = name in ("http-healthz", "http-floor")  # information only (see the scenario table)

    def run(seconds: int) -> dict:
        if wrk and args.client == "wrk":
            return http_run_wrk(
                wrk,
                server.url + "/api/casino/trade",
                tokens,
                markets,
                seconds=seconds,
                connections=args.concurrency,
                threads=args.wrk_threads,
                get_path="/healthz" if name == "http-healthz" else None,
            )
        return http_run_python(server.url, tokens, markets, seconds=seconds, connections=args.concurrency)

    wait_quiet(max(0.0, min(args.quiet_wait, slack(args))))
    warmup, duration = (min(args.warmup, 2), min(args.duration, 10)) if baseline else (args.warmup, args.duration)
    if warmup:
        warm = run(warmup)
        log(f"{name}: warm-up {warm['ok']} requests, {warm['failures']} failures")
    meter = CpuMeter(server.proc.pid)
    before = meter.snapshot()
    data = run(duration)
    cpu = CpuMeter.usage(before, meter.snapshot())
    tool = "wrk" if wrk and args.client == "wrk" else "asyncio"
    result = Result(
        name, tool, data["ok"], data["seconds"], data["p50_ms"], data["p99_ms"], failures=data["failures"], detail=data["raw"], cpu=cpu
    )
    log(
        f"{name}: {result.tps:.0f} trades/s, p50 {result.p50_ms:.1f} ms, p99 {result.p99_ms:.1f} ms, "
        f"non-200/errors {result.failures}, CPU {cpu}"
    )
    return result


def open_scenario(name: str, server: Server, tokens: Path, markets: Path, args, rate: float) -> Result:
    """http-open-half: the http-spread trades sent at a fixed rate (open loop, see http_run_open)."""

    def run(seconds: int) -> dict:
        return http_run_open(server.url, tokens, markets, seconds=seconds, rate=rate, connections=args.concurrency)

    wait_quiet(max(0.0, min(args.quiet_wait, slack(args))))
    if args.warmup:
        warm = run(args.warmup)
        log(f"{name}: warm-up at {rate:.0f}/s: {warm['ok']} requests, {warm['failures']} failures, p99 {warm['p99_ms']:.1f} ms")
    meter = CpuMeter(server.proc.pid)
    before = meter.snapshot()
    data = run(args.duration)
    cpu = CpuMeter.usage(before, meter.snapshot())
    raw = data["raw"]
    result = Result(
        name, "asyncio-open", data["ok"], data["seconds"], data["p50_ms"], data["p99_ms"], failures=data["failures"], detail=raw, cpu=cpu
    )
    log(
        f"{name}: {raw['rate_achieved']:.0f}/s of {rate:.0f}/s, p50 {result.p50_ms:.1f} ms, p90 {raw['latency_ms']['p90']:.1f} ms, "
        f"p99 {result.p99_ms:.1f} ms, max {raw['latency_ms']['max']:.1f} ms, non-200/errors {result.failures}, "
        f"started > 5 ms late {raw['late_over_5ms']} (generator {raw['generator_late_over_5ms']}), CPU {cpu}"
    )
    return result


def open_rate(args, results: dict[str, Result]) -> tuple[float, str]:
    """The rate of http-open-half and where it comes from: --open-rate, else half of http-spread."""
    if args.open_rate:
        return args.open_rate, "--open-rate"
    return results["http-spread"].tps / 2, "half of http-spread"


def scenario_cost(name: str, args) -> float:
    """Seconds a scenario takes (warm-up + measured + the quiet check), for the time budget."""
    if name in ("http-healthz", "http-floor"):
        return min(args.warmup, 2) + min(args.duration, 10) + 4
    if name == "http-spread-feed":  # + the market feed's start (catalogue, first refresh, stream)
        return args.warmup + args.duration + 20
    return args.warmup + args.duration + 4


def slack(args) -> float:
    """Seconds of --time-budget left once every scenario not yet finished has run once."""
    return args.deadline - time.monotonic() - sum(args.pending.values())


def undisturbed(name: str, run, args) -> Result:
    """Run a scenario; run it again (up to --retries times, within --time-budget) if other
    processes took CPU meanwhile, and keep the least disturbed run."""
    best = None
    for attempt in range(1 + args.retries):
        result = run()
        other = result.cpu.get("other_cpus", 0.0)
        if best is None or other < best.cpu.get("other_cpus", 0.0):
            best = result
        if other <= args.max_other_cpus:
            break
        if attempt == args.retries:
            break
        if slack(args) < 0:
            log(f"{name}: disturbed ({other:.2f} CPUs outside the benchmark) but no time left in --time-budget to run it again")
            break
        log(f"{name}: processes outside the benchmark used {other:.2f} CPUs during the run; running it again")
    args.pending.pop(name, None)
    best.detail["attempts"] = attempt + 1
    return best


def paired_windows(args, env: dict, workdir: Path, meta: dict, wrk: str | None, *, with_feed: bool = False) -> list[tuple[Result, Result]]:
    """http-spread and sql-spread again, in short windows back to back, --pairs times. This VM's speed
    drifts by tens of percent within minutes (the raw-SQL ceiling alone measured 1,392 to 2,510 trades/s
    in one hour of the same SQL): two 30-second scenarios minutes apart give a ratio that moves with
    the drift. Each pair's two windows are seconds apart, so the drift cancels out of the pair's
    ratio, and the median of several pairs is the gate. Same server, load, data and tools as the
    scenarios above; no re-runs of disturbed windows (a pair is kept whatever it measured).

    ``with_feed``: the feed's gate the same way. The market feed and the market-data server are started
    once (their start, catalogue and first refresh, is not measured, as in http-spread-feed); each HTTP
    window runs with them, each sql-spread window with both frozen (SIGSTOP: they take no CPU, as if
    they were not there, and pick up where they were in the next pair's warm-up)."""
    short = argparse.Namespace(**{**vars(args), "warmup": PAIR_WARMUP, "duration": args.pair_seconds, "quiet_wait": 0.0, "pending": {}})
    short.deadline = float("inf")
    tokens, markets = workdir / "tokens.txt", workdir / "markets.txt"
    label = "feed pair" if with_feed else "pair"
    pairs = []
    server = Server(args, env, workdir)
    feed = None
    try:
        server.wait_ready()
        if with_feed:
            feed = MarketFeedRun(args, env, workdir)
            state = feed.wait_streaming()
            log(f"feed pairs: feed {state['holder']} streaming {args.feed_markets} markets at {args.feed_events_per_second} events/s")
        for i in range(args.pairs):
            if feed is None:
                http = http_scenario("http-spread", server, tokens, markets, short, wrk)
            else:
                http = feed_window(server, tokens, markets, short, wrk)
                feed.pause()
            try:
                sql = pgbench_run("sql-spread", meta, workdir, hot=False, args=short)
            finally:
                if feed is not None:
                    feed.resume()
            ratio = http.tps / sql.tps if sql.tps else 0.0
            log(f"{label} {i + 1}/{args.pairs}: HTTP {http.tps:.0f} trades/s, raw SQL {sql.tps:.0f} trades/s, {ratio:.1%}")
            pairs.append((http, sql))
    finally:
        if feed is not None:
            feed.stop()
        server.stop()
    return pairs


def pair_ratios(pairs: list[tuple[Result, Result]]) -> list[float]:
    return [http.tps / sql.tps for http, sql in pairs if sql.tps]


def median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def db_counts() -> dict:
    db = urlparse(os.environ["DATABASE_URL"])
    psql = str(Path(os.environ.get("PG_BINDIR", "")) / "psql")
    if not os.path.exists(psql):
        return {}
    sql = (
        "SELECT (SELECT count(*) FROM casino_trades), (SELECT count(*) FROM s2s_transactions WHERE type='trade_debit'), "
        "(SELECT count(*) FROM casino_positions)"
    )
    out = subprocess.run(
        [psql, "-h", db.hostname, "-p", str(db.port), "-U", db.username, "-At", "-c", sql, db.path.lstrip("/")],
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        return {}
    trades, ledger, positions = out.stdout.strip().split("|")
    return {"trades": int(trades), "ledger_trade_debits": int(ledger), "positions": int(positions)}


def machine() -> str:
    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    cpu = ""
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{os.cpu_count()} CPUs ({cpu or platform.machine()}), {mem_gb:.0f} GB RAM, {platform.system()} {platform.release()}"


def versions() -> str:
    pg = subprocess.run([str(Path(os.environ.get("PG_BINDIR", "")) / "postgres"), "--version"], capture_output=True, text=True, check=False)
    wrk = subprocess.run(["wrk", "--version"], capture_output=True, text=True, check=False) if shutil.which("wrk") else None
    gunicorn = subprocess.run([PY, "-m", "gunicorn", "--version"], capture_output=True, text=True, check=False)
    parts = [f"Python {platform.python_version()}", (pg.stdout or "").strip(), (gunicorn.stdout or gunicorn.stderr).strip()]
    if wrk is not None:
        parts.append((wrk.stdout or wrk.stderr).splitlines()[0].split(" [")[0] if (wrk.stdout or wrk.stderr) else "wrk")
    return ", ".join(p for p in parts if p)


def code_version() -> str:
    """The commit measured, and whether the work tree had uncommitted changes outside bench/."""
    if os.environ.get("BENCH_CODE_VERSION"):  # e.g. when measuring a `git archive` export of a commit
        return os.environ["BENCH_CODE_VERSION"]
    head = subprocess.run(["git", "-C", str(ROOT), "log", "-1", "--format=%h %s"], capture_output=True, text=True, check=False)
    if head.returncode != 0:
        return "unknown (not a git work tree)"
    status = subprocess.run(
        ["git", "-C", str(ROOT), "status", "--porcelain", "--", ".", ":(exclude)bench"], capture_output=True, text=True, check=False
    )
    dirty = [line[3:] for line in status.stdout.splitlines() if line.strip()]
    return f"commit `{head.stdout.strip()}`" + (f", plus uncommitted changes to {len(dirty)} file(s)" if dirty else ", clean work tree")


def command_line(argv: list[str]) -> str:
    if not argv:
        return "make bench"
    inner = ".venv/bin/python bench/run.py " + shlex.join(argv)
    return f"PG_DURABLE={os.environ.get('PG_DURABLE', '0')} scripts/with-services {inner}"


def verdict(ok: bool) -> str:
    return "**PASS**" if ok else "**FAIL**"


def render(
    results: dict[str, Result], args, meta: dict, counts: dict, argv: list[str], started: dt.datetime, code: str, pairs=(), feed_pairs=()
) -> str:
    lines = [
        "# Trade benchmark results",
        "",
        "Generated by `bench/run.py` (see `bench/README.md`); a new run rewrites this block, the rest of the file is kept.",
        "",
        f"- Date: {started:%Y-%m-%d %H:%M} UTC",
        f"- Machine: {machine()}",
        f"- Software: {versions()}",
        f"- Code measured: {code} (as the run started)",
        f"- Command: `{command_line(argv)}` (from the repository root)",
        f"- PostgreSQL durability: PG_DURABLE={os.environ.get('PG_DURABLE', '0')} "
        + ("(fsync and synchronous_commit on)" if os.environ.get("PG_DURABLE") == "1" else "(**fsync off**: not durable-commit numbers)"),
        f"- Data: {meta['players']} players (internal wallet, $100,000 each), {meta['markets']} spread-out markets + 1 hot market, "
        f"{meta['shards']} exposure shards per market (HOUSE_EXPOSURE_SHARDS), reference mid 50, exposure cap 1e10 (never reached)",
        f"- Each trade: a $1 buy of a random player on a random market (hot: the one market) and a random outcome "
        f"(execution price {meta['price']}, {meta['shares']} shares)",
        f"- Load: {args.concurrency} concurrent HTTP connections ({results_tool(results)}), "
        f"pgbench -c {args.pgbench_clients} -j {args.pgbench_jobs} -M prepared; "
        f"each scenario {args.warmup} s warm-up (not measured) + {args.duration} s measured"
        + (
            f"; http-open-half: open loop at a fixed {results['http-open-half'].detail['rate_target']:,.1f} requests/s "
            f"({open_rate_source(args, results)}) from the built-in asyncio generator, {args.concurrency} keep-alive connections "
            "opened beforehand (more opened when none is idle), latency from each request's intended send time"
            if "http-open-half" in results
            else ""
        ),
        f"- Server: gunicorn {args.workers} x `{args.worker_class}` workers"
        + (f" x {args.threads} threads" if args.worker_class == "gthread" else "")
        + (f", keep-alive {SHIPPED['keepalive']} s" if args.worker_class == "gthread" else "")
        + ", `config.wsgi:application` with `gunicorn.conf.py`, DEBUG off, **RATELIMIT_ENABLE=0** (the per-player limit of 20 trades/min "
        "would otherwise refuse almost every request), Redis cache as configured, everything else as shipped",
        "- Risk limits made non-binding by bench/seed.py so that no trade is refused (the checks still run): "
        + ("; ".join(meta.get("lifted_limits", [])) or "exposure cap"),
        "",
        "| Scenario | What | Trades/s | p50 (ms) | p99 (ms) | Non-200 / failed | CPUs: gunicorn + postgres + load gen / other "
        "| CPU ms per trade |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    what = {
        "http-spread": f"HTTP `POST /api/casino/trade`, {meta['players']} players over {meta['markets']} markets",
        "http-hot": f"HTTP `POST /api/casino/trade`, {meta['players']} players on 1 hot market",
        "http-open-half": "HTTP `POST /api/casino/trade` as http-spread, open loop at a fixed rate ("
        + open_rate_source(args, results)
        + "); latency from the intended send time",
        "http-spread-feed": f"as http-spread, with the market feed running: {args.feed_markets:,} listed markets, the reference "
        f"market-data server pushing {args.feed_events_per_second:,} price events/s (their CPU counted in the benchmark's)",
        "sql-spread": f"pgbench raw-SQL trade transaction (the trade's whole database work), {meta['markets']} markets (ceiling)",
        "sql-hot": "pgbench raw-SQL trade transaction, 1 hot market",
        "http-healthz": "baseline, not a trade: HTTP `GET /healthz` on the same gunicorn (no database; <= 10 s measured)",
        "http-floor": "baseline, not the product: bench/floor_app.py, a bare WSGI app sending the sql-spread transaction's SQL "
        "(session look-up by token included) with psycopg, same gunicorn and load generator, spread (<= 10 s measured)",
    }
    order = ["http-spread", "http-open-half", "http-hot", "http-spread-feed", "sql-spread", "sql-hot", "http-floor", "http-healthz"]
    results = dict(sorted(results.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else len(order)))
    for name, r in results.items():
        c = r.cpu
        cpu = (
            (
                f"{c.get('gunicorn_cpus', 0):.2f} + {c.get('postgres_cpus', 0):.2f} + {c.get('runner_cpus', 0):.2f}"
                + (f" + feed {c['feed_cpus'] + c.get('marketdata_cpus', 0):.2f}" if "feed_cpus" in c else "")
                + f" / {c.get('other_cpus', 0):.2f}"
            )
            if c
            else "n/a"
        )
        per_trade = f"{c['bench_cpus'] * 1000 / r.tps:.2f}" if c and r.tps else "n/a"
        lines.append(
            f"| {name} | {what.get(name, name)} | {r.tps:,.0f} | {r.p50_ms:.1f} | {r.p99_ms:.1f} | {r.failures} | {cpu} | {per_trade} |"
        )
    lines += [
        "",
        "CPUs: average number of CPUs busy during the measured window, per process tree (gunicorn master + workers; "
        "the PostgreSQL server and its backends; the load generator, wrk or pgbench), and outside the benchmark "
        "(other processes on the machine). CPU ms per trade = the benchmark's CPU time / trades. A scenario "
        f"disturbed by more than {args.max_other_cpus} CPUs of other work is run again (up to {args.retries} time(s)) "
        "and the least disturbed run is kept.",
    ]
    if opened := results.get("http-open-half"):
        d = opened.detail
        lat = d["latency_ms"]
        lines += [
            "",
            f"Open loop (http-open-half): {d['requests']:,} requests intended at {d['rate_target']:,.1f}/s "
            f"({open_rate_source(args, results)}), answered at {d['rate_achieved']:,.1f}/s over {d['duration_s']:.1f} s; "
            f"latency from the intended send time p50 {lat['p50']:.1f} ms, p90 {lat['p90']:.1f} ms, p99 {lat['p99']:.1f} ms, "
            f"max {lat['max']:.1f} ms (from the actual write: p50 {d['latency_from_actual_send_ms']['p50']:.1f} ms, "
            f"p99 {d['latency_from_actual_send_ms']['p99']:.1f} ms); non-200 / failed {opened.failures}. "
            f"Requests written more than 5 ms after their intended time: {d['late_over_5ms']:,} "
            f"(largest delay {d['max_start_lag_ms']:.1f} ms); the generator itself was more than 5 ms behind its schedule "
            f"for {d['generator_late_over_5ms']:,} (largest lag {d['generator_max_lag_ms']:.1f} ms), and "
            f"{d['no_idle_connection']:,} found no idle connection; {d['connections']} connections used.",
        ]
    lines += [
        "",
        "## Ratios against the targets",
        "",
        "| Ratio | Value | Target | Verdict |",
        "| --- | ---: | ---: | --- |",
    ]
    http, hot, sql, sql_hot = (results.get(k) for k in ("http-spread", "http-hot", "sql-spread", "sql-hot"))
    ratios = pair_ratios(list(pairs))
    if ratios:
        r = median(ratios)
        lines.append(
            f"| HTTP spread / raw-SQL spread: median of {len(ratios)} back-to-back pairs ({', '.join(f'{x:.1%}' for x in ratios)}) "
            f"| {r:.1%} | >= {TARGET_HTTP_VS_SQL:.0%} | {verdict(r >= TARGET_HTTP_VS_SQL)} |"
        )
    if http and sql:
        r = http.tps / sql.tps
        if ratios:
            label = f"HTTP spread / raw-SQL spread, the two {args.duration}-s scenarios above (information: minutes apart)"
            lines.append(f"| {label} | {r:.1%} | | |")
        else:
            lines.append(f"| HTTP spread / raw-SQL spread | {r:.1%} | >= {TARGET_HTTP_VS_SQL:.0%} | {verdict(r >= TARGET_HTTP_VS_SQL)} |")
    if hot and http:
        r = hot.tps / http.tps
        lines.append(f"| HTTP hot / HTTP spread | {r:.1%} | >= {TARGET_HOT_VS_SPREAD:.0%} | {verdict(r >= TARGET_HOT_VS_SPREAD)} |")
    if opened:
        if args.open_rate:  # the target is for half of peak; an explicit rate may be something else
            label = f"HTTP p99 at --open-rate {args.open_rate:g}/s (open loop; the target holds at half of peak)"
        else:
            label = f"HTTP p99 at half of peak (open loop, {opened.detail['rate_target']:,.0f}/s)"
        ok = opened.p99_ms <= TARGET_OPEN_P99_MS and not opened.failures
        lines.append(f"| {label} | {opened.p99_ms:.1f} ms | <= {TARGET_OPEN_P99_MS:.0f} ms | {verdict(ok)} |")
    if http and sql and http.cpu and sql.cpu and http.tps and sql.tps:
        per_http, per_sql = http.cpu["bench_cpus"] / http.tps, sql.cpu["bench_cpus"] / sql.tps
        lines.append(
            f"| HTTP spread / raw-SQL spread per CPU second (information: CPU ms per trade {per_sql * 1000:.2f} / "
            f"{per_http * 1000:.2f}, insensitive to other load) | {per_sql / per_http:.1%} | | |"
        )
    if hot and sql_hot:
        lines.append(f"| HTTP hot / raw-SQL hot (information) | {hot.tps / sql_hot.tps:.1%} | | |")
    with_feed = results.get("http-spread-feed")
    feed_ratios = pair_ratios(list(feed_pairs))
    if feed_ratios:
        r = median(feed_ratios)
        lines.append(
            f"| HTTP spread with the market feed running / raw-SQL spread: median of {len(feed_ratios)} back-to-back pairs "
            f"({', '.join(f'{x:.1%}' for x in feed_ratios)}) | {r:.1%} | >= {TARGET_FEED_VS_SQL:.0%} | {verdict(r >= TARGET_FEED_VS_SQL)} |"
        )
    if ratios and feed_ratios:
        r = median(feed_ratios) / median(ratios)
        lines.append(f"| HTTP spread with the market feed running / without, from the two pairs' medians (information) | {r:.1%} | | |")
    if with_feed and http:
        r = with_feed.tps / http.tps
        label = f"HTTP spread with the market feed running / without, the two {args.duration}-s scenarios (information)"
        lines.append(f"| {label} | {r:.1%} | | |")
    if with_feed and sql:
        r = with_feed.tps / sql.tps
        if feed_ratios:
            label = f"HTTP spread with the market feed running / raw-SQL spread, the two {args.duration}-s scenarios (information)"
            lines.append(f"| {label} | {r:.1%} | | |")
        else:
            target = f">= {TARGET_FEED_VS_SQL:.0%} | {verdict(r >= TARGET_FEED_VS_SQL)}"
            lines.append(f"| HTTP spread with the market feed running / raw-SQL spread | {r:.1%} | {target} |")
    floor = results.get("http-floor")
    if floor and sql:
        lines.append(f"| bare-Python floor (bench/floor_app.py) / raw-SQL spread (information) | {floor.tps / sql.tps:.1%} | | |")
    if floor and http and floor.tps:
        lines.append(f"| HTTP spread / bare-Python floor (information) | {http.tps / floor.tps:.1%} | | |")
    if sql and sql_hot:
        lines.append(f"| raw-SQL hot / raw-SQL spread (information) | {sql_hot.tps / sql.tps:.1%} | | |")
    if counts:
        lines += [
            "",
            f"Database after the run: {counts['trades']:,} trades, {counts['ledger_trade_debits']:,} trade ledger rows, "
            f"{counts['positions']:,} positions (warm-up trades included).",
        ]
    if pairs:
        lines += [
            "",
            f"Back-to-back pairs (after the scenarios; each window {PAIR_WARMUP} s warm-up + {args.pair_seconds} s measured, "
            "the HTTP window then the raw-SQL one, seconds apart):",
            "",
            "| Pair | HTTP trades/s | raw-SQL trades/s | HTTP / raw SQL | CPU ms per trade, HTTP / raw SQL | other CPUs, HTTP / raw SQL |",
            "| ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for i, (h, q) in enumerate(pairs, 1):
            per = [f"{x.cpu['bench_cpus'] * 1000 / x.tps:.2f}" if x.cpu and x.tps else "n/a" for x in (h, q)]
            other = [f"{x.cpu.get('other_cpus', 0):.2f}" for x in (h, q)]
            ratio = f"{h.tps / q.tps:.1%}" if q.tps else "n/a"
            lines.append(f"| {i} | {h.tps:,.0f} | {q.tps:,.0f} | {ratio} | {per[0]} / {per[1]} | {other[0]} / {other[1]} |")
        failed = sum(h.failures + q.failures for h, q in pairs)
        lines.append(f"\nNon-200 / failed in the pairs: {failed}.")
    if feed_pairs:
        lines += [
            "",
            f"Back-to-back pairs with the market feed (after the pairs above; each window {PAIR_WARMUP} s warm-up + "
            f"{args.pair_seconds} s measured): http-spread with the feed running, then sql-spread with the feed and the "
            "market-data server frozen (SIGSTOP), seconds apart:",
            "",
            "| Pair | HTTP trades/s, feed running | raw-SQL trades/s | HTTP / raw SQL | feed + market-data server CPUs | feed events/s |",
            "| ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for i, (h, q) in enumerate(feed_pairs, 1):
            c = h.cpu or {}
            feed = h.detail.get("feed", {})
            cpus = c.get("feed_cpus", 0) + c.get("marketdata_cpus", 0)
            ratio = f"{h.tps / q.tps:.1%}" if q.tps else "n/a"
            rate = feed.get("events_applied", 0) / (PAIR_WARMUP + args.pair_seconds)
            lines.append(f"| {i} | {h.tps:,.0f} | {q.tps:,.0f} | {ratio} | {cpus:.2f} | {rate:,.0f} |")
        failed = sum(h.failures + q.failures for h, q in feed_pairs)
        errors = sum(h.detail.get("feed", {}).get("errors", 0) for h, _ in feed_pairs)
        lines.append(
            f"\nNon-200 / failed in the feed pairs: {failed}; feed errors: {errors}. Feed events/s: books the feed folded in "
            "(the stream's and the REST refresh's) over the window and its warm-up. The feed's latency is the 30-s scenario's "
            "and bench/feed.py's: in these windows it would count the books that waited out the frozen seconds."
        )
    lines += ["", "## Raw tool output", ""]
    for name, r in results.items():
        if r.tool == "pgbench":
            lines += [
                f"{name} (pgbench summary; its tps includes the warm-up, the table above counts the measured window only):",
                "",
                "```",
                r.detail.get("pgbench_summary", ""),
                "```",
                "",
            ]
        else:
            lines += [f"{name} ({r.tool}): `{json.dumps(r.detail, sort_keys=True)}`", ""]
    return "\n".join(lines)


def open_rate_source(args, results: dict[str, Result]) -> str:
    if args.open_rate:
        return f"--open-rate {args.open_rate:g}"
    spread = results.get("http-spread")
    return f"half of http-spread's {spread.tps:,.0f} trades/s" if spread else "half of http-spread"


def results_tool(results: dict[str, Result]) -> str:
    tools = {r.tool for r in results.values() if r.tool not in ("pgbench", "asyncio-open")}
    return ", ".join(sorted(tools)) or "none"


BEGIN_MARK = "<!-- BEGIN bench/run.py output: rewritten by every run -->"
END_MARK = "<!-- END bench/run.py output: text outside these marks (the interpretation, other tools' sections) is kept -->"


def write_results(text: str, path: Path) -> None:
    """Rewrite the generated block of RESULTS.md; keep whatever else the file holds."""
    block = f"{BEGIN_MARK}\n{text.rstrip()}\n{END_MARK}\n"
    old = path.read_text() if path.exists() else ""
    if BEGIN_MARK in old and END_MARK in old:
        before, rest = old.split(BEGIN_MARK, 1)
        after = rest.split(END_MARK, 1)[1].lstrip("\n")
        path.write_text(before + block + ("\n" + after if after else ""))
    else:
        path.write_text(block + ("\n" + old if old.strip() else ""))


def parse_args(argv: list[str]):
    cpus = os.cpu_count() or 2
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", type=int, default=30, help="measured seconds per scenario (default 30)")
    p.add_argument("--warmup", type=int, default=5, help="warm-up seconds per scenario, not measured (default 5)")
    p.add_argument("--players", type=int, default=200)
    p.add_argument("--markets", type=int, default=100)
    p.add_argument("--concurrency", type=int, default=64, help="concurrent HTTP connections (default 64)")
    p.add_argument("--workers", type=int, default=SHIPPED["workers"], help=f"gunicorn workers (default {SHIPPED['workers']})")
    p.add_argument(
        "--worker-class",
        default=SHIPPED["worker_class"],
        choices=["sync", "gthread"],
        help=f"gunicorn worker class (default {SHIPPED['worker_class']}, gunicorn.conf.py; gthread keeps client "
        "connections alive, sync answers one request per connection)",
    )
    p.add_argument("--threads", type=int, default=SHIPPED["threads"], help=f"threads per gthread worker (default {SHIPPED['threads']})")
    p.add_argument("--wrk-threads", type=int, default=1)
    p.add_argument("--client", default="wrk", choices=["wrk", "python"], help="HTTP load generator (python = built-in asyncio)")
    p.add_argument(
        "--pgbench-clients", type=int, default=None, help="pgbench -c (default: the HTTP server's database sessions, workers x threads)"
    )
    p.add_argument("--pgbench-jobs", type=int, default=cpus)
    p.add_argument(
        "--quiet-wait",
        type=float,
        default=60,
        help="before each scenario, wait up to this many seconds for processes outside the benchmark to go quiet",
    )
    p.add_argument(
        "--max-other-cpus",
        type=float,
        default=0.2,
        help="a scenario during which processes outside the benchmark used more CPUs than this is run again",
    )
    p.add_argument("--retries", type=int, default=1, help="how many times a disturbed scenario is run again (default 1)")
    p.add_argument(
        "--time-budget",
        type=float,
        default=370,
        help="seconds for all scenarios (default 370): waiting for quiet and re-runs only use what is left over",
    )
    p.add_argument("--feed-markets", type=int, default=2000, help="http-spread-feed: listed markets of the feed (default 2000)")
    p.add_argument(
        "--feed-events-per-second", type=int, default=200, help="http-spread-feed: price events/s the reference server pushes (default 200)"
    )
    p.add_argument("--scenarios", default=",".join(SCENARIOS), help=f"comma-separated, from {', '.join(SCENARIOS)} (default: all)")
    p.add_argument(
        "--open-rate",
        type=float,
        default=None,
        help="requests/s of http-open-half (default: half of http-spread's trades/s in the same run; needed without http-spread)",
    )
    p.add_argument(
        "--pairs",
        type=int,
        default=5,
        help="after the scenarios, this many back-to-back pairs of http-spread and sql-spread windows (default 5; 0: none); "
        "the HTTP / raw-SQL gate is their median ratio (needs http-spread and sql-spread in --scenarios); with http-spread-feed "
        "in --scenarios, as many pairs again with the market feed running in the HTTP window (the feed's gate)",
    )
    p.add_argument("--pair-seconds", type=int, default=10, help="measured seconds of each window of a pair (default 10)")
    p.add_argument("--results", type=Path, default=BENCH / "RESULTS.md")
    p.add_argument("--no-write", action="store_true", help="print the table, do not write RESULTS.md")
    args = p.parse_args(argv)
    unknown = set(args.scenarios.split(",")) - set(SCENARIOS) - {""}
    if unknown:
        p.error(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    names = set(args.scenarios.split(","))
    if "http-open-half" in names and "http-spread" not in names and not args.open_rate:
        p.error("http-open-half runs at half of http-spread's rate: add http-spread to --scenarios or give --open-rate")
    if args.open_rate is not None and args.open_rate <= 0:
        p.error("--open-rate must be positive")
    if args.pgbench_clients is None:
        # As many database sessions as the HTTP server holds (each gthread thread, or each sync
        # worker, keeps one connection): the same SQL at the same database concurrency. More
        # clients only queue on the same rows (the wallet, the category and global shards).
        args.pgbench_clients = args.workers * (args.threads if args.worker_class == "gthread" else 1)
    return args


def _exit_on_signal(signum, frame) -> None:
    raise SystemExit(128 + signum)  # unwinds through the finally blocks and atexit: gunicorn is stopped


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _exit_on_signal)
    if not os.environ.get("DATABASE_URL", "").startswith("postgres"):
        log("DATABASE_URL must point at PostgreSQL: run through scripts/with-services (see bench/README.md)")
        return 2
    started = dt.datetime.now(dt.UTC)
    code = code_version()
    scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    workdir = Path(tempfile.mkdtemp(prefix="house-bench."))
    atexit.register(shutil.rmtree, workdir, True)
    wrk = ensure_wrk() if args.client == "wrk" else None
    if not wrk and "http-healthz" in scenarios:
        log("skipping http-healthz: the GET baseline needs wrk")
        scenarios.remove("http-healthz")

    args.pending = {name: scenario_cost(name, args) for name in scenarios}
    args.deadline = time.monotonic() + max(args.time_budget, sum(args.pending.values()))
    log(f"migrating and seeding {args.players} players, {args.markets} markets")
    t0 = time.monotonic()
    seeded = subprocess.run(
        [PY, str(BENCH / "seed.py"), "--players", str(args.players), "--markets", str(args.markets), "--out", str(workdir)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if seeded.returncode != 0:
        log(f"seeding failed:\n{seeded.stdout}\n{seeded.stderr}")
        return 1
    meta = json.loads((workdir / "meta.json").read_text())
    log(f"seeded in {time.monotonic() - t0:.1f} s")

    env = {**os.environ, "RATELIMIT_ENABLE": "0", "DJANGO_DEBUG": "0"}
    results: dict[str, Result] = {}
    http_scenarios = [s for s in scenarios if s.startswith("http-") and s != "http-floor"]
    if "http-open-half" in http_scenarios and "http-spread" in http_scenarios:  # it needs http-spread's rate
        http_scenarios.remove("http-open-half")
        http_scenarios.insert(http_scenarios.index("http-spread") + 1, "http-open-half")
    if http_scenarios:
        server = Server(args, env, workdir)
        try:
            server.wait_ready()
            log(f"gunicorn ready on {server.url}: {args.workers} x {args.worker_class}")
            for name in http_scenarios:
                markets = workdir / ("hot_market.txt" if name == "http-hot" else "markets.txt")
                if name == "http-spread-feed":
                    results[name] = undisturbed(
                        name, lambda m=markets: feed_scenario(server, workdir / "tokens.txt", m, args, wrk, workdir, env), args
                    )
                    continue
                if name == "http-open-half":
                    rate, source = open_rate(args, results)
                    log(f"{name}: open loop at {rate:.1f} requests/s ({source})")
                    results[name] = undisturbed(
                        name, lambda n=name, m=markets, r=rate: open_scenario(n, server, workdir / "tokens.txt", m, args, r), args
                    )
                    continue
                results[name] = undisturbed(
                    name, lambda n=name, m=markets: http_scenario(n, server, workdir / "tokens.txt", m, args, wrk), args
                )
        finally:
            server.stop()
    if "http-floor" in scenarios:
        server = Server(args, {**env, "BENCH_META": str(workdir / "meta.json")}, workdir, app="floor_app:application")
        try:
            server.wait_ready()
            results["http-floor"] = undisturbed(
                "http-floor", lambda: http_scenario("http-floor", server, workdir / "tokens.txt", workdir / "markets.txt", args, wrk), args
            )
        finally:
            server.stop()
    for name in [s for s in scenarios if s.startswith("sql-")]:
        results[name] = undisturbed(name, lambda n=name: pgbench_run(n, meta, workdir, hot=n == "sql-hot", args=args), args)
        r = results[name]
        log(f"{name}: {r.tps:.0f} trades/s, p50 {r.p50_ms:.1f} ms, p99 {r.p99_ms:.1f} ms, failed {r.failures}, CPU {r.cpu}")

    pairs = []
    if args.pairs > 0 and {"http-spread", "sql-spread"} <= set(scenarios):
        pairs = paired_windows(args, env, workdir, meta, wrk)
    feed_pairs = []
    if args.pairs > 0 and {"http-spread-feed", "sql-spread"} <= set(scenarios):
        feed_pairs = paired_windows(args, env, workdir, meta, wrk, with_feed=True)
    counts = db_counts()
    text = render(results, args, meta, counts, argv, started, code, pairs, feed_pairs)
    print(text.split("## Raw tool output")[0])
    if not args.no_write:
        write_results(text, args.results)
        log(f"wrote {args.results.relative_to(ROOT) if args.results.is_relative_to(ROOT) else args.results}")
    bad = sum(r.failures for r in results.values())
    if bad:
        log(f"WARNING: {bad} non-200 responses / failed transactions")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
