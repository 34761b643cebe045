"""Atomic rolling-window counters shared by every worker (Redis), for velocity and operator limits.

A counter is a set of time buckets; its value is the sum of the buckets inside the window.
``reserve`` checks several counters against their limits and adds to all of them in one
atomic step (a Lua script on Redis), or adds to none. A reservation can be released (the
trade failed), which takes the amounts back out of the same buckets. Amounts are integers
(counts, or cents for money). Without Redis (embedded default) the same logic runs under a
process lock.
"""

import hashlib
import os
import threading
import time
import uuid
from dataclasses import dataclass, field

from django.conf import settings
from django.core.cache import cache
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError
from redis.exceptions import TimeoutError as RedisTimeoutError

FOREVER = 10**9  # seconds: one bucket for the life of the counter

_LUA_RESERVE = """
local now = tonumber(ARGV[1])
local version = redis.call('GET', ARGV[2])
if ARGV[3] ~= '' and version ~= ARGV[3] then
  return {-1, version or ''}
end
local n = (#ARGV - 3) / 5
local buckets = {}
for i = 0, n - 1 do
  local base = 4 + i * 5
  local key, size = ARGV[base], tonumber(ARGV[base + 1])
  local count, add, limit = tonumber(ARGV[base + 2]), tonumber(ARGV[base + 3]), tonumber(ARGV[base + 4])
  local current = math.floor(now / size)
  if limit >= 0 then
    local names = {}
    for b = current - count + 1, current do
      names[#names + 1] = key .. ':' .. b
    end
    local total = 0
    for _, v in ipairs(redis.call('MGET', unpack(names))) do
      total = total + tonumber(v or '0')
    end
    if total + add > limit then
      return {i + 1, total}
    end
  end
  buckets[i + 1] = {key .. ':' .. current, add, size * (count + 1)}
end
for i = 1, n do
  redis.call('INCRBY', buckets[i][1], buckets[i][2])
  redis.call('EXPIRE', buckets[i][1], buckets[i][3])
end
return {0, 0}
"""
_LUA_RESERVE_SHA = hashlib.sha1(_LUA_RESERVE.encode()).hexdigest()  # what EVALSHA names it by


@dataclass(frozen=True)
class Counter:
    key: str
    bucket_seconds: int
    buckets: int
    add: int
    limit: int  # -1: no limit, count only

    @classmethod
    def rolling(cls, key: str, *, window_seconds: int, add: int, limit: int | None, resolution: int = 12) -> "Counter":
        size = max(1, window_seconds // resolution)
        return cls(key, size, max(1, -(-window_seconds // size)), add, -1 if limit is None else limit)

    @classmethod
    def daily(cls, key: str, *, add: int, limit: int | None) -> "Counter":
        return cls(key, 86400, 1, add, -1 if limit is None else limit)

    @classmethod
    def total(cls, key: str, *, add: int, limit: int | None) -> "Counter":
        """A running total with no window (one bucket that does not expire in practice)."""
        return cls(key, FOREVER, 1, add, -1 if limit is None else limit)


@dataclass
class Reservation:
    buckets: list[tuple[str, int, int]] = field(default_factory=list)  # (bucket key, amount, ttl)

    def release(self) -> None:
        if self.buckets:
            _backend().release(self.buckets)
            self.buckets = []


@dataclass(frozen=True)
class Exceeded:
    index: int  # which counter (0-based)
    current: int


@dataclass(frozen=True)
class VersionChanged:
    """The configuration the caller checked against is not the current one: reload and retry."""

    version: str


VERSION_KEY = "config-version"


def reserve(counters: list[Counter], *, expected_version: str = "") -> Reservation | Exceeded | VersionChanged:
    """Check and add all counters atomically; with expected_version, only if the risk
    configuration version is still that one (so a change applies to the very next trade)."""
    kept = [i for i, c in enumerate(counters) if c.add != 0 or c.limit >= 0]  # nothing to add or check: skipped
    counters = [counters[i] for i in kept]
    now = int(time.time())
    result = _backend().reserve(now, counters, expected_version)
    if isinstance(result, Exceeded):
        return Exceeded(kept[result.index], result.current)  # the index in the caller's list
    if isinstance(result, VersionChanged):
        return result
    return Reservation([(f"{c.key}:{now // c.bucket_seconds}", c.add, c.bucket_seconds * (c.buckets + 1)) for c in counters])


def config_version(*, create: bool = True) -> str | None:
    return _backend().version(create=create)


def config_version_bump() -> None:
    _backend().bump()


def current_value(counter: Counter) -> int:
    return _backend().value(int(time.time()), counter)


def set_total(key: str, value: int) -> None:
    """Overwrite a running total (a rebuild from the database), in the bucket reserve() uses."""
    _backend().set(f"{key}:{int(time.time()) // FOREVER}", value)


def set_windows(windows: list[tuple[Counter, dict[int, int]]], *, now: int | None = None) -> None:
    """Overwrite every bucket of rolling counters' windows (a rebuild from the database): each
    counter's values by bucket number (time // bucket_seconds), a bucket not given = 0."""
    now = int(time.time()) if now is None else now
    items = []
    for c, values in windows:
        current = now // c.bucket_seconds
        ttl = c.bucket_seconds * (c.buckets + 1)
        items += [(f"{c.key}:{b}", int(values.get(b, 0)), ttl) for b in range(current - c.buckets + 1, current + 1)]
    _backend().set_many(items)


class _RedisBackend:
    def __init__(self):
        self._clients = {}
        self._held = threading.local()  # the connection this thread sends reservations on

    def _client(self):
        # Django's Redis cache builds a new client object (and its table of response callbacks)
        # on every get_client(); the connection pool is what matters, so keep one client per pool.
        backend = cache._cache
        pool = backend._get_connection_pool(True)
        client = self._clients.get(id(pool))
        if client is None or client.connection_pool is not pool:
            client = self._clients[id(pool)] = backend.get_client(None, write=True)
        return client

    def reserve(self, now: int, counters: list[Counter], expected_version: str):
        args = [now, _prefixed(VERSION_KEY), expected_version]
        for c in counters:
            args += [_prefixed(c.key), c.bucket_seconds, c.buckets, c.add, c.limit]
        failed, total = self._evalsha(self._client().connection_pool, args)
        if int(failed) == -1:
            return VersionChanged(total.decode() if isinstance(total, bytes) else str(total))
        return Exceeded(int(failed) - 1, int(total)) if int(failed) else None

    def _evalsha(self, pool, args: list):
        """The reservation script, on a connection this thread keeps: taken from the cache's pool once
        (so Sentinel and TLS settings apply) and not handed back. Every trade sends one reservation,
        and redis-py's pool spends more CPU per command on taking and returning a connection than the
        round trip costs (in-process A/B: 0.94x CPU per trade, bench/RESULTS.md).

        A connection that fails (Redis restarted, a failover, a client kill) is dropped and the
        script sent once more on a new one, as redis-py's own retry would; a reply lost after
        Redis ran the script can thus count a trade twice in a window, on the safe side. A script
        Redis no longer knows (restart, SCRIPT FLUSH) is loaded again. After a fork the child
        takes its own connection."""
        held = self._held
        conn = getattr(held, "conn", None)
        if conn is None or held.pool is not pool or held.pid != os.getpid():
            conn = held.conn = pool.get_connection()
            held.pool, held.pid = pool, os.getpid()
        for last in (False, True):
            try:
                return self._send_script(conn, args)  # (re)connects on send
            except (RedisConnectionError, RedisTimeoutError, OSError):
                conn.disconnect()
                if last:
                    raise
            except BaseException:
                conn.disconnect()  # nothing half-read may wait for the next command
                raise

    @staticmethod
    def _send_script(conn, args: list):
        conn.send_command("EVALSHA", _LUA_RESERVE_SHA, 0, *args)
        try:
            return conn.read_response()
        except NoScriptError:
            conn.send_command("SCRIPT", "LOAD", _LUA_RESERVE)
            conn.read_response()
            conn.send_command("EVALSHA", _LUA_RESERVE_SHA, 0, *args)
            return conn.read_response()

    def version(self, *, create: bool) -> str | None:
        client = self._client()
        value = client.get(_prefixed(VERSION_KEY))
        if value is None and create:
            client.set(_prefixed(VERSION_KEY), uuid.uuid4().hex, nx=True)
            value = client.get(_prefixed(VERSION_KEY))
        return value.decode() if isinstance(value, bytes) else value

    def bump(self) -> None:
        self._client().set(_prefixed(VERSION_KEY), uuid.uuid4().hex)

    def release(self, buckets):
        pipe = self._client().pipeline()
        for key, amount, _ttl in buckets:
            pipe.decrby(_prefixed(key), amount)
        pipe.execute()

    def value(self, now: int, c: Counter) -> int:
        current = now // c.bucket_seconds
        keys = [f"{_prefixed(c.key)}:{b}" for b in range(current - c.buckets + 1, current + 1)]
        return sum(int(v or 0) for v in self._client().mget(keys))

    def set(self, key: str, value: int) -> None:
        self._client().set(_prefixed(key), value, ex=FOREVER * 2)

    def set_many(self, items) -> None:
        client = self._client()
        for start in range(0, len(items), 5000):
            pipe = client.pipeline(transaction=False)
            for key, value, ttl in items[start : start + 5000]:
                pipe.set(_prefixed(key), value, ex=ttl)
            pipe.execute()


class _LocalBackend:
    def __init__(self):
        self._lock = threading.Lock()
        self._data: dict[str, int] = {}
        self._versions: dict[str, str] = {}

    def version(self, *, create: bool) -> str | None:
        with self._lock:
            if "v" not in self._versions and create:
                self._versions["v"] = uuid.uuid4().hex
            return self._versions.get("v")

    def bump(self) -> None:
        with self._lock:
            self._versions["v"] = uuid.uuid4().hex

    def _total(self, now: int, c: Counter) -> int:
        current = now // c.bucket_seconds
        return sum(self._data.get(f"{c.key}:{b}", 0) for b in range(current - c.buckets + 1, current + 1))

    def reserve(self, now: int, counters: list[Counter], expected_version: str):
        with self._lock:
            current = self._versions.get("v")
            if expected_version and current != expected_version:
                return VersionChanged(current or "")
            for i, c in enumerate(counters):
                total = self._total(now, c)
                if c.limit >= 0 and total + c.add > c.limit:
                    return Exceeded(i, total)
            for c in counters:
                key = f"{c.key}:{now // c.bucket_seconds}"
                self._data[key] = self._data.get(key, 0) + c.add
        return None

    def release(self, buckets):
        with self._lock:
            for key, amount, _ttl in buckets:
                self._data[key] = self._data.get(key, 0) - amount

    def value(self, now: int, c: Counter) -> int:
        with self._lock:
            return self._total(now, c)

    def set(self, key: str, value: int) -> None:
        with self._lock:
            self._data[key] = value

    def set_many(self, items) -> None:
        with self._lock:
            for key, value, _ttl in items:
                self._data[key] = value

    def clear(self):
        with self._lock:
            self._data.clear()
            self._versions.clear()


def _prefixed(key: str) -> str:
    return f"{settings.CACHES['default'].get('KEY_PREFIX', 'house')}:risk:{key}"


_redis = _RedisBackend()
_local = _LocalBackend()


def _backend():
    return _redis if settings.REDIS_URL else _local


def counters_clear_local() -> None:
    """Tests without Redis: forget every local counter."""
    _local.clear()
