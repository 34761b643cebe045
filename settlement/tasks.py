"""Celery entry points for settlement: pay a settlement, or take a reversed one back, in chunks until done."""

import logging

from celery import shared_task

from settlement.models import Reversal, ReversalItem, ReversalItemStatus, ReversalStatus, Settlement, SettlementStatus
from settlement.services.loss_notices import loss_notices_send
from settlement.services.payouts import settlement_advance, settlement_backlog
from settlement.services.reversal import reversal_advance

log = logging.getLogger("house.settlement")

MAX_EAGER_PASSES = 10000


@shared_task(bind=True, acks_late=True, max_retries=None)
def settle_market(self, settlement_id: str) -> str:
    """One chunk per run, then re-queued: a killed worker's chunk is simply run again (every
    payout is paid at most once, see settlement.services.payouts)."""
    if self.request.is_eager:  # no broker (embedded default): settle synchronously
        for _ in range(MAX_EAGER_PASSES):
            before = settlement_backlog(settlement_id=settlement_id)
            if settlement_advance(settlement_id=settlement_id) or settlement_backlog(settlement_id=settlement_id) == before:
                break
        return Settlement.objects.get(pk=settlement_id).status
    if settlement_advance(settlement_id=settlement_id):
        return Settlement.objects.get(pk=settlement_id).status
    raise self.retry(countdown=5 if settlement_backlog(settlement_id=settlement_id).waiting_only else 0)


@shared_task(bind=True, acks_late=True, max_retries=None)
def reverse_settlement(self, reversal_id: str) -> str:
    """One chunk of a reversal per run, then re-queued, like settle_market."""
    if self.request.is_eager:
        for _ in range(MAX_EAGER_PASSES):
            before = _reversal_open(reversal_id)
            if reversal_advance(reversal_id=reversal_id) or _reversal_open(reversal_id) == before:
                break
        return Reversal.objects.get(pk=reversal_id).status
    if reversal_advance(reversal_id=reversal_id):
        return ReversalStatus.COMPLETED
    raise self.retry(countdown=0 if _reversal_pending(reversal_id) else 5)


@shared_task(acks_late=True)
def settlements_resume() -> int:
    """Beat: make sure every unfinished settlement and reversal has a worker on it (after restarts, lost messages)."""
    ids = list(Settlement.objects.filter(status=SettlementStatus.SETTLING).values_list("pk", flat=True))
    for settlement_id in ids:
        settle_market.delay(str(settlement_id))
    reversals = list(Reversal.objects.filter(status=ReversalStatus.REVERSING).values_list("pk", flat=True))
    for reversal_id in reversals:
        reverse_settlement.delay(str(reversal_id))
    return len(ids) + len(reversals)


def _reversal_open(reversal_id) -> int:
    open_items = (ReversalItemStatus.WAITING, ReversalItemStatus.PENDING, ReversalItemStatus.SENDING)
    return ReversalItem.objects.filter(reversal_id=reversal_id, status__in=open_items).count()


def _reversal_pending(reversal_id) -> bool:
    return ReversalItem.objects.filter(reversal_id=reversal_id, status=ReversalItemStatus.PENDING).exists()


# ----- issue 14 (SPEC §16): loss notifications ---------------------------------------------------

LOSS_NOTICE_PASSES = 100


@shared_task(acks_late=True)
def loss_notices_send_task() -> int:
    """Send the due loss notices, a pass at a time, until a pass finds none due (queued after each
    chunk that recorded some; the beat runs it too, for retries and after restarts)."""
    total = 0
    for _ in range(LOSS_NOTICE_PASSES):
        sent = loss_notices_send()
        total += sent
        if not sent:
            break
    return total
