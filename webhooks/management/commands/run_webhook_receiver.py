"""Run the reference webhook receiver (webhooks/reference_receiver.py) until interrupted.

    manage.py run_webhook_receiver --port 9300 --secret whsec_…

Prints one JSON line {"url": …} when listening; control it with POST /_control, look with GET /_state.
"""

import json
import signal
import threading

from django.core.management.base import BaseCommand

from webhooks.reference_receiver import ReferenceWebhookReceiver


class Command(BaseCommand):
    help = "Run the reference webhook receiver (verifies Standard Webhooks signatures, records deliveries)."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=9300)
        parser.add_argument("--secret", action="append", default=[], help="whsec_… (repeat for a rotation)")

    def handle(self, *args, **options):
        receiver = ReferenceWebhookReceiver(secrets=options["secret"], host=options["host"], port=options["port"], keep=1000)
        url = receiver.start()
        self.stdout.write(
            json.dumps({"url": url, "control": url.replace("/webhook", "/_control"), "state": url.replace("/webhook", "/_state")})
        )
        self.stdout.flush()
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        try:
            stop.wait()
        except KeyboardInterrupt:
            pass
        receiver.stop()
