"""The events outbox (SPEC §14): what happened, written in the transaction that made it happen.

    event_record(operator_id=..., type="trade.executed", data={...})   one event
    events_record_bulk([(operator_id, type, data), ...])              many, one statement

Both must run inside the caller's transaction (they assert it), so an event exists exactly when
its change committed: no event for a change that rolled back, none lost for one that committed.
Delivery is somebody else's business (the webhooks app registers a listener that is kicked after
commit, and its beat task picks up anything the kick missed). The kernel imports no app: the
operator is a bare id.

Order. Ids come from a sequence, so two transactions can commit in the opposite order of their
ids: listing by id alone, a client that stored the last id it saw would skip a smaller one that
committed later. Events are therefore listed in the order (``xact_id``, ``id``), where on
PostgreSQL ``xact_id`` is the writing transaction's id (``pg_current_xact_id()``), and only rows of
transactions older than every transaction still running (``pg_snapshot_xmin(pg_current_snapshot())``)
are listed: every transaction that can still commit an event has an id at or above that horizon,
so its rows sort after everything listed. The replay API and the webhook dispatcher's per-operator
cursors both read this way (docs/decisions.md, "Issue 12: webhooks").
"""

import uuid
from collections.abc import Callable, Iterable
from datetime import datetime

from django.conf import settings
from django.db import connection, transaction
from django.db.models import BooleanField, Q, QuerySet
from django.db.models.expressions import RawSQL
from django.utils import timezone

from core.api.rendering import dumps
from core.arrays import pg_array
from core.middleware import request_id_current
from core.models import Event

EVENT_TYPES = (
    "trade.executed",
    "payout.paid",
    "payout.failed",
    "settlement.completed",
    "settlement.reversed",
    "market.suspended",
    "market.resumed",
    "market.closed",
    "player.debt_changed",
    "wallet.manual_intervention",
)

# One statement for any number of events. The MATERIALIZED CTE takes the transaction's id (assigning
# one if the transaction has none yet) before any row takes its id from the sequence.
_INSERT_SQL = """
WITH x AS MATERIALIZED (SELECT pg_current_xact_id()::text::bigint AS xact_id)
INSERT INTO house_events (operator_id, type, data, request_id, created_at, xact_id)
SELECT r.operator_id, r.type, r.data::jsonb, %(request_id)s, %(now)s, x.xact_id
  FROM x, unnest(%(operators)s::uuid[], %(types)s::varchar[], %(data)s::text[]) AS r (operator_id, type, data)
"""
# The same as a CTE of a caller's data-modifying statement (the trade's one statement,
# casino.services.trade_executor.house_wallet_sql): the column's default takes the transaction's id.
EVENT_INSERT_CTE = """INSERT INTO house_events (operator_id, type, data, request_id, created_at)
        VALUES (%(e_operator)s, %(e_type)s, %(e_data)s::jsonb, %(e_request)s, %(now)s) RETURNING 1"""

_listeners: list[Callable[[], None]] = []


def events_enabled() -> bool:
    """False only for the benchmark's A/B (``HOUSE_EVENTS_ENABLED=0``): no event is written."""
    return settings.HOUSE_EVENTS_ENABLED


def event_record(*, operator_id: uuid.UUID | str, type: str, data: dict) -> None:
    """One event, inside the caller's transaction."""
    events_record_bulk([(operator_id, type, data)])


def events_record_bulk(rows: Iterable[tuple]) -> int:
    """Events ``(operator_id, type, data)`` inside the caller's transaction, one statement for all
    (a settlement chunk writes a thousand). Returns how many were written."""
    assert transaction.get_connection().in_atomic_block, "events must be recorded inside the transaction of their change"
    if not events_enabled():
        return 0
    rows = list(rows)
    if not rows:
        return 0
    for _, kind, _ in rows:
        if kind not in EVENT_TYPES:
            raise ValueError(f"unknown event type {kind!r}")
    now = timezone.now()
    request_id = (request_id_current() or "")[:64]
    operators = [o if isinstance(o, uuid.UUID) else uuid.UUID(str(o)) for o, _, _ in rows]
    bodies = [dumps(data) for _, _, data in rows]
    if connection.vendor == "postgresql":
        params = {
            "operators": pg_array(operators),
            "types": pg_array([kind for _, kind, _ in rows]),
            "data": pg_array(bodies),
            "request_id": request_id,
            "now": now,
        }
        with connection.cursor() as cursor:
            cursor.execute(_INSERT_SQL, params)
    else:
        _insert_portable(operators, [kind for _, kind, _ in rows], bodies, request_id, now)
    events_kick_on_commit()
    return len(rows)


def _insert_portable(operators, kinds, bodies, request_id: str, now: datetime) -> None:
    op_field, at_field = Event._meta.get_field("operator_id"), Event._meta.get_field("created_at")
    at = at_field.get_db_prep_value(now, connection)
    with connection.cursor() as cursor:
        cursor.executemany(
            "INSERT INTO house_events (operator_id, type, data, request_id, created_at) VALUES (%s, %s, %s, %s, %s)",
            [(op_field.get_db_prep_value(o, connection), k, b, request_id, at) for o, k, b in zip(operators, kinds, bodies, strict=True)],
        )


_SETTLED = "house_events.xact_id < pg_snapshot_xmin(pg_current_snapshot())::text::bigint"


def events_replayable(queryset: QuerySet | None = None) -> QuerySet:
    """Events whose transaction is older than every running one: nothing can sort before them any more."""
    queryset = queryset if queryset is not None else Event.objects.all()
    if connection.vendor != "postgresql":  # one writer at a time: commit order is id order
        return queryset
    return queryset.filter(RawSQL(_SETTLED, [], output_field=BooleanField()))


def events_ordering() -> tuple[str, ...]:
    """The listing order (module docstring): (xact_id, id) on PostgreSQL, id elsewhere."""
    return ("xact_id", "id") if connection.vendor == "postgresql" else ("id",)


def events_after(queryset: QuerySet, *, xact_id: int | None, event_id: int) -> QuerySet:
    """Events after the position (xact_id, event_id) in the listing order."""
    if connection.vendor != "postgresql" or xact_id is None:
        return queryset.filter(id__gt=event_id)
    return queryset.filter(Q(xact_id__gt=xact_id) | Q(xact_id=xact_id, id__gt=event_id))


def events_position(*, operator_id, event_id: int) -> tuple[int | None, int]:
    """The listing position of an event the client saw (``after=``); one no longer kept (older than the
    replay window) or never seen is placed by its id alone."""
    xact_id = Event.objects.filter(operator_id=operator_id, pk=event_id).values_list("xact_id", flat=True).first()
    return xact_id, event_id


def events_position_last(*, operator_id) -> tuple[int | None, int]:
    """The position of the operator's last listable event ((None, 0) if none): a new subscriber starts there."""
    ordering = [f"-{name}" for name in events_ordering()]
    last = events_replayable(Event.objects.filter(operator_id=operator_id)).order_by(*ordering).values_list("xact_id", "id").first()
    return last if last is not None else (None, 0)


def events_listener_register(listener: Callable[[], None]) -> None:
    """Called after a transaction that wrote events commits (the webhooks app plugs its dispatcher
    kick in at start-up). A listener must be cheap and must not raise."""
    if listener not in _listeners:
        _listeners.append(listener)


def events_kick() -> None:
    for listener in _listeners:
        listener()


def events_kick_on_commit() -> None:
    if _listeners:
        transaction.on_commit(events_kick)
