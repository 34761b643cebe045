"""Secrets the house must be able to use again (S2S wallet and webhook signing secrets) sealed at rest with a key
from the environment (SPEC §15): ``secret_seal`` / ``secret_open``.

Fernet from the ``cryptography`` package (AES-128-CBC with HMAC-SHA256, encrypt-then-MAC, a fresh
IV per value), never a home-made cipher. The key is ``HOUSE_SECRETS_KEY`` (any string of at least 32
characters; the Fernet key is its SHA-256), else derived from DJANGO_SECRET_KEY. Rotation: set the
new key and the old one as ``HOUSE_SECRETS_KEY_PREVIOUS``; values sealed under either open, new
ones are sealed under the new key (MultiFernet); ``manage.py reseal_secrets`` then re-seals every stored
value under the new key, after which the previous key can be dropped (README, "Rotating the secrets key").
"""

import base64
import hashlib

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings

_VERSION = "f1"


class SecretUnreadable(Exception):
    """The sealed value was altered, or was sealed under a key this process does not have."""


def _fernet(master: str) -> Fernet:
    return Fernet(base64.urlsafe_b64encode(hashlib.sha256(b"house.secret." + master.encode()).digest()))


def _keys() -> MultiFernet:
    """The key that seals first, then those that may still open: the previous key, and the key derived
    from DJANGO_SECRET_KEY (what sealed before HOUSE_SECRETS_KEY was set)."""
    derived = f"django:{settings.SECRET_KEY}"
    keys = [getattr(settings, "HOUSE_SECRETS_KEY", "") or derived, getattr(settings, "HOUSE_SECRETS_KEY_PREVIOUS", ""), derived]
    return MultiFernet([_fernet(k) for k in dict.fromkeys(k for k in keys if k)])


def secret_seal(plain: str) -> str:
    return f"{_VERSION}:{_keys().encrypt(plain.encode()).decode()}"


def secret_open(sealed: str) -> str:
    version, _, token = sealed.partition(":")
    if version != _VERSION:
        raise SecretUnreadable("unknown seal version")
    try:
        return _keys().decrypt(token.encode()).decode()
    except (InvalidToken, ValueError, UnicodeError):
        raise SecretUnreadable("the seal does not verify under any configured key") from None


def secret_reseal(sealed: str) -> str:
    """The same secret sealed under the current key (opened under any configured key)."""
    version, _, token = sealed.partition(":")
    if version != _VERSION:
        raise SecretUnreadable("unknown seal version")
    try:
        return f"{_VERSION}:{_keys().rotate(token.encode()).decode()}"
    except (InvalidToken, ValueError, UnicodeError):
        raise SecretUnreadable("the seal does not verify under any configured key") from None


def sealed_columns_reseal(model, fields: list[str]) -> tuple[int, int]:
    """Re-seal every non-empty sealed column of ``model`` under the current key, one row at a time.

    A row changed meanwhile (a rotation) is left as it is: the update only applies if the column still
    holds the value that was re-sealed. Returns (values re-sealed, values no configured key opens)."""
    resealed = unreadable = 0
    for row in model.objects.values("pk", *fields).iterator():
        for field in fields:
            if not row[field]:
                continue
            try:
                fresh = secret_reseal(row[field])
            except SecretUnreadable:
                unreadable += 1
                continue
            resealed += model.objects.filter(pk=row["pk"], **{field: row[field]}).update(**{field: fresh})
    return resealed, unreadable
