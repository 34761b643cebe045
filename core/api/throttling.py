"""Per-user rate limits of the reference table (django-ratelimit counters in the cache).

The usage is kept on the view so every response carries X-RateLimit-* headers. If the
cache is unreachable the limit fails open (logged): rate limits protect against abuse,
not money, and trading should not stop because Redis blinked.
"""

import logging
import time

from django_ratelimit.core import get_usage
from rest_framework.throttling import BaseThrottle

log = logging.getLogger("house.ratelimit")


def _caller_key(group, request) -> str:
    principal = getattr(request, "house_principal", None)
    if principal is not None:
        return principal.rate_key
    return "ip:" + request.META.get("REMOTE_ADDR", "unknown")


class PerUserRateThrottle(BaseThrottle):
    """Reads ``rate_group`` and ``rate`` (e.g. "20/m") from the view."""

    def allow_request(self, request, view):
        rate = getattr(view, "rate", None)
        if not rate:
            return True
        django_request = request._request
        django_request.house_principal = request.user
        try:
            usage = get_usage(django_request, group=view.rate_group, key=_caller_key, rate=rate, increment=True)
        except Exception:  # noqa: BLE001 - cache outage: fail open, say so
            log.warning("rate limit cache unavailable; allowing request", exc_info=True)
            return True
        if usage is None or usage["time_left"] < 0:  # disabled, or the cache did not answer
            return True
        reset = int(time.time()) + max(1, int(usage["time_left"]))  # the window's end, never "now"
        view.rate_headers = {
            "X-RateLimit-Limit": str(usage["limit"]),
            "X-RateLimit-Remaining": str(max(0, usage["limit"] - usage["count"])),
            "X-RateLimit-Reset": str(reset),
        }
        self._wait = max(1, int(usage["time_left"]))
        return not usage["should_limit"]

    def wait(self):
        return getattr(self, "_wait", 60)
