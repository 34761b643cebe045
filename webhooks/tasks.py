"""Celery entry points of webhook delivery (queue ``webhooks``).

    webhooks_pump       fan out new events and send due deliveries until nothing is left (or a
                        minute passed); kicked after each commit that wrote events, and by beat
                        every few seconds for the retries and anything a kick missed
    webhooks_retention  events older than 30 days deleted (the replay window)

The kick is throttled per process: at most one pump is scheduled per KICK_INTERVAL, and an event
committed while one is scheduled is picked up by it.
"""

import logging
import threading
import time

from celery import shared_task
from django.conf import settings

from webhooks.adapters.endpoint import WebhookClient
from webhooks.services.delivery import endpoints_disable_failing, events_retention, webhooks_pump_once

log = logging.getLogger("house.webhooks")

KICK_INTERVAL = 0.25
PUMP_SECONDS = 60.0

_kick_lock = threading.Lock()
_pump_starts_at = 0.0  # monotonic time at which the last scheduled pump runs
_client: WebhookClient | None = None


def webhook_client() -> WebhookClient:
    global _client
    if _client is None:
        _client = WebhookClient()
    return _client


def dispatch_kick() -> None:
    """After a commit that wrote events: schedule a pump unless one scheduled is still to start."""
    global _pump_starts_at
    now = time.monotonic()
    with _kick_lock:
        if now < _pump_starts_at:
            return
        countdown = max(0.0, _pump_starts_at + KICK_INTERVAL - now)
        _pump_starts_at = now + countdown
    try:
        if settings.CELERY_TASK_ALWAYS_EAGER:
            return  # no worker: the beat-less development setup pumps from `make run`'s loop or by hand
        webhooks_pump.apply_async(countdown=countdown or None)
    except Exception:  # noqa: BLE001 - the broker is down: beat picks the events up
        log.warning("could not kick the webhook dispatcher", exc_info=True)


@shared_task(acks_late=True)
def webhooks_pump() -> dict:
    client = webhook_client()
    started, dispatched, delivered, failed = time.monotonic(), 0, 0, 0
    while time.monotonic() - started < PUMP_SECONDS:
        taken, stats = webhooks_pump_once(client=client)
        dispatched, delivered, failed = dispatched + taken, delivered + stats.delivered, failed + stats.failed
        if not taken and not stats.claimed:
            break
    endpoints_disable_failing()
    return {"dispatched": dispatched, "delivered": delivered, "failed": failed}


@shared_task
def webhooks_retention() -> int:
    return events_retention(days=settings.WEBHOOK_EVENT_RETENTION_DAYS)
