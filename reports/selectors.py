"""The daily report (SPEC §13) read from the rollup: one indexed range of at most 366 days x currencies x 16 shards."""

import datetime
from dataclasses import dataclass
from decimal import Decimal

from django.db.models import Sum

from core.db import reads
from reports.models import DailyRollup

MAX_DAYS = 366
# The rollup's columns, as DailyFigures names them.
MONEY_FIGURES = ("stakes", "sale_proceeds", "payouts", "refunds", "reversals")
FIGURES = ("trades", "players", *MONEY_FIGURES)


@dataclass(frozen=True, slots=True)
class DailyFigures:
    date: datetime.date
    currency: str
    trades: int
    players: int
    stakes: Decimal
    sale_proceeds: Decimal
    payouts: Decimal
    refunds: Decimal
    reversals: Decimal

    @property
    def ggr(self) -> Decimal:
        return ggr(**{name: getattr(self, name) for name in MONEY_FIGURES})


def daily_report(*, operator_id, start: datetime.date, end: datetime.date, using: str | None = None) -> list[DailyFigures]:
    """The operator's days from ``start`` to ``end`` (UTC, inclusive) that had activity, oldest first,
    one row per currency. Read from the replica when one is configured."""
    rows = (
        DailyRollup.objects.using(using or reads())
        .filter(operator_id=operator_id, day__gte=start, day__lte=end)
        .values("day", "currency")
        .annotate(**_sums(*FIGURES))
        .order_by("day", "currency")
    )
    return [DailyFigures(date=row["day"], currency=row["currency"], **{name: row[name] for name in FIGURES}) for row in rows]


def daily_totals_by_operator(*, day: datetime.date, using: str | None = None) -> list[dict]:
    """Every operator's figures of one day (the staff dashboard), biggest stakes first."""
    rows = (
        DailyRollup.objects.using(using or reads())
        .filter(day=day)
        .values("operator_id", "currency")
        .annotate(**_sums(*FIGURES))
        .order_by("-stakes", "operator_id")
    )
    return [{**row, "ggr": _ggr(row)} for row in rows]


def daily_series(*, start: datetime.date, end: datetime.date, using: str | None = None) -> dict[datetime.date, dict]:
    """All operators' trades and GGR per day (the dashboard's chart; mixed currencies summed as they are)."""
    rows = (
        DailyRollup.objects.using(using or reads())
        .filter(day__gte=start, day__lte=end)
        .values("day")
        .annotate(**_sums("trades", *MONEY_FIGURES))
    )
    return {row["day"]: {"trades": row["trades"], "ggr": _ggr(row)} for row in rows}


def _sums(*names: str) -> dict:
    return {name: Sum(name) for name in names}


def ggr(*, stakes: Decimal, sale_proceeds: Decimal, payouts: Decimal, refunds: Decimal, reversals: Decimal) -> Decimal:
    """What the house kept: stakes less what it paid back, plus what reversals took back."""
    return stakes - sale_proceeds - payouts - refunds + reversals


def _ggr(row: dict) -> Decimal:
    return ggr(**{name: row[name] for name in MONEY_FIGURES})


# --- Issue 14: the house's net loss in time buckets, for the circuit breakers' rebuild (SPEC §16) ---------

# What counts is the report's (the opposite of GGR): sale proceeds - stakes from the trades; payouts and refunds
# minus what reversals and debt recoveries took back from the ledger (its trade rows are not counted: the trade is).
_LOSS_TYPES = "('payout', 'refund', 'payout_reversal', 'refund_reversal', 'debt_recovery')"
_BUCKET_SQL = {
    "postgresql": "floor(extract(epoch from created_at) / %s)::bigint",
    "sqlite": "(CAST(strftime('%%s', created_at) AS INTEGER) / %s)",
}
_LOSS_SQL = """
SELECT {select} SUM(loss) FROM (
    SELECT player_id, {bucket} AS bucket, CASE WHEN side = 'sell' THEN cost ELSE -cost END AS loss
      FROM casino_trades WHERE created_at >= %s
    UNION ALL
    SELECT player_id, {bucket} AS bucket, amount AS loss
      FROM s2s_transactions WHERE created_at >= %s AND type IN {types}
) AS moves GROUP BY {group}
"""


def house_loss_buckets(*, since: datetime.datetime, bucket_seconds: int, per_player: bool) -> list[tuple]:
    """(player id or None, bucket number = epoch seconds // bucket_seconds, the house's net loss in dollars) for
    everything since ``since``; per player, or for the whole house (player id None). Read from the primary."""
    from django.db import connection

    bucket = _BUCKET_SQL["postgresql" if connection.vendor == "postgresql" else "sqlite"]
    select, group = ("player_id, bucket,", "player_id, bucket") if per_player else ("NULL, bucket,", "bucket")
    sql = _LOSS_SQL.format(select=select, bucket=bucket, types=_LOSS_TYPES, group=group)
    with connection.cursor() as cursor:
        cursor.execute(sql, [bucket_seconds, since, bucket_seconds, since])
        return [(pid, b, Decimal(str(loss))) for pid, b, loss in cursor.fetchall() if loss]
