"""Deliver webhooks in the foreground, without Celery (``make run`` on the embedded default):
fan out new events and send due deliveries every ``--interval`` seconds until interrupted."""

import time

from django.core.management.base import BaseCommand

from webhooks.services.delivery import endpoints_disable_failing, webhooks_pump_once
from webhooks.tasks import webhook_client


class Command(BaseCommand):
    help = "Deliver webhooks in a loop (what the webhooks Celery queue and beat do in production)."

    def add_arguments(self, parser):
        parser.add_argument("--interval", type=float, default=1.0)
        parser.add_argument("--once", action="store_true", help="One round, then exit")

    def handle(self, *args, **options):
        client = webhook_client()
        while True:
            taken, stats = webhooks_pump_once(client=client)
            if taken or stats.claimed:
                self.stdout.write(f"dispatched {taken} events, delivered {stats.delivered}, failed {stats.failed}")
                self.stdout.flush()
            if options["once"]:
                endpoints_disable_failing()
                return
            if not taken and not stats.claimed:
                endpoints_disable_failing()
                time.sleep(options["interval"])
