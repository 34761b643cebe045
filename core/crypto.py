"""Secrets the house must be able to use again (webhook signing secrets) sealed at rest with a key
from the environment (SPEC §15): ``secret_seal`` / ``secret_open``.

The standard library has no block cipher, so the seal is built from HMAC-SHA256 alone, a
construction with a textbook proof: a keystream from HMAC as a PRF in counter mode under one
derived key, then encrypt-then-MAC with HMAC-SHA256 under another derived key over the nonce and
the ciphertext (constant-time check). The key is ``HOUSE_SECRETS_KEY`` (any string of at least 32
characters), else derived from DJANGO_SECRET_KEY; the key is rotated by setting the new one and
the old one as ``HOUSE_SECRETS_KEY_PREVIOUS`` (values sealed under either open; new ones are sealed
under the new key).
"""

import base64
import hashlib
import hmac
import os

from django.conf import settings

_VERSION = "s1"
_NONCE = 16


class SecretUnreadable(Exception):
    """The sealed value was altered, or was sealed under a key this process does not have."""


def _master_keys() -> list[bytes]:
    """The key that seals, then those that may still open: the previous key, and the key derived from
    DJANGO_SECRET_KEY (what sealed before HOUSE_SECRETS_KEY was set)."""
    derived = f"django:{settings.SECRET_KEY}"
    keys = [getattr(settings, "HOUSE_SECRETS_KEY", "") or derived, getattr(settings, "HOUSE_SECRETS_KEY_PREVIOUS", ""), derived]
    return [k.encode() for k in dict.fromkeys(k for k in keys if k)]


def _derive(master: bytes, purpose: bytes) -> bytes:
    return hmac.new(master, b"house.secret." + purpose, hashlib.sha256).digest()


def _keystream(key: bytes, nonce: bytes, length: int) -> bytes:
    blocks = (hmac.new(key, nonce + i.to_bytes(8, "big"), hashlib.sha256).digest() for i in range((length + 31) // 32))
    return b"".join(blocks)[:length]


def _xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


def secret_seal(plain: str) -> str:
    master = _master_keys()[0]
    nonce = os.urandom(_NONCE)
    data = plain.encode()
    cipher = _xor(data, _keystream(_derive(master, b"enc"), nonce, len(data)))
    tag = hmac.new(_derive(master, b"mac"), nonce + cipher, hashlib.sha256).digest()
    return f"{_VERSION}:{base64.urlsafe_b64encode(nonce + cipher + tag).decode()}"


def secret_open(sealed: str) -> str:
    version, _, body = sealed.partition(":")
    if version != _VERSION:
        raise SecretUnreadable("unknown seal version")
    try:
        raw = base64.urlsafe_b64decode(body.encode())
    except (ValueError, TypeError):
        raise SecretUnreadable("not a sealed value") from None
    if len(raw) < _NONCE + 32:
        raise SecretUnreadable("too short")
    nonce, cipher, tag = raw[:_NONCE], raw[_NONCE:-32], raw[-32:]
    for master in _master_keys():
        expected = hmac.new(_derive(master, b"mac"), nonce + cipher, hashlib.sha256).digest()
        if hmac.compare_digest(expected, tag):
            return _xor(cipher, _keystream(_derive(master, b"enc"), nonce, len(cipher))).decode()
    raise SecretUnreadable("the seal does not verify under any configured key")
