"""One active market feed per deployment: whoever holds the lock feeds, the others wait.

PostgreSQL: a session-level advisory lock on a connection of its own, held for as long as the
feed runs; if that connection dies the lock is gone and the feed steps down. It needs a real
session, so behind PgBouncer in transaction mode point ``MARKET_FEED_LOCK_DATABASE_URL`` at
PostgreSQL itself. The embedded SQLite default: an exclusive lock on a file beside the
database (one machine).
"""

import fcntl
import hashlib
import logging
import os
import socket
from pathlib import Path

import psycopg
from django.conf import settings

log = logging.getLogger("house.marketdata")

LOCK_NAME = "house.market_feed"
# pg advisory locks take a bigint: a stable one derived from the name.
LOCK_KEY = int.from_bytes(hashlib.sha256(LOCK_NAME.encode()).digest()[:8], "big", signed=True)


def holder_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class FeedLeadership:
    def __init__(self):
        self._connection = None
        self._file = None

    def acquire(self) -> bool:
        if self.held:
            return True
        if _postgres():
            return self._acquire_postgres()
        return self._acquire_file()

    @property
    def held(self) -> bool:
        return self._connection is not None or self._file is not None

    def still_held(self) -> bool:
        """The lock is still ours (PostgreSQL: its session is alive)."""
        if self._file is not None:
            return True
        if self._connection is None:
            return False
        try:
            self._connection.execute("SELECT 1")
            return True
        except psycopg.Error:
            log.warning("market feed lost its lock connection; stepping down")
            self.release()
            return False

    def release(self) -> None:
        if self._connection is not None:
            try:
                self._connection.close()  # ends the session: the advisory lock goes with it
            except psycopg.Error:
                pass
            self._connection = None
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None

    def _acquire_postgres(self) -> bool:
        try:
            connection = psycopg.connect(_lock_dsn(), autocommit=True, application_name="house-market-feed-lock")
        except psycopg.Error:
            log.warning("market feed cannot reach the database for its lock", exc_info=True)
            return False
        got = connection.execute("SELECT pg_try_advisory_lock(%s)", [LOCK_KEY]).fetchone()[0]
        if not got:
            connection.close()
            return False
        self._connection = connection
        return True

    def _acquire_file(self) -> bool:
        path = Path(settings.DATABASES["default"]["NAME"]).with_suffix(".market-feed.lock")
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a+")  # noqa: SIM115 - held open for as long as the lock is
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            return False
        self._file = handle
        return True


def _postgres() -> bool:
    return settings.DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql"


def _lock_dsn() -> str:
    url = settings.MARKET_FEED_LOCK_DATABASE_URL
    if url:
        return url
    db = settings.DATABASES["default"]
    parts = {"dbname": db["NAME"], "user": db.get("USER"), "password": db.get("PASSWORD"), "host": db.get("HOST"), "port": db.get("PORT")}
    return psycopg.conninfo.make_conninfo(**{k: str(v) for k, v in parts.items() if v})
