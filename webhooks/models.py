"""Operators' webhook endpoints and the deliveries of events to them (SPEC §14).

The events themselves are the kernel's outbox (core.models.Event): every app writes them without
knowing this app. A delivery is one event to one endpoint, retried under the same ``webhook-id``
(the event's public id) until a 2xx or until three days after the event.
"""

import uuid

from django.db import models
from django.db.models import Q


class WebhookEndpoint(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    operator = models.ForeignKey("casino.Operator", on_delete=models.CASCADE, related_name="webhook_endpoints")
    url = models.URLField(max_length=2000)
    # ["*"] or a list of event types (core.events.EVENT_TYPES).
    events = models.JSONField(default=list)
    # Sealed at rest (core.crypto): the signing secret ``whsec_…`` must be usable, so it is
    # recoverable with the key from the environment, and shown only once, when issued.
    secret_sealed = models.TextField(editable=False)
    # During a rotation the previous secret signs beside the new one until this time.
    previous_secret_sealed = models.TextField(editable=False, blank=True, default="")
    previous_secret_expires_at = models.DateTimeField(null=True, blank=True, editable=False)
    enabled = models.BooleanField(default=True)
    disabled_reason = models.CharField(max_length=500, blank=True, default="")
    disabled_at = models.DateTimeField(null=True, blank=True)
    # First failure since the last success; an endpoint failing for three days is disabled.
    failing_since = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "webhook_endpoints"
        indexes = [models.Index(fields=["operator", "enabled"], name="webhook_endpoint_operator")]

    def __str__(self) -> str:
        return self.url

    def subscribes(self, event_type: str) -> bool:
        return "*" in self.events or event_type in self.events


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "Pending (sending or waiting for a retry)"
    DELIVERED = "delivered", "Delivered (2xx)"
    FAILED = "failed", "Given up (3 days of failures, or the endpoint was disabled or deleted)"


class WebhookDelivery(models.Model):
    id = models.BigAutoField(primary_key=True)
    event = models.ForeignKey("core.Event", on_delete=models.CASCADE, related_name="+", db_index=False)
    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries", db_index=False)
    status = models.CharField(max_length=12, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    # Due for an attempt at this time; while a worker sends it, the time its claim lapses.
    next_attempt_at = models.DateTimeField()
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True, default="")
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField()

    class Meta:
        db_table = "webhook_deliveries"
        constraints = [models.UniqueConstraint(fields=["event", "endpoint"], name="webhook_delivery_once")]
        indexes = [
            models.Index(fields=["next_attempt_at"], name="webhook_delivery_due", condition=Q(status="pending")),
            models.Index(fields=["endpoint", "id"], name="webhook_delivery_endpoint"),
        ]

    def __str__(self) -> str:
        return f"event {self.event_id} -> {self.endpoint_id}: {self.status}"


class WebhookDispatchCursor(models.Model):
    """How far the dispatcher has fanned out an operator's events: the position (xact_id, event id) of
    the last one, in the outbox's listing order (core.events). One row per operator with endpoints;
    only those operators' events are ever read by the dispatcher, and nothing is written per event."""

    operator = models.OneToOneField("casino.Operator", on_delete=models.CASCADE, primary_key=True, related_name="+")
    xact_id = models.BigIntegerField(null=True, blank=True)
    event_id = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "webhook_dispatch_cursors"

    def __str__(self) -> str:
        return f"{self.operator_id} at ({self.xact_id}, {self.event_id})"
