"""create_operator --name NAME --wallet internal|s2s [--wallet-url URL] [--currency USD] -> JSON."""

import json

from django.core.management.base import BaseCommand, CommandError

from casino.models import Operator
from casino.services.credentials import operator_create


class Command(BaseCommand):
    help = "Create an operator; prints its API key and wallet signing secret (shown once)."

    def add_arguments(self, parser):
        parser.add_argument("--name", required=True)
        parser.add_argument("--wallet", choices=["internal", "s2s"], default="internal")
        parser.add_argument("--wallet-url", default="")
        parser.add_argument("--currency", default="USD")

    def handle(self, *args, name, wallet, wallet_url, currency, **options):
        if Operator.objects.filter(name=name).exists():
            raise CommandError(f"operator {name!r} already exists")
        if len(currency) != 3 or not currency.isalpha():
            raise CommandError("--currency must be an ISO 4217 code")
        issued = operator_create(name=name, wallet_mode=wallet, currency=currency, wallet_url=wallet_url)
        self.stdout.write(
            json.dumps({"operatorId": str(issued.operator.pk), "apiKey": issued.api_key, "walletSecret": issued.wallet_secret})
        )
