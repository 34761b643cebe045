"""run_market_feed: the long-running market-data feed (marketdata/services/feed.py).

One instance is active per deployment (a PostgreSQL advisory lock; a lock file on the embedded
SQLite default); start a second one anywhere as a standby. Stops cleanly on SIGTERM/SIGINT.
"""

import asyncio
import signal

from django.core.management.base import BaseCommand

from marketdata.services.feed import FeedTimings, MarketFeed


class Command(BaseCommand):
    help = "Run the market-data feed: websocket stream, REST refresh, catalogue sync, resolution proposals."

    def add_arguments(self, parser):
        defaults = FeedTimings()
        parser.add_argument("--flush-seconds", type=float, default=defaults.flush_seconds)
        parser.add_argument("--refresh-seconds", type=float, default=defaults.refresh_seconds)
        parser.add_argument("--catalogue-seconds", type=float, default=defaults.catalogue_seconds)
        parser.add_argument("--resolution-seconds", type=float, default=defaults.resolution_seconds)
        parser.add_argument("--heartbeat-seconds", type=float, default=defaults.heartbeat_seconds)
        parser.add_argument("--standby-seconds", type=float, default=defaults.standby_seconds)
        parser.add_argument("--idle-seconds", type=float, default=defaults.idle_seconds, help="websocket data-idle watchdog")

    def handle(self, *args, **options):
        timings = FeedTimings(**{name: options[name] for name in FeedTimings.__dataclass_fields__})
        asyncio.run(self._run(MarketFeed(timings)))

    @staticmethod
    async def _run(feed: MarketFeed) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await feed.run(stop)
