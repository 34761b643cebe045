"""Reads for the risk team: exposure overview, sharp ranking, operator open exposure (exact)."""

from decimal import Decimal

from django.db.models import DecimalField, ExpressionWrapper, F, Sum

from casino.models import Position, PositionStatus

HUNDRED = Decimal("100")


def operator_open_exposure(*, operator_id) -> Decimal:
    """Payout owed on the operator's players' open positions if all won, minus their cost basis."""
    expr = ExpressionWrapper(
        F("shares") - F("shares") * F("avg_price") / HUNDRED, output_field=DecimalField(max_digits=24, decimal_places=8)
    )
    total = Position.objects.filter(operator_id=operator_id, status=PositionStatus.OPEN).aggregate(v=Sum(expr))["v"]
    return total or Decimal("0")
