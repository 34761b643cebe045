"""From the outbox to the operators' endpoints: fan out, send, record, back off, give up.

    events_dispatch      per operator with enabled endpoints, one transaction: its cursor row locked
                         (SKIP LOCKED: one dispatcher per operator at a time), its events after the
                         cursor in the outbox's listing order (only settled ones, core.events) fanned
                         out to its endpoints subscribing to their type, one delivery per (event,
                         endpoint), the cursor moved to the last. Nothing is written per event, and
                         the events of operators without endpoints are never read
    deliveries_send_due  claim due deliveries (SKIP LOCKED; the claim is a lease: a worker that
                         dies lets them fall due again), send them concurrently with no transaction
                         open, record every answer in one transaction
    endpoints_disable_failing  an endpoint failing without a success for 3 days is disabled

At least once: a delivery is re-sent under the same ``webhook-id`` (the event's public id) until
a 2xx; receivers deduplicate on it. A failure is retried after 10 s, doubling, at most an hour
apart, until three days after the event.
"""

import logging
import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import connection, transaction
from django.utils import timezone

from core.api.rendering import dumps, iso
from core.arrays import pg_array
from core.crypto import SecretUnreadable
from core.events import events_after, events_ordering, events_replayable
from core.models import Event, event_public_id
from webhooks.adapters.endpoint import Outgoing, Sent, WebhookClient
from webhooks.models import DeliveryStatus, WebhookDelivery, WebhookDispatchCursor, WebhookEndpoint
from webhooks.services.endpoints import dispatch_cursor_start, endpoint_disable, signing_secrets

log = logging.getLogger("house.webhooks")

FIRST_RETRY_SECONDS = 10
MAX_RETRY_SECONDS = 3600
GIVE_UP_AFTER = timedelta(days=3)
DISABLE_AFTER = timedelta(days=3)
DISPATCH_BATCH = 1000
SEND_BATCH = 500


def backoff(attempts: int) -> timedelta:
    """After the ``attempts``-th failure: 10 s, 20 s, 40 s, ... at most an hour (a little jitter, never more)."""
    delay = min(MAX_RETRY_SECONDS, FIRST_RETRY_SECONDS * (2 ** max(0, attempts - 1)))
    return timedelta(seconds=delay * random.uniform(0.85, 1.0))


def events_dispatch(*, limit: int = DISPATCH_BATCH, now: datetime | None = None) -> int:
    """Fan out up to ``limit`` new events per operator with enabled endpoints; returns how many events were taken."""
    now = now or timezone.now()
    operators = set(WebhookEndpoint.objects.filter(enabled=True).values_list("operator_id", flat=True))
    return sum(_dispatch_operator(operator_id, limit=limit, now=now) for operator_id in operators)


def _dispatch_operator(operator_id, *, limit: int, now: datetime) -> int:
    with transaction.atomic():
        cursor = WebhookDispatchCursor.objects.select_for_update(skip_locked=True).filter(operator_id=operator_id).first()
        if cursor is None:  # another dispatcher holds it, or it was lost (an endpoint's creation starts it)
            if not WebhookDispatchCursor.objects.filter(operator_id=operator_id).exists():
                dispatch_cursor_start(operator_id=operator_id, restart=False)
            return 0
        rows = events_after(
            events_replayable(Event.objects.filter(operator_id=operator_id)), xact_id=cursor.xact_id, event_id=cursor.event_id
        )
        events = list(rows.order_by(*events_ordering()).only("id", "xact_id", "type")[:limit])
        if not events:
            return 0
        endpoints = list(WebhookEndpoint.objects.filter(operator_id=operator_id, enabled=True).only("id", "events"))
        deliveries = [
            WebhookDelivery(event_id=e.id, endpoint_id=endpoint.id, next_attempt_at=now, created_at=now)
            for e in events
            for endpoint in endpoints
            if endpoint.subscribes(e.type)
        ]
        WebhookDelivery.objects.bulk_create(deliveries, ignore_conflicts=True, batch_size=1000)
        cursor.xact_id, cursor.event_id = events[-1].xact_id, events[-1].id
        cursor.save(update_fields=["xact_id", "event_id", "updated_at"])
    return len(events)


def event_body(event: Event) -> str:
    """The Standard Webhooks body: ``{"type", "timestamp", "data"}`` (exact decimals)."""
    return dumps({"type": event.type, "timestamp": iso(event.created_at), "data": event.data})


@dataclass(frozen=True)
class SendStats:
    claimed: int
    delivered: int
    failed: int


def _claim_lease(client: WebhookClient, count: int) -> timedelta:
    """How long the claimed deliveries are this worker's: every call at its timeout, in waves."""
    waves = max(1, -(-count // client.concurrency))
    return timedelta(seconds=waves * client.timeout * 2 + 30)


def deliveries_send_due(*, client: WebhookClient, limit: int = SEND_BATCH, now: datetime | None = None) -> SendStats:
    now = now or timezone.now()
    with transaction.atomic():
        due = list(
            WebhookDelivery.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(status=DeliveryStatus.PENDING, next_attempt_at__lte=now)
            .select_related("event", "endpoint")
            .order_by("next_attempt_at", "id")[:limit]
        )
        if not due:
            return SendStats(0, 0, 0)
        WebhookDelivery.objects.filter(pk__in=[d.pk for d in due]).update(next_attempt_at=now + _claim_lease(client, len(due)))
    attempts, unusable, secrets_of = [], {}, {}
    for delivery in due:
        endpoint = delivery.endpoint
        if not endpoint.enabled:
            unusable[delivery.pk] = "endpoint disabled"
            continue
        if endpoint.pk not in secrets_of:  # opened once per endpoint and batch
            try:
                secrets_of[endpoint.pk] = signing_secrets(endpoint, now=now)
            except SecretUnreadable:
                secrets_of[endpoint.pk] = None
        secrets = secrets_of[endpoint.pk]
        if secrets is None:
            unusable[delivery.pk] = "signing secret unreadable (HOUSE_SECRETS_KEY changed?)"
            continue
        attempts.append(
            Outgoing(
                key=delivery.pk,
                url=endpoint.url,
                msg_id=event_public_id(delivery.event_id),
                body=event_body(delivery.event),
                secrets=secrets,
                request_id=delivery.event.request_id,
            )
        )
    results = client.send_many(attempts) if attempts else []
    results += [Sent(key, False, None, error) for key, error in unusable.items()]
    return _record(due, results, now=timezone.now(), given_up={k for k in unusable})


def _record(due: list[WebhookDelivery], results: list[Sent], *, now: datetime, given_up: set) -> SendStats:
    by_id = {d.pk: d for d in due}
    ok_endpoints, failing_endpoints = set(), set()
    changed = []
    for sent in results:
        delivery = by_id[sent.key]
        delivery.attempts += 1
        delivery.last_attempt_at = now
        delivery.last_status_code = sent.status_code
        delivery.last_error = sent.error[:500]
        if sent.ok:
            delivery.status, delivery.delivered_at, delivery.next_attempt_at = DeliveryStatus.DELIVERED, now, now
            ok_endpoints.add(delivery.endpoint_id)
        else:
            failing_endpoints.add(delivery.endpoint_id)
            retry_at = now + backoff(delivery.attempts)
            if sent.key in given_up or retry_at > delivery.event.created_at + GIVE_UP_AFTER:
                delivery.status, delivery.next_attempt_at = DeliveryStatus.FAILED, now
            else:
                delivery.next_attempt_at = retry_at
        changed.append(delivery)
    with transaction.atomic():
        _deliveries_write(changed)
        if ok_endpoints:
            WebhookEndpoint.objects.filter(pk__in=ok_endpoints, failing_since__isnull=False).update(failing_since=None)
        still_failing = failing_endpoints - ok_endpoints
        if still_failing:
            WebhookEndpoint.objects.filter(pk__in=still_failing, failing_since__isnull=True).update(failing_since=now)
    if failing_endpoints:
        endpoints_disable_failing(now=now)
    delivered = sum(1 for s in results if s.ok)
    return SendStats(len(due), delivered, len(results) - delivered)


# One statement for a batch's answers on PostgreSQL (Django's bulk_update builds a CASE per field and row).
_WRITE_SQL = """
UPDATE webhook_deliveries AS d
   SET status = v.status, attempts = v.attempts, next_attempt_at = v.next_at, last_status_code = v.code,
       last_error = v.error, last_attempt_at = v.attempt_at, delivered_at = v.delivered_at
  FROM unnest(%(ids)s::bigint[], %(statuses)s::varchar[], %(attempts)s::integer[], %(next)s::timestamptz[],
              %(codes)s::integer[], %(errors)s::varchar[], %(at)s::timestamptz[], %(delivered)s::timestamptz[])
       AS v (id, status, attempts, next_at, code, error, attempt_at, delivered_at)
 WHERE d.id = v.id
"""


def _deliveries_write(rows: list[WebhookDelivery]) -> None:
    if connection.vendor != "postgresql":
        fields = ["status", "attempts", "next_attempt_at", "last_status_code", "last_error", "last_attempt_at", "delivered_at"]
        WebhookDelivery.objects.bulk_update(rows, fields, batch_size=500)
        return

    def stamps(values):
        return pg_array([v.isoformat() if v is not None else None for v in values])

    params = {
        "ids": pg_array([d.pk for d in rows]),
        "statuses": pg_array([d.status for d in rows]),
        "attempts": pg_array([d.attempts for d in rows]),
        "next": stamps([d.next_attempt_at for d in rows]),
        "codes": pg_array([d.last_status_code for d in rows]),
        "errors": pg_array([d.last_error for d in rows]),
        "at": stamps([d.last_attempt_at for d in rows]),
        "delivered": stamps([d.delivered_at for d in rows]),
    }
    with connection.cursor() as cursor:
        cursor.execute(_WRITE_SQL, params)


def endpoints_disable_failing(*, now: datetime | None = None) -> int:
    """Endpoints whose every attempt has failed for three days: disabled, staff see them in the admin."""
    now = now or timezone.now()
    ids = list(WebhookEndpoint.objects.filter(enabled=True, failing_since__lte=now - DISABLE_AFTER).values_list("pk", flat=True))
    if not ids:
        return 0
    count = endpoint_disable(
        endpoint_ids=ids,
        reason=f"Failing for 3 days: every delivery attempt failed since {now - DISABLE_AFTER:%Y-%m-%d %H:%M} UTC",
        now=now,
    )
    log.warning("disabled %d webhook endpoints failing for 3 days", count)
    return count


def webhooks_pump_once(*, client: WebhookClient, now: datetime | None = None) -> tuple[int, SendStats]:
    """One round: fan out new events, send what is due."""
    dispatched = events_dispatch(now=now)
    return dispatched, deliveries_send_due(client=client, now=now)


def events_retention(*, days: int, now: datetime | None = None, batch: int = 10_000) -> int:
    """Events older than ``days`` (and their deliveries) deleted, oldest first, a batch per transaction."""
    cutoff = (now or timezone.now()) - timedelta(days=days)
    total = 0
    while True:
        oldest = list(Event.objects.order_by("id").values_list("id", "created_at")[:batch])
        ids = [event_id for event_id, created_at in oldest if created_at < cutoff]
        if not ids:
            return total
        with transaction.atomic():
            WebhookDelivery.objects.filter(event_id__in=ids)._raw_delete(WebhookDelivery.objects.db)
            Event.objects.filter(pk__in=ids)._raw_delete(Event.objects.db)
        total += len(ids)
