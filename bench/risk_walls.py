"""How much the five risk walls add to a trade: the executor timed with the walls on and off.

    make bench-risk        (= PG_DURABLE=1 scripts/with-services .venv/bin/python bench/risk_walls.py)

Runs the trade executor in-process (no HTTP) against PostgreSQL and Redis, for the same
sequence of trades twice: with the five walls, and with risk assessment replaced by a
ticket that only keeps the exposure book (which every trade must update anyway). Prints
per-trade p50/p99/mean and the difference; --write appends a section to bench/RESULTS.md.
"""

import argparse
import os
import statistics
import sys
import time
import uuid
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trades", type=int, default=2000)
    parser.add_argument("--players", type=int, default=200)
    parser.add_argument("--markets", type=int, default=20)
    parser.add_argument("--write", action="store_true", help="append the result to bench/RESULTS.md")
    args = parser.parse_args()

    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from casino.services.credentials import operator_create, session_open, session_player
    from casino.services.markets import casino_settings, reference_price_set
    from casino.services.trade_executor import TradeRequest, steps, trade_execute
    from risk.services import assessment
    from risk.services.config import risk_settings
    from wallets.services.transfers import wallet_deposit

    settings_row = risk_settings()
    settings_row.max_trades_per_minute = 10**6
    settings_row.max_stake_per_minute = Decimal("10000000")
    settings_row.market_burst_trades = 10**6
    settings_row.default_market_exposure_cap = Decimal("100000000")
    settings_row.global_exposure_cap = Decimal("1000000000")
    settings_row.category_exposure_cap = Decimal("1000000000")
    settings_row.save()
    casino = casino_settings()
    casino.price_max_age_seconds = 86400
    casino.save()
    operator = operator_create(name=f"bench-risk-{uuid.uuid4().hex[:6]}").operator
    markets = [f"0xbenchrisk{i:04d}" for i in range(args.markets)]
    for m in markets:
        reference_price_set(market_id=m, outcome="yes", mid_price=Decimal("50"))
    players = []
    for i in range(args.players):
        session = session_open(operator=operator, external_player_id=f"bench-{i}")
        wallet_deposit(player=session.player, amount=Decimal("100000"))
        players.append(session_player(session.token))  # loaded as a request loads it (with its risk profile)

    real_assess = steps.risk_assess

    def no_walls(*, player, market_id, side, outcome, amount, mid_price):
        config = assessment.risk_config()
        return assessment.RiskTicket(
            player=player,
            market_id=market_id,
            side=side,
            outcome=outcome,
            market_cap=config.market_cap(market_id),
            global_cap=config.settings.global_exposure_cap,
            tier=None,
            enabled=False,
        )

    def run(label: str) -> list[float]:
        times = []
        for i in range(args.trades):
            player = players[i % len(players)]
            request = TradeRequest(
                market_id=markets[i % len(markets)], side="buy", outcome="yes", amount=Decimal("1.00"), mid_price=Decimal("50")
            )
            started = time.perf_counter()
            trade_execute(player=player, request=request)
            times.append((time.perf_counter() - started) * 1000)
        return times

    run("warm-up")
    results = {}
    for label, assess in (("walls on", real_assess), ("walls off", no_walls), ("walls on (again)", real_assess)):
        steps.risk_assess = assess
        results[label] = run(label)
    steps.risk_assess = real_assess

    def row(label, times):
        ordered = sorted(times)
        return (label, statistics.mean(times), ordered[len(ordered) // 2], ordered[int(len(ordered) * 0.99) - 1])

    rows = [row(label, t) for label, t in results.items()]
    on = statistics.mean(results["walls on"] + results["walls on (again)"])
    off = statistics.mean(results["walls off"])
    lines = ["| run | mean ms/trade | p50 ms | p99 ms |", "|---|---|---|---|"]
    lines += [f"| {label} | {mean:.3f} | {p50:.3f} | {p99:.3f} |" for label, mean, p50, p99 in rows]
    summary = f"Walls add {on - off:.3f} ms per trade on average ({(on - off) / off * 100:.1f}% of the executor's time without them)."
    print("\n".join(lines))
    print(summary)
    if args.write:
        with open(ROOT / "bench" / "RESULTS.md", "a") as fh:
            fh.write(
                "\n## Risk walls on vs off (executor in-process)\n\n"
                f"Command: `make bench-risk` (`PG_DURABLE=1 scripts/with-services .venv/bin/python bench/risk_walls.py "
                f"--trades {args.trades} --players {args.players} --markets {args.markets} --write`), "
                f"{time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores. Same trades ($1 buys, round-robin over players and markets) "
                "three times: walls on, walls off (risk assessment replaced by a ticket that only keeps the exposure book), "
                "walls on again.\n\n" + "\n".join(lines) + f"\n\n{summary}\n"
            )


if __name__ == "__main__":
    main()
