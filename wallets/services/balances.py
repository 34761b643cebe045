"""House-held balances: every change is one locked row update plus one ledger row, atomically.

These functions run inside the caller's transaction (the trade executor's, or the
transfer services' own); they take the player's wallet row lock and keep it to commit.
"""

import uuid
from dataclasses import dataclass
from decimal import Decimal

from django.db import transaction

from core.errors import insufficient_balance
from wallets.models import LedgerEntry, PlayerWallet


@dataclass(frozen=True)
class BalanceChange:
    entry_id: uuid.UUID
    balance_before: Decimal
    balance_after: Decimal


def wallet_ensure(*, player) -> None:
    PlayerWallet.objects.get_or_create(player=player)


def wallet_balance(*, player, for_update: bool = False) -> Decimal:
    """Current balance; with for_update, the row stays locked until the transaction ends."""
    qs = PlayerWallet.objects.filter(player_id=player.pk)
    if for_update:
        qs = qs.select_for_update()
    row = qs.values_list("balance", flat=True).first()
    if row is None:
        if for_update:
            PlayerWallet.objects.get_or_create(player_id=player.pk)
            return wallet_balance(player=player, for_update=True)
        return Decimal("0.00")
    return row


def wallet_change(
    *,
    player,
    amount: Decimal,
    type: str,
    description: str,
    entry_id: uuid.UUID | None = None,
    trade_id: uuid.UUID | None = None,
    round_id: str = "",
    reference_id: uuid.UUID | None = None,
    locked_balance: Decimal | None = None,
    max_balance: Decimal | None = None,
    actor: str = "player",
) -> BalanceChange:
    """Apply a signed amount to the player's balance and append its ledger row.

    ``locked_balance``: the balance the caller read with for_update in this transaction
    (saves a round trip). Refuses to go below zero or, with max_balance, above it.
    """
    assert transaction.get_connection().in_atomic_block, "wallet_change must run inside a transaction"
    before = locked_balance if locked_balance is not None else wallet_balance(player=player, for_update=True)
    after = before + amount
    if after < 0:
        raise insufficient_balance()
    if max_balance is not None and amount > 0 and after > max_balance:
        from core.errors import HouseError

        raise HouseError("Balance cap of $100,000 exceeded", code="balance_cap_exceeded")
    PlayerWallet.objects.filter(player_id=player.pk).update(balance=after)
    entry = LedgerEntry.objects.create(
        id=entry_id or uuid.uuid4(),
        player_id=player.pk,
        operator_id=player.operator_id,
        type=type,
        amount=amount,
        balance_after=after,
        currency=player.currency,
        description=description[:500],
        trade_id=trade_id,
        round_id=round_id,
        reference_id=reference_id,
        actor=actor,
    )
    return BalanceChange(entry_id=entry.id, balance_before=before, balance_after=after)
