"""Re-seal every secret kept at rest (S2S wallet signing secrets, webhook signing secrets) under the
current HOUSE_SECRETS_KEY: the second step of rotating that key (README, "Rotating the secrets key")."""

import json

from django.core.management.base import BaseCommand, CommandError

from core.crypto import sealed_columns_reseal
from wallets.models import OperatorWallet
from webhooks.models import WebhookEndpoint

SEALED = [(OperatorWallet, ["secret_sealed"]), (WebhookEndpoint, ["secret_sealed", "previous_secret_sealed"])]


class Command(BaseCommand):
    help = "Re-seal the wallet and webhook signing secrets under the current HOUSE_SECRETS_KEY."

    def handle(self, *args, **options):
        counts = {}
        unreadable = 0
        for model, fields in SEALED:
            resealed, failed = sealed_columns_reseal(model, fields)
            counts[model._meta.label] = resealed
            unreadable += failed
        self.stdout.write(json.dumps({"resealed": counts, "unreadable": unreadable}))
        if unreadable:
            raise CommandError(
                f"{unreadable} sealed value(s) open under no configured key: set the key that sealed them as "
                "HOUSE_SECRETS_KEY_PREVIOUS and run again (or rotate those secrets)"
            )
