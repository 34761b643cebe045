"""HMAC signing of S2S wallet messages (SPEC §9), shared by the house's client and the reference wallet server.

``X-Signature`` = base64(HMAC-SHA256(secret, timestamp + "." + raw body)), ``X-Timestamp`` the
decimal unix-seconds string. Pure functions: no Django, no I/O.
"""

import base64
import hashlib
import hmac
import re
import time
from collections.abc import Iterable

MAX_SKEW_SECONDS = 60
TIMESTAMP_HEADER = "X-Timestamp"
SIGNATURE_HEADER = "X-Signature"

_TIMESTAMP = re.compile(r"[0-9]{1,12}")


def sign(secret: str, timestamp: str, body: bytes) -> str:
    message = str(timestamp).encode() + b"." + body
    return base64.b64encode(hmac.new(secret.encode(), message, hashlib.sha256).digest()).decode("ascii")


def _fresh(timestamp: str | None, *, max_skew: int, now: float | None) -> bool:
    if not isinstance(timestamp, str) or not _TIMESTAMP.fullmatch(timestamp):
        return False
    current = time.time() if now is None else now
    return abs(current - int(timestamp)) <= max_skew


def verify(
    secret: str, timestamp: str | None, body: bytes, signature: str | None, *, max_skew: int = MAX_SKEW_SECONDS, now: float | None = None
) -> bool:
    """True when ``signature`` is ``secret``'s signature of ``body`` at ``timestamp`` and the timestamp is fresh."""
    return verify_any([secret], timestamp, body, signature, max_skew=max_skew, now=now)


def verify_any(
    secrets: Iterable[str],
    timestamp: str | None,
    body: bytes,
    signature: str | None,
    *,
    max_skew: int = MAX_SKEW_SECONDS,
    now: float | None = None,
) -> bool:
    """Like ``verify`` against several secrets (current and previous, while a secret is rotated)."""
    if not signature or not _fresh(timestamp, max_skew=max_skew, now=now):
        return False
    given = signature.encode("utf-8", "replace")
    # Check every secret (no early exit) so the time taken does not tell which one matched.
    matches = [hmac.compare_digest(sign(secret, timestamp, body).encode("ascii"), given) for secret in secrets if secret]
    return any(matches)


def signed_headers(secret: str, body: bytes, *, now: float | None = None) -> dict[str, str]:
    timestamp = str(int(time.time() if now is None else now))
    return {TIMESTAMP_HEADER: timestamp, SIGNATURE_HEADER: sign(secret, timestamp, body)}
