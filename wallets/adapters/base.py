"""The wallet adapter interface: how the house reads and moves a player's money.

An adapter is ``local`` when the money lives in the house database (internal wallet): its
calls join the caller's database transaction, so a trade is one atomic unit. A remote
adapter (S2S) is called between transactions, never while a lock is held.
"""

import uuid
from abc import ABC, abstractmethod
from dataclasses import dataclass
from decimal import Decimal


@dataclass(frozen=True)
class WalletMove:
    transaction_id: uuid.UUID
    balance_before: Decimal
    balance_after: Decimal


class WalletAdapter(ABC):
    local: bool

    @abstractmethod
    def balance(self, *, player, for_update: bool = False) -> Decimal: ...

    @abstractmethod
    def debit(
        self,
        *,
        player,
        amount: Decimal,
        transaction_id: uuid.UUID,
        kind: str,
        round_id: str,
        description: str,
        trade_id: uuid.UUID | None = None,
        locked_balance: Decimal | None = None,
    ) -> WalletMove: ...

    @abstractmethod
    def credit(
        self,
        *,
        player,
        amount: Decimal,
        transaction_id: uuid.UUID,
        kind: str,
        round_id: str,
        description: str,
        trade_id: uuid.UUID | None = None,
        locked_balance: Decimal | None = None,
    ) -> WalletMove: ...

    @abstractmethod
    def rollback(
        self, *, player, amount: Decimal, transaction_id: uuid.UUID, reference_transaction_id: uuid.UUID, round_id: str, description: str
    ) -> WalletMove: ...
