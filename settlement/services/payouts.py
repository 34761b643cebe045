"""Paying a settlement, a chunk at a time, each payout exactly once: the story.

    settlement_advance   one pass: take a chunk, pay it, send what goes to operators, finalize when done
      payouts_claim          pending payouts, then S2S payouts due for a retry: row locks, SKIP LOCKED, id order
      house_payouts_pay      house-held wallets: paid in the claim's transaction (one bulk wallet movement)
      operator_payouts_hold  S2S: credits recorded and held by this worker in the claim's transaction
      operator_payouts_send  S2S: the calls with no transaction open (concurrent, bounded per operator), the answers
    settlement_finalize  when nothing is pending, sending or failed: the market resolved/voided, exposure cleared

Exactly once, whatever happens: a payout leaves pending only under its row lock, in the
transaction that pays it (house wallet: ledger row id = the payout's transaction id, unique) or
records its credit (S2S: the WalletOperation with that id, re-sent under it until the operator
answers definitely). Re-running a chunk, a killed worker, or several workers at once cannot pay
twice, and nothing is skipped: the settlement completes only when no payout is left pending,
sending or failed. Another kind of movement to or from many players per settlement (a reversal)
follows the same shape: its own claim, wallets' bulk services for the money.
"""

import logging
import time
import uuid
from decimal import Decimal

from django.db import connection, transaction
from django.db.models import Count, Q, Sum
from django.utils import timezone

from casino.models import Market, MarketStatus
from casino.services.exposure import exposure_clear_market
from core.metrics import SETTLEMENTS
from settlement.models import Payout, PayoutStatus, Settlement, SettlementAction, SettlementStatus
from settlement.services.payout_chunks import payouts_claim
from settlement.services.payouts_house import house_payouts_pay
from settlement.services.payouts_operator import OperatorBatch, operator_payouts_hold, operator_payouts_send
from wallets.services.operations import operation_requeue

log = logging.getLogger("house.settlement")

CHUNK = 1000


def settlement_advance(*, settlement_id, chunk: int = CHUNK) -> bool:
    """Pay up to ``chunk`` pending payouts and retry up to ``chunk`` S2S payouts due again; finalize when
    none is outstanding. True when complete. Safe to run concurrently and again after a crash."""
    settlement = Settlement.objects.get(pk=settlement_id)
    if settlement.status != SettlementStatus.SETTLING:  # completed, or reversed (its reversal takes over)
        return True
    for batch in _chunk_take(settlement, chunk):
        operator_payouts_send(settlement=settlement, batch=batch)
    if _refresh_due(settlement_id) or Payout.objects.filter(settlement_id=settlement_id, status=PayoutStatus.FAILED).exists():
        settlement_refresh(settlement_id=settlement_id)
    return settlement_finalize(settlement_id=settlement_id)


# The progress counters are an aggregate over all the settlement's payouts (100,000 rows for a
# popular market): each worker refreshes them at most once a second, at once while a payout is
# failed (staff look for it), and exactly when the settlement completes.
REFRESH_SECONDS = 1.0
_refreshed_at: dict = {}


def _refresh_due(settlement_id) -> bool:
    now = time.monotonic()
    if now - _refreshed_at.get(settlement_id, -REFRESH_SECONDS) < REFRESH_SECONDS:
        return False
    _refreshed_at[settlement_id] = now
    return True


def _chunk_take(settlement: Settlement, chunk: int) -> list[OperatorBatch]:
    """One transaction: house-wallet payouts paid; S2S credits recorded or taken again, held for the calls."""
    with transaction.atomic():
        if not settlement_still_paying(settlement.pk):
            return []
        pending = payouts_claim(settlement_id=settlement.pk, status=PayoutStatus.PENDING, chunk=chunk)
        retrying = payouts_claim(settlement_id=settlement.pk, status=PayoutStatus.SENDING, chunk=chunk)
        house_payouts_pay(settlement=settlement, payouts=[p for p in pending if not p.at_operator])
        return operator_payouts_hold(settlement=settlement, pending=[p for p in pending if p.at_operator], retrying=retrying)


def settlement_still_paying(settlement_id) -> bool:
    """In a chunk's transaction: the settlement row share-locked, so a reversal (which locks it for
    update) waits for the chunk, and a chunk started after a reversal pays nothing."""
    rows = Settlement.objects.filter(pk=settlement_id)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT status FROM settlements WHERE id = %s FOR SHARE", [settlement_id])
            row = cursor.fetchone()
            return row is not None and row[0] == SettlementStatus.SETTLING
    return rows.filter(status=SettlementStatus.SETTLING).exists()


def payout_retry(*, payout_id) -> None:
    """Staff: a failed payout goes back to the queue. A refused credit moved nothing, so the next
    attempt is a new transaction (the operator would replay its refusal for the old id); an
    operation stuck without a definite answer is retried under its own id."""
    with transaction.atomic():
        payout = Payout.objects.select_for_update().get(pk=payout_id)
        if payout.status != PayoutStatus.FAILED or not settlement_still_paying(payout.settlement_id):
            return
        if operation_requeue(operation_id=payout.transaction_id):
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
    settlement_refresh(settlement_id=settlement_id)  # the final counts, exact
    _refreshed_at.pop(settlement_id, None)
    with transaction.atomic():
        settlement = Settlement.objects.select_for_update().get(pk=settlement_id)
        if settlement.status != SettlementStatus.SETTLING:
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
