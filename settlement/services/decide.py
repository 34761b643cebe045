"""Resolve or void a market: record the decision, stop trading, fix what every position gets.

The market row is locked FOR UPDATE, which waits for trades in flight (they hold it FOR
SHARE) and makes every later trade see the new status: trading stops at that moment. The
open positions are snapshotted into one Payout each (unique per position) with the amount
due, the totals go on the Settlement (unique per market), and a Celery task pays.
"""

from dataclasses import dataclass
from decimal import Decimal

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from casino.models import Market, MarketStatus, Position, PositionStatus
from core import money
from core.errors import HouseError
from core.metrics import SETTLEMENTS
from settlement.models import Payout, PayoutStatus, Settlement, SettlementAction

ZERO = Decimal("0")
CHUNK = 1000


@dataclass(frozen=True)
class SettlementPlan:
    """What a decision pays: shown on the admin's confirmation page, then recorded."""

    action: str
    outcome: str | None
    total_positions: int
    total_winners: int
    total_payout: Decimal
    total_cost_basis: Decimal
    casino_profit: Decimal
    by_operator: dict


def _due(position: Position, action: str, outcome: str | None) -> tuple[Decimal, Decimal, bool]:
    """(amount due, cost basis, is a winner) for one open position."""
    cost_basis = money.cents_down(position.shares * position.avg_price / money.HUNDRED)
    if action == SettlementAction.VOID:
        return cost_basis, cost_basis, True
    if position.outcome == outcome:
        return money.payout_for_shares(position.shares), cost_basis, True
    return ZERO, cost_basis, False


def _open_positions(market_id: str):
    return Position.objects.filter(market_id=market_id, status=PositionStatus.OPEN, shares__gt=0).select_related("operator")


def settlement_plan(*, market_id: str, action: str, outcome: str | None) -> SettlementPlan:
    _validate(action, outcome)
    totals = {"positions": 0, "winners": 0, "payout": ZERO, "cost": ZERO}
    by_operator: dict[str, dict] = {}
    for position in _open_positions(market_id).iterator(chunk_size=CHUNK):
        amount, cost, wins = _due(position, action, outcome)
        totals["positions"] += 1
        totals["winners"] += int(wins)
        totals["payout"] += amount
        totals["cost"] += cost
        row = by_operator.setdefault(position.operator.name, {"positions": 0, "payout": ZERO, "wallet": position.operator.wallet_mode})
        row["positions"] += 1
        row["payout"] += amount
    profit = ZERO if action == SettlementAction.VOID else totals["cost"] - totals["payout"]
    return SettlementPlan(
        action,
        outcome if action == SettlementAction.RESOLVE else None,
        totals["positions"],
        totals["winners"],
        totals["payout"],
        totals["cost"],
        profit,
        by_operator,
    )


def _validate(action: str, outcome: str | None) -> None:
    if action not in SettlementAction.values:
        raise HouseError("Invalid action", code="invalid_action")
    if action == SettlementAction.RESOLVE and outcome not in ("yes", "no"):
        raise HouseError("Invalid outcome", code="invalid_outcome")


def market_settle(*, market_id: str, action: str, outcome: str | None = None, reason: str = "", requested_by=None) -> Settlement:
    """Record the decision (idempotent: the same decision again returns the same settlement)."""
    _validate(action, outcome)
    outcome = outcome if action == SettlementAction.RESOLVE else None
    with transaction.atomic():
        market = Market.objects.select_for_update().filter(pk=market_id).first()
        if market is None:
            raise HouseError("Market not found", code="market_not_found", status=404)
        existing = Settlement.objects.filter(market=market).first()
        if existing is not None:
            if existing.action == action and existing.outcome == outcome:
                return existing
            raise HouseError(
                "Market already settled",
                code="market_already_settled",
                status=409,
                extra={"action": existing.action, "outcome": existing.outcome},
            )
        if market.status != MarketStatus.OPEN:
            raise HouseError("Market already settled", code="market_not_open", status=409, extra={"status": market.status})
        market.status = MarketStatus.RESOLVING
        market.outcome = outcome
        market.save(update_fields=["status", "outcome", "updated_at"])
        settlement = Settlement.objects.create(
            market=market,
            action=action,
            outcome=outcome,
            reason=reason or ("Voided by admin" if action == SettlementAction.VOID else ""),
            requested_by=requested_by,
        )
        _snapshot(settlement)
        SETTLEMENTS.labels(action=action, stage="decided").inc()
        transaction.on_commit(lambda: _start(settlement.pk))
    return settlement


def _snapshot(settlement: Settlement) -> None:
    action, outcome = settlement.action, settlement.outcome
    batch, total_payout, total_cost, winners, count = [], ZERO, ZERO, 0, 0
    for position in _open_positions(settlement.market_id).iterator(chunk_size=CHUNK):
        amount, cost, wins = _due(position, action, outcome)
        batch.append(
            Payout(
                settlement=settlement,
                position=position,
                player_id=position.player_id,
                operator_id=position.operator_id,
                outcome=position.outcome,
                shares=position.shares,
                cost_basis=cost,
                amount=amount,
                status=PayoutStatus.PENDING if amount > 0 else PayoutStatus.NOTHING_DUE,
            )
        )
        total_payout += amount
        total_cost += cost
        winners += int(wins)
        count += 1
        if len(batch) >= CHUNK:
            Payout.objects.bulk_create(batch)
            batch = []
    Payout.objects.bulk_create(batch)
    new_status = PositionStatus.VOIDED if action == SettlementAction.VOID else PositionStatus.RESOLVED
    Position.objects.filter(market_id=settlement.market_id, status=PositionStatus.OPEN).update(
        status=new_status, version=F("version") + 1, updated_at=timezone.now()
    )
    settlement.total_positions, settlement.total_winners = count, winners
    settlement.total_payout, settlement.total_cost_basis = total_payout, total_cost
    settlement.casino_profit = ZERO if action == SettlementAction.VOID else total_cost - total_payout
    settlement.save(update_fields=["total_positions", "total_winners", "total_payout", "total_cost_basis", "casino_profit"])


def _start(settlement_id) -> None:
    from settlement.tasks import settle_market

    settle_market.delay(str(settlement_id))
