"""Wallet adapter look-up by operator wallet mode."""

from core.errors import HouseError
from wallets.adapters.base import WalletAdapter, WalletMove
from wallets.adapters.internal import InternalWalletAdapter
from wallets.adapters.s2s import S2SWalletAdapter

_INTERNAL = InternalWalletAdapter()


def wallet_adapter_for(operator) -> WalletAdapter | S2SWalletAdapter:
    if operator.wallet_mode == "internal":
        return _INTERNAL
    from wallets.models import OperatorWallet
    from wallets.services.breaker import breaker_check
    from wallets.services.operations import WalletTarget

    try:
        target = WalletTarget.for_operator(operator.pk)
    except OperatorWallet.DoesNotExist:
        target = None
    if target is None or not target.base_url:
        raise HouseError("Operator wallet unavailable", code="wallet_not_configured", status=503)
    if not target.enabled:
        raise HouseError("Operator wallet unavailable", code="wallet_disabled", status=503)
    breaker_check(config=target)
    return S2SWalletAdapter(target)


__all__ = ["WalletAdapter", "WalletMove", "InternalWalletAdapter", "S2SWalletAdapter", "wallet_adapter_for"]
