"""Settling a market with 100,000 positions on PostgreSQL: the decision and the payouts, per wallet kind.

    make bench-settlement   (= PG_DURABLE=1 scripts/with-services .venv/bin/python bench/settlement.py --write)
    a quicker run:           ... bench/settlement.py --positions 10000

For each scenario a fresh market gets ``--positions`` open positions (half YES, half NO, one
player each, rows created in bulk, not through the trade API) and an exposure book holding
them. Then, timed separately:

1. the decision: ``market_settle`` (what the staff request runs: lock the market, the totals from
   one aggregate over the open positions, the Settlement; no row per position). Celery is not eager
   here (REDIS_URL is set) and no worker runs, so the task it schedules is never executed: the
   benchmark pays itself;
2. the payouts: ``--workers`` processes (started and connected before the clock starts) call
   ``settlement_advance(chunk=--chunk)`` until it returns True, concurrently when more than one
   (safe: positions and payouts are claimed under SKIP LOCKED row locks); each chunk of positions
   creates their payouts, closes them and pays them. SQL queries are counted, and the CPU used by
   the benchmark (workers, PostgreSQL, wallet server) and by other work is measured.

Wallet kinds: ``internal`` (house-held balances, one ledger row per payout) and ``s2s`` (each
payout is a signed HTTP credit to the reference operator wallet server, run as a separate
process with ``manage.py run_wallet_server --control`` so it does not share the GIL; the
server is threaded, one thread per connection, so it answers concurrent calls). ``internal-void``
and ``s2s-void`` void a market instead (every position refunded its cost basis).

After each scenario the results are checked, independently of the settlement code: one
ledger row per winning position and nothing else, their sum equal to the amount computed
here from the seeded shares, the players' balances (house wallets, or the reference server's
total) up by exactly that sum, every house ledger summing to its balance, every payout paid
or nothing-due, every position resolved or voided, the market resolved/voided, its exposure
book zero and the global exposure bound lowered by exactly the market's worst case; for S2S
also one applied credit per payout at the server, no credit requested twice, and never more
calls in flight than the operator's max_concurrent_calls. Any failed check makes the run exit
non-zero (and nothing is written). --write rewrites the settlement block of bench/RESULTS.md.
"""

import argparse
import json
import logging
import multiprocessing as mp
import os
import platform
import resource
import subprocess
import sys
import time
import urllib.request
import uuid
from decimal import ROUND_FLOOR, Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
# This file is named like the Django app "settlement": keep bench/ off the import path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != BENCH]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

CENT = Decimal("0.01")
BIG_CAP = Decimal("1000000000")
WORKER_TIME_LIMIT = 600.0


def _setup_django() -> None:
    import django

    django.setup()
    # Keep the product's logging work (wallet_call lines are formatted as in production) but not the noise.
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(open(os.devnull, "w"))  # noqa: SIM115 - lives as long as the process


def _advance(kind: str):
    """The one pass a worker repeats: a settlement's payouts, or (bench/reversal.py) a reversal's items."""
    if kind == "reversal":
        from settlement.services.reversal import reversal_advance

        return lambda target_id, chunk: reversal_advance(reversal_id=target_id, chunk=chunk)
    from settlement.services.payouts import settlement_advance

    return lambda target_id, chunk: settlement_advance(settlement_id=target_id, chunk=chunk)


def _worker(kind: str, target_id: str, chunk: int, ready, go, results) -> None:
    """One worker: what a Celery worker running settle_market (or reverse_settlement) does, without the broker round trips."""
    _setup_django()
    from django.db import connection

    advance = _advance(kind)
    queries = 0

    def count(execute, sql, params, many, context):
        nonlocal queries
        queries += 1
        return execute(sql, params, many, context)

    connection.ensure_connection()
    ready.wait()
    go.wait()
    cpu_started = _own_cpu()
    started = time.monotonic()
    passes, done = 0, False
    with connection.execute_wrapper(count):
        while time.monotonic() - started < WORKER_TIME_LIMIT:
            passes += 1
            if advance(target_id, chunk):
                done = True
                break
    ended = time.monotonic()
    results.put({"ended": ended, "cpu": _own_cpu() - cpu_started, "passes": passes, "queries": queries, "done": done})


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()  # fields from the 3rd (state) on


def _pid_cpu(pid: int, *, reaped: bool = False) -> float:
    """CPU seconds of a process (all its threads); with reaped, plus its waited-for children's."""
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


def _machine_cpu() -> float:
    """CPU seconds the whole machine spent busy (all processes, everyone's)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return (sum(values) - values[3] - values[4]) / TICK  # minus idle and iowait


class CpuMeter:
    """CPUs busy during a window: this benchmark's (its processes, PostgreSQL, the wallet server) and everyone else's."""

    def __init__(self, postmaster: int, server_pid: int | None):
        self.postmaster, self.server_pid = postmaster, server_pid

    def _sample(self) -> tuple[float, ...]:
        server = _pid_cpu(self.server_pid) if self.server_pid else 0.0
        return time.monotonic(), _machine_cpu(), _pg_cpu(self.postmaster), server, _own_cpu()

    def start(self) -> None:
        self.before = self._sample()

    def stop(self, worker_cpu: float) -> tuple[float, float]:
        """(CPUs used by the benchmark, CPUs used by other work) on average over the window."""
        seconds, machine, *ours = (a - b for a, b in zip(self._sample(), self.before, strict=True))
        mine = worker_cpu + sum(ours)
        return mine / seconds, max(0.0, machine - mine) / seconds


def _pay(target_id: str, *, workers: int, chunk: int, meter: CpuMeter, kind: str = "settlement") -> dict:
    """N worker processes started and connected before the clock starts, then timed until all are done."""
    ctx = mp.get_context("spawn")
    ready, go, results = ctx.Barrier(workers + 1), ctx.Barrier(workers + 1), ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(kind, target_id, chunk, ready, go, results)) for _ in range(workers)]
    for p in procs:
        p.start()
    ready.wait(timeout=120)  # every worker has imported Django and connected
    meter.start()
    go.wait(timeout=10)
    started = time.monotonic()
    reports = [results.get(timeout=WORKER_TIME_LIMIT + 60) for _ in procs]
    ended = max(r["ended"] for r in reports)
    for p in procs:
        p.join(timeout=30)
    time.sleep(0.2)  # let the workers' backends exit (their CPU then counts in the postmaster's reaped children)
    ours, other = meter.stop(sum(r["cpu"] for r in reports))
    return {
        "seconds": ended - started,
        "queries": sum(r["queries"] for r in reports),
        "passes": sum(r["passes"] for r in reports),
        "done": all(r["done"] for r in reports),
        "cpus_ours": ours,
        "cpus_other": other,
    }


class WalletServerProcess:
    """The reference operator wallet server in its own process (manage.py run_wallet_server --control)."""

    def __init__(self, secret: str):
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "manage.py"), "run_wallet_server", "--port", "0", "--secret", secret, "--control"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("run_wallet_server exited before printing its address")
        self.url = json.loads(line)["url"]

    def summary(self, transaction_ids: list[str] | None = None) -> dict:
        """Counts, not the whole state (which holds every transaction: hundreds of MB at this size)."""
        return self._control({"action": "summary", **({"transaction_ids": transaction_ids} if transaction_ids is not None else {})})[
            "summary"
        ]

    def reset_peak_in_flight(self) -> None:
        self._control({"action": "reset_peak_in_flight"})

    def _control(self, command: dict) -> dict:
        request = urllib.request.Request(
            f"{self.url}/_control", data=json.dumps(command).encode(), headers={"Content-Type": "application/json"}, method="POST"
        )
        with urllib.request.urlopen(request, timeout=120) as response:  # noqa: S310 - loopback URL we started
            return json.loads(response.read())

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def _shares(i: int) -> Decimal:
    # 10.000456 .. 19.999456 shares: every payout and cost basis needs rounding down to the cent.
    return Decimal(10 + i % 10) + Decimal(i % 1000) / 1000 + Decimal("0.000456")


def _avg_price(i: int) -> Decimal:
    return Decimal(35 + i % 30) + Decimal("0.25")


def _seed_players(operator, n: int, *, internal: bool) -> list:
    from casino.models import Player
    from wallets.models import PlayerWallet

    players = [Player(operator=operator, external_id=f"settle-{operator.name}-{i:06d}") for i in range(n)]
    Player.objects.bulk_create(players, batch_size=2000)
    if internal:
        PlayerWallet.objects.bulk_create([PlayerWallet(player=p, balance=Decimal("0")) for p in players], batch_size=2000)
    return players


def _seed_market(players: list, operator, n: int) -> tuple[str, dict]:
    """A market with n open positions (even i: YES, odd i: NO) and its exposure book; returns (id, amounts due)."""
    from django.db import transaction

    from casino.models import Market, MarketStatus, Position, PositionStatus
    from casino.services.exposure import exposure_apply

    market_id = f"0xbenchsettle{uuid.uuid4().hex[:12]}"
    Market.objects.create(id=market_id, title="Settlement benchmark", status=MarketStatus.OPEN)
    positions, totals = [], {"yes": [Decimal(0), Decimal(0)], "no": [Decimal(0), Decimal(0)]}
    due = {"yes": Decimal(0), "no": Decimal(0), "void": Decimal(0), "yes_n": 0, "no_n": 0}
    for i in range(n):
        outcome, shares, price = ("yes" if i % 2 == 0 else "no"), _shares(i), _avg_price(i)
        cost = (shares * price / 100).quantize(CENT, rounding=ROUND_FLOOR)
        positions.append(
            Position(
                player=players[i],
                operator=operator,
                market_id=market_id,
                outcome=outcome,
                shares=shares,
                avg_price=price,
                status=PositionStatus.OPEN,
            )
        )
        totals[outcome][0] += shares
        totals[outcome][1] += cost
        due[outcome] += shares.quantize(CENT, rounding=ROUND_FLOOR)
        due[f"{outcome}_n"] += 1
        due["void"] += cost
    Position.objects.bulk_create(positions, batch_size=2000)
    with transaction.atomic():
        for outcome, (shares, cash) in totals.items():
            if shares:
                exposure_apply(
                    market_id=market_id, outcome=outcome, shares_delta=shares, cash_delta=cash, cap=BIG_CAP, global_cap=BIG_CAP, locked=True
                )
    return market_id, due


def _warm_up(tag: str) -> None:
    """Settle and pay a 10-position market once, so the timed decisions do not pay for first-use costs
    (imports, query compilation, the Celery producer's first connection to Redis)."""
    from casino.services.credentials import operator_create
    from settlement.services.decide import market_settle
    from settlement.services.payouts import settlement_advance

    operator = operator_create(name=f"settle-warm-{tag}").operator
    market_id, _ = _seed_market(_seed_players(operator, 10, internal=True), operator, 10)
    settlement = market_settle(market_id=market_id, action="resolve", outcome="yes", reason="warm-up")
    while not settlement_advance(settlement_id=settlement.pk):
        pass


def _run_scenario(label: str, *, kind: str, operator, players, n: int, action: str, workers: int, chunk: int, server, meter) -> dict:
    from django.db.models import Count, Sum

    from casino.models import Market, Position
    from casino.services.exposure import category_exposure_bound, exposure_book, global_exposure_bound
    from settlement.models import Payout, Settlement
    from settlement.services.decide import market_settle
    from wallets.models import LedgerEntry, OperatorWallet, PlayerWallet, WalletOperation

    seed_started = time.monotonic()
    market_id, due = _seed_market(players, operator, n)
    seed_seconds = time.monotonic() - seed_started
    bound_with_market = global_exposure_bound()
    category_bound_with_market = category_exposure_bound(category="")  # the seeded market has no category
    worst = exposure_book(market_id=market_id).worst_case_loss
    outcome = "yes" if action == "resolve" else None
    expected_n = due["yes_n"] if action == "resolve" else n
    expected_sum = due["yes"] if action == "resolve" else due["void"]
    ledger_type = "payout" if action == "resolve" else "refund"
    if kind == "internal":
        balances_before = PlayerWallet.objects.filter(player__operator=operator).aggregate(s=Sum("balance"))["s"]
    else:
        balances_before = Decimal(server.summary()["total_balance"])
        server.reset_peak_in_flight()

    started = time.monotonic()
    settlement = market_settle(market_id=market_id, action=action, outcome=outcome, reason="benchmark")
    decision_ms = (time.monotonic() - started) * 1000
    paid = _pay(str(settlement.pk), workers=workers, chunk=chunk, meter=meter)

    checks: list[tuple[str, bool, str]] = []

    def check(name: str, ok: bool, detail: str = "") -> None:
        checks.append((name, bool(ok), detail))

    settlement = Settlement.objects.get(pk=settlement.pk)
    check("workers finished", paid["done"])
    check("settlement completed", settlement.status == "completed", settlement.status)
    check("settlement totals", (settlement.total_positions, settlement.total_winners) == (n, expected_n))
    check("settlement total_payout == expected", settlement.total_payout == expected_sum, f"{settlement.total_payout} vs {expected_sum}")
    statuses = {row["status"]: row["c"] for row in Payout.objects.filter(settlement=settlement).values("status").annotate(c=Count("pk"))}
    check(
        "payouts paid, one per position due something",
        statuses == {"paid": expected_n},  # a losing position is closed with no payout row
        str(statuses),
    )
    ledger = LedgerEntry.objects.filter(round_id=str(settlement.pk))
    ledger_agg = ledger.aggregate(s=Sum("amount"))
    check(
        f"one {ledger_type} ledger row per payout due, no other row",
        ledger.filter(type=ledger_type).count() == expected_n == ledger.count(),
    )
    check("ledger sum == expected", ledger_agg["s"] == expected_sum, f"{ledger_agg['s']} vs {expected_sum}")
    tx_ids = {str(t) for t in Payout.objects.filter(settlement=settlement, status="paid").values_list("transaction_id", flat=True)}
    check("ledger ids == payout transaction ids", {str(i) for i in ledger.values_list("id", flat=True)} == tx_ids)
    credit_calls = peak = limit = None
    if kind == "internal":
        after = PlayerWallet.objects.filter(player__operator=operator).aggregate(s=Sum("balance"))["s"]
        check("house wallets up by exactly the payout", after - balances_before == expected_sum, f"{after - balances_before}")
        check("every house ledger sums to its balance, none negative", _ledgers_off(operator) == 0)
    else:
        summary = server.summary(sorted(tx_ids))
        delta = Decimal(summary["total_balance"]) - balances_before
        check("reference server total up by exactly the payout", delta == expected_sum, f"{delta} vs {expected_sum}")
        ids = summary["for_ids"]
        check(
            "reference server: one applied OK credit per payout",
            ids["recorded"] == expected_n and ids["applied"] == {"credit OK": expected_n},
            str(ids["applied"]),
        )
        credit_calls = ids["requests"].get("credit", 0)
        check("no credit requested twice", not ids["requested_more_than_once"], str(ids["requested_more_than_once"]))
        peak, limit = summary["peak_in_flight"], OperatorWallet.objects.get(operator=operator).max_concurrent_calls
        check("calls in flight <= the operator's max_concurrent_calls per worker", peak <= limit * workers, f"{peak} > {limit} x {workers}")
        ops = WalletOperation.objects.filter(round_id=str(settlement.pk))
        check("wallet operations all OK", ops.count() == ops.filter(status="ok").count() == expected_n)
    position_statuses = set(Position.objects.filter(market_id=market_id).values_list("status", flat=True))
    check("every position resolved/voided", position_statuses == {"resolved" if action == "resolve" else "voided"}, str(position_statuses))
    market = Market.objects.get(pk=market_id)
    check("market resolved/voided", market.status == ("resolved" if action == "resolve" else "voided"), market.status)
    book = exposure_book(market_id=market_id)
    check("market exposure zero", book.yes_shares == book.no_shares == book.cash_in == 0, str(book))
    check("global bound lowered by the market's worst case", global_exposure_bound() == bound_with_market - worst)
    check("category bound lowered by the market's worst case", category_exposure_bound(category="") == category_bound_with_market - worst)

    return {
        "label": label,
        "kind": kind,
        "action": action,
        "positions": n,
        "workers": workers,
        "chunk": chunk,
        "seed_s": seed_seconds,
        "decision_ms": decision_ms,
        "payouts": expected_n,
        "payout_s": paid["seconds"],
        "rate": expected_n / paid["seconds"],
        "queries_per_payout": paid["queries"] / expected_n,
        "passes": paid["passes"],
        "credit_calls": credit_calls,
        "peak_in_flight": peak,
        "max_concurrent_calls": limit,
        "cpus_ours": paid["cpus_ours"],
        "cpus_other": paid["cpus_other"],
        "total": expected_sum,
        "checks": checks,
    }


def _ledgers_off(operator) -> int:
    """House wallets of the operator's players whose ledger does not sum to the balance, or below zero."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT count(*) FROM wallet_balances w JOIN casino_players p ON p.id = w.player_id
            WHERE p.operator_id = %s AND (w.balance < 0 OR w.balance <> (SELECT coalesce(sum(l.amount), 0) FROM s2s_transactions l
                                                                          WHERE l.player_id = w.player_id))
            """,
            [operator.pk],
        )
        return cursor.fetchone()[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--positions", type=int, default=100000)
    parser.add_argument("--chunk", type=int, default=None, help="payouts per settlement_advance call (default: the Celery task's)")
    parser.add_argument("--workers", default="1,2", help="comma-separated worker-process counts to run each wallet kind with")
    parser.add_argument(
        "--kinds",
        default="internal,s2s,internal-void,s2s-void",
        help="among internal, s2s, internal-void, s2s-void (voids are run with 1 worker)",
    )
    parser.add_argument("--s2s-timeout", type=Decimal, default=Decimal("10"), help="OperatorWallet.timeout_seconds of the S2S operator")
    parser.add_argument("--max-other", type=float, default=0.2, help="a row disturbed by more CPUs of other work is run again")
    parser.add_argument("--retries", type=int, default=1, help="how many times a disturbed row is run again (least disturbed kept)")
    parser.add_argument("--retry-budget", type=float, default=900, help="no more re-runs once this many seconds have passed")
    parser.add_argument("--write", action="store_true", help="append the result to --results")
    parser.add_argument("--results", type=Path, default=BENCH / "RESULTS.md", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.positions < 2:
        parser.error("--positions must be at least 2")
    worker_counts = [int(w) for w in args.workers.split(",") if w.strip()]
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    if not worker_counts or min(worker_counts) < 1 or set(kinds) - {"internal", "s2s", "internal-void", "s2s-void"}:
        parser.error("bad --workers or --kinds")
    if "DATABASE_URL" not in os.environ or "REDIS_URL" not in os.environ:
        sys.exit(
            "run under scripts/with-services (needs PostgreSQL and Redis; without REDIS_URL Celery is eager and would pay in the request)"
        )

    _setup_django()
    from django.core.management import call_command

    from settlement.services.payouts import CHUNK

    args.chunk = args.chunk or CHUNK
    call_command("migrate", verbosity=0)
    from django.db import connection

    from casino.services.credentials import operator_create
    from wallets.models import OperatorWallet

    pg_version = connection.cursor().connection.info.server_version
    tag = uuid.uuid4().hex[:6]
    n = args.positions
    runs, server = [], None
    wall_started = time.monotonic()
    try:
        internal_op = internal_players = s2s_op = s2s_players = None
        if any(k.startswith("internal") for k in kinds):
            internal_op = operator_create(name=f"settle-int-{tag}").operator
            internal_players = _seed_players(internal_op, n, internal=True)
        if any(k.startswith("s2s") for k in kinds):
            issued = operator_create(name=f"settle-s2s-{tag}", wallet_mode="s2s", wallet_url="http://127.0.0.1:1")
            server = WalletServerProcess(issued.wallet_secret)
            OperatorWallet.objects.filter(operator=issued.operator).update(base_url=server.url, timeout_seconds=args.s2s_timeout)
            s2s_op = issued.operator
            s2s_players = _seed_players(s2s_op, n, internal=False)  # auto-created at the wallet server (balance 0) on first credit
        _warm_up(tag)
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            postmaster = int(_stat(cursor.fetchone()[0])[1])
        meter = CpuMeter(postmaster, server.proc.pid if server else None)
        plan = []
        for kind in kinds:
            if kind == "internal-void":
                plan.append(("internal (void: refunds)", "internal", internal_op, internal_players, "void", 1))
                continue
            if kind == "s2s-void":
                plan.append(("S2S (void: refunds)", "s2s", s2s_op, s2s_players, "void", 1))
                continue
            op, players = (internal_op, internal_players) if kind == "internal" else (s2s_op, s2s_players)
            label = "internal" if kind == "internal" else "S2S (reference server, own process)"
            plan += [(label, kind, op, players, "resolve", w) for w in worker_counts]
        for label, kind, op, players, action, workers in plan:
            attempts = []
            while True:
                result = _run_scenario(
                    label,
                    kind=kind,
                    operator=op,
                    players=players,
                    n=n,
                    action=action,
                    workers=workers,
                    chunk=args.chunk,
                    server=server,
                    meter=meter,
                )
                attempts.append(result)
                _print_result(result)
                disturbed = result["cpus_other"] > args.max_other
                if not disturbed or len(attempts) > args.retries or time.monotonic() - wall_started > args.retry_budget:
                    break
                print(f"    {result['cpus_other']:.2f} CPUs of other work: running it again", flush=True)
            best = min(attempts, key=lambda r: r["cpus_other"])
            best["attempts"] = len(attempts)
            best["checks"] = [c for r in attempts for c in r["checks"]]  # every attempt must have passed
            runs.append(best)
        if s2s_op is not None:
            baseline_calls = min(n // 2, 10000)
            baseline_s = _s2s_baseline(s2s_op, s2s_players, baseline_calls)
            print(
                f"baseline: {baseline_calls} signed credit calls alone in {baseline_s:.1f} s = {baseline_calls / baseline_s:.0f}/s",
                flush=True,
            )
    finally:
        if server is not None:
            server.stop()
    total_seconds = time.monotonic() - wall_started

    all_ok = all(ok for r in runs for _, ok, _ in r["checks"])
    table = _table(runs)
    print(table)
    print(f"all checks passed: {all_ok}; total {total_seconds:.0f} s")
    if not all_ok:
        sys.exit(1)
    if not args.write:
        return
    check_names = list(dict.fromkeys(name for r in runs for name, _, _ in r["checks"]))
    notes = []
    if s2s_op is not None:
        notes.append(
            f"Baseline, not a settlement: {baseline_calls:,} signed credit calls alone (the product's `S2SWalletClient`, "
            f"one after another, no database) to the same server: {baseline_s:.1f} s = {baseline_calls / baseline_s:,.0f} calls/s."
        )
    durable = os.environ.get("PG_DURABLE") == "1"
    command = f"{'PG_DURABLE=1 ' if durable else ''}scripts/with-services .venv/bin/python bench/settlement.py {' '.join(sys.argv[1:])}"
    text = (
        f"{BEGIN}\n## Settlement of {n:,} positions\n\n"
        "Generated by `bench/settlement.py`; a new run with `--write` rewrites this block (up to the end marker), "
        "the findings after it are written by hand.\n\n"
        + (
            f"- Command: `make bench-settlement` (= `scripts/bootstrap requirements-dev.txt && {command}`)\n"
            if sys.argv[1:] == ["--write"] and durable
            else f"- Command: `{command}`\n"
        )
        + f"- Date: {time.strftime('%Y-%m-%d %H:%M %Z')}; machine: {len(os.sched_getaffinity(0))} CPUs (nproc), "
        f"{platform.python_implementation()} {platform.python_version()}, PostgreSQL {pg_version // 10000}.{pg_version % 10000} "
        + ("with fsync and synchronous_commit on (PG_DURABLE=1)" if durable else "**without fsync** (PG_DURABLE not set)")
        + ", Redis (cache, circuit breaker, Celery broker)\n"
        f"- Code measured: {_commit()}\n"
        f"- Data: per row a fresh market with {n:,} open positions, half YES and half NO, one player each, seeded in bulk "
        f"(not through the trade API), with its exposure book; resolved YES, so a resolve pays {n // 2:,} winners; a void "
        f"refunds all {n:,} their cost basis\n"
        "- *Decision ms*: `market_settle` (lock the market, the totals from one aggregate over the open positions, the Settlement; "
        "no row per position), what the staff request runs. Celery is not eager and no worker runs, so the benchmark pays itself\n"
        f"- *Payout seconds*: N worker processes (like Celery workers, started and connected before the clock starts) calling "
        f"`settlement_advance(chunk={args.chunk})` until it returns True; each chunk of {args.chunk} positions creates their payouts "
        "(losers: nothing due), closes the positions and pays. Internal: house balances and ledger. S2S: each payout is a "
        "signed HTTP credit to the reference wallet server (`manage.py run_wallet_server --control`, its own process, threaded, "
        "loopback, no latency added), at most the operator's `max_concurrent_calls` (default 8) in flight per worker, timed "
        "together with everything the house records around it\n"
        "- *S2S calls per payout*: credit requests received by the server for this settlement's payouts, per payout; "
        "*peak in flight*: the most wallet requests the server handled at the same time during the row\n"
        "- *CPUs busy*: average CPUs used during the payouts by the benchmark (workers, PostgreSQL, wallet server) and by other "
        f"work on the machine (shared); a row disturbed by more than {args.max_other} CPUs of other work is run again (up to "
        f"{args.retries} time(s), within {args.retry_budget:.0f} s of the start) and the least disturbed run is kept\n\n"
        + _targets(runs)
        + "\n\n"
        + table
        + "\n\n"
        + "".join(f"{note}\n\n" for note in notes)
        + "Correctness, checked after every row, all passed: "
        + "; ".join(check_names)
        + f".\n{END}\n"
    )
    _write_block(args.results, text)
    print(f"wrote the settlement block of {args.results}")


BEGIN = "<!-- BEGIN bench/settlement.py output: rewritten by every run with --write -->"
END = "<!-- END bench/settlement.py output -->"


def _write_block(path: Path, text: str, begin: str = BEGIN, end: str = END) -> None:
    """Replace the block between the markers (or append it)."""
    current = path.read_text() if path.exists() else ""
    if begin in current and end in current:
        head, rest = current.split(begin, 1)
        current = head + text.rstrip("\n") + rest.split(end, 1)[1]
    else:
        current = current.rstrip("\n") + "\n\n" + text
    path.write_text(current)


def _commit() -> str:
    try:
        line = subprocess.run(["git", "log", "-1", "--format=%h %s"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown (no git)"
    return f"`{line.strip()[:100]}`" + (", with uncommitted changes" if dirty.strip() else ", clean work tree")


def _table(runs: list[dict]) -> str:
    lines = [
        "| wallet kind | action | workers | decision ms | payouts | payout seconds | payouts/s | SQL queries per payout"
        " | S2S calls per payout | peak in flight (limit) | CPUs busy: bench / other |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in runs:
        s2s = r["credit_calls"] is not None
        lines.append(
            f"| {r['label']} | {r['action']} | {r['workers']} | {r['decision_ms']:,.0f} | {r['payouts']:,} | {r['payout_s']:.1f} | "
            f"{r['rate']:,.0f} | {r['queries_per_payout']:.2f} | "
            + (f"{r['credit_calls'] / r['payouts']:.2f} | {r['peak_in_flight']} ({r['max_concurrent_calls']})" if s2s else "- | -")
            + f" | {r['cpus_ours']:.2f} / {r['cpus_other']:.2f} |"
        )
    return "\n".join(lines)


def _targets(runs: list[dict]) -> str:
    """The issue's targets against this run (one worker for the payout rates)."""

    def verdict(ok: bool) -> str:
        return "**PASS**" if ok else "**MISS**"

    rows = ["| target | measured | verdict |", "|---|---|---|"]
    slowest = max(r["decision_ms"] for r in runs)
    rows.append(f"| decision <= 2 s (every row) | slowest {slowest / 1000:.1f} s | {verdict(slowest <= 2000)} |")
    for kind, action, target in (("internal", "resolve", 5000), ("internal", "void", 5000), ("s2s", "resolve", 500), ("s2s", "void", 500)):
        one = [r for r in runs if r["kind"] == kind and r["action"] == action and r["workers"] == 1]
        if one:
            rate = one[0]["rate"]
            rows.append(f"| {kind} {action} payouts, 1 worker >= {target:,}/s | {rate:,.0f}/s | {verdict(rate >= target)} |")
    return "\n".join(rows)


def _print_result(result: dict) -> None:
    failed = [c for c in result["checks"] if not c[1]]
    print(
        f"{result['label']:36s} {result['action']:7s} workers={result['workers']} decision={result['decision_ms']:7.0f} ms  "
        f"payouts={result['payouts']:6d} in {result['payout_s']:6.1f} s = {result['rate']:6.0f}/s  "
        f"queries/payout={result['queries_per_payout']:.2f}  CPUs bench/other={result['cpus_ours']:.2f}/{result['cpus_other']:.2f}"
        + (f"  credit calls={result['credit_calls']} in flight<={result['peak_in_flight']}" if result["credit_calls"] is not None else "")
        + f"  checks {len(result['checks']) - len(failed)}/{len(result['checks'])} ok",
        flush=True,
    )
    for name, _, detail in failed:
        print(f"    CHECK FAILED: {name} {detail}", flush=True)


def _s2s_baseline(operator, players, count: int) -> float:
    """The wallet calls alone: signed credits through the product's client, one after another, no database."""
    from wallets.services.operations import WalletTarget

    client = WalletTarget.for_operator(operator.pk).client()
    started = time.monotonic()
    for i in range(count):
        body = {
            "transaction_id": str(uuid.uuid4()),
            "user_id": players[i % len(players)].external_id,
            "currency": "USD",
            "amount": "1.00",
            "round_id": "baseline",
            "type": "payout",
            "description": "baseline",
        }
        reply = client.call("credit", body)
        if not reply.ok:
            raise RuntimeError(f"baseline credit refused: {reply.status}")
    return time.monotonic() - started


if __name__ == "__main__":
    main()
