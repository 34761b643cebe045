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

from core.models import IdempotencyRecord

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
        if self.stored is not None:  # claimed earlier: complete the claim
            IdempotencyRecord.objects.filter(pk=self.stored.pk).update(status_code=status_code, response_body=body)
            self.stored.status_code, self.stored.response_body = status_code, body
            return
        self.stored = IdempotencyRecord.objects.create(
            scope=self.scope, key=self.key, request_hash=self.request_hash, status_code=status_code, response_body=body
        )

    def claim(self) -> None:
        """Reserve the key before money moves outside the database (S2S): a concurrent request
        with the same key hits the unique constraint instead of moving money twice."""
        self.stored = IdempotencyRecord.objects.create(
            scope=self.scope, key=self.key, request_hash=self.request_hash, status_code=IN_PROGRESS, response_body=""
        )


IN_PROGRESS = 0


def idempotency_release(*, record_id) -> None:
    """Drop a claim whose request was refused or compensated (nothing moved; a retry may run)."""
    IdempotencyRecord.objects.filter(pk=record_id, status_code=IN_PROGRESS).delete()


def idempotency_complete(*, record_id, status_code: int, body: str) -> None:
    IdempotencyRecord.objects.filter(pk=record_id, status_code=IN_PROGRESS).update(status_code=status_code, response_body=body)


def request_fingerprint(*parts: str) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode("utf-8"))
        digest.update(b"\x00")
    return digest.hexdigest()


def idempotency_lookup(*, scope: str, key: str) -> IdempotencyRecord | None:
    return IdempotencyRecord.objects.filter(scope=scope, key=key).first()
