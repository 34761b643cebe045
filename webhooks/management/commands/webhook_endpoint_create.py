"""Subscribe a webhook endpoint for an operator (the demo in ``make run``); prints {"id", "url", "events", "secret"}."""

import json

from django.core.management.base import BaseCommand, CommandError

from casino.models import Operator
from core.errors import HouseError
from webhooks.models import WebhookEndpoint
from webhooks.services.endpoints import endpoint_create


class Command(BaseCommand):
    help = "Subscribe a webhook endpoint for an operator (prints the secret once)."

    def add_arguments(self, parser):
        parser.add_argument("--operator", required=True, help="The operator's name")
        parser.add_argument("--url", required=True)
        parser.add_argument("--events", default="*", help='"*" or a comma-separated list of event types')
        parser.add_argument("--replace", action="store_true", help="Delete the operator's endpoints with this URL first (re-runnable)")

    def handle(self, *args, **options):
        operator = Operator.objects.filter(name=options["operator"]).first()
        if operator is None:
            raise CommandError(f"no operator named {options['operator']!r}")
        events = [e.strip() for e in options["events"].split(",") if e.strip()]
        if options["replace"]:
            WebhookEndpoint.objects.filter(operator=operator, url=options["url"]).delete()
        try:
            issued = endpoint_create(operator=operator, url=options["url"], events=events)
        except HouseError as exc:
            raise CommandError(exc.message) from None
        endpoint = issued.endpoint
        self.stdout.write(json.dumps({"id": str(endpoint.pk), "url": endpoint.url, "events": endpoint.events, "secret": issued.secret}))
