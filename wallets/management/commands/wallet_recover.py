"""wallet_recover: run S2S recovery and reconciliation once (what Celery beat does periodically)."""

import json

from django.core.management.base import BaseCommand

from wallets.tasks import reconcile, recover_stalled


class Command(BaseCommand):
    help = "Finish or compensate half-done S2S wallet movements, then reconcile non-final ones."

    def add_arguments(self, parser):
        parser.add_argument(
            "--older-than", type=int, default=None, help="Seconds a pending intent must be old (default HOUSE_WALLET_STALL_SECONDS)."
        )

    def handle(self, *args, older_than, **options):
        recovered = recover_stalled(older_than_seconds=older_than)
        reconciled = reconcile()
        self.stdout.write(json.dumps({"recovered": recovered, "reconciled": reconciled}))
