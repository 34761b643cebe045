"""The daily report with 1,000,000 trades in the database, and what its rollup costs a trade.

    make bench-reports   (= PG_DURABLE=1 scripts/with-services .venv/bin/python bench/reports.py --write)
    a quicker run:        ... bench/reports.py --trades 100000 --runs 100

1. Seed, in SQL (not through the trade API): one operator with ``--players`` players and ``--trades``
   trades (4 buys for 1 sell) spread evenly over 366 UTC days, in statements of 100,000 rows, plus
   payouts, refunds and reversal takes in the ledger (one for every 10 trades). The rollup is filled by
   the triggers as the rows go in (as in production); then every (day, currency) gets all 16 shards
   (zero rows where a backend never wrote: the most rows the report can ever read for a day).
   Checked: the report over the 366 days equals the same figures computed straight from casino_trades and
   s2s_transactions (counts, sums, distinct players per day).
2. The 366-day report, ``--runs`` times after a warm-up: through the whole HTTP stack in-process (Django's
   test client: operator key, view, selector, JSON rendering; the CSV variant too) and the selector alone.
3. What the rollup adds to a trade, same run: the trade executor in-process (as bench/risk_walls.py),
   $1 buys round-robin over players, in alternating blocks with the report's triggers enabled and disabled
   (ALTER TABLE ... DISABLE TRIGGER); and a payout chunk's ledger insert (2,000 rows, one statement) on/off.

--write rewrites the reports block of bench/RESULTS.md.
"""

import argparse
import datetime
import importlib.util
import os
import statistics
import sys
import time
import uuid
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != BENCH]  # bench/reports.py is named like the app
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("RATELIMIT_ENABLE", "0")

_spec = importlib.util.spec_from_file_location("bench_settlement", BENCH / "settlement.py")
sb = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sb)

BEGIN = "<!-- BEGIN bench/reports.py output: rewritten by every run with --write -->"
END = "<!-- END bench/reports.py output -->"
BATCH = 100_000
DAYS = 366
TRIGGERS = (("casino_trades", "reports_rollup_trades"), ("s2s_transactions", "reports_rollup_ledger"))  # the staging table's follows

SEED_TRADES = """
INSERT INTO casino_trades (id, player_id, operator_id, market_id, market_title, side, outcome, shares, price_mid, price_executed,
                           spread_applied, cost, balance_before, balance_after, realized_pnl, wallet_transaction_id, created_at)
SELECT gen_random_uuid(), (%(players)s::uuid[])[1 + g %% %(n_players)s], %(operator)s, %(market)s, '',
       CASE WHEN g %% 5 = 0 THEN 'sell' ELSE 'buy' END, 'yes', 10, 50, 51, 1, (100 + g %% 4900) / 100.0, 1000, 1000, 0, NULL,
       %(first_day)s::timestamptz + (g %% 366) * interval '1 day' + ((g * 7919) %% 86400) * interval '1 second'
FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) AS g
"""
SEED_LEDGER = """
INSERT INTO s2s_transactions (id, player_id, operator_id, type, amount, balance_after, currency, description, trade_id, round_id,
                              reference_id, actor, created_at)
SELECT gen_random_uuid(), (%(players)s::uuid[])[1 + g %% %(n_players)s], %(operator)s,
       (ARRAY['payout', 'payout', 'payout', 'refund', 'payout_reversal', 'debt_recovery'])[1 + g %% 6],
       CASE WHEN g %% 6 >= 4 THEN -1 ELSE 1 END * (100 + g %% 3900) / 100.0, 1000, 'USD', '', NULL, '', NULL, 'system',
       %(first_day)s::timestamptz + (g %% 366) * interval '1 day' + ((g * 104729) %% 86400) * interval '1 second'
FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) AS g
"""
ALL_SHARDS = """
INSERT INTO reports_daily (operator_id, day, currency, shard, trades, players, stakes, sale_proceeds, payouts, refunds, reversals)
SELECT d.operator_id, d.day, d.currency, s, 0, 0, 0, 0, 0, 0, 0
FROM (SELECT DISTINCT operator_id, day, currency FROM reports_daily WHERE operator_id = %(operator)s) AS d, generate_series(0, 15) AS s
ON CONFLICT DO NOTHING
"""
DIRECT = """
SELECT (SELECT count(*) FROM casino_trades WHERE operator_id = %(operator)s),
       (SELECT coalesce(sum(cost), 0) FROM casino_trades WHERE operator_id = %(operator)s AND side = 'buy'),
       (SELECT coalesce(sum(cost), 0) FROM casino_trades WHERE operator_id = %(operator)s AND side = 'sell'),
       (SELECT count(*) FROM (SELECT DISTINCT (created_at AT TIME ZONE 'UTC')::date, player_id FROM casino_trades
                              WHERE operator_id = %(operator)s) AS x),
       (SELECT coalesce(sum(amount), 0) FROM s2s_transactions WHERE operator_id = %(operator)s AND type = 'payout'),
       (SELECT coalesce(sum(amount), 0) FROM s2s_transactions WHERE operator_id = %(operator)s AND type = 'refund'),
       (SELECT coalesce(-sum(amount), 0) FROM s2s_transactions
        WHERE operator_id = %(operator)s AND type IN ('payout_reversal', 'refund_reversal', 'debt_recovery'))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trades", type=int, default=1_000_000)
    parser.add_argument("--players", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--ab-trades", type=int, default=4000, help="trades per arm of the trigger A/B (in 4 blocks)")
    parser.add_argument("--write", action="store_true")
    parser.add_argument("--results", type=Path, default=BENCH / "RESULTS.md")
    args = parser.parse_args()

    sb._setup_django()
    from django.core.management import call_command
    from django.db import connection

    if connection.vendor != "postgresql":
        sys.exit("bench/reports.py needs PostgreSQL (run it through scripts/with-services)")
    call_command("migrate", verbosity=0)

    seeded = _seed(args)
    report = _time_report(args, seeded)
    ab = _trigger_ab(args)
    chunk = _chunk_ab(seeded)
    text = _render(args, seeded, report, ab, chunk)
    print(text)
    if args.write:
        sb._write_block(args.results, text, BEGIN, END)
        print(f"wrote the reports block of {args.results}")


def _seed(args) -> dict:
    from django.db import connection, transaction

    from casino.models import Player
    from casino.services.credentials import operator_create
    from casino.services.markets import reference_price_set
    from core.arrays import pg_array

    issued = operator_create(name=f"bench-reports-{uuid.uuid4().hex[:6]}")
    operator = issued.operator
    market = reference_price_set(market_id=f"0xbenchreports{uuid.uuid4().hex[:8]}", outcome="yes", mid_price=Decimal("50")).market
    players = Player.objects.bulk_create([Player(operator=operator, external_id=f"bench-{i}") for i in range(args.players)])
    today = datetime.datetime.now(datetime.UTC).date()
    first_day = today - datetime.timedelta(days=DAYS - 1)
    params = {
        "players": pg_array([p.pk for p in players]),
        "n_players": len(players),
        "operator": operator.pk,
        "market": market.pk,
        "first_day": datetime.datetime.combine(first_day, datetime.time(), tzinfo=datetime.UTC),
    }
    started = time.perf_counter()
    for lo in range(0, args.trades, BATCH):
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(SEED_TRADES, {**params, "lo": lo, "hi": min(lo + BATCH, args.trades) - 1})
    seed_trades_s = time.perf_counter() - started
    ledger_rows = args.trades // 10
    for lo in range(0, ledger_rows, BATCH):
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(SEED_LEDGER, {**params, "lo": lo, "hi": min(lo + BATCH, ledger_rows) - 1})
    with connection.cursor() as cursor:
        cursor.execute(ALL_SHARDS, {"operator": operator.pk})
        cursor.execute("VACUUM ANALYZE reports_daily")
        cursor.execute("ANALYZE casino_trades")
        cursor.execute("SELECT count(*) FROM reports_daily WHERE operator_id = %s", [operator.pk])
        rollup_rows = cursor.fetchone()[0]
        cursor.execute("SELECT count(*) FROM casino_trades")
        total_trades = cursor.fetchone()[0]
    _check(operator, first_day, today)
    return {
        "operator": operator,
        "api_key": issued.api_key,
        "first_day": first_day,
        "today": today,
        "players": players,
        "market": market,
        "seed_trades_s": seed_trades_s,
        "ledger_rows": ledger_rows,
        "rollup_rows": rollup_rows,
        "total_trades": total_trades,
    }


def _check(operator, first_day, today) -> None:
    """The report over every day equals the figures computed straight from the source rows."""
    from django.db import connection

    from reports.selectors import daily_report

    days = daily_report(operator_id=operator.pk, start=first_day, end=today)
    got = (
        sum(d.trades for d in days),
        sum(d.stakes for d in days),
        sum(d.sale_proceeds for d in days),
        sum(d.players for d in days),
        sum(d.payouts for d in days),
        sum(d.refunds for d in days),
        sum(d.reversals for d in days),
    )
    with connection.cursor() as cursor:
        cursor.execute(DIRECT, {"operator": operator.pk})
        want = tuple(cursor.fetchone())
    if got != want or len(days) != DAYS:
        sys.exit(f"the rollup does not match the source rows: {got} != {want} ({len(days)} days)")
    print(f"checked: {len(days)} days, trades/stakes/sales/player-days/payouts/refunds/reversals = {got}")


def _percentiles(times: list[float]) -> dict:
    ordered = sorted(times)
    return {
        "p50": ordered[len(ordered) // 2],
        "p99": ordered[max(0, int(len(ordered) * 0.99) - 1)],
        "mean": statistics.mean(times),
        "max": ordered[-1],
    }


def _time_report(args, seeded) -> dict:
    from django.test import Client

    from reports.selectors import daily_report

    client = Client()
    headers = {"X-Operator-Key": seeded["api_key"]}
    query = {"from": seeded["first_day"].isoformat(), "to": seeded["today"].isoformat()}

    def http(extra: dict | None = None) -> float:
        started = time.perf_counter()
        response = client.get("/api/casino/operator/reports/daily", {**query, **(extra or {})}, headers=headers)
        body = b"".join(response.streaming_content) if response.streaming else response.content
        elapsed = (time.perf_counter() - started) * 1000
        assert response.status_code == 200 and body.count(b"USD") == DAYS, (response.status_code, body[:200])
        return elapsed

    def selector() -> float:
        started = time.perf_counter()
        days = daily_report(operator_id=seeded["operator"].pk, start=seeded["first_day"], end=seeded["today"])
        elapsed = (time.perf_counter() - started) * 1000
        assert len(days) == DAYS
        return elapsed

    for _ in range(20):
        http()
        selector()
    return {
        "json": _percentiles([http() for _ in range(args.runs)]),
        "csv": _percentiles([http({"format": "csv"}) for _ in range(args.runs)]),
        "selector": _percentiles([selector() for _ in range(args.runs)]),
    }


def _triggers(enabled: bool) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        for table, trigger in TRIGGERS:
            cursor.execute(f"ALTER TABLE {table} {'ENABLE' if enabled else 'DISABLE'} TRIGGER {trigger}")


def _trigger_ab(args) -> dict:
    """The trade executor in-process, blocks alternating triggers on / off (same players, markets, amounts)."""
    from casino.services.credentials import operator_create, session_open, session_player
    from casino.services.markets import casino_settings, reference_price_set
    from casino.services.trade_executor import TradeRequest, trade_execute
    from risk.services.config import risk_settings
    from wallets.services.transfers import wallet_deposit

    row = risk_settings()
    row.max_trades_per_minute = 10**6
    row.max_stake_per_minute = Decimal("10000000")
    row.market_burst_trades = 10**6
    row.default_market_exposure_cap = Decimal("100000000")
    row.global_exposure_cap = Decimal("1000000000")
    row.category_exposure_cap = Decimal("1000000000")
    row.save()
    casino = casino_settings()
    casino.price_max_age_seconds = 86400
    casino.save()
    operator = operator_create(name=f"bench-reports-ab-{uuid.uuid4().hex[:6]}").operator
    markets = [f"0xbenchreportsab{i:04d}{uuid.uuid4().hex[:6]}" for i in range(20)]
    for m in markets:
        reference_price_set(market_id=m, outcome="yes", mid_price=Decimal("50"))
    players = []
    for i in range(200):
        session = session_open(operator=operator, external_player_id=f"ab-{i}")
        wallet_deposit(player=session.player, amount=Decimal("100000"))
        players.append(session_player(session.token))
    counter = iter(range(10**9))

    def block(n: int) -> list[float]:
        times = []
        for _ in range(n):
            i = next(counter)
            request = TradeRequest(
                market_id=markets[i % len(markets)], side="buy", outcome="yes", amount=Decimal("1.00"), mid_price=Decimal("50")
            )
            started = time.perf_counter()
            trade_execute(player=players[i % len(players)], request=request)
            times.append((time.perf_counter() - started) * 1000)
        return times

    block(400)  # warm-up
    per_block = max(1, args.ab_trades // 4)
    on: list[float] = []
    off: list[float] = []
    cpu_on = cpu_off = 0.0
    try:
        for _ in range(4):
            for enabled, bucket in ((True, on), (False, off)):
                _triggers(enabled)
                backend_before = _backend_cpu()
                bucket += block(per_block)
                spent = _backend_cpu() - backend_before
                if enabled:
                    cpu_on += spent
                else:
                    cpu_off += spent
    finally:
        _triggers(True)
    return {"on": _percentiles(on), "off": _percentiles(off), "n": len(on), "cpu_on": cpu_on / len(on), "cpu_off": cpu_off / len(off)}


def _backend_cpu() -> float:
    """CPU seconds used so far by this connection's PostgreSQL backend (user + system, from /proc)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _chunk_ab(seeded) -> dict:
    """A payout chunk's ledger rows (2,000, one INSERT, committed) with the ledger trigger on and off."""
    from django.db import transaction

    from wallets.services.ledger import LedgerRow, ledger_append_bulk

    players = seeded["players"][:2000]

    def once() -> float:
        rows = [
            LedgerRow(
                id=uuid.uuid4(),
                player_id=p.pk,
                operator_id=seeded["operator"].pk,
                type="payout",
                amount=Decimal("12.34"),
                balance_after=Decimal("100"),
                currency="USD",
                description="bench",
            )
            for p in players
        ]
        started = time.perf_counter()
        with transaction.atomic():
            ledger_append_bulk(rows=rows)
        return (time.perf_counter() - started) * 1000

    results: dict[str, list[float]] = {"on": [], "off": []}
    try:
        for _ in range(10):
            for enabled in (True, False):
                _triggers(enabled)
                results["on" if enabled else "off"].append(once())
    finally:
        _triggers(True)
    return {k: _percentiles(v[2:]) for k, v in results.items()} | {"rows": len(players)}


def _render(args, seeded, report, ab, chunk) -> str:
    def row(label, p):
        return f"| {label} | {p['p50']:.2f} | {p['p99']:.2f} | {p['mean']:.2f} | {p['max']:.2f} |"

    added = ab["on"]["mean"] - ab["off"]["mean"]
    p50_added = ab["on"]["p50"] - ab["off"]["p50"]
    cpu_added = (ab["cpu_on"] - ab["cpu_off"]) * 1000
    lines = [
        BEGIN,
        "## Daily report (SPEC §13) and its rollup",
        "",
        f"Command: `make bench-reports` (`PG_DURABLE=1 scripts/with-services .venv/bin/python bench/reports.py --trades {args.trades} "
        f"--players {args.players} --runs {args.runs} --ab-trades {args.ab_trades} --write`), {time.strftime('%Y-%m-%d')}, "
        f"{os.cpu_count()} cores, commit {sb._commit()}.",
        "",
        f"Seeded in SQL: {seeded['total_trades']:,} trades of one operator over {DAYS} UTC days ({args.players:,} players; "
        f"{seeded['seed_trades_s']:.1f} s in statements of {BATCH:,} rows, the rollup filled by the triggers as they went in) and "
        f"{seeded['ledger_rows']:,} ledger rows (payouts, refunds, reversal takes, debt recoveries). The rollup read: "
        f"{seeded['rollup_rows']:,} rows ({DAYS} days x 16 shards, every shard present). Checked: the report's totals equal "
        "counts and sums computed straight from casino_trades and s2s_transactions.",
        "",
        f"The {DAYS}-day report, {args.runs} runs each after a warm-up (ms):",
        "",
        "| what | p50 | p99 | mean | max |",
        "|---|---:|---:|---:|---:|",
        row("GET operator/reports/daily, JSON (whole Django stack in-process)", report["json"]),
        row("the same, format=csv (streamed)", report["csv"]),
        row("the selector alone (one aggregate over the rollup)", report["selector"]),
        "",
        f"Target <= 200 ms: {'met' if report['json']['p99'] <= 200 else 'NOT met'} (p99 {report['json']['p99']:.2f} ms).",
        "",
        f"What the rollup adds to a trade: the trade executor in-process, $1 buys, {ab['n']:,} per arm in 4 alternating blocks, "
        "the report's two triggers enabled vs disabled (ms per trade; PostgreSQL backend CPU per trade from /proc):",
        "",
        "| triggers | p50 | p99 | mean | max |",
        "|---|---:|---:|---:|---:|",
        row("on", ab["on"]),
        row("off", ab["off"]),
        "",
        f"The triggers add {cpu_added:.3f} ms of PostgreSQL CPU per trade ({ab['cpu_off'] * 1000:.3f} -> {ab['cpu_on'] * 1000:.3f} ms, "
        f"{cpu_added / (ab['cpu_off'] * 1000) * 100:+.1f}%) and {p50_added:.3f} ms to the executor's median time "
        f"({p50_added / ab['off']['p50'] * 100:+.1f}%); the mean moved by {added:.3f} ms, but means and tails on this shared "
        "machine (other processes running) are dominated by stalls of either arm, so the CPU and the median are the measure.",
        "",
        f"A payout chunk's ledger insert ({chunk['rows']:,} rows in one statement and its commit; 8 runs per arm, ms): "
        f"trigger on p50 {chunk['on']['p50']:.2f}, off p50 {chunk['off']['p50']:.2f} (one upsert per (operator, day, currency) "
        "per transaction, at commit).",
        END,
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
