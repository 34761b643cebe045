"""Webhooks (SPEC §14): what the outbox costs a trade, and how fast deliveries leave.

    make bench-webhooks   (= PG_DURABLE=1 scripts/with-services .venv/bin/python bench/webhooks.py --write)
    a quicker run:        ... bench/webhooks.py --trades 1000 --events 2000

(a) The outbox's CPU per trade, same-run A/B. The trade executor runs in-process (no HTTP: what is
    measured is the trade, not the web server) on PostgreSQL, $1 buys round-robin over players and
    markets, in alternating rounds with the outbox on and off (``HOUSE_EVENTS_ENABLED``; off exists
    only for this A/B). Per round: this process's CPU (getrusage) plus PostgreSQL's (postmaster,
    its live and reaped backends, from /proc), divided by the trades. Autovacuum is off during the
    A/B (its workers would count in whichever round they land in) and a VACUUM (ANALYZE) runs,
    unmeasured, before each round. With the outbox on, each trade
    also writes its ``trade.executed`` row (one more CTE of the trade's one statement) and the
    after-commit kick of the dispatcher (at most 4 a second per process, each a Redis SET NX of the
    pump flag; a pump is published only when none holds it). Target: <= 10% more.
    Fanning the events out (the dispatcher, off the trade's path) is part of (b).
(b) Deliveries to the reference receiver (``manage.py run_webhook_receiver``, its own process, on
    loopback; it verifies every signature with ``standardwebhooks`` and answers 401 to a bad one):
    ``--events`` events written in bulk for an operator with one endpoint, then timed from the
    first dispatch until the receiver has acknowledged all of them, by ``--workers`` processes each
    running the delivery loop (``webhooks_pump_once``: fan out, claim due deliveries, send them
    concurrently, record). Target: >= 500 events/s. Checked: every event delivered exactly once,
    every signature verified, every delivery recorded delivered.

BENCH_PROFILE=1 prints a delivery worker's profile (its main thread) to stderr.
"""

import argparse
import json
import multiprocessing as mp
import os
import platform
import resource
import subprocess
import sys
import time
import urllib.request
import uuid
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != BENCH]  # bench/webhooks.py is not the app
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ["WEBHOOK_ALLOW_INSECURE_URLS"] = "1"  # the receiver is on loopback, over http

TICK = os.sysconf("SC_CLK_TCK")
BEGIN, END = "<!-- BEGIN bench/webhooks.py output: rewritten by every run with --write -->", "<!-- END bench/webhooks.py output -->"


def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()


def _pid_cpu(pid: int, *, reaped: bool = False) -> float:
    fields = _stat(pid)
    if fields is None:
        return 0.0
    ticks = int(fields[11]) + int(fields[12]) + ((int(fields[13]) + int(fields[14])) if reaped else 0)
    return ticks / TICK


def _pg_cpu(postmaster: int) -> float:
    """PostgreSQL's CPU seconds: the postmaster, its exited backends (reaped) and its live ones."""
    total = _pid_cpu(postmaster, reaped=True)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat(int(entry.name))
            if fields is not None and int(fields[1]) == postmaster:
                total += _pid_cpu(int(entry.name))
    return total


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _setup():
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return int(_stat(cursor.fetchone()[0])[1])


def _commit() -> str:
    try:
        line = subprocess.run(["git", "log", "-1", "--format=%h %s"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown (no git)"
    return line.strip()[:90] + (" (with uncommitted changes)" if dirty.strip() else "")


# --- (a) the outbox's CPU per trade ----------------------------------------------------------------


def _tables() -> list[str]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        return [row[0] for row in cursor.fetchall()]


def _autovacuum(enabled: bool) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        for table in _tables():
            cursor.execute(f'ALTER TABLE "{table}" SET (autovacuum_enabled = {"true" if enabled else "false"})')


def _vacuum() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("VACUUM (ANALYZE)")


def bench_outbox(args, postmaster: int) -> dict:
    from django.conf import settings

    from casino.services.credentials import operator_create, session_open, session_player
    from casino.services.markets import casino_settings, reference_price_set
    from casino.services.trade_executor import TradeRequest, trade_execute
    from core.models import Event
    from risk.services.config import risk_settings
    from wallets.services.transfers import wallet_deposit

    row = risk_settings()
    row.max_trades_per_minute = 10**7
    row.max_stake_per_minute = Decimal("100000000")
    row.market_burst_trades = 10**7
    row.default_market_exposure_cap = Decimal("1000000000")
    row.global_exposure_cap = Decimal("10000000000")
    row.category_exposure_cap = Decimal("10000000000")
    row.save()
    casino = casino_settings()
    casino.price_max_age_seconds = 86400 * 30
    casino.save()
    operator = operator_create(name=f"bench-outbox-{uuid.uuid4().hex[:6]}").operator
    markets = [f"0xbenchoutbox{i:04d}" for i in range(args.markets)]
    for m in markets:
        reference_price_set(market_id=m, outcome="yes", mid_price=Decimal("50"))
    players = []
    for i in range(args.players):
        session = session_open(operator=operator, external_player_id=f"bench-outbox-{i}")
        wallet_deposit(player=session.player, amount=Decimal("100000"))
        players.append(session_player(session.token))

    counter = {"i": 0}

    def trades(n: int) -> None:
        for _ in range(n):
            i = counter["i"]
            counter["i"] += 1
            request = TradeRequest(
                market_id=markets[i % len(markets)], side="buy", outcome="yes", amount=Decimal("1.00"), mid_price=Decimal("50")
            )
            trade_execute(player=players[i % len(players)], request=request)

    def measured(enabled: bool, n: int) -> tuple[float, float]:
        settings.HOUSE_EVENTS_ENABLED = enabled
        _vacuum()  # what autovacuum would do, between rounds, not measured
        time.sleep(0.05)
        own0, pg0 = _own_cpu(), _pg_cpu(postmaster)
        trades(n)
        own1, pg1 = _own_cpu(), _pg_cpu(postmaster)
        return own1 - own0, pg1 - pg0

    _autovacuum(False)  # its workers are PostgreSQL's children too: they would land in a random round
    trades(args.trades // 4)  # warm-up: prepared statements, caches, both statement variants
    settings.HOUSE_EVENTS_ENABLED = False
    trades(args.trades // 8)
    per_round = args.trades // args.rounds
    totals = {True: [0.0, 0.0, 0], False: [0.0, 0.0, 0]}
    rounds = []
    for r in range(args.rounds):
        order = (True, False) if r % 2 == 0 else (False, True)  # alternate which goes first
        for enabled in order:
            own, pg = measured(enabled, per_round)
            totals[enabled][0] += own
            totals[enabled][1] += pg
            totals[enabled][2] += per_round
            rounds.append((enabled, (own + pg) / per_round * 1e6))
    settings.HOUSE_EVENTS_ENABLED = True
    _autovacuum(True)
    on_us = (totals[True][0] + totals[True][1]) / totals[True][2] * 1e6
    off_us = (totals[False][0] + totals[False][1]) / totals[False][2] * 1e6
    events = Event.objects.filter(operator_id=operator.pk).count()
    return {
        "trades_per_side": totals[True][2],
        "on_us": on_us,
        "off_us": off_us,
        "on_own_us": totals[True][0] / totals[True][2] * 1e6,
        "on_pg_us": totals[True][1] / totals[True][2] * 1e6,
        "off_own_us": totals[False][0] / totals[False][2] * 1e6,
        "off_pg_us": totals[False][1] / totals[False][2] * 1e6,
        "overhead_pct": (on_us - off_us) / off_us * 100,
        "rounds": rounds,
        "events_written": events,
    }


# --- (b) deliveries per second ---------------------------------------------------------------------


class Receiver:
    """manage.py run_webhook_receiver in its own process."""

    def __init__(self, secret: str):
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "manage.py"), "run_webhook_receiver", "--port", "0", "--secret", secret],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("run_webhook_receiver exited before printing its address")
        info = json.loads(line)
        self.url, self.state_url = info["url"], info["state"]

    def state(self) -> dict:
        with urllib.request.urlopen(self.state_url + "?n=0", timeout=5) as response:  # noqa: S310 - loopback
            return json.loads(response.read())

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def _deliver_worker(stop_at: float, results) -> None:
    import django

    django.setup()
    from webhooks.adapters.endpoint import WebhookClient
    from webhooks.services.delivery import webhooks_pump_once

    client = WebhookClient()
    delivered = idle = 0
    own0 = _own_cpu()
    profiler = None
    if os.environ.get("BENCH_PROFILE"):
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    while time.monotonic() < stop_at and idle < 20:
        taken, stats = webhooks_pump_once(client=client)
        delivered += stats.delivered
        if taken or stats.claimed:
            idle = 0
        else:
            idle += 1
            time.sleep(0.05)
    if profiler is not None:
        import pstats

        profiler.disable()
        pstats.Stats(profiler, stream=sys.stderr).sort_stats("tottime").print_stats(30)
    results.put((delivered, _own_cpu() - own0))
    client.close()


def bench_delivery(args, postmaster: int) -> dict:
    from django.db import connection, transaction
    from django.db.models import Count

    from casino.services.credentials import operator_create
    from core.events import events_record_bulk
    from webhooks.models import DeliveryStatus, WebhookDelivery
    from webhooks.services.endpoints import endpoint_create

    operator = operator_create(name=f"bench-hooks-{uuid.uuid4().hex[:6]}").operator
    placeholder = endpoint_create(operator=operator, url="http://127.0.0.1:9/placeholder", events=["*"])
    receiver = Receiver(placeholder.secret)
    try:
        placeholder.endpoint.url = receiver.url
        placeholder.endpoint.save(update_fields=["url"])
        sample = {
            "id": str(uuid.uuid4()),
            "user_id": str(uuid.uuid4()),
            "market_id": "0xbench",
            "market_title": "Will the benchmark pass?",
            "side": "buy",
            "outcome": "yes",
            "shares": Decimal("1.960784"),
            "price_executed": Decimal("51.0000"),
            "cost": Decimal("1.00"),
            "balance_after": Decimal("99.00"),
            "playerId": "bench-player",
        }
        with transaction.atomic():
            for start in range(0, args.events, 5000):
                events_record_bulk(
                    [(operator.pk, "trade.executed", {**sample, "n": i}) for i in range(start, min(args.events, start + 5000))]
                )
        connection.close()  # the workers are forked: no shared connection
        results = mp.get_context("fork").Queue()
        stop_at = time.monotonic() + args.time_limit
        pg0 = _pg_cpu(postmaster)
        started = time.monotonic()
        workers = [mp.get_context("fork").Process(target=_deliver_worker, args=(stop_at, results)) for _ in range(args.workers)]
        for w in workers:
            w.start()
        receiver_cpu0 = _pid_cpu(receiver.proc.pid)
        while time.monotonic() < stop_at:
            state = receiver.state()
            if state["uniqueDelivered"] >= args.events:
                break
            time.sleep(0.02)
        elapsed = time.monotonic() - started
        receiver_cpu = _pid_cpu(receiver.proc.pid) - receiver_cpu0
        worker_results = [results.get(timeout=args.time_limit + 30) for _ in workers]
        for w in workers:
            w.join(30)
        pg_cpu = _pg_cpu(postmaster) - pg0
        state = receiver.state()
    finally:
        receiver.stop()
    statuses = dict(WebhookDelivery.objects.filter(endpoint=placeholder.endpoint).order_by().values_list("status").annotate(n=Count("pk")))
    checks = {
        "every event delivered exactly once (unique webhook-ids acknowledged)": state["uniqueDelivered"] == args.events,
        "no delivery refused by the receiver (every signature verified)": state["received"] == state["uniqueDelivered"],
        "every delivery recorded delivered": statuses.get(DeliveryStatus.DELIVERED, 0) == args.events and len(statuses) == 1,
    }
    return {
        "events": args.events,
        "workers": args.workers,
        "seconds": elapsed,
        "per_s": state["uniqueDelivered"] / elapsed if elapsed else 0,
        "received": state["received"],
        "worker_cpu": sum(cpu for _, cpu in worker_results),
        "pg_cpu": pg_cpu,
        "receiver_cpu": receiver_cpu,
        "checks": checks,
    }


# --- report ----------------------------------------------------------------------------------------


def report(args, outbox: dict | None, delivery: dict | None) -> tuple[str, bool]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        pg_version = cursor.fetchone()[0]
    lines = [
        BEGIN,
        "## Webhooks: the outbox's CPU per trade, and deliveries per second",
        "",
        "Generated by `bench/webhooks.py` (`--write` rewrites this block; see its docstring for the method).",
        "",
        f"- Command: `make bench-webhooks` (= `scripts/bootstrap requirements-dev.txt && PG_DURABLE=1 scripts/with-services "
        f".venv/bin/python bench/webhooks.py --trades {args.trades} --rounds {args.rounds} --events {args.events} "
        f"--workers {args.workers} --write`)",
        f"- Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; machine: {os.cpu_count()} CPUs, "
        f"CPython {platform.python_version()}, PostgreSQL {pg_version} (PG_DURABLE={os.environ.get('PG_DURABLE', '0')})",
        f"- Code measured: `{_commit()}`",
        "",
    ]
    ok = True
    verdicts = ["| target | measured | verdict |", "|---|---|---|"]
    if outbox:
        passed = outbox["overhead_pct"] <= 10
        ok &= passed
        verdicts.append(
            f"| the outbox adds <= 10% CPU per trade (same-run A/B) | {outbox['overhead_pct']:+.1f}% "
            f"({outbox['on_us']:,.0f} vs {outbox['off_us']:,.0f} µs) | **{'PASS' if passed else 'FAIL'}** |"
        )
    if delivery:
        passed = delivery["per_s"] >= 500 and all(delivery["checks"].values())
        ok &= passed
        verdicts.append(
            f"| deliveries to a loopback receiver >= 500 events/s | {delivery['per_s']:,.0f}/s | **{'PASS' if passed else 'FAIL'}** |"
        )
    lines += verdicts + [""]
    if outbox:
        lines += [
            f"Outbox A/B: {outbox['trades_per_side']:,} trades per side in {args.rounds} alternating rounds ($1 buys, "
            f"{args.players} players, {args.markets} markets, the executor in-process on the one-statement path).",
            "",
            "| outbox | CPU µs/trade (python + PostgreSQL) | python | PostgreSQL |",
            "|---|---:|---:|---:|",
            f"| on | {outbox['on_us']:,.0f} | {outbox['on_own_us']:,.0f} | {outbox['on_pg_us']:,.0f} |",
            f"| off | {outbox['off_us']:,.0f} | {outbox['off_own_us']:,.0f} | {outbox['off_pg_us']:,.0f} |",
            "",
            "Per round (µs/trade): " + ", ".join(f"{'on' if e else 'off'} {us:,.0f}" for e, us in outbox["rounds"]) + ".",
            "",
            f"Events written by the 'on' rounds and the warm-up: {outbox['events_written']:,} (this operator has no endpoint: "
            "the dispatcher never reads them; fanning out for an operator with one is part of (b)).",
            "",
        ]
    if delivery:
        lines += [
            f"Deliveries: {delivery['events']:,} events to one endpoint, {delivery['workers']} delivery process(es), "
            f"{delivery['seconds']:.2f} s, {delivery['per_s']:,.0f} events/s; receiver answered {delivery['received']:,} requests. "
            f"CPU seconds: delivery workers {delivery['worker_cpu']:.2f}, PostgreSQL {delivery['pg_cpu']:.2f}, "
            f"receiver {delivery['receiver_cpu']:.2f}.",
            "",
            "Checks: " + "; ".join(f"{name}: {'passed' if passed else 'FAILED'}" for name, passed in delivery["checks"].items()) + ".",
            "",
        ]
    lines.append(END)
    return "\n".join(lines) + "\n", ok


def _write(block: str) -> None:
    path = ROOT / "bench" / "RESULTS.md"
    text = path.read_text()
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        tail = rest.split(END, 1)[1].lstrip("\n")
        text = head + block + ("\n" + tail if tail else "")
    else:
        text = text.rstrip("\n") + "\n\n" + block
    path.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trades", type=int, default=8000, help="trades per side of the A/B (outbox on, outbox off)")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--players", type=int, default=200)
    parser.add_argument("--markets", type=int, default=20)
    parser.add_argument("--events", type=int, default=10000, help="events to deliver")
    parser.add_argument("--workers", type=int, default=1, help="delivery processes")
    parser.add_argument("--time-limit", type=float, default=300.0)
    parser.add_argument("--skip-outbox", action="store_true")
    parser.add_argument("--skip-delivery", action="store_true")
    parser.add_argument("--write", action="store_true", help="rewrite the webhooks block of bench/RESULTS.md")
    args = parser.parse_args()
    postmaster = _setup()
    outbox = None if args.skip_outbox else bench_outbox(args, postmaster)
    delivery = None if args.skip_delivery else bench_delivery(args, postmaster)
    block, ok = report(args, outbox, delivery)
    print(block)
    if args.write:
        _write(block)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
