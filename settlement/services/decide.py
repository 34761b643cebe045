"""Resolve or void a market: record the decision, stop trading, fix what the positions get in total.

The market row is locked FOR UPDATE, which waits for trades in flight (they hold it FOR
SHARE) and makes every later trade see the new status: trading stops at that moment. The
decision writes no row per position: one aggregate over the open positions gives the totals
(settlement.services.snapshot, the money rules of core.money), which go on the Settlement (unique
per market), and a Celery task creates and pays the payouts a chunk of positions at a time
(settlement.services.payouts). So the market row is held for one aggregate, whatever the number
of positions; the positions read open until their chunk pays them, while the market reads
resolving.
"""

from dataclasses import dataclass
from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from casino.models import Market, MarketStatus
from casino.services.market_state import market_event_record
from core.errors import HouseError
from core.metrics import SETTLEMENTS
from settlement.models import LIVE_SETTLEMENT, Settlement, SettlementAction, SettlementStatus
from settlement.services.snapshot import Totals, payouts_preview, payouts_totals

ZERO = Decimal("0")


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


def settlement_plan(*, market_id: str, action: str, outcome: str | None) -> SettlementPlan:
    _validate(action, outcome)
    outcome = outcome if action == SettlementAction.RESOLVE else None
    totals = payouts_preview(market_id=market_id, action=action, outcome=outcome)
    return SettlementPlan(
        action,
        outcome,
        totals.positions,
        totals.winners,
        totals.payout,
        totals.cost_basis,
        _casino_profit(action, totals),
        totals.by_operator,
    )


def _casino_profit(action: str, totals: Totals) -> Decimal:
    return ZERO if action == SettlementAction.VOID else totals.cost_basis - totals.payout


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
        existing = Settlement.objects.filter(market=market, status__in=LIVE_SETTLEMENT).first()
        if existing is not None and existing.status == SettlementStatus.REVERSING:
            raise HouseError("Settlement being reversed", code="settlement_reversing", status=400)
        if existing is not None:
            if existing.action == action and existing.outcome == outcome:
                return existing
            raise HouseError(
                "Market already settled",
                code="market_already_settled",
                status=400,
                extra={"action": existing.action, "outcome": existing.outcome},
            )
        if market.status not in (MarketStatus.OPEN, MarketStatus.CLOSED):  # closed: a reversed settlement
            raise HouseError("Market already settled", code="market_not_open", status=400, extra={"status": market.status})
        market.status = MarketStatus.RESOLVING
        market.outcome = outcome
        market.save(update_fields=["status", "outcome", "updated_at"])
        market_event_record(market_id=market.pk, type="market.closed", at=timezone.now(), reason=f"settlement:{action}")
        # No trade can change the positions from here on (the market is locked, then resolving).
        totals = payouts_totals(market_id=market.pk, action=action, outcome=outcome)
        settlement = Settlement.objects.create(
            market=market,
            action=action,
            outcome=outcome,
            reason=reason or ("Voided by admin" if action == SettlementAction.VOID else ""),
            requested_by=requested_by,
            total_positions=totals.positions,
            total_winners=totals.winners,
            total_payout=totals.payout,
            total_cost_basis=totals.cost_basis,
            casino_profit=_casino_profit(action, totals),
        )
        SETTLEMENTS.labels(action=action, stage="decided").inc()
        transaction.on_commit(lambda: _start(settlement.pk))
    return settlement


def _start(settlement_id) -> None:
    from settlement.tasks import settle_market

    settle_market.delay(str(settlement_id))
