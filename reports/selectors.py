"""The daily report (SPEC §13) read from the rollup: one indexed range of at most 366 days x currencies x 16 shards."""

import datetime
from dataclasses import dataclass
from decimal import Decimal

from django.db.models import Sum

from core.db import reads
from reports.models import DailyRollup

MAX_DAYS = 366


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
        """What the house kept: stakes less what it paid back, plus what reversals took back."""
        return self.stakes - self.sale_proceeds - self.payouts - self.refunds + self.reversals


def daily_report(*, operator_id, start: datetime.date, end: datetime.date, using: str | None = None) -> list[DailyFigures]:
    """The operator's days from ``start`` to ``end`` (UTC, inclusive) that had activity, oldest first,
    one row per currency. Read from the replica when one is configured."""
    rows = (
        DailyRollup.objects.using(using or reads())
        .filter(operator_id=operator_id, day__gte=start, day__lte=end)
        .values("day", "currency")
        .annotate(
            n_trades=Sum("trades"),
            n_players=Sum("players"),
            s_stakes=Sum("stakes"),
            s_sale_proceeds=Sum("sale_proceeds"),
            s_payouts=Sum("payouts"),
            s_refunds=Sum("refunds"),
            s_reversals=Sum("reversals"),
        )
        .order_by("day", "currency")
    )
    return [
        DailyFigures(
            date=row["day"],
            currency=row["currency"],
            trades=row["n_trades"],
            players=row["n_players"],
            stakes=row["s_stakes"],
            sale_proceeds=row["s_sale_proceeds"],
            payouts=row["s_payouts"],
            refunds=row["s_refunds"],
            reversals=row["s_reversals"],
        )
        for row in rows
    ]


def daily_totals_by_operator(*, day: datetime.date, using: str | None = None) -> list[dict]:
    """Every operator's figures of one day (the staff dashboard), biggest stakes first."""
    rows = (
        DailyRollup.objects.using(using or reads())
        .filter(day=day)
        .values("operator_id", "currency")
        .annotate(
            trades=Sum("trades"),
            players=Sum("players"),
            stakes=Sum("stakes"),
            sale_proceeds=Sum("sale_proceeds"),
            payouts=Sum("payouts"),
            refunds=Sum("refunds"),
            reversals=Sum("reversals"),
        )
        .order_by("-stakes", "operator_id")
    )
    return [{**row, "ggr": _ggr(row)} for row in rows]


def daily_series(*, start: datetime.date, end: datetime.date, using: str | None = None) -> dict[datetime.date, dict]:
    """All operators' trades and GGR per day (the dashboard's chart; mixed currencies summed as they are)."""
    rows = (
        DailyRollup.objects.using(using or reads())
        .filter(day__gte=start, day__lte=end)
        .values("day")
        .annotate(
            trades=Sum("trades"),
            stakes=Sum("stakes"),
            sale_proceeds=Sum("sale_proceeds"),
            payouts=Sum("payouts"),
            refunds=Sum("refunds"),
            reversals=Sum("reversals"),
        )
    )
    return {row["day"]: {"trades": row["trades"], "ggr": _ggr(row)} for row in rows}


def _ggr(row: dict) -> Decimal:
    return row["stakes"] - row["sale_proceeds"] - row["payouts"] - row["refunds"] + row["reversals"]
