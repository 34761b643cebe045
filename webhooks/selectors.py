"""Reads of the outbox for the operator API: the replay list (GET operator/events)."""

from datetime import timedelta

from django.conf import settings
from django.db.models import QuerySet
from django.utils import timezone

from core.events import events_after, events_position, events_replayable
from core.models import Event


def events_for_replay(*, operator_id, after: int | None, type: str | None) -> QuerySet:
    """The operator's events of the replay window after the event ``after``, in the listing order
    (core.events.events_ordering): only those before which nothing can appear any more."""
    since = timezone.now() - timedelta(days=settings.WEBHOOK_EVENT_RETENTION_DAYS)
    rows = Event.objects.filter(operator_id=operator_id, created_at__gte=since)
    if after is not None:
        xact_id, event_id = events_position(operator_id=operator_id, event_id=after)
        rows = events_after(rows, xact_id=xact_id, event_id=event_id)
    if type is not None:
        rows = rows.filter(type=type)
    return events_replayable(rows).only("id", "xact_id", "type", "data", "created_at")
