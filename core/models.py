"""The kernel's tables: the first response to each client Idempotency-Key, and the events outbox."""

import json
from decimal import Decimal

from django.db import models


class IdempotencyRecord(models.Model):
    """First response to a client's Idempotency-Key, per caller and endpoint."""

    scope = models.CharField(max_length=200, help_text="caller + endpoint")
    key = models.CharField(max_length=255)
    request_hash = models.CharField(max_length=64)
    status_code = models.PositiveSmallIntegerField()
    response_body = models.TextField(help_text="The JSON body exactly as first sent.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        # The table predates the kernel (it was casino's); the name stays, so raw SQL and data do too.
        db_table = "casino_idempotency"
        constraints = [models.UniqueConstraint(fields=["scope", "key"], name="idempotency_unique")]


class DecimalJSONDecoder(json.JSONDecoder):
    """Event data read back with exact decimals (money stays Decimal, SPEC §3)."""

    def __init__(self, *args, **kwargs):
        kwargs["parse_float"] = Decimal
        super().__init__(*args, **kwargs)


class Event(models.Model):
    """The transactional outbox (SPEC §14): one row per thing that happened that an operator is told
    about, written in the same transaction as the change (core.events). Public id ``evt_<id>``.

    Written only through core.events (raw SQL: the data is rendered once with exact decimals, and
    ``xact_id`` is left to the database). Listed in the order (``xact_id``, ``id``): on PostgreSQL
    ``xact_id`` is the id of the transaction that wrote the row, and only rows of transactions older
    than every running one are listed, so a row can never appear before one already listed
    (core.events, docs/decisions.md).
    """

    id = models.BigAutoField(primary_key=True)
    # No foreign key: the kernel imports no app (casino's operators); the id is the operator's.
    operator_id = models.UUIDField()
    type = models.CharField(max_length=64)
    data = models.JSONField(decoder=DecimalJSONDecoder)
    request_id = models.CharField(max_length=64, blank=True, default="")
    created_at = models.DateTimeField()
    # PostgreSQL: pg_current_xact_id() of the writing transaction (the column's default, migration
    # 0002); NULL elsewhere (one writer at a time: id order is commit order).
    xact_id = models.BigIntegerField(null=True, blank=True, editable=False)

    class Meta:
        db_table = "house_events"
        # Replay (per operator) and the webhook dispatcher (per operator with endpoints) read in this order.
        indexes = [models.Index(fields=["operator_id", "xact_id", "id"], name="house_event_operator_order")]

    def __str__(self) -> str:
        return f"{self.public_id} {self.type}"

    @property
    def public_id(self) -> str:
        return event_public_id(self.id)


EVENT_ID_PREFIX = "evt_"


def event_public_id(event_id: int) -> str:
    return f"{EVENT_ID_PREFIX}{event_id}"
