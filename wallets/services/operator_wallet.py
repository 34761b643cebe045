"""S2S wallet server settings of an operator: create, rotate the signing secret (sealed at rest: core.crypto)."""

import secrets

from core.crypto import secret_seal
from wallets.models import OperatorWallet


def operator_wallet_configure(*, operator, base_url: str = "") -> str:
    """Create (or reset) the operator's wallet settings; returns the new signing secret, shown once."""
    secret = secrets.token_urlsafe(32)
    OperatorWallet.objects.update_or_create(operator=operator, defaults={"base_url": base_url, "secret_sealed": secret_seal(secret)})
    return secret


def operator_wallet_rotate_secret(*, operator) -> str:
    secret = secrets.token_urlsafe(32)
    OperatorWallet.objects.filter(operator=operator).update(secret_sealed=secret_seal(secret))
    return secret
