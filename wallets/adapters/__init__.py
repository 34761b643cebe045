"""Wallet adapter look-up by operator wallet mode."""

from casino.errors import HouseError
from wallets.adapters.base import WalletAdapter, WalletMove
from wallets.adapters.internal import InternalWalletAdapter

_INTERNAL = InternalWalletAdapter()


def wallet_adapter_for(operator) -> WalletAdapter:
    if operator.wallet_mode == "internal":
        return _INTERNAL
    # S2S operators trade once the seamless-wallet adapter is configured (wallets.adapters.s2s).
    raise HouseError("Operator wallet unavailable", code="wallet_unavailable", status=503)


__all__ = ["WalletAdapter", "WalletMove", "InternalWalletAdapter", "wallet_adapter_for"]
