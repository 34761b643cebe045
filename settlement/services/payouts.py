"""Paying a settlement, a chunk at a time, each payout exactly once: the story.

    settlement_advance   one pass: take a chunk, pay it, send what goes to operators, finalize when done
      settlement_share       the settlement row FOR SHARE; nothing is done unless it is settling
      payouts_from_positions open positions locked (SKIP LOCKED, id order), their payouts created, the positions closed
      payouts_claim          payouts left pending, then S2S payouts due for a retry: row locks, SKIP LOCKED, id order
      house_payouts_pay      house-held wallets: paid in the claim's transaction (one bulk wallet movement)
      operator_payouts_hold  S2S: credits recorded and held by this worker in the claim's transaction
      operator_payouts_send  S2S: the calls with no transaction open (concurrent, bounded per operator), the answers
    settlement_finalize  when no position is open and no payout pending, sending or failed: the market
                         resolved/voided, exposure cleared

The decision (settlement.services.decide) writes no payout: a position's payout is created by the
chunk that pays it, in one transaction that closes the position, creates the payout and pays it
(house wallet) or records its credit (S2S). Exactly once, whatever happens: a position leaves open
only under its row lock, in that transaction, and a payout leaves pending only under its row lock
in the transaction that pays it; the ledger row (house wallet) or the WalletOperation (S2S, re-sent
under the same id until the operator answers definitely) takes the payout's transaction id
(unique). Re-running a chunk, a killed worker, or several workers at once cannot pay twice, and
nothing is skipped: the settlement completes only when no position of the market is open and no
payout is pending, sending or failed. Another kind of movement to or from many players per
settlement (a reversal) follows the same shape: its own claim, wallets' bulk services for the money.
"""

import logging
import time
import uuid
from dataclasses import dataclass
from decimal import Decimal

from django.db import transaction
from django.db.models import Count, Q, Sum
from django.utils import timezone

from casino.models import Market, MarketStatus, Position, PositionStatus
from casino.services.exposure import exposure_clear_market
from core.metrics import SETTLEMENTS
from settlement.models import Payout, PayoutStatus, Settlement, SettlementAction, SettlementStatus
from settlement.services.events import settlement_completed_record
from settlement.services.loss_notices import loss_notices_kick
from settlement.services.payout_chunks import payouts_claim, payouts_from_positions, settlement_share
from settlement.services.payouts_house import house_payouts_pay
from settlement.services.payouts_operator import OperatorBatch, operator_payouts_hold, operator_payouts_send
from wallets.selectors import sales_in_flight
from wallets.services.operations import operation_requeue

log = logging.getLogger("house.settlement")

CHUNK = 2000  # positions (or payouts) per chunk transaction: bench/RESULTS.md, "Settlement"


def settlement_advance(*, settlement_id, chunk: int = CHUNK) -> bool:
    """Pay the payouts of up to ``chunk`` open positions, up to ``chunk`` payouts left pending, and retry up
    to ``chunk`` S2S payouts due again; finalize when nothing is outstanding. True when complete, or when
    the settlement is no longer settling (nothing left to do here). Safe to run concurrently and again
    after a crash."""
    settlement = Settlement.objects.get(pk=settlement_id)
    if settlement.status != SettlementStatus.SETTLING:
        return True
    if sales_in_flight(market_id=settlement.market_id):
        # An S2S sale's shares are off its position while its credit is decided; a refused credit gives
        # them back. The position is paid once the sale is recorded or given back (the decision stopped
        # new ones: this waits a wallet timeout at most, or for recovery after a crash).
        return False
    taken = _chunk_take(settlement, chunk)
    if taken is None:
        return True  # no longer settling: taken over (a reversal) or completed meanwhile
    batches, more_positions = taken
    for batch in batches:
        operator_payouts_send(settlement=settlement, batch=batch)
    if _refresh_due(settlement_id) or Payout.objects.filter(settlement_id=settlement_id, status=PayoutStatus.FAILED).exists():
        settlement_refresh(settlement_id=settlement_id)
    if more_positions:
        return False  # a full chunk of positions: not the end, no need to look
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


def _chunk_take(settlement: Settlement, chunk: int) -> tuple[list[OperatorBatch], bool] | None:
    """One transaction: positions' payouts created; house-wallet payouts paid; S2S credits recorded or
    taken again, held for the calls. With whether a full chunk of positions was taken; None when the
    settlement is not settling (nothing done)."""
    with transaction.atomic():
        if not settlement_share(settlement_id=settlement.pk):
            return None
        fresh = payouts_from_positions(settlement=settlement, chunk=chunk)
        pending = fresh.payouts + payouts_claim(settlement_id=settlement.pk, status=PayoutStatus.PENDING, chunk=chunk)
        retrying = payouts_claim(settlement_id=settlement.pk, status=PayoutStatus.SENDING, chunk=chunk)
        house_payouts_pay(settlement=settlement, payouts=[p for p in pending if not p.at_operator])
        held = operator_payouts_hold(settlement=settlement, pending=[p for p in pending if p.at_operator], retrying=retrying)
        if fresh.notices:  # losing positions at S2S operators: their notices go out on their own (SPEC §16)
            transaction.on_commit(loss_notices_kick)
        return held, fresh.full


def payout_retry(*, payout_id) -> None:
    """Staff: a failed payout goes back to the queue. A refused credit moved nothing, so the next
    attempt is a new transaction (the operator would replay its refusal for the old id); an
    operation stuck without a definite answer is retried under its own id."""
    with transaction.atomic():
        payout = Payout.objects.select_for_update().get(pk=payout_id)
        if payout.status != PayoutStatus.FAILED or not settlement_share(settlement_id=payout.settlement_id):
            return
        if operation_requeue(operation_id=payout.transaction_id):
            payout.status = PayoutStatus.SENDING
        else:
            payout.transaction_id = uuid.uuid4()
            payout.status = PayoutStatus.PENDING
        payout.last_error = ""
        payout.save(update_fields=["status", "last_error", "transaction_id", "updated_at"])


def settlement_refresh(*, settlement_id, final: bool = False) -> None:
    """The progress counters from the payouts. ``final``: also check them against the decision's totals."""
    agg = Payout.objects.filter(settlement_id=settlement_id).aggregate(
        paid=Count("pk", filter=Q(status=PayoutStatus.PAID)),
        paid_amount=Sum("amount", filter=Q(status=PayoutStatus.PAID)),
        failed=Count("pk", filter=Q(status=PayoutStatus.FAILED)),
        payouts=Count("pk"),
        amount=Sum("amount"),
    )
    Settlement.objects.filter(pk=settlement_id).update(
        paid_count=agg["paid"], paid_amount=agg["paid_amount"] or Decimal("0"), failed_count=agg["failed"]
    )
    if final:
        settlement = Settlement.objects.get(pk=settlement_id)
        made = agg["amount"] or Decimal("0")
        if made != settlement.total_payout:
            # A position's shares changed after the decision (an S2S sell whose credit was refused
            # gives them back): the payouts follow the positions, the decision's totals do not.
            log.error("settlement %s: payouts %s differ from the decision's totals %s", settlement_id, made, settlement.total_payout)


@dataclass(frozen=True)
class Backlog:
    """What a settlement still has to do: positions to pay, payouts not yet sent, payouts waiting for answers."""

    open_positions: int
    pending: int
    sending: int
    sales_in_flight: bool = False

    @property
    def waiting_only(self) -> bool:
        """Only answers or retries of S2S credits are left, or sales being decided (nothing a worker can take at once)."""
        return self.sales_in_flight or (self.open_positions == 0 and self.pending == 0)


def settlement_backlog(*, settlement_id) -> Backlog:
    settlement = Settlement.objects.get(pk=settlement_id)
    counts = dict(
        Payout.objects.filter(settlement_id=settlement_id, status__in=[PayoutStatus.PENDING, PayoutStatus.SENDING])
        .order_by()
        .values_list("status")
        .annotate(n=Count("pk"))
    )
    positions = Position.objects.filter(market_id=settlement.market_id, status=PositionStatus.OPEN).count()
    return Backlog(
        positions, counts.get(PayoutStatus.PENDING, 0), counts.get(PayoutStatus.SENDING, 0), sales_in_flight(market_id=settlement.market_id)
    )


def _outstanding(settlement: Settlement) -> bool:
    """A position of the market still open, or a payout pending, sending or failed. Exact only while the
    settlement row is locked FOR UPDATE: no chunk is then in flight (each holds it FOR SHARE)."""
    payouts = Payout.objects.filter(
        settlement_id=settlement.pk, status__in=[PayoutStatus.PENDING, PayoutStatus.SENDING, PayoutStatus.FAILED]
    )
    return Position.objects.filter(market_id=settlement.market_id, status=PositionStatus.OPEN).exists() or payouts.exists()


def settlement_finalize(*, settlement_id) -> bool:
    settlement = Settlement.objects.get(pk=settlement_id)
    if settlement.status != SettlementStatus.SETTLING:
        return True
    if _outstanding(settlement):  # without the lock: most passes stop here
        return False
    settlement_refresh(settlement_id=settlement_id, final=True)  # the final counts, exact
    _refreshed_at.pop(settlement_id, None)
    with transaction.atomic():
        settlement = Settlement.objects.select_for_update().get(pk=settlement_id)  # waits for the chunks in flight
        if settlement.status != SettlementStatus.SETTLING:
            return True
        if _outstanding(settlement):
            return False
        final = MarketStatus.VOIDED if settlement.action == SettlementAction.VOID else MarketStatus.RESOLVED
        Market.objects.filter(pk=settlement.market_id).update(status=final, updated_at=timezone.now())
        exposure_clear_market(market_id=settlement.market_id)
        settlement.status = SettlementStatus.COMPLETED
        settlement.completed_at = timezone.now()
        SETTLEMENTS.labels(action=settlement.action, stage="completed").inc()
        settlement.save(update_fields=["status", "completed_at"])
        operators = settlement_completed_record(settlement=settlement)  # the outbox: one event per operator
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
