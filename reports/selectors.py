"""The daily report (SPEC §13) read from the rollup: one indexed range of at most 366 days x currencies x 16 shards."""

import datetime
from dataclasses import dataclass
from decimal import Decimal

from django.db.models import Count, Sum

from core import money
from core.db import reads
from reports.models import DailyPlayer, DailyRollup

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


# ----- issue 14 (SPEC §16): the operator's revenue share, and the month's totals -----------------

HUNDRED = Decimal("100")


def revenue_share(ggr_amount: Decimal, pct: Decimal) -> tuple[Decimal, Decimal]:
    """(operator share, house share) of a GGR: the operator's ``pct`` percent rounded down to the cent
    (towards minus infinity, so a negative GGR too rounds in the house's favour), the house the rest;
    the two always sum to the GGR exactly."""
    operator = money.cents_down(ggr_amount * pct / HUNDRED)
    return operator, ggr_amount - operator


@dataclass(frozen=True, slots=True)
class MonthlyFigures:
    currency: str
    trades: int
    players: int  # distinct players who traded in the month
    stakes: Decimal
    sale_proceeds: Decimal
    payouts: Decimal
    refunds: Decimal
    reversals: Decimal

    @property
    def ggr(self) -> Decimal:
        return ggr(**{name: getattr(self, name) for name in MONEY_FIGURES})


def month_bounds(month: datetime.date) -> tuple[datetime.date, datetime.date]:
    """The first and last UTC day of the month ``month`` falls in."""
    first = month.replace(day=1)
    following = (first + datetime.timedelta(days=32)).replace(day=1)
    return first, following - datetime.timedelta(days=1)


def monthly_report(*, operator_id, month: datetime.date, using: str | None = None) -> list[MonthlyFigures]:
    """The operator's totals for the month (one row per currency with activity): the rollup's days summed,
    players counted once in the month. Read from the replica when one is configured."""
    start, end = month_bounds(month)
    db = using or reads()
    days = (
        DailyRollup.objects.using(db)
        .filter(operator_id=operator_id, day__gte=start, day__lte=end)
        .values("currency")
        .annotate(**_sums(*FIGURES))
        .order_by("currency")
    )
    players = dict(
        DailyPlayer.objects.using(db)
        .filter(operator_id=operator_id, day__gte=start, day__lte=end)
        .values("currency")
        .annotate(n=Count("player_id", distinct=True))
        .values_list("currency", "n")
    )
    return [
        MonthlyFigures(
            currency=row["currency"],
            trades=row["trades"],
            players=players.get(row["currency"], 0),
            **{name: row[name] for name in MONEY_FIGURES},
        )
        for row in days
    ]


def monthly_totals_by_operator(*, month: datetime.date, using: str | None = None) -> list[dict]:
    """Every operator's GGR of the month per currency (the staff dashboard), biggest GGR first."""
    start, end = month_bounds(month)
    rows = (
        DailyRollup.objects.using(using or reads())
        .filter(day__gte=start, day__lte=end)
        .values("operator_id", "currency")
        .annotate(**_sums("trades", *MONEY_FIGURES))
    )
    out = [{**row, "ggr": _ggr(row)} for row in rows]
    return sorted(out, key=lambda row: (-row["ggr"], str(row["operator_id"]), row["currency"]))


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
