"""Server-side prepared statements for the few statements every trade request sends.

PostgreSQL plans a statement each time it receives its text; for the session join and the
trade's write statement, planning costs more than running them (bench/RESULTS.md). A
``PreparedStatement`` is prepared once per database connection (SQL ``PREPARE``) and then
sent as ``EXECUTE name(arguments)``. The arguments are still bound on the client (Django's
default client-side binding), so an ``EXECUTE`` can share a round trip with other statements
(BEGIN, COMMIT, the next read) in one simple-protocol message.

Every argument has an explicit type: PostgreSQL never has to guess one, and a value that does
not fit its type is refused instead of being cast silently.

Prepared statements belong to the database session, are not undone by ROLLBACK, and
survive until the connection closes; a new connection prepares again on first use. They do
not work through a transaction-pooling proxy (PgBouncer in transaction mode):
``DB_PREPARED_STATEMENTS=0`` (the default with ``DB_TRANSACTION_POOLING=1``) sends the plain
statements instead.
"""

import re

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connection, connections

_PREFIX = "house_"
_registry: dict[str, "PreparedStatement"] = {}


class PreparedStatement:
    def __init__(self, name: str, sql: str, **types: str):
        """``sql`` uses ``%(name)s`` placeholders; ``types`` maps each one to its PostgreSQL type."""
        placeholders = _placeholders(sql)
        if set(placeholders) != set(types):
            raise ValueError(f"{name}: placeholders {sorted(placeholders)} != types {sorted(types)}")
        self.name = _PREFIX + name
        self.sql = sql
        order = list(types)
        body = sql
        for i, param in enumerate(order, 1):
            body = body.replace(f"%({param})s", f"${i}")
        self.prepare = f"PREPARE {self.name} ({', '.join(types[p] for p in order)}) AS {body}"
        self.execute = f"EXECUTE {self.name}({', '.join(f'%({p})s' for p in order)})"
        if self.name in _registry:
            raise ValueError(f"prepared statement {self.name} defined twice")
        _registry[self.name] = self

    @classmethod
    def typed(cls, name: str, sql: str, types: dict[str, str]) -> "PreparedStatement":
        """A statement whose placeholders take their types from ``types`` (which may name more)."""
        return cls(name, sql, **{param: types[param] for param in _placeholders(sql)})

    def text(self) -> str:
        """What to send on the current connection (PostgreSQL): the EXECUTE, after preparing
        every registered statement this connection has not prepared yet; the plain statement
        when prepared statements are turned off."""
        if not settings.DB_PREPARED_STATEMENTS:
            return self.sql
        state = getattr(connection, "_house_prepared", None)
        if state is None or state[0] is not connection.connection or self.name not in state[1]:
            _prepare_all()
        return self.execute


def _placeholders(sql: str) -> list[str]:
    return list(dict.fromkeys(re.findall(r"%\((\w+)\)s", sql)))


def _prepare_all() -> None:
    """One round trip to learn what this session has, one to prepare the rest. Nothing is
    recorded unless it succeeded, so a failure part-way is repaired by the next call."""
    connection.ensure_connection()
    with connection.cursor() as cursor:
        cursor.execute("SELECT name FROM pg_prepared_statements WHERE name LIKE %s", [_PREFIX + "%"])
        have = {row[0] for row in cursor.fetchall()}
        missing = [s.prepare for name, s in _registry.items() if name not in have]
        if missing:
            cursor.execute(";".join(missing))
    connection._house_prepared = (connection.connection, set(_registry))


class _ConnectionCursor:
    """The connection's own psycopg cursor, kept with the connection, behind what Django's
    CursorWrapper does on each call (a broken transaction refused, driver errors turned into
    django.db's and marking the connection for its end-of-request check). Django builds a new
    cursor and wrapper on every ``connection.cursor()``: about 60 µs of CPU each on the benchmark
    machine, and a trade made three (bench/RESULTS.md). Not closed by ``with``: the next use
    takes it again."""

    __slots__ = ("_db", "_cursor", "raw_connection")

    def __init__(self, db, raw_connection):
        self._db, self.raw_connection = db, raw_connection
        with db.wrap_database_errors:
            self._cursor = db.create_cursor()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        return None

    def execute(self, sql, params=None):
        self._db.validate_no_broken_transaction()
        with self._db.wrap_database_errors:
            return self._cursor.execute(sql, params)

    def fetchone(self):
        with self._db.wrap_database_errors:
            return self._cursor.fetchone()

    def fetchall(self):
        with self._db.wrap_database_errors:
            return self._cursor.fetchall()

    def nextset(self):
        with self._db.wrap_database_errors:
            return self._cursor.nextset()


def statement_cursor():
    """A cursor for the hot path's round trips (the session look-up, the trade's two), used as
    ``with statement_cursor() as cursor:`` like ``connection.cursor()``: execute, fetchone,
    fetchall, nextset. Django's own cursor while queries are being recorded (DEBUG,
    CaptureQueriesContext) or execute wrappers are installed, so those still see every statement."""
    db = connections[DEFAULT_DB_ALIAS]
    if db.queries_logged or db.execute_wrappers:
        return db.cursor()
    db.close_if_health_check_failed()
    if db.connection is None:
        db.ensure_connection()
    raw = db.connection
    cursor = db.__dict__.get("_house_cursor")
    if cursor is None or cursor.raw_connection is not raw:
        db.validate_thread_sharing()
        cursor = db._house_cursor = _ConnectionCursor(db, raw)
    return cursor
