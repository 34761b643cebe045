"""The raw-SQL ceiling of `make bench` (bench/trade.pgbench.sql) does the database work of the
product's trade: the same tables written, the same number of rows inserted and updated in each.
A write added to the trade and not to the ceiling (or the other way round) fails here, so the
HTTP / raw-SQL gate keeps comparing the same work."""

import importlib.util
from decimal import Decimal
from pathlib import Path

import pytest
from django.db import connection, transaction

from casino.models import PlayerSession
from tests.conftest import MARKET, buy_body, requires_postgres

pytestmark = [requires_postgres, pytest.mark.usefixtures("no_rate_limits")]

_spec = importlib.util.spec_from_file_location("ceiling_sql", Path(__file__).resolve().parent.parent / "bench" / "ceiling_sql.py")
ceiling_sql = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ceiling_sql)


def _written() -> dict[str, tuple[int, int, int]]:
    """Rows inserted, updated and deleted per table so far in this transaction."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT relname, n_tup_ins, n_tup_upd, n_tup_del FROM pg_stat_xact_user_tables")
        return {row[0]: tuple(row[1:]) for row in cursor.fetchall()}


def _delta(before: dict, after: dict) -> dict[str, tuple[int, int, int]]:
    changes = {name: tuple(a - b for a, b in zip(counts, before.get(name, (0, 0, 0)), strict=True)) for name, counts in after.items()}
    return {name: counts for name, counts in changes.items() if any(counts)}


def _ceiling_trade(player) -> None:
    """One trade of the ceiling's SQL, inside the caller's transaction (its BEGIN and COMMIT left out)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT cap FROM casino_exposure WHERE market_id = %s LIMIT 1", [MARKET])
        market_cap = cursor.fetchone()[0]
        cursor.execute("SELECT cap FROM casino_category_exposure WHERE category = 'crypto' LIMIT 1")
        category_cap = cursor.fetchone()[0]
        cursor.execute("SELECT cap FROM casino_global_exposure LIMIT 1")
        global_cap = cursor.fetchone()[0]
        meta = {"stake": "10.00", "shares": "15.625", "price": "64", "mid": "62", "half_spread": "2"}
        meta.update(market_cap=market_cap, category_cap=category_cap, global_cap=global_cap)
        read, (begin, *locks), (write, commit) = ceiling_sql.statements(meta)
        assert (begin, commit) == ("BEGIN", "COMMIT")
        token = PlayerSession.objects.get(player=player).token_hash
        params = {"token": token, "market": MARKET, "o": 0, "shard": 1, "cshard": 1, "gshard": 1}
        cursor.execute(read, params)
        pid, opid, mid, cat = cursor.fetchone()
        assert (pid, mid, cat) == (player.pk, MARKET, "crypto")
        params.update(pid=pid, opid=opid, mid=mid, cat=cat)
        for statement in locks:
            cursor.execute(statement, params)
        cursor.execute(write, params)
        assert cursor.fetchone() == (1, 1, 5)  # the position, the global shard, the five other writes


@pytest.mark.django_db(transaction=True)
def test_the_ceiling_writes_the_rows_a_trade_writes(make_player, market):
    player, api = make_player(Decimal("100"))
    assert api.post("trade", buy_body(amount="10.00")).status_code == 200  # creates the position and the book's rows
    with transaction.atomic():
        start = _written()
        assert api.post("trade", buy_body(amount="10.00")).status_code == 200
        middle = _written()
        _ceiling_trade(player)
        product, ceiling = _delta(start, middle), _delta(middle, _written())
        transaction.set_rollback(True)
    # Each: the balance, the ledger row, the trade, the position, a market shard, a category shard, a
    # global shard, the player's wagering total, the trade.executed event.
    assert product == ceiling, (product, ceiling)
    assert product == {
        "wallet_balances": (0, 1, 0),
        "s2s_transactions": (1, 0, 0),
        "casino_trades": (1, 0, 0),
        "casino_positions": (0, 1, 0),
        "casino_exposure": (0, 1, 0),
        "casino_category_exposure": (0, 1, 0),
        "casino_global_exposure": (0, 1, 0),
        "casino_players": (0, 1, 0),
        "house_events": (1, 0, 0),
    }
