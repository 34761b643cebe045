"""House-held (internal) wallets: a chunk of payouts paid in the transaction that claimed it.

Exactly once: the payouts are row-locked by the claim and move from pending to paid in the same
transaction as their wallet movement, whose ledger rows take the payouts' transaction ids
(unique). A worker killed anywhere in the chunk rolls the whole chunk back, and a re-run finds
it pending again.
"""

from django.db.models import F
from django.utils import timezone

from core.metrics import SETTLEMENT_PAYOUTS
from settlement.models import Payout, PayoutStatus, Settlement
from settlement.services.payout_chunks import ClaimedPayout, payout_description, payout_ledger_type
from wallets.services.balances import BulkChange, wallet_changes_bulk


def house_payouts_pay(*, settlement: Settlement, payouts: list[ClaimedPayout]) -> None:
    """Inside the claim's transaction: one bulk wallet movement, the payouts marked paid in one UPDATE."""
    if not payouts:
        return
    kind, round_id = payout_ledger_type(settlement), str(settlement.pk)
    wallet_changes_bulk(
        changes=[
            BulkChange(
                player_id=p.player_id,
                operator_id=p.operator_id,
                currency=p.currency,
                amount=p.amount,
                type=kind,
                description=payout_description(settlement, p),
                entry_id=p.transaction_id,
                round_id=round_id,
                actor="system",
            )
            for p in payouts
        ]
    )
    paid = Payout.objects.filter(pk__in=[p.id for p in payouts])
    paid.update(status=PayoutStatus.PAID, attempts=F("attempts") + 1, updated_at=timezone.now())
    SETTLEMENT_PAYOUTS.labels(action=settlement.action, result="paid").inc(len(payouts))
