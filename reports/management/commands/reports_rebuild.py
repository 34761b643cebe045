"""Recompute the daily rollup from the trades and the ledger (the triggers keep it; this repairs or backfills)."""

from django.core.management.base import BaseCommand
from django.db import connection, transaction

from reports.rollup import rollup_rebuild


class Command(BaseCommand):
    help = "Rebuild the daily report's rollup (reports_daily) from casino_trades and the wallet ledger."

    def handle(self, *args, **options):
        with transaction.atomic():
            if connection.vendor == "postgresql":
                # New trades wait for the rebuild instead of adding to rows it is about to replace.
                with connection.cursor() as cursor:
                    cursor.execute("LOCK TABLE casino_trades, s2s_transactions IN SHARE MODE")
            with connection.cursor() as cursor:
                rollup_rebuild(cursor, connection.vendor)
        self.stdout.write("reports_daily rebuilt")
