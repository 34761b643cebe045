"""Reads of the outbox for the operator API: the replay list (GET operator/events)."""

from datetime import timedelta

from django.conf import settings
from django.db.models import QuerySet
from django.utils import timezone

from core.events import events_replayable
from core.models import Event


def events_for_replay(*, operator_id, after: int | None, type: str | None) -> QuerySet:
    """The operator's events of the replay window after ``after``, only those that no event of a smaller
    id can join any more (core.events.events_replayable); oldest first is the caller's ordering."""
    since = timezone.now() - timedelta(days=settings.WEBHOOK_EVENT_RETENTION_DAYS)
    rows = Event.objects.filter(operator_id=operator_id, created_at__gte=since)
    if after is not None:
        rows = rows.filter(id__gt=after)
    if type is not None:
        rows = rows.filter(type=type)
    return events_replayable(rows).only("id", "type", "data", "created_at")
