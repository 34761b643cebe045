"""Operators' webhook endpoints: subscribe, list, delete, rotate the signing secret (SPEC §14).

A secret is ``whsec_`` + 32 random bytes in base64 (the Standard Webhooks form), returned once by
the call that issues it and sealed at rest (core.crypto). A rotation keeps the previous secret
signing beside the new one for 24 hours, so receivers can switch without losing a delivery.
"""

import base64
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from core.crypto import secret_open, secret_seal
from core.errors import HouseError
from core.events import EVENT_TYPES, events_position_last
from webhooks.adapters.endpoint import url_check
from webhooks.models import DeliveryStatus, WebhookDelivery, WebhookDispatchCursor, WebhookEndpoint

ROTATION_OVERLAP = timedelta(hours=24)
MAX_ENDPOINTS_PER_OPERATOR = 20


@dataclass(frozen=True)
class Issued:
    endpoint: WebhookEndpoint
    secret: str  # shown once


def secret_new() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def events_validate(events) -> list[str]:
    """``["*"]`` or a non-empty list of known event types (duplicates dropped, order kept)."""
    if not isinstance(events, list) or not events or not all(isinstance(e, str) for e in events):
        raise HouseError("Invalid events", code="invalid_events")
    if "*" in events:
        if len(set(events)) != 1:
            raise HouseError('Invalid events: "*" stands alone', code="invalid_events")
        return ["*"]
    unknown = sorted({e for e in events if e not in EVENT_TYPES})
    if unknown:
        raise HouseError("Unknown event type", code="unknown_event_type", extra={"unknown": unknown, "known": list(EVENT_TYPES)})
    return list(dict.fromkeys(events))


def endpoint_create(*, operator, url: str, events) -> Issued:
    events = events_validate(events)
    url_check(url)
    if WebhookEndpoint.objects.filter(operator=operator).count() >= MAX_ENDPOINTS_PER_OPERATOR:
        raise HouseError("Too many webhook endpoints", code="too_many_webhooks")
    secret = secret_new()
    with transaction.atomic():
        idle = not WebhookEndpoint.objects.filter(operator=operator, enabled=True).exists()
        endpoint = WebhookEndpoint.objects.create(operator=operator, url=url, events=events, secret_sealed=secret_seal(secret))
        dispatch_cursor_start(operator_id=operator.pk, restart=idle)
    return Issued(endpoint, secret)


def endpoint_of(*, operator, endpoint_id) -> WebhookEndpoint:
    """The operator's own endpoint, else 404 (another operator's id says nothing more)."""
    endpoint = WebhookEndpoint.objects.filter(operator=operator, pk=endpoint_id).first()
    if endpoint is None:
        raise HouseError("Webhook not found", code="not_found", status=404)
    return endpoint


def endpoint_delete(*, operator, endpoint_id) -> None:
    with transaction.atomic():
        endpoint = endpoint_of(operator=operator, endpoint_id=endpoint_id)
        # Its deliveries go with it, in one statement (the ORM's cascade would load every row first).
        WebhookDelivery.objects.filter(endpoint_id=endpoint.pk)._raw_delete(WebhookDelivery.objects.db)
        endpoint.delete()


def endpoint_rotate_secret(*, endpoint: WebhookEndpoint, now: datetime | None = None) -> str:
    """A new secret; the current one keeps signing beside it for 24 hours. Returns the new one (shown once)."""
    now = now or timezone.now()
    secret = secret_new()
    with transaction.atomic():
        endpoint = WebhookEndpoint.objects.select_for_update().get(pk=endpoint.pk)
        endpoint.previous_secret_sealed = endpoint.secret_sealed
        endpoint.previous_secret_expires_at = now + ROTATION_OVERLAP
        endpoint.secret_sealed = secret_seal(secret)
        endpoint.save(update_fields=["previous_secret_sealed", "previous_secret_expires_at", "secret_sealed", "updated_at"])
    return secret


def endpoint_enable(*, endpoint: WebhookEndpoint) -> None:
    """Staff: back on after a disable. It is sent what happens from now on: deliveries given up on stay
    given up and what happened meanwhile is not sent (the operator replays it with GET operator/events)."""
    with transaction.atomic():
        idle = not WebhookEndpoint.objects.filter(operator_id=endpoint.operator_id, enabled=True).exists()
        WebhookEndpoint.objects.filter(pk=endpoint.pk).update(enabled=True, disabled_reason="", disabled_at=None, failing_since=None)
        dispatch_cursor_start(operator_id=endpoint.operator_id, restart=idle)


def endpoint_disable(*, endpoint_ids, reason: str, now: datetime | None = None) -> int:
    """Disabled endpoints get nothing more; what was waiting for them is given up."""
    now = now or timezone.now()
    with transaction.atomic():
        count = WebhookEndpoint.objects.filter(pk__in=list(endpoint_ids), enabled=True).update(
            enabled=False, disabled_reason=reason[:500], disabled_at=now, updated_at=now
        )
        WebhookDelivery.objects.filter(endpoint_id__in=list(endpoint_ids), status=DeliveryStatus.PENDING).update(
            status=DeliveryStatus.FAILED, last_error="endpoint disabled"
        )
    return count


def dispatch_cursor_start(*, operator_id, restart: bool) -> None:
    """The operator's cursor, at its last event when created (a new subscriber is sent what happens from
    now on; older events are in GET operator/events), or moved there when ``restart`` (no endpoint was
    enabled: what happened meanwhile is not sent either)."""
    xact_id, event_id = events_position_last(operator_id=operator_id)
    cursor, created = WebhookDispatchCursor.objects.get_or_create(
        operator_id=operator_id, defaults={"xact_id": xact_id, "event_id": event_id}
    )
    if restart and not created:
        WebhookDispatchCursor.objects.filter(pk=cursor.pk).update(xact_id=xact_id, event_id=event_id, updated_at=timezone.now())


def signing_secrets(endpoint: WebhookEndpoint, *, now: datetime) -> tuple[str, ...]:
    """The current secret, and the previous one while its rotation overlap lasts."""
    current = secret_open(endpoint.secret_sealed)
    if endpoint.previous_secret_sealed and endpoint.previous_secret_expires_at and endpoint.previous_secret_expires_at > now:
        return current, secret_open(endpoint.previous_secret_sealed)
    return (current,)
