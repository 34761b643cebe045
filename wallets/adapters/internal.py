"""Internal wallet: the house holds the balance; every call is a locked row update + ledger row."""

import uuid
from decimal import Decimal

from wallets.adapters.base import WalletAdapter, WalletMove
from wallets.models import LedgerType
from wallets.services.balances import wallet_balance, wallet_change


def _move(*, player, signed_amount: Decimal, **ledger) -> WalletMove:
    change = wallet_change(player=player, amount=signed_amount, **ledger)
    return WalletMove(transaction_id=change.entry_id, balance_before=change.balance_before, balance_after=change.balance_after)


class InternalWalletAdapter(WalletAdapter):
    local = True

    def balance(self, *, player, for_update: bool = False) -> Decimal:
        return wallet_balance(player=player, for_update=for_update)

    def debit(
        self,
        *,
        player,
        amount,
        transaction_id,
        kind=LedgerType.TRADE_DEBIT,
        round_id="",
        description="",
        trade_id=None,
        locked_balance=None,
    ) -> WalletMove:
        return _move(
            player=player,
            signed_amount=-amount,
            type=kind,
            description=description,
            entry_id=transaction_id,
            trade_id=trade_id,
            round_id=round_id,
            locked_balance=locked_balance,
        )

    def credit(
        self,
        *,
        player,
        amount,
        transaction_id,
        kind=LedgerType.TRADE_CREDIT,
        round_id="",
        description="",
        trade_id=None,
        locked_balance=None,
    ) -> WalletMove:
        return _move(
            player=player,
            signed_amount=amount,
            type=kind,
            description=description,
            entry_id=transaction_id,
            trade_id=trade_id,
            round_id=round_id,
            locked_balance=locked_balance,
        )

    def rollback(
        self, *, player, amount, transaction_id: uuid.UUID, reference_transaction_id: uuid.UUID, round_id="", description=""
    ) -> WalletMove:
        return _move(
            player=player,
            signed_amount=amount,
            type=LedgerType.ROLLBACK,
            description=description,
            entry_id=transaction_id,
            round_id=round_id,
            reference_id=reference_transaction_id,
        )
