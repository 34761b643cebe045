"""Circuit breaker per operator wallet (SPEC §9), kept in the shared cache so every worker sees it.

Closed: calls go through; unknown outcomes are counted in a rolling window. Reaching the
threshold opens the breaker for the cool-down: new trades for that operator are refused
fast (503). After the cool-down one caller at a time is let through as a probe; a definite
answer closes the breaker, another failure re-opens it. Money already in flight
(rollbacks, credits, payouts) is never blocked by the breaker: it retries on its own schedule.
"""

import time

from django.core.cache import cache

from core.errors import HouseError


def _keys(operator_id) -> tuple[str, str, str]:
    base = f"wallet-breaker:{operator_id}"
    return f"{base}:failures", f"{base}:open-until", f"{base}:probe"


def breaker_allows(*, operator_id, cooldown_seconds: int) -> bool:
    _, open_key, probe_key = _keys(operator_id)
    open_until = cache.get(open_key)
    if open_until is None:
        return True
    if time.time() < open_until:
        return False
    # Half-open: a single probe at a time.
    return cache.add(probe_key, 1, timeout=max(cooldown_seconds, 1))


def breaker_check(*, config) -> None:
    if not breaker_allows(operator_id=config.operator_id, cooldown_seconds=config.breaker_cooldown_seconds):
        raise HouseError("Operator wallet unavailable", code="wallet_circuit_open", status=503)


def breaker_record(*, config, success: bool) -> bool:
    """Count one call's outcome; True when the breaker is open after it (the caller stops sending)."""
    failures_key, open_key, probe_key = _keys(config.operator_id)
    if success:
        if cache.get(open_key) is not None or cache.get(failures_key):
            cache.delete_many([failures_key, open_key, probe_key])
        return False
    if cache.add(failures_key, 1, timeout=config.breaker_window_seconds):
        count = 1
    else:
        try:
            count = cache.incr(failures_key)
        except ValueError:
            cache.add(failures_key, 1, timeout=config.breaker_window_seconds)
            count = 1
    if count >= config.breaker_failures or cache.get(open_key) is not None:
        cache.set(open_key, time.time() + config.breaker_cooldown_seconds, timeout=config.breaker_cooldown_seconds * 10)
        cache.delete(probe_key)
        return True
    return False


def breaker_is_open(*, operator_id) -> bool:
    _, open_key, _ = _keys(operator_id)
    open_until = cache.get(open_key)
    return open_until is not None and time.time() < open_until
