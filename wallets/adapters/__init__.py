"""Wallet adapter look-up by operator wallet mode."""

import logging

from core.crypto import SecretUnreadable
from core.errors import HouseError
from wallets.adapters.base import WalletAdapter, WalletMove
from wallets.adapters.internal import InternalWalletAdapter
from wallets.adapters.s2s import S2SWalletAdapter

_INTERNAL = InternalWalletAdapter()
log = logging.getLogger("house.wallet")


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
    except SecretUnreadable:
        # HOUSE_SECRETS_KEY changed without HOUSE_SECRETS_KEY_PREVIOUS: nothing can be signed; refuse, say why in the log.
        log.error("operator %s: wallet signing secret unreadable (HOUSE_SECRETS_KEY changed?)", operator.pk)
        raise HouseError("Operator wallet unavailable", code="wallet_secret_unreadable", status=503) from None
    if target is None or not target.base_url:
        raise HouseError("Operator wallet unavailable", code="wallet_not_configured", status=503)
    if not target.enabled:
        raise HouseError("Operator wallet unavailable", code="wallet_disabled", status=503)
    breaker_check(config=target)
    return S2SWalletAdapter(target)


__all__ = ["WalletAdapter", "WalletMove", "InternalWalletAdapter", "S2SWalletAdapter", "wallet_adapter_for"]
