"""The http-floor baseline of bench/run.py: not the product, a yardstick.

A bare WSGI app (no Django) that answers POST /api/casino/trade the leanest way Python can:
the raw-SQL trade of bench/trade.pgbench.sql (the ceiling), with the player found by the
request's session token and the market named by the body, sent with psycopg (prepared
statements, pipeline mode) in the same three round trips as the product (the session and
market read; BEGIN, the locks and the positions; every write and COMMIT). The statements come
from the pgbench script itself (bench/ceiling_sql.py), so the floor runs exactly the ceiling's
SQL. Served by the same gunicorn, loaded by the same wrk script, it shows what Python +
gunicorn + psycopg cost on this machine before any framework or product logic.

    gunicorn --pythonpath bench floor_app:application    (BENCH_META=<seed dir>/meta.json, DATABASE_URL)
"""

import hashlib
import json
import os
import random
import threading

import psycopg
from ceiling_sql import statements

META = json.loads(open(os.environ["BENCH_META"]).read())  # noqa: SIM115 - read once at import
READ, LOCK, WRITE = statements(META)
_local = threading.local()  # one connection per thread (gunicorn gthread workers), as Django does


def _conn() -> psycopg.Connection:
    connection = getattr(_local, "connection", None)
    if connection is None or connection.closed:
        connection = _local.connection = psycopg.connect(os.environ["DATABASE_URL"], autocommit=True, prepare_threshold=0)
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
    params = {
        "token": hashlib.sha256(token.encode()).hexdigest(),
        "market": body["marketId"],
        "o": 0 if body["outcome"] == "yes" else 1,
        "shard": random.randrange(META["shards"]),
        "cshard": random.randrange(META["shards"]),
        "gshard": random.randrange(META["shards"]),
    }
    conn = _conn()
    cursor = conn.cursor()
    row = cursor.execute(READ, params).fetchone()
    if row is None:
        return _respond(start_response, "401 Unauthorized", {"error": "Unauthorized"})
    params.update(pid=row[0], opid=row[1], mid=row[2], cat=row[3])
    try:
        for group in (LOCK, WRITE):  # each group one round trip (pipeline), prepared statements
            with conn.pipeline():
                for statement in group:
                    cursor.execute(statement, params if "%(" in statement else None)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return _respond(start_response, "200 OK", {"success": True})
