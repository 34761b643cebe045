"""Paying a settlement: one wallet transaction per payout, each exactly once.

Exactly once, whatever happens: a payout moves from pending only under its row lock; for
an internal wallet the ledger row (whose id is the payout id) is written in that same
transaction; for an S2S wallet the payout's WalletOperation (same id, the transaction_id
sent) is committed before the call and re-sent under that id until the operator answers
definitely, so re-running a chunk, a killed worker, or two workers at once cannot pay
twice, and nothing is skipped because the settlement completes only when no payout is
left pending, sending or failed.
"""

import logging
import uuid
from decimal import Decimal

from django.db import transaction
from django.db.models import Count, Q, Sum
from django.utils import timezone

from casino.models import Market, MarketStatus
from casino.services.exposure import exposure_clear_market
from core.metrics import SETTLEMENT_PAYOUTS, SETTLEMENTS
from settlement.models import Payout, PayoutStatus, Settlement, SettlementAction, SettlementStatus
from wallets.models import FINAL_STATUSES, LedgerType, OperationKind, OperationStatus, WalletOperation
from wallets.services.balances import wallet_change
from wallets.services.breaker import breaker_is_open
from wallets.services.operations import operation_create, operation_send, operation_settle

log = logging.getLogger("house.settlement")

CHUNK = 200


def settlement_advance(*, settlement_id, chunk: int = CHUNK) -> bool:
    """Pay (or re-check) up to ``chunk`` payouts; finalize when none is outstanding. True when complete."""
    settlement = Settlement.objects.get(pk=settlement_id)
    if settlement.status == SettlementStatus.COMPLETED:
        return True
    ids = list(Payout.objects.filter(settlement_id=settlement_id, status=PayoutStatus.PENDING).values_list("pk", flat=True)[:chunk])
    for payout_id in ids:
        payout_pay(payout_id=payout_id)
    # Payouts sent just above already had their first answer checked; the rest are retries.
    sending = Payout.objects.filter(settlement_id=settlement_id, status=PayoutStatus.SENDING).exclude(pk__in=ids)
    for payout_id in sending.values_list("pk", flat=True)[:chunk]:
        payout_check(payout_id=payout_id)
    settlement_refresh(settlement_id=settlement_id)
    return settlement_finalize(settlement_id=settlement_id)


def _kind(settlement: Settlement) -> str:
    return LedgerType.REFUND if settlement.action == SettlementAction.VOID else LedgerType.PAYOUT


def _describe(payout: Payout, settlement: Settlement) -> str:
    if settlement.action == SettlementAction.VOID:
        return f"Refund: market {settlement.market_id} voided"
    return f"Payout: {payout.shares.normalize()} winning shares {payout.outcome.upper()} in {settlement.market_id}"


def payout_pay(*, payout_id) -> None:
    with transaction.atomic():
        payout = (
            Payout.objects.select_for_update(skip_locked=True).select_related("settlement", "player__operator").filter(pk=payout_id).first()
        )
        if payout is None or payout.status != PayoutStatus.PENDING:
            return  # another worker has it, or it is already done
        settlement, player = payout.settlement, payout.player
        payout.attempts += 1
        if player.operator.wallet_mode == "internal":
            wallet_change(
                player=player,
                amount=payout.amount,
                type=_kind(settlement),
                description=_describe(payout, settlement),
                entry_id=payout.transaction_id,
                round_id=str(settlement.pk),
                actor="system",
            )
            payout.status = PayoutStatus.PAID
            payout.save(update_fields=["status", "attempts", "updated_at"])
            SETTLEMENT_PAYOUTS.labels(action=settlement.action, result="paid").inc()
            return
        if breaker_is_open(operator_id=player.operator_id):
            payout.attempts -= 1
            return  # payouts queue while the operator's wallet is failing; the next pass drains them
        if not WalletOperation.objects.filter(pk=payout.transaction_id).exists():
            operation_create(
                player=player,
                kind=OperationKind.CREDIT,
                type=_kind(settlement),
                amount=payout.amount,
                round_id=str(settlement.pk),
                description=_describe(payout, settlement),
                payload={"handler": "payout", "payout_id": str(payout.pk)},
                id=payout.transaction_id,
            )
        payout.status = PayoutStatus.SENDING
        payout.save(update_fields=["status", "attempts", "updated_at"])
    payout_check(payout_id=payout_id)


def payout_check(*, payout_id) -> None:
    """Send or re-send an S2S payout (same transaction id) and record a definite answer."""
    payout = Payout.objects.select_related("player").get(pk=payout_id)
    if payout.status != PayoutStatus.SENDING:
        return
    operation = WalletOperation.objects.get(pk=payout.transaction_id)
    if operation.status not in FINAL_STATUSES and operation.status != OperationStatus.MANUAL:
        if operation.next_attempt_at and operation.next_attempt_at > timezone.now():
            return  # backing off
        if breaker_is_open(operator_id=payout.operator_id):
            return
        if operation.attempts == 0:
            operation_send(operation=operation)
        else:
            operation_settle(operation=operation)
        operation.refresh_from_db()
    with transaction.atomic():
        payout = Payout.objects.select_for_update().get(pk=payout_id)
        if payout.status != PayoutStatus.SENDING:
            return
        if operation.status == OperationStatus.OK:
            payout.status = PayoutStatus.PAID
            SETTLEMENT_PAYOUTS.labels(action=operation.type, result="paid").inc()
        elif operation.status in (OperationStatus.REFUSED, OperationStatus.MANUAL):
            payout.status = PayoutStatus.FAILED
            payout.last_error = operation.operator_status or operation.last_error
            SETTLEMENT_PAYOUTS.labels(action=operation.type, result="failed").inc()
        else:
            payout.last_error = operation.last_error
        payout.save(update_fields=["status", "last_error", "updated_at"])


def payout_retry(*, payout_id) -> None:
    """Staff: a failed payout goes back to the queue. A refused credit moved nothing, so the next
    attempt is a new transaction (the operator would replay its refusal for the old id); an
    operation stuck without a definite answer is retried under its own id."""
    with transaction.atomic():
        payout = Payout.objects.select_for_update().get(pk=payout_id)
        if payout.status != PayoutStatus.FAILED:
            return
        operation = WalletOperation.objects.filter(pk=payout.transaction_id).first()
        if operation is not None and operation.status == OperationStatus.MANUAL:
            WalletOperation.objects.filter(pk=operation.pk).update(
                status=OperationStatus.UNKNOWN, next_attempt_at=None, created_at=timezone.now()
            )
            payout.status = PayoutStatus.SENDING
        else:
            payout.transaction_id = uuid.uuid4()
            payout.status = PayoutStatus.PENDING
        payout.last_error = ""
        payout.save(update_fields=["status", "last_error", "transaction_id", "updated_at"])


def settlement_refresh(*, settlement_id) -> None:
    agg = Payout.objects.filter(settlement_id=settlement_id).aggregate(
        paid=Count("pk", filter=Q(status=PayoutStatus.PAID)),
        paid_amount=Sum("amount", filter=Q(status=PayoutStatus.PAID)),
        failed=Count("pk", filter=Q(status=PayoutStatus.FAILED)),
    )
    Settlement.objects.filter(pk=settlement_id).update(
        paid_count=agg["paid"], paid_amount=agg["paid_amount"] or Decimal("0"), failed_count=agg["failed"]
    )


def settlement_finalize(*, settlement_id) -> bool:
    outstanding = Payout.objects.filter(
        settlement_id=settlement_id, status__in=[PayoutStatus.PENDING, PayoutStatus.SENDING, PayoutStatus.FAILED]
    )
    if outstanding.exists():
        return False
    with transaction.atomic():
        settlement = Settlement.objects.select_for_update().get(pk=settlement_id)
        if settlement.status == SettlementStatus.COMPLETED:
            return True
        final = MarketStatus.VOIDED if settlement.action == SettlementAction.VOID else MarketStatus.RESOLVED
        Market.objects.filter(pk=settlement.market_id).update(status=final, updated_at=timezone.now())
        exposure_clear_market(market_id=settlement.market_id)
        settlement.status = SettlementStatus.COMPLETED
        settlement.completed_at = timezone.now()
        SETTLEMENTS.labels(action=settlement.action, stage="completed").inc()
        settlement.save(update_fields=["status", "completed_at"])
        operators = list(Payout.objects.filter(settlement_id=settlement_id).values_list("operator_id", flat=True).distinct())
        transaction.on_commit(lambda: _after_settlement(operators))
    log.info("settlement %s completed", settlement_id)
    return True


def _after_settlement(operator_ids) -> None:
    """Wall 5's open-exposure totals drop the settled positions (exact rebuild)."""
    try:
        from risk.tasks import operator_open_exposure_rebuild

        operator_open_exposure_rebuild.delay()
    except Exception:  # noqa: BLE001 - the beat task rebuilds it anyway
        log.warning("could not schedule the open-exposure rebuild", exc_info=True)
