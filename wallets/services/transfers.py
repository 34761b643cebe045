"""Deposits, withdrawals and staff balance adjustments on house-held (internal) wallets."""

import uuid
from decimal import Decimal

from django.db import transaction

from core.errors import HouseError
from wallets.models import LedgerType
from wallets.services.balances import BalanceChange, wallet_change

BALANCE_CAP = Decimal("100000")
PER_REQUEST_CAP = Decimal("100000")


def _require_internal(player) -> None:
    if player.operator.wallet_mode != "internal":
        raise HouseError("Not available for operator-held wallets", code="wallet_mode_s2s")


def _require_positive(amount: Decimal) -> None:
    if amount <= 0:
        raise HouseError("Amount must be positive", code="amount_not_positive")


def wallet_deposit(*, player, amount: Decimal, idempotency=None) -> BalanceChange:
    _require_internal(player)
    _require_positive(amount)
    if amount > PER_REQUEST_CAP:
        raise HouseError("Maximum deposit is $100,000", code="deposit_too_large")
    with transaction.atomic():
        change = wallet_change(
            player=player, amount=amount, type=LedgerType.DEPOSIT, description="Deposit", max_balance=BALANCE_CAP, entry_id=uuid.uuid4()
        )
        if idempotency is not None:
            idempotency.record(change)
    return change


def wallet_withdraw(*, player, amount: Decimal, idempotency=None) -> BalanceChange:
    _require_internal(player)
    _require_positive(amount)
    if amount > PER_REQUEST_CAP:
        raise HouseError("Maximum withdrawal is $100,000", code="withdrawal_too_large")
    with transaction.atomic():
        change = wallet_change(player=player, amount=-amount, type=LedgerType.WITHDRAWAL, description="Withdrawal", entry_id=uuid.uuid4())
        if idempotency is not None:
            idempotency.record(change)
    return change


def wallet_adjust(*, player, amount: Decimal, action: str, description: str = "", actor: str, idempotency=None) -> BalanceChange:
    """Staff credit or debit (promotions, refunds, corrections); the same path serves REST and the admin site."""
    _require_internal(player)
    _require_positive(amount)
    if action not in ("deposit", "withdraw"):
        raise HouseError("Invalid action", code="invalid_action")
    signed = amount if action == "deposit" else -amount
    text = description or ("Admin deposit" if action == "deposit" else "Admin withdrawal")
    with transaction.atomic():
        change = wallet_change(
            player=player, amount=signed, type=LedgerType.ADJUSTMENT, description=text, actor=actor, entry_id=uuid.uuid4()
        )
        if idempotency is not None:
            idempotency.record(change)
    return change
