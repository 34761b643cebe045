"""Reversing the settlement of a market with 100,000 positions (SPEC §12), per wallet kind.

    make bench-reversal   (= PG_DURABLE=1 scripts/with-services .venv/bin/python bench/reversal.py --write)
    a quicker run:         ... bench/reversal.py --positions 10000

Each row seeds a market like bench/settlement.py (half YES, half NO, one player each), settles it
(resolve YES: 50,000 payouts; void: 100,000 refunds) and pays it with one worker (not timed here:
bench/settlement.py measures that), then, timed:

1. the reversal decision: ``settlement_reverse`` (what ``POST resolve`` with ``action: reverse``
   runs: one reversal item per payout paid, the positions reopened, the exposure book rebuilt
   from the records, the market closed);
2. taking the money back: ``--workers`` processes call ``reversal_advance(chunk=--chunk)`` until it
   returns True. Internal: what each house balance holds (here all of it). S2S: a signed debit
   of type payout_reversal/refund_reversal per payout to the reference wallet server (its own
   process), at most the operator's ``max_concurrent_calls`` in flight per worker.

The rate is compared with the payouts' own rate measured on the same row (the same market, the
same machine, minutes apart): "comparable" means within a factor of two either way.

Checks after each row, independent of the reversal code: every player's balance (house wallets,
or the reference server's total) back to exactly what it was before the settlement; one reversal
ledger row per payout, linked to it, summing to minus the payouts; no debt; every item done;
every position open again; the exposure book equal to the seeded one; the market closed; for
S2S one applied debit per item at the server, none requested twice, and never more calls in
flight than the bound. A failed check exits non-zero and writes nothing.
"""

import argparse
import importlib.util
import os
import platform
import sys
import time
import uuid
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
_spec = importlib.util.spec_from_file_location("bench_settlement", BENCH / "settlement.py")
sb = importlib.util.module_from_spec(_spec)
sys.modules["bench_settlement"] = sb  # so spawned workers find its functions (this file runs again in them)
_spec.loader.exec_module(sb)  # also puts the project (not bench/) on the import path and sets DJANGO_SETTINGS_MODULE

BEGIN = "<!-- BEGIN bench/reversal.py output: rewritten by every run with --write -->"
END = "<!-- END bench/reversal.py output -->"


def _row(label: str, *, kind: str, operator, players, n: int, action: str, workers: int, chunk: int, server, meter) -> dict:
    from django.db.models import Count, Sum

    from casino.models import Market, Position, Trade
    from casino.services.exposure import exposure_book
    from settlement.models import Payout, Reversal, ReversalItem
    from settlement.services.decide import market_settle
    from settlement.services.reversal import settlement_reverse
    from wallets.models import LedgerEntry, OperatorWallet, PlayerDebt, PlayerWallet

    market_id, due = sb._seed_market(players, operator, n)
    book_seeded = exposure_book(market_id=market_id)
    if kind == "internal":
        balances_before = PlayerWallet.objects.filter(player__operator=operator).aggregate(s=Sum("balance"))["s"]
    else:
        balances_before = Decimal(server.summary()["total_balance"])
    settlement = market_settle(market_id=market_id, action=action, outcome="yes" if action == "resolve" else None, reason="benchmark")
    from settlement.services.payouts import CHUNK as PAYOUT_CHUNK

    paid = sb._pay(str(settlement.pk), workers=1, chunk=PAYOUT_CHUNK, meter=meter)  # as the settle task pays
    expected_n = due["yes_n"] if action == "resolve" else n
    expected_sum = due["yes"] if action == "resolve" else due["void"]
    if server is not None:
        server.reset_peak_in_flight()

    started = time.monotonic()
    reversal = settlement_reverse(market_id=market_id, reason="benchmark")
    decision_ms = (time.monotonic() - started) * 1000
    taken = sb._pay(str(reversal.pk), workers=workers, chunk=chunk, meter=meter, kind="reversal")

    checks: list[tuple[str, bool, str]] = []

    def check(name: str, ok: bool, detail: str = "") -> None:
        checks.append((name, bool(ok), detail))

    reversal = Reversal.objects.get(pk=reversal.pk)
    check("payouts paid before the reversal", paid["done"])
    check("workers finished", taken["done"])
    check("reversal completed", reversal.status == "completed", reversal.status)
    check(
        "reversal totals",
        (reversal.total_positions, reversal.total_items, reversal.total_reversed, reversal.total_uncollected)
        == (n, expected_n, expected_sum, Decimal("0")),
        f"{reversal.total_positions} {reversal.total_items} {reversal.total_reversed} {reversal.total_uncollected}",
    )
    items = dict(ReversalItem.objects.filter(reversal=reversal).values("status").annotate(c=Count("pk")).values_list("status", "c"))
    check("every item done", items == {"done": expected_n}, str(items))
    ledger_type = "payout_reversal" if action == "resolve" else "refund_reversal"
    rows = LedgerEntry.objects.filter(round_id=str(settlement.pk), type=ledger_type)
    check(f"one {ledger_type} row per payout", rows.count() == expected_n)
    check("reversal rows sum to minus the payouts", rows.aggregate(s=Sum("amount"))["s"] == -expected_sum)
    payout_ids = set(Payout.objects.filter(settlement=settlement).exclude(amount=0).values_list("transaction_id", flat=True))
    check("each reversal row names its payout", set(rows.values_list("reference_id", flat=True)) == payout_ids)
    check("no debt", not PlayerDebt.objects.filter(player__operator=operator, amount__gt=0).exists())
    calls = peak = limit = None
    if kind == "internal":
        after = PlayerWallet.objects.filter(player__operator=operator).aggregate(s=Sum("balance"))["s"]
        check("house wallets back to before the settlement", after == balances_before, f"{after} vs {balances_before}")
        check("every house ledger sums to its balance, none negative", sb._ledgers_off(operator) == 0)
    else:
        ids = [str(t) for t in ReversalItem.objects.filter(reversal=reversal).values_list("transaction_id", flat=True)]
        summary = server.summary(ids)
        delta = Decimal(summary["total_balance"]) - balances_before
        check("reference server total back to before the settlement", delta == 0, str(delta))
        got = summary["for_ids"]
        check(
            "one applied OK debit per item",
            got["recorded"] == expected_n and got["applied"] == {"debit OK": expected_n},
            str(got["applied"]),
        )
        calls = got["requests"].get("debit", 0)
        check("no debit requested twice", not got["requested_more_than_once"])
        peak, limit = summary["peak_in_flight"], OperatorWallet.objects.get(operator=operator).max_concurrent_calls
        check("calls in flight <= max_concurrent_calls per worker", peak <= limit * workers, f"{peak} > {limit} x {workers}")
    statuses = set(Position.objects.filter(market_id=market_id).values_list("status", flat=True))
    check("every position open again", statuses == {"open"}, str(statuses))
    # The book is rebuilt from the records: shares from the open positions, cash from the trades. The seeded
    # positions have no trades (rows created in bulk), so the cash is the trades' (none) and the shares the seeded ones.
    book = exposure_book(market_id=market_id)
    trades_cash = Trade.objects.filter(market_id=market_id).aggregate(s=Sum("cost"))["s"] or Decimal("0")
    check(
        "exposure book rebuilt: seeded shares, the trades' cash",
        (book.yes_shares, book.no_shares, book.cash_in) == (book_seeded.yes_shares, book_seeded.no_shares, trades_cash),
        str(book),
    )
    check("market closed", Market.objects.get(pk=market_id).status == "closed")
    return {
        "label": label,
        "kind": kind,
        "action": action,
        "workers": workers,
        "positions": n,
        "decision_ms": decision_ms,
        "items": expected_n,
        "seconds": taken["seconds"],
        "rate": expected_n / taken["seconds"],
        "payout_rate": expected_n / paid["seconds"],
        "queries_per_item": taken["queries"] / expected_n,
        "calls": calls,
        "peak": peak,
        "limit": limit,
        "cpus_ours": taken["cpus_ours"],
        "cpus_other": taken["cpus_other"],
        "checks": checks,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--positions", type=int, default=100000)
    parser.add_argument("--chunk", type=int, default=None)
    parser.add_argument("--workers", default="1", help="comma-separated worker counts for the resolve rows")
    parser.add_argument("--kinds", default="internal,s2s,internal-void,s2s-void")
    parser.add_argument("--write", action="store_true")
    parser.add_argument("--results", type=Path, default=BENCH / "RESULTS.md", help=argparse.SUPPRESS)
    args = parser.parse_args()
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    worker_counts = [int(w) for w in args.workers.split(",") if w.strip()]
    if "DATABASE_URL" not in os.environ or "REDIS_URL" not in os.environ:
        sys.exit("run under scripts/with-services (needs PostgreSQL and Redis)")
    sb._setup_django()
    from django.core.management import call_command
    from django.db import connection

    from casino.services.credentials import operator_create
    from settlement.services.reversal import CHUNK
    from wallets.models import OperatorWallet

    args.chunk = args.chunk or CHUNK
    call_command("migrate", verbosity=0)
    pg_version = connection.cursor().connection.info.server_version
    tag, n, runs, server = uuid.uuid4().hex[:6], args.positions, [], None
    started = time.monotonic()
    try:
        ops = {}
        if any(k.startswith("internal") for k in kinds):
            op = operator_create(name=f"rev-int-{tag}").operator
            ops["internal"] = (op, sb._seed_players(op, n, internal=True))
        if any(k.startswith("s2s") for k in kinds):
            issued = operator_create(name=f"rev-s2s-{tag}", wallet_mode="s2s", wallet_url="http://127.0.0.1:1")
            server = sb.WalletServerProcess(issued.wallet_secret)
            OperatorWallet.objects.filter(operator=issued.operator).update(base_url=server.url, timeout_seconds=Decimal("10"))
            ops["s2s"] = (issued.operator, sb._seed_players(issued.operator, n, internal=False))
        sb._warm_up(tag)
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            postmaster = int(sb._stat(cursor.fetchone()[0])[1])
        meter = sb.CpuMeter(postmaster, server.proc.pid if server else None)
        for kind in kinds:
            base = kind.split("-")[0]
            action = "void" if kind.endswith("-void") else "resolve"
            label = "internal" if base == "internal" else "S2S (reference server, own process)"
            op, players = ops[base]
            for workers in worker_counts if action == "resolve" else [1]:
                result = _row(
                    label, kind=base, operator=op, players=players, n=n, action=action, workers=workers, chunk=args.chunk, server=server,
                    meter=meter,
                )  # fmt: skip
                failed = [c for c in result["checks"] if not c[1]]
                print(
                    f"{label:36s} {action:7s} workers={workers} decision={result['decision_ms']:7.0f} ms  items={result['items']} in "
                    f"{result['seconds']:.1f} s = {result['rate']:.0f}/s (payouts {result['payout_rate']:.0f}/s)  "
                    f"checks {len(result['checks']) - len(failed)}/{len(result['checks'])} ok",
                    flush=True,
                )
                for name, _, detail in failed:
                    print(f"    CHECK FAILED: {name} {detail}", flush=True)
                runs.append(result)
    finally:
        if server is not None:
            server.stop()
    all_ok = all(ok for r in runs for _, ok, _ in r["checks"])
    table = _table(runs)
    print(table)
    print(f"all checks passed: {all_ok}; total {time.monotonic() - started:.0f} s")
    if not all_ok:
        sys.exit(1)
    if not args.write:
        return
    durable = os.environ.get("PG_DURABLE") == "1"
    command = f"{'PG_DURABLE=1 ' if durable else ''}scripts/with-services .venv/bin/python bench/reversal.py {' '.join(sys.argv[1:])}"
    checks = list(dict.fromkeys(name for r in runs for name, _, _ in r["checks"]))
    text = (
        f"{BEGIN}\n## Reversal of a settlement of {n:,} positions\n\n"
        "Generated by `bench/reversal.py` (`--write` rewrites this block). Per row: a market seeded like the settlement benchmark, "
        "settled and paid with one worker, then reversed: the *decision* is `settlement_reverse` (what `POST resolve` with "
        "`action: reverse` runs), the *taking back* is N worker processes calling `reversal_advance` until done; the payouts' own "
        "rate on the same row is shown beside it.\n\n"
        + (
            f"- Command: `make bench-reversal` (= `scripts/bootstrap requirements-dev.txt && {command}`)\n"
            if sys.argv[1:] == ["--write"] and durable
            else f"- Command: `{command}`\n"
        )
        + f"- Date: {time.strftime('%Y-%m-%d %H:%M %Z')}; machine: {len(os.sched_getaffinity(0))} CPUs, "
        f"{platform.python_implementation()} {platform.python_version()}, PostgreSQL {pg_version // 10000}.{pg_version % 10000}"
        + (" with fsync and synchronous_commit on (PG_DURABLE=1)" if durable else " **without fsync**")
        + f"\n- Code measured: {sb._commit()}\n\n"
        + _targets(runs)
        + "\n\n"
        + table
        + "\n\nCorrectness, checked after every row, all passed: "
        + "; ".join(checks)
        + f".\n{END}\n"
    )
    sb._write_block(args.results, text, BEGIN, END)
    print(f"wrote the reversal block of {args.results}")


def _table(runs: list[dict]) -> str:
    lines = [
        "| wallet kind | settlement reversed | workers | decision ms | items | seconds | reversals/s | payouts/s (same row) | ratio"
        " | SQL queries per item | S2S calls per item | peak in flight (limit) | CPUs busy: bench / other |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in runs:
        s2s = r["calls"] is not None
        lines.append(
            f"| {r['label']} | {r['action']} | {r['workers']} | {r['decision_ms']:,.0f} | {r['items']:,} | {r['seconds']:.1f} | "
            f"{r['rate']:,.0f} | {r['payout_rate']:,.0f} | {r['rate'] / r['payout_rate']:.2f} | {r['queries_per_item']:.2f} | "
            + (f"{r['calls'] / r['items']:.2f} | {r['peak']} ({r['limit']})" if s2s else "- | -")
            + f" | {r['cpus_ours']:.2f} / {r['cpus_other']:.2f} |"
        )
    return "\n".join(lines)


def _targets(runs: list[dict]) -> str:
    rows = ["| target | measured | verdict |", "|---|---|---|"]
    for r in runs:
        if r["workers"] != 1:
            continue
        ratio = r["rate"] / r["payout_rate"]
        ok = 0.5 <= ratio
        rows.append(
            f"| {r['kind']} {r['action']} reversal at a rate comparable to its payouts (>= half), 1 worker | "
            f"{r['rate']:,.0f}/s vs {r['payout_rate']:,.0f}/s | {'**PASS**' if ok else '**MISS**'} |"
        )
    return "\n".join(rows)


if __name__ == "__main__":
    main()
