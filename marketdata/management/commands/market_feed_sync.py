"""market_feed_sync: one full pass of the market feed (catalogue, prices, resolution check), then exit.

Prints one JSON line with what the pass did. Safe beside a running feed: every write is
idempotent (the same catalogue, the same prices, one proposal per market).
"""

import asyncio
import json

from django.core.management.base import BaseCommand, CommandError

from marketdata.adapters.polymarket import PolymarketClient, SourceUnavailable
from marketdata.services.passes import db_close, feed_pass


class Command(BaseCommand):
    help = "One pass of the market-data feed: catalogue sync, reference prices, resolution proposals."

    def handle(self, *args, **options):
        try:
            summary = asyncio.run(self._pass())
        except SourceUnavailable as exc:
            raise CommandError(f"market data source unavailable: {exc}") from exc
        self.stdout.write(json.dumps(summary, sort_keys=True))

    @staticmethod
    async def _pass() -> dict:
        client = PolymarketClient()
        try:
            return await feed_pass(client)
        finally:
            await client.aclose()
            await db_close()
