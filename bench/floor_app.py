"""The http-floor baseline of bench/run.py: not the product, a yardstick.

A bare WSGI app (no Django) that answers POST /api/casino/trade the leanest way Python can:
look the session token up, then run the pgbench transaction of bench/trade.pgbench.sql (lock
the balance, update it, insert the trade, upsert the position, update one exposure shard)
with psycopg, one statement per round trip. Served by the same gunicorn, loaded by the same
wrk script, it shows what Python + gunicorn + psycopg cost on this machine before any
framework or product logic: the room the product has for the "HTTP >= 20% of raw SQL" target.

    gunicorn --pythonpath bench floor_app:application    (BENCH_META=<seed dir>/meta.json, DATABASE_URL)
"""

import hashlib
import json
import os
import random
import threading

import psycopg

META = json.loads(open(os.environ["BENCH_META"]).read())  # noqa: SIM115 - read once at import
SESSION = (
    "SELECT p.id, p.operator_id FROM casino_player_sessions s JOIN casino_players p ON p.id = s.player_id"
    " WHERE s.token_hash = %s AND s.expires_at > now()"
)
TRADE = [
    "SELECT balance FROM wallet_balances WHERE player_id = %(pid)s FOR UPDATE",
    "UPDATE wallet_balances SET balance = balance - %(stake)s, updated_at = now() WHERE player_id = %(pid)s",
    "INSERT INTO casino_trades (id, player_id, operator_id, market_id, market_title, side, outcome, shares, price_mid, price_executed,"
    " spread_applied, cost, balance_before, balance_after, realized_pnl, wallet_transaction_id, created_at) VALUES (gen_random_uuid(),"
    " %(pid)s, %(opid)s, %(mid)s, '', 'buy', %(outcome)s, %(shares)s, %(mid_price)s, %(price)s, %(half)s, %(stake)s, %(bal)s,"
    " %(bal)s - %(stake)s, 0, gen_random_uuid(), now())",
    "INSERT INTO casino_positions AS pos (id, player_id, operator_id, market_id, market_title, outcome, shares, avg_price, status,"
    " realized_pnl, version, created_at, updated_at) VALUES (gen_random_uuid(), %(pid)s, %(opid)s, %(mid)s, '', %(outcome)s,"
    " %(shares)s, %(price)s, 'open', 0, 0, now(), now()) ON CONFLICT (player_id, market_id, outcome) DO UPDATE SET"
    " shares = pos.shares + EXCLUDED.shares, avg_price = round((pos.shares * pos.avg_price + EXCLUDED.shares * EXCLUDED.avg_price)"
    " / (pos.shares + EXCLUDED.shares), 4), status = 'open', version = pos.version + 1, updated_at = now()",
    "UPDATE casino_exposure SET yes_shares = yes_shares + %(dy)s, no_shares = no_shares + %(dn)s, cash_in = cash_in + %(stake)s,"
    " updated_at = now() WHERE market_id = %(mid)s AND shard = %(shard)s",
]
_local = threading.local()  # one connection per thread (gunicorn gthread workers), as Django does


def _conn() -> psycopg.Connection:
    connection = getattr(_local, "connection", None)
    if connection is None or connection.closed:
        connection = _local.connection = psycopg.connect(os.environ["DATABASE_URL"], autocommit=True)
    return connection


def _respond(start_response, status: str, body: dict):
    out = json.dumps(body).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(out)))])
    return [out]


def application(environ, start_response):
    if environ["REQUEST_METHOD"] == "GET":  # readiness probe
        return _respond(start_response, "200 OK", {"status": "ok"})
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = json.loads(environ["wsgi.input"].read(length) or b"{}")
    token = environ.get("HTTP_AUTHORIZATION", "").partition(" ")[2]
    conn = _conn()
    row = conn.execute(SESSION, [hashlib.sha256(token.encode()).hexdigest()]).fetchone()
    if row is None:
        return _respond(start_response, "401 Unauthorized", {"error": "Unauthorized"})
    outcome = body["outcome"]
    params = {
        "pid": row[0],
        "opid": row[1],
        "mid": body["marketId"],
        "outcome": outcome,
        "stake": META["stake"],
        "shares": META["shares"],
        "price": META["price"],
        "mid_price": META["mid"],
        "half": META["half_spread"],
        "dy": META["shares"] if outcome == "yes" else 0,
        "dn": 0 if outcome == "yes" else META["shares"],
        "shard": random.randrange(META["shards"]),
    }
    with conn.transaction():
        cursor = conn.cursor()
        params["bal"] = cursor.execute(TRADE[0], params).fetchone()[0]
        for statement in TRADE[1:]:
            cursor.execute(statement, params)
    return _respond(start_response, "200 OK", {"success": True, "newBalance": str(params["bal"] - 1)})
