"""Migrate and seed the benchmark database (run by bench/run.py in its own process).

    python bench/seed.py --players 200 --markets 100 --out DIR

Creates one internal-wallet operator, ``--players`` players each with an open session and
$100,000, ``--markets`` spread-out markets plus one hot market (reference mid 50 on both
outcomes), the market exposure shards, a risk cap and a price max age that never refuse a
bench trade, the category and global exposure shards, and two helper tables for pgbench
(``bench_players``, ``bench_markets``: 1..N -> ids, and the player's session token hash).
Writes DIR/tokens.txt, DIR/markets.txt, DIR/hot_market.txt and DIR/meta.json.
"""

import argparse
import json
import os
import sys
import uuid
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection, transaction  # noqa: E402

from casino.models import CasinoSettings, MarketExposure  # noqa: E402
from casino.services.credentials import operator_create, session_open, token_hash  # noqa: E402
from casino.services.exposure import category_key, exposure_apply  # noqa: E402
from casino.services.markets import reference_price_set  # noqa: E402
from core import money  # noqa: E402
from risk.models import RiskSettings  # noqa: E402
from risk.services.config import risk_config  # noqa: E402
from wallets.services.transfers import wallet_deposit  # noqa: E402

CAP = Decimal("10000000000.00")  # 1e10: far above anything the bench can reach (MONEY is 14,2)
MID = Decimal("50")
STAKE = Decimal("1.00")


def migrate() -> None:
    call_command("migrate", verbosity=0, interactive=False)


# Risk limits the benchmark lifts so that no trade is refused (those present in this version
# of the schema are set; the others are ignored). The benchmark measures the cost of the
# checks, not their refusals.
NON_BINDING_RISK_SETTINGS = {
    "default_market_exposure_cap": CAP,
    "global_exposure_cap": CAP,
    "category_exposure_cap": CAP,
    "max_trades_per_minute": 2_000_000_000,
    "max_stake_per_minute": CAP,
    "market_burst_trades": 2_000_000_000,
}
NON_BINDING_TIER = {"max_stake": CAP, "max_position_per_market": CAP, "max_daily_loss": CAP}


def _present(model, values: dict) -> dict:
    names = {f.name for f in model._meta.get_fields()}
    return {k: v for k, v in values.items() if k in names}


def lift_limits() -> list[str]:
    """Make every risk limit non-binding; returns what was set, for the results file."""
    settings_values = _present(RiskSettings, NON_BINDING_RISK_SETTINGS)
    RiskSettings.objects.update_or_create(pk=1, defaults=settings_values)
    lifted = [f"risk settings {', '.join(sorted(settings_values))}"]
    try:
        from risk.models import Tier
    except ImportError:
        Tier = None
    if Tier is not None:
        for tier in Tier.objects.all():
            for name, value in _present(Tier, NON_BINDING_TIER).items():
                setattr(tier, name, value)
            tier.save()  # save(), not update(): the risk configuration caches listen to post_save
        lifted.append(f"tier limits {', '.join(sorted(_present(Tier, NON_BINDING_TIER)))} of every tier")
    return lifted


def seed(players: int, markets: int, out: Path) -> dict:
    lifted = lift_limits()
    CasinoSettings.objects.update_or_create(pk=1, defaults={"price_max_age_seconds": 7 * 86400})

    # A new operator (and so new players) each time: seeding the same database twice works.
    operator = operator_create(name=f"bench-operator-{uuid.uuid4().hex[:8]}", wallet_mode="internal").operator
    tokens, player_rows = [], []
    for i in range(1, players + 1):
        issued = session_open(operator=operator, external_player_id=f"bench-player-{i}")
        wallet_deposit(player=issued.player, amount=Decimal("100000"))
        tokens.append(issued.token)
        player_rows.append((i, str(issued.player.pk), str(operator.pk), token_hash(issued.token)))

    market_ids = [f"0x{i:064x}" for i in range(1, markets + 1)]
    hot_market = "0x" + "f" * 64
    shards = max(1, settings.HOUSE_EXPOSURE_SHARDS)
    quota = (CAP / shards).quantize(Decimal("0.01"))
    for market_id in [*market_ids, hot_market]:
        reference_price_set(market_id=market_id, outcome="yes", mid_price=MID, title=f"Bench market {market_id[-6:]}")
    # The exposure book rows the first trade of each market would create (same quota/cap
    # split as the executor's slow path), so that every trade, HTTP or pgbench, takes the
    # one-UPDATE fast path from the start.
    MarketExposure.objects.bulk_create(
        [MarketExposure(market_id=m, shard=s, quota=quota, cap=CAP) for m in [*market_ids, hot_market] for s in range(shards)],
        ignore_conflicts=True,
    )
    # And the category and global shards the first trade's locked pass would create (every bench
    # market is in the one category ""), through that same pass with a trade of nothing.
    config = risk_config()
    category = category_key("")
    category_cap, global_cap = config.category_cap(category), config.settings.global_exposure_cap
    with transaction.atomic():
        exposure_apply(
            market_id=hot_market,
            outcome="yes",
            shares_delta=Decimal("0"),
            cash_delta=Decimal("0"),
            cap=CAP,
            global_cap=global_cap,
            locked=True,
            category=category,
            category_cap=category_cap,
        )

    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS bench_players, bench_markets")
        cursor.execute(
            "CREATE TABLE bench_players"
            " (i integer PRIMARY KEY, player_id uuid NOT NULL, operator_id uuid NOT NULL, token_hash text NOT NULL)"
        )
        cursor.execute("CREATE TABLE bench_markets (i integer PRIMARY KEY, market_id varchar(128) NOT NULL)")
        cursor.executemany("INSERT INTO bench_players VALUES (%s, %s, %s, %s)", player_rows)
        cursor.executemany("INSERT INTO bench_markets VALUES (%s, %s)", [(i, m) for i, m in enumerate([hot_market, *market_ids])])
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")

    # The numbers of a $1 buy at mid 50 with the default spread, for the pgbench script.
    casino = CasinoSettings.objects.get(pk=1)
    price = money.buy_price(MID, casino.default_spread)
    shares = money.shares_for_stake(STAKE, price)

    out.mkdir(parents=True, exist_ok=True)
    (out / "tokens.txt").write_text("\n".join(tokens) + "\n")
    (out / "markets.txt").write_text("\n".join(market_ids) + "\n")
    (out / "hot_market.txt").write_text(hot_market + "\n")
    meta = {
        "players": players,
        "markets": markets,
        "hot_market": hot_market,
        "shards": shards,
        "mid": str(MID),
        "stake": str(STAKE),
        "price": str(price),
        "half_spread": str(abs(price - MID)),
        "shares": str(shares),
        "market_cap": str(CAP),
        "category_cap": str(category_cap),
        "global_cap": str(global_cap),
        "lifted_limits": lifted,
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=2))
    return meta


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--players", type=int, default=200)
    parser.add_argument("--markets", type=int, default=100)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    if connection.vendor != "postgresql":
        sys.exit("bench/seed.py needs DATABASE_URL pointing at PostgreSQL (run it through scripts/with-services)")
    migrate()
    meta = seed(args.players, args.markets, args.out)
    print(json.dumps(meta))


if __name__ == "__main__":
    main()
