"""The daily rollup of SPEC §13's report: per operator, UTC day, currency and shard, written by database
triggers in the same transaction as each trade and ledger row (reports/rollup.py), never by Python.

Derived data: no foreign-key constraints (a trade pays no FK check on the rollup), rebuilt from the
source rows by ``manage.py reports_rebuild``.
"""

from decimal import Decimal

from django.db import models

# Sums of many days of a big operator: wider than a balance (14 digits).
TOTAL = {"max_digits": 20, "decimal_places": 2, "default": Decimal("0")}
SHARDS = 16


class DailyRollup(models.Model):
    """One shard of an (operator, day, currency) row: concurrent trades of one operator land on
    different shards (the backend's pid modulo 16), so they do not queue on one row lock. The day's
    figures are the sum of its shards."""

    operator = models.ForeignKey("casino.Operator", on_delete=models.DO_NOTHING, db_constraint=False, db_index=False, related_name="+")
    day = models.DateField()
    currency = models.CharField(max_length=3)
    shard = models.SmallIntegerField(default=0)
    trades = models.BigIntegerField(default=0)
    players = models.BigIntegerField(default=0, help_text="Distinct players who traded that day (new ones counted on this shard).")
    stakes = models.DecimalField(**TOTAL)
    sale_proceeds = models.DecimalField(**TOTAL)
    payouts = models.DecimalField(**TOTAL)
    refunds = models.DecimalField(**TOTAL)
    reversals = models.DecimalField(**TOTAL, help_text="What reversals and debt recoveries took back (positive).")

    class Meta:
        db_table = "reports_daily"
        constraints = [models.UniqueConstraint(fields=["operator", "day", "currency", "shard"], name="reports_daily_key")]


class DailyPlayer(models.Model):
    """A player who traded on a day: its first trade of the day inserts the row and counts the player."""

    operator = models.ForeignKey("casino.Operator", on_delete=models.DO_NOTHING, db_constraint=False, db_index=False, related_name="+")
    day = models.DateField()
    player = models.ForeignKey("casino.Player", on_delete=models.DO_NOTHING, db_constraint=False, db_index=False, related_name="+")
    currency = models.CharField(max_length=3)

    class Meta:
        db_table = "reports_daily_players"
        constraints = [models.UniqueConstraint(fields=["operator", "day", "player"], name="reports_daily_player_once")]
