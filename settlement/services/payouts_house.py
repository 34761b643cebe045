"""House-held (internal) wallets: a chunk of payouts paid in the transaction that claimed it.

Exactly once: the payouts are row-locked by the claim and move from pending to paid in the same
transaction as their wallet movement, whose ledger rows take the payouts' transaction ids
(unique). A worker killed anywhere in the chunk rolls the whole chunk back, and a re-run finds
it pending again.
"""

from core.metrics import SETTLEMENT_PAYOUTS
from settlement.models import PayoutStatus, Settlement
from settlement.services.payout_chunks import ClaimedPayout, payout_description, payout_ledger_type, payouts_mark
from wallets.models import LedgerType
from wallets.services.balances import BulkChange, wallet_changes_bulk
from wallets.services.debts import debts_recover_bulk, recovery_entry_id


def house_payouts_pay(*, settlement: Settlement, payouts: list[ClaimedPayout]) -> None:
    """Inside the claim's transaction: one bulk wallet movement, the payouts marked paid in one UPDATE.
    A player who owes a debt (a reversed settlement) gives it back out of the payout: a debt_recovery
    row after the payout's."""
    if not payouts:
        return
    kind, round_id = payout_ledger_type(settlement), str(settlement.pk)
    recovered = debts_recover_bulk(
        credits=[(p.transaction_id, p.player_id, p.amount) for p in payouts],
        description=f"Debt recovered from {kind} in {settlement.market_id}",
    )
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
        + [
            BulkChange(
                player_id=p.player_id,
                operator_id=p.operator_id,
                currency=p.currency,
                amount=-recovered[p.transaction_id],
                type=LedgerType.DEBT_RECOVERY,
                description=f"Debt recovered from {kind} {p.transaction_id}",
                entry_id=recovery_entry_id(p.transaction_id),
                round_id=round_id,
                reference_id=p.transaction_id,
            )
            for p in payouts
            if p.transaction_id in recovered
        ]
    )
    payouts_mark(ids=[p.id for p in payouts], status=PayoutStatus.PAID, attempts=True)
    SETTLEMENT_PAYOUTS.labels(action=settlement.action, result="paid").inc(len(payouts))
