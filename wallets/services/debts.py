"""Player debts (SPEC §12): what a reversed settlement could not take back, recovered from the
player's later credits (sell proceeds, payouts, refunds; never deposits).

Every change is a DebtEntry (append-only, one per reference: a re-run cannot count twice) and
the PlayerDebt row holds their sum. These run inside the caller's transaction and lock the
player's debt row; callers that also lock the wallet row take the wallet row first.
"""

import uuid
from decimal import Decimal

from django.db import transaction

from wallets.models import DebtEntry, DebtEntryKind, PlayerDebt

ZERO = Decimal("0")


def debt_of(*, player_id) -> Decimal:
    """The player's debt now (no lock): the cheap check before a credit."""
    return PlayerDebt.objects.filter(player_id=player_id).values_list("amount", flat=True).first() or ZERO


def debt_incur(*, player, amount: Decimal, reference_id: uuid.UUID, description: str) -> bool:
    """Add ``amount`` to the player's debt; False if this reference was already counted."""
    return _change(player=player, kind=DebtEntryKind.INCURRED, amount=amount, reference_id=reference_id, description=description)


def debt_recover(*, player, credit: Decimal, reference_id: uuid.UUID, description: str) -> Decimal:
    """Take what the player owes out of a credit of ``credit``: returns the amount recovered
    (0 without a debt), already taken off the debt. The caller books it (a debt_recovery ledger
    row, or a smaller S2S credit) in the same transaction."""
    assert transaction.get_connection().in_atomic_block, "debt_recover must run inside a transaction"
    if credit <= 0:
        return ZERO
    row = PlayerDebt.objects.select_for_update().filter(player_id=player.pk).first()
    if row is None or row.amount <= 0:
        return ZERO
    if DebtEntry.objects.filter(kind=DebtEntryKind.RECOVERED, reference_id=reference_id).exists():
        return -DebtEntry.objects.get(kind=DebtEntryKind.RECOVERED, reference_id=reference_id).amount
    recovered = min(row.amount, credit)
    _change(player=player, kind=DebtEntryKind.RECOVERED, amount=-recovered, reference_id=reference_id, description=description, row=row)
    return recovered


def debt_restore(*, player, amount: Decimal, reference_id: uuid.UUID, description: str) -> bool:
    """Give back a recovery whose credit the operator refused (nothing was credited)."""
    return _change(player=player, kind=DebtEntryKind.RESTORED, amount=amount, reference_id=reference_id, description=description)


def _change(*, player, kind: str, amount: Decimal, reference_id: uuid.UUID, description: str, row: PlayerDebt | None = None) -> bool:
    assert transaction.get_connection().in_atomic_block, "debt changes run inside a transaction"
    if amount == 0:
        return False
    if kind != DebtEntryKind.RECOVERED and DebtEntry.objects.filter(kind=kind, reference_id=reference_id).exists():
        return False
    if row is None:
        PlayerDebt.objects.get_or_create(player_id=player.pk, defaults={"currency": player.currency})
        row = PlayerDebt.objects.select_for_update().get(player_id=player.pk)
    DebtEntry.objects.create(player_id=player.pk, kind=kind, amount=amount, reference_id=reference_id, description=description[:500])
    row.amount += amount
    row.save(update_fields=["amount", "updated_at"])
    return True
