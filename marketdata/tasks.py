"""Celery beat entry points of the market feed: auto-confirm of resolution proposals (also done by
every feed pass), and the retention of price ticks and chart points."""

import asyncio
import logging
from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from casino.services.market_state import price_history_prune
from marketdata.adapters.polymarket import PolymarketClient, SourceUnavailable
from marketdata.services.passes import db_close, resolutions_pass

log = logging.getLogger("house.marketdata.tasks")


@shared_task(acks_late=True)
def resolutions_auto_confirm() -> dict:
    """Confirm proposals past auto_settle_after_seconds whose evidence still holds at the source."""

    async def run() -> dict:
        client = PolymarketClient()
        try:
            result = await resolutions_pass(client, closed_sources=[])
            return {"confirmed": result.confirmed, "withdrawn": result.withdrawn}
        finally:
            await client.aclose()
            await db_close()

    try:
        return asyncio.run(run())
    except SourceUnavailable as exc:
        log.warning("auto-confirm skipped: market data source unavailable: %s", exc)
        return {"confirmed": 0, "withdrawn": 0, "skipped": str(exc)}


@shared_task(acks_late=True)
def price_history_retention() -> int:
    """Ticks and chart points older than HOUSE_PRICE_HISTORY_DAYS go (markout needs days, not months)."""
    return price_history_prune(before=timezone.now() - timedelta(days=settings.HOUSE_PRICE_HISTORY_DAYS))
