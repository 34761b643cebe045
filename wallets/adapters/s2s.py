"""S2S seamless wallet: signed JSON calls to the operator's wallet server (SPEC §9).

Every answer is classified into one of three outcomes the callers act on:
  ok       the operator applied the movement (or answers a look-up positively)
  refused  the operator definitely did not apply it (business refusal)
  unknown  anything else: timeout, connection error, HTTP 5xx, unsigned or wrongly signed
           response, malformed body, an answer about another transaction_id, UNKNOWN_ERROR,
           DUPLICATE_TRANSACTION
A call is never made inside a database transaction (checked on every call).
"""

import json
import logging
import threading
import time
import uuid
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

import httpx
import structlog
from django.db import connection

from core.metrics import WALLET_CALLS
from core.middleware import request_id_current, request_id_new
from wallets.signing import signed_headers, verify

log = logging.getLogger("house.wallet.s2s")

OK = "ok"
REFUSED = "refused"
UNKNOWN = "unknown"

# Answers after which the movement definitely did not happen.
REFUSAL_STATUSES = {
    "INSUFFICIENT_FUNDS",
    "INVALID_TOKEN",
    "TOKEN_EXPIRED",
    "INVALID_SIGNATURE",
    "USER_DISABLED",
    "LIMIT_REACHED",
    "WRONG_CURRENCY",
    "TEMPORARY_ERROR",
    "TRANSACTION_ROLLED_BACK",
}


class WalletCallInsideTransaction(RuntimeError):
    """A wallet call was attempted while a database transaction is open: a programming error."""


@dataclass(frozen=True)
class WalletReply:
    outcome: str
    status: str  # the operator's status, or TIMEOUT / CONNECTION_ERROR / HTTP_<code> / BAD_SIGNATURE / MALFORMED / MISMATCHED_TRANSACTION
    balance: Decimal | None = None
    operator_transaction_id: str = ""
    body: dict | None = None

    @property
    def ok(self) -> bool:
        return self.outcome == OK

    @property
    def refused(self) -> bool:
        return self.outcome == REFUSED

    @property
    def unknown(self) -> bool:
        return self.outcome == UNKNOWN


# The most calls one process keeps in flight to one operator's wallet server (OperatorWallet.max_concurrent_calls
# is validated against it); the pooled client holds as many connections.
MAX_CONCURRENT_CALLS = 50

_transports: dict[str, httpx.HTTPTransport] = {}
_transports_lock = threading.Lock()


def _transport(base_url: str) -> httpx.HTTPTransport:
    """One connection pool per operator wallet server and process, shared by threads. The calls go to
    the transport directly: httpx.Client's cookie jar, URL merging, auth and redirect handling cost
    more CPU than the call itself on a fast network and are of no use to a signed JSON POST."""
    with _transports_lock:
        transport = _transports.get(base_url)
        if transport is None:
            transport = httpx.HTTPTransport(limits=httpx.Limits(max_connections=MAX_CONCURRENT_CALLS, max_keepalive_connections=20))
            _transports[base_url] = transport
        return transport


class S2SWalletClient:
    def __init__(self, *, operator_id, base_url: str, secret: str, timeout: float):
        self.operator_id = str(operator_id)
        self.base_url = base_url.rstrip("/")
        self.secret = secret
        self.timeout = timeout

    def call(self, endpoint: str, payload: dict) -> WalletReply:
        if connection.in_atomic_block:
            raise WalletCallInsideTransaction(f"/wallet/{endpoint} called inside a database transaction")
        body = json.dumps(payload, separators=(",", ":")).encode("utf-8")
        # The id of the request (or task) this call is made for, so the operator's logs and ours
        # meet on it; a call made for nobody's request gets its own.
        request_id = request_id_current() or request_id_new()
        headers = {"Content-Type": "application/json", "X-Request-Id": request_id, **signed_headers(self.secret, body)}
        started = time.perf_counter()
        reply = reply_bound_to_request(self._send(endpoint, body, headers), payload)
        WALLET_CALLS.labels(mode="s2s", operation=endpoint, outcome=reply.outcome).observe(time.perf_counter() - started)
        structlog.get_logger("house.wallet.s2s").info(
            "wallet_call",
            operator=self.operator_id,
            endpoint=endpoint,
            wallet_request_id=request_id,
            transaction_id=payload.get("transaction_id"),
            outcome=reply.outcome,
            status=reply.status,
        )
        return reply

    def _send(self, endpoint: str, body: bytes, headers: dict) -> WalletReply:
        timeout = {"connect": self.timeout, "read": self.timeout, "write": self.timeout, "pool": self.timeout}
        url = f"{self.base_url}/wallet/{endpoint}"
        request = httpx.Request("POST", url, content=body, headers=headers, extensions={"timeout": timeout})
        try:
            response = _transport(self.base_url).handle_request(request)
            try:
                raw = response.read()
            finally:
                response.close()
        except httpx.TimeoutException:
            return WalletReply(UNKNOWN, "TIMEOUT")
        except httpx.HTTPError as exc:
            return WalletReply(UNKNOWN, f"CONNECTION_ERROR: {exc.__class__.__name__}")
        if response.status_code != 200:
            return WalletReply(UNKNOWN, f"HTTP_{response.status_code}")
        if not verify(self.secret, response.headers.get("X-Timestamp", ""), raw, response.headers.get("X-Signature", "")):
            return WalletReply(UNKNOWN, "BAD_SIGNATURE")
        try:
            data = json.loads(raw, parse_float=Decimal)
            status = data["status"]
            balance = Decimal(str(data["balance"])) if data.get("balance") not in (None, "") else None
        except (ValueError, KeyError, TypeError, InvalidOperation):
            return WalletReply(UNKNOWN, "MALFORMED")
        if not isinstance(status, str):
            return WalletReply(UNKNOWN, "MALFORMED")
        outcome = OK if status == "OK" else REFUSED if status in REFUSAL_STATUSES else UNKNOWN
        return WalletReply(outcome, status, balance, str(data.get("operator_transaction_id") or ""), data)


def reply_bound_to_request(reply: WalletReply, payload: dict) -> WalletReply:
    """A signed answer about another transaction (a genuine answer replayed within the signature's
    60 s, or a wallet server confused about ids) proves nothing about this one: unknown outcome."""
    sent, echoed = payload.get("transaction_id"), (reply.body or {}).get("transaction_id")
    if not sent or echoed in (None, ""):
        return reply
    try:
        same = uuid.UUID(str(echoed)) == uuid.UUID(str(sent))
    except ValueError:
        same = False
    return reply if same else WalletReply(UNKNOWN, "MISMATCHED_TRANSACTION")


class S2SWalletAdapter:
    """The operator holds the money. Movements go through wallets.services.operations (durable);
    this adapter answers balance reads and says how to reach the operator."""

    local = False

    def __init__(self, target):
        self.target = target

    def balance(self, *, player, for_update: bool = False) -> Decimal:
        from core.errors import HouseError
        from wallets.services.breaker import breaker_record

        reply = self.target.client().call("balance", {"user_id": player.external_id, "currency": player.currency})
        breaker_record(config=self.target, success=not reply.unknown)
        if reply.ok and reply.balance is not None:
            return reply.balance
        raise player_error_for(reply.status, default=HouseError("Operator wallet unavailable", code="wallet_unavailable", status=503))


def player_error_for(status: str, *, default):
    """The player-facing error for an operator refusal (SPEC §9 statuses)."""
    from core.errors import HouseError, insufficient_balance

    if status == "INSUFFICIENT_FUNDS":
        return insufficient_balance()
    if status == "LIMIT_REACHED":
        return HouseError("Wallet limit reached", code="wallet_limit_reached")
    if status in ("INVALID_TOKEN", "TOKEN_EXPIRED"):
        return HouseError("Unauthorized", code="wallet_session_invalid", status=401)
    if status == "USER_DISABLED":
        return HouseError("Account disabled", code="wallet_user_disabled", status=403)
    if status == "WRONG_CURRENCY":
        return HouseError("Currency mismatch", code="wallet_wrong_currency")
    if status == "TEMPORARY_ERROR":
        return HouseError("Operator wallet temporarily unavailable", code="wallet_temporary_error", status=503)
    return default
