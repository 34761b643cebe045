"""House-held (internal) wallets: a chunk of payouts paid in the transaction that claimed it.

Exactly once: a payout is created as paid, or moves from pending to paid under its row lock, in
the same transaction as its wallet movement, whose ledger row takes the payout's transaction id
(unique); its position is closed in that transaction too. A worker killed anywhere in the chunk
rolls the whole chunk back, and a re-run finds the positions open (or the payouts pending) again.
"""

from decimal import Decimal

from core.metrics import SETTLEMENT_PAYOUTS
from settlement.models import PayoutStatus, Settlement
from settlement.services.events import payouts_paid_record
from settlement.services.payout_chunks import ClaimedPayout, breaker_book_on_commit, payout_description, payout_ledger_type, payouts_mark
from wallets.models import LedgerType
from wallets.services.balances import BulkChange, wallet_changes_bulk, wallets_lock
from wallets.services.debts import debts_of, debts_recover_bulk, recovery_entry_id

ZERO = Decimal("0")


def house_payouts_pay(*, settlement: Settlement, payouts: list[ClaimedPayout]) -> None:
    """Inside the claim's transaction: one bulk wallet movement; the payouts not created paid (``fresh``)
    marked paid in one UPDATE. A player who owes a debt (a reversed settlement) gives it back out of
    the payout: a debt_recovery row after the payout's."""
    if not payouts:
        return
    kind, round_id = payout_ledger_type(settlement), str(settlement.pk)
    owing = debts_of(player_ids={p.player_id for p in payouts})
    if owing:
        wallets_lock(player_ids=sorted(owing))  # wallet rows before debt rows, in the order a sale takes them
    recovered = debts_recover_bulk(
        credits=[(p.transaction_id, p.player_id, p.amount) for p in payouts if p.player_id in owing],
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
    payouts_mark(ids=[p.id for p in payouts if not p.fresh], status=PayoutStatus.PAID, attempts=True)
    payouts_paid_record(settlement=settlement, payouts=payouts)  # the outbox, in the chunk's transaction
    SETTLEMENT_PAYOUTS.labels(action=settlement.action, result="paid").inc(len(payouts))
    breaker_book_on_commit(losses=[(p.player_id, p.amount - recovered.get(p.transaction_id, ZERO)) for p in payouts])
