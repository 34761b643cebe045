"""Celery entry points of webhook delivery (queue ``webhooks``).

    webhooks_pump       fan out new events and send due deliveries until nothing is left (or a
                        minute passed); kicked after each commit that wrote events, and by beat
                        every few seconds for the retries and anything a kick missed
    webhooks_retention  events older than 30 days deleted (the replay window)

A kick schedules a pump only if none is scheduled or running in any process: the pump flag
(PUMP_FLAG in the shared cache, Redis in production) is taken by the kick that schedules one,
refreshed by the pump every round and released when it finds nothing left, after which it looks
once more a kick interval later (an event whose kick found the flag still held is taken by that
last look, once the transactions older than it have ended). Without it
every process scheduled a pump per KICK_INTERVAL while each pump, busy under steady trading,
ran its full minute: the queue grew without end. A pump that dies lets the flag lapse
(PUMP_FLAG_SECONDS) and beat's pump, which skips while another runs, takes over. Within a
process the kicks are also throttled (one per KICK_INTERVAL), so most trades never reach Redis.
"""

import logging
import threading
import time

from celery import shared_task
from django.conf import settings
from django.core.cache import cache

from webhooks.adapters.endpoint import WebhookClient
from webhooks.services.delivery import endpoints_disable_failing, events_retention, webhooks_pump_once

log = logging.getLogger("house.webhooks")

KICK_INTERVAL = 0.25
PUMP_SECONDS = 60.0
PUMP_FLAG = "webhooks:pump"  # held while a pump is scheduled or running
PUMP_FLAG_SECONDS = 30  # refreshed by every round of a pump: a dead pump's flag lapses

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
        if not cache.add(PUMP_FLAG, "scheduled", PUMP_FLAG_SECONDS):
            return  # a pump is scheduled or running: it takes what was just committed
        try:
            webhooks_pump.apply_async(countdown=countdown or None)
        except Exception:
            cache.delete(PUMP_FLAG)  # nothing was scheduled: the next kick (or beat) tries again
            raise
    except Exception:  # noqa: BLE001 - the broker or the cache is down: beat picks the events up
        log.warning("could not kick the webhook dispatcher", exc_info=True)


@shared_task(acks_late=True)
def webhooks_pump(scheduled: bool = False) -> dict:
    """Fan out and send until nothing is left (or PUMP_SECONDS passed). ``scheduled`` (beat's
    pump): skipped while another pump holds the flag, since that one sends what is due too."""
    if scheduled and not cache.add(PUMP_FLAG, "running", PUMP_FLAG_SECONDS):
        return {"dispatched": 0, "delivered": 0, "failed": 0, "skipped": True}
    client = webhook_client()
    started, dispatched, delivered, failed = time.monotonic(), 0, 0, 0
    try:
        while time.monotonic() - started < PUMP_SECONDS:
            cache.set(PUMP_FLAG, "running", PUMP_FLAG_SECONDS)
            taken, stats = webhooks_pump_once(client=client)
            dispatched, delivered, failed = dispatched + taken, delivered + stats.delivered, failed + stats.failed
            if taken or stats.claimed:
                continue
            # Nothing left: release the flag, then look once more, a kick interval later (an event is
            # listed once the transactions older than it have ended: core.events). An event committed
            # before the release whose kick found the flag held is taken now; one after it, by its own kick.
            cache.delete(PUMP_FLAG)
            time.sleep(KICK_INTERVAL)
            taken, stats = webhooks_pump_once(client=client)
            dispatched, delivered, failed = dispatched + taken, delivered + stats.delivered, failed + stats.failed
            if not taken and not stats.claimed:
                break
    finally:
        cache.delete(PUMP_FLAG)  # out of time or failed: the next kick (or beat) schedules another
    endpoints_disable_failing()
    return {"dispatched": dispatched, "delivered": delivered, "failed": failed}


@shared_task
def webhooks_retention() -> int:
    return events_retention(days=settings.WEBHOOK_EVENT_RETENTION_DAYS)
