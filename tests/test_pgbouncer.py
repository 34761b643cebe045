"""The house behind PgBouncer in transaction-pooling mode (DB_TRANSACTION_POOLING=1: no prepared
statements, no server-side cursors). gunicorn serves the product with its database connections
going through PgBouncer's small pool, shared between more client connections than it has
server sessions; trades on an internal and an S2S operator and a settlement are driven over
HTTP, and the results are checked on a direct connection. scripts/with-services starts
PgBouncer (PGBOUNCER_URL); without it these tests skip.
"""

import os
import runpy
import threading
import uuid
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import httpx
import psycopg
import pytest
from django.conf import settings
from django.db.models import Sum

from casino.models import MarketExposure, Position, Trade
from casino.services.credentials import operator_create, session_open, staff_token_create
from casino.services.markets import reference_price_set
from settlement.models import Payout, Settlement
from tests.conftest import requires_postgres
from tests.gunicorn_server import Gunicorn
from wallets.models import LedgerEntry, OperatorWallet, PlayerWallet, WalletOperation
from wallets.reference_server import ReferenceWalletServer, serve_in_thread
from wallets.services.transfers import wallet_deposit

PGBOUNCER_URL = os.environ.get("PGBOUNCER_URL", "")
ROOT = Path(__file__).resolve().parent.parent


def behind_pgbouncer(test):
    """PostgreSQL and PgBouncer, and real commits: the product runs in another process."""
    marks = [
        requires_postgres,
        pytest.mark.skipif(not PGBOUNCER_URL, reason="needs PgBouncer (PGBOUNCER_URL, started by scripts/with-services)"),
        pytest.mark.django_db(transaction=True),
        pytest.mark.usefixtures("no_velocity_limits"),
    ]
    for mark in marks:
        test = mark(test)
    return test


SETTLED = "0x5eb0000000000000000000000000000000000000000000000000000000000001"  # yes mid 62, resolved YES
OPEN = "0x5eb0000000000000000000000000000000000000000000000000000000000002"  # yes mid 55, stays open
START = Decimal("100.00")
PLAYERS_PER_OPERATOR = 5
# Per player: YES 10 + 10 at 64 (31.25 shares), NO 5 at 40 (12.5 shares), YES 10 on the open
# market, then sell 10 YES at 60 (+6.00): 71.00 left; YES wins 21.25 shares = 21.25 paid.
AFTER_TRADES = Decimal("71.00")
AFTER_SETTLEMENT = Decimal("92.25")


def _pgbouncer(command: str) -> list[dict]:
    """A command on PgBouncer's admin console (database "pgbouncer"), rows as dicts."""
    with psycopg.connect(f"{PGBOUNCER_URL}/pgbouncer", autocommit=True) as admin:
        cursor = admin.execute(command)
        if cursor.description is None:
            return []
        names = [column.name for column in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def _of_test_database(rows: list[dict]) -> list[dict]:
    return [row for row in rows if row["database"] == settings.DATABASES["default"]["NAME"]]


@pytest.fixture
def house_server(tmp_path):
    """house_server(**env) starts the product behind PgBouncer; afterwards PgBouncer drops every
    connection to the test database (pytest-django drops that database at the end)."""
    servers = []

    def start(**env: str) -> Gunicorn:
        database = settings.DATABASES["default"]["NAME"]
        server = Gunicorn(
            workers=2,
            log_path=tmp_path / f"gunicorn-{len(servers)}.log",
            **{
                "DATABASE_URL": f"{PGBOUNCER_URL}/{database}",
                "DB_TRANSACTION_POOLING": "1",
                "DB_PREPARED_STATEMENTS": "0",
                "GUNICORN_THREADS": "6",  # even one worker alone holds more connections than the pool
                **env,
            },
        )
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()
    database = settings.DATABASES["default"]["NAME"]
    _pgbouncer(f"KILL {database}")
    _pgbouncer(f"RESUME {database}")


@dataclass
class S2SOperator:
    operator: object
    wallet: ReferenceWalletServer


@pytest.fixture
def s2s_operator():
    """An S2S operator whose wallet is the reference wallet server, on loopback in this process."""
    issued = operator_create(name=f"s2s-{uuid.uuid4().hex[:8]}", wallet_mode="s2s", wallet_url="http://placeholder")
    wallet = ReferenceWalletServer(issued.wallet_secret, seed=7)
    url, stop = serve_in_thread(wallet)
    OperatorWallet.objects.filter(operator=issued.operator).update(base_url=url)
    yield S2SOperator(issued.operator, wallet)
    stop()


def _markets() -> None:
    reference_price_set(market_id=SETTLED, outcome="yes", mid_price=Decimal("62"), title="Settled here", category="crypto")
    reference_price_set(market_id=OPEN, outcome="yes", mid_price=Decimal("55"), title="Stays open", category="crypto")


def _internal_players(n: int) -> list[tuple]:
    operator = operator_create(name=f"op-{uuid.uuid4().hex[:8]}", wallet_mode="internal").operator
    players = []
    for i in range(n):
        session = session_open(operator=operator, external_player_id=f"internal-{i}")
        wallet_deposit(player=session.player, amount=START)
        players.append((session.player, session.token))
    return players


def _s2s_players(s2s: S2SOperator, n: int) -> list[tuple]:
    players = []
    for i in range(n):
        session = session_open(operator=s2s.operator, external_player_id=f"s2s-{i}")
        s2s.wallet.set_player(session.player.external_id, balance=START)
        players.append((session.player, session.token))
    return players


def _trade(market: str, side: str, outcome: str, amount: int, mid: int) -> dict:
    return {"marketId": market, "side": side, "outcome": outcome, "amount": amount, "midPrice": mid}


BUYS = [
    _trade(SETTLED, "buy", "yes", 10, 62),
    _trade(SETTLED, "buy", "yes", 10, 62),
    _trade(SETTLED, "buy", "no", 5, 38),
    _trade(OPEN, "buy", "yes", 10, 55),
]
SELLS = [_trade(SETTLED, "sell", "yes", 10, 62)]


def _drive_concurrently(url: str, tokens: list[str], requests: list[dict]) -> dict[str, list[httpx.Response]]:
    """Every player sends ``requests`` in order, all players at once (one thread and one
    keep-alive HTTP connection each); returns the responses by token."""
    answers: dict[str, list[httpx.Response]] = {}
    start = threading.Barrier(len(tokens))
    errors = []

    def player(token: str) -> None:
        try:
            with httpx.Client(base_url=f"{url}/api/casino", headers={"Authorization": f"Bearer {token}"}, timeout=30) as client:
                start.wait()
                answers[token] = [client.post("trade", json=body) for body in requests]
        except Exception as error:  # noqa: BLE001 - reported by the test thread
            errors.append(error)

    threads = [threading.Thread(target=player, args=(token,)) for token in tokens]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    return answers


@pytest.mark.parametrize(
    "env, prepared, server_side_cursors",
    [
        ({}, True, False),
        ({"DB_TRANSACTION_POOLING": "1"}, False, True),
        ({"DB_TRANSACTION_POOLING": "1", "DB_PREPARED_STATEMENTS": "1"}, True, True),
    ],
)
def test_transaction_pooling_turns_off_server_side_cursors_and_by_default_prepared_statements(
    monkeypatch, env, prepared, server_side_cursors
):
    monkeypatch.delenv("DB_PREPARED_STATEMENTS", raising=False)
    monkeypatch.delenv("DB_TRANSACTION_POOLING", raising=False)
    monkeypatch.setenv("DATABASE_URL", "postgres://house@db:5432/house")
    monkeypatch.setenv("DJANGO_SECRET_KEY", "test")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    loaded = runpy.run_path(str(ROOT / "config" / "settings.py"))
    assert loaded["DB_PREPARED_STATEMENTS"] is prepared
    assert loaded["DATABASES"]["default"]["DISABLE_SERVER_SIDE_CURSORS"] is server_side_cursors


@behind_pgbouncer
def test_trades_and_a_settlement_through_a_transaction_pool_smaller_than_the_client_connections(house_server, s2s_operator):
    _markets()
    players = _internal_players(PLAYERS_PER_OPERATOR) + _s2s_players(s2s_operator, PLAYERS_PER_OPERATOR)
    staff = staff_token_create(username="pgbouncer-desk")
    pool_size = int(next(row["value"] for row in _pgbouncer("SHOW CONFIG") if row["key"] == "default_pool_size"))
    before = _of_test_database(_pgbouncer("SHOW STATS"))
    transactions_before = before[0]["total_xact_count"] if before else 0

    server = house_server()
    tokens = [token for _, token in players]
    bought = _drive_concurrently(server.url, tokens, BUYS)
    # Every server session is replaced under the product's open client connections: with
    # nothing kept in a session (no prepared statements), nothing notices.
    sessions_before = {row["remote_pid"] for row in _of_test_database(_pgbouncer("SHOW SERVERS"))}
    _pgbouncer(f"RECONNECT {settings.DATABASES['default']['NAME']}")
    sold = _drive_concurrently(server.url, tokens, SELLS)
    for token in tokens:
        for response in bought[token] + sold[token]:
            assert response.status_code == 200, (response.status_code, response.text, server.log()[-3000:])
        assert Decimal(str(sold[token][-1].json()["newBalance"])) == AFTER_TRADES

    # The pool really was shared: more product connections than server sessions, in transaction mode.
    pools = _of_test_database(_pgbouncer("SHOW POOLS"))
    assert [pool["pool_mode"] for pool in pools] == ["transaction"]
    clients = _of_test_database(_pgbouncer("SHOW CLIENTS"))
    assert len(clients) > pool_size, clients
    sessions_after = {row["remote_pid"] for row in _of_test_database(_pgbouncer("SHOW SERVERS"))}
    assert 0 < len(sessions_after) <= pool_size and sessions_before and not sessions_after & sessions_before

    resolved = httpx.post(
        f"{server.url}/api/casino/resolve",
        json={"marketId": SETTLED, "outcome": "yes"},
        headers={"Authorization": f"Bearer {staff}"},
        timeout=60,
    )
    assert resolved.status_code == 200, (resolved.text, server.log()[-3000:])
    body = resolved.json()
    assert (body["totalPositions"], body["totalWinners"]) == (4 * PLAYERS_PER_OPERATOR, 2 * PLAYERS_PER_OPERATOR)
    served = _of_test_database(_pgbouncer("SHOW STATS"))[0]["total_xact_count"] - transactions_before
    server.stop()

    # Checked on the direct connection.
    n = len(players)
    assert served >= n * (len(BUYS) + len(SELLS)), served
    assert Trade.objects.count() == n * (len(BUYS) + len(SELLS))
    assert Position.objects.filter(market_id=SETTLED).count() == 2 * n  # a YES and a NO each
    assert Position.objects.filter(market_id=OPEN, status="open").count() == n
    settlement = Settlement.objects.get(market_id=SETTLED)
    assert settlement.status == "completed" and settlement.paid_count == n and settlement.failed_count == 0
    assert sorted(Payout.objects.filter(settlement=settlement).values_list("status", flat=True)) == ["paid"] * n  # losers: closed, no row
    for player, _ in players:
        payouts = LedgerEntry.objects.filter(player=player, type="payout")
        assert [entry.amount for entry in payouts] == [Decimal("21.25")], player.external_id
        ledger = LedgerEntry.objects.filter(player=player).aggregate(total=Sum("amount"))["total"]
        if player.operator_id == s2s_operator.operator.pk:
            assert s2s_operator.wallet.balance(player.external_id) == START + ledger == AFTER_SETTLEMENT
            assert WalletOperation.objects.filter(player=player, kind="credit", type="payout", status="ok").count() == 1
        else:
            assert PlayerWallet.objects.get(player=player).balance == ledger == AFTER_SETTLEMENT
    book = MarketExposure.objects.filter(market_id=SETTLED).aggregate(
        yes=Sum("yes_shares"), no=Sum("no_shares"), cash=Sum("cash_in"), quota=Sum("quota")
    )
    assert set(book.values()) == {Decimal("0")}, book
    assert MarketExposure.objects.filter(market_id=OPEN).aggregate(yes=Sum("yes_shares"))["yes"] > 0


@behind_pgbouncer
def test_prepared_statements_break_once_pgbouncer_hands_the_connection_another_server_session(house_server):
    """Why DB_PREPARED_STATEMENTS=0: a statement prepared in one server session is unknown in
    the next one PgBouncer gives the same client connection (here: after RECONNECT, as after
    server_lifetime or any time the pool is shared)."""
    _markets()
    (player, token), *_ = _internal_players(1)
    server = house_server(DB_PREPARED_STATEMENTS="1", GUNICORN_WORKERS="1", GUNICORN_THREADS="1")
    with httpx.Client(base_url=f"{server.url}/api/casino", headers={"Authorization": f"Bearer {token}"}, timeout=30) as client:
        assert client.post("trade", json=BUYS[0]).status_code == 200  # prepared in the session it then ran in
        _pgbouncer(f"RECONNECT {settings.DATABASES['default']['NAME']}")
        refused = client.post("trade", json=BUYS[0])
    assert refused.status_code >= 500
    log = server.log().replace('\\"', '"')  # the error is inside a JSON log line
    assert 'prepared statement "house_' in log and "does not exist" in log
    assert PlayerWallet.objects.get(player=player).balance == START - Decimal("10.00")
    assert Trade.objects.filter(player=player).count() == 1
