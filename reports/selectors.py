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
