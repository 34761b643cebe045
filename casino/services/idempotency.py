"""Client Idempotency-Key: the same key and body return the first response; another body, 409.

The record is written inside the money transaction of the request it answers, so a
response is stored if and only if its effects committed. Two concurrent requests with
one key: the second's insert hits the unique constraint, its transaction (and money
movement) rolls back, and it answers with the first one's stored response.
Refused requests move no money and are not stored; retrying them re-executes.
"""

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field

from casino.models import IdempotencyRecord

MAX_KEY_LENGTH = 255


@dataclass
class IdempotencySlot:
    scope: str
    key: str
    request_hash: str
    render: Callable[[object], tuple[int, str]]
    stored: IdempotencyRecord | None = field(default=None)

    def record(self, result) -> None:
        """Store the response to ``result``; call inside the transaction that produced it."""
        status_code, body = self.render(result)
        self.stored = IdempotencyRecord.objects.create(
            scope=self.scope, key=self.key, request_hash=self.request_hash, status_code=status_code, response_body=body
        )


def request_fingerprint(*parts: str) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode("utf-8"))
        digest.update(b"\x00")
    return digest.hexdigest()


def idempotency_lookup(*, scope: str, key: str) -> IdempotencyRecord | None:
    return IdempotencyRecord.objects.filter(scope=scope, key=key).first()
