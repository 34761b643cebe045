"""Celery entry points for settlement: pay a settlement in chunks until it completes."""

import logging

from celery import shared_task

from settlement.models import Settlement, SettlementStatus
from settlement.services.payouts import settlement_advance, settlement_backlog

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


@shared_task(acks_late=True)
def settlements_resume() -> int:
    """Beat: make sure every unfinished settlement has a worker on it (after restarts, lost messages)."""
    ids = list(Settlement.objects.filter(status=SettlementStatus.SETTLING).values_list("pk", flat=True))
    for settlement_id in ids:
        settle_market.delay(str(settlement_id))
    return len(ids)
