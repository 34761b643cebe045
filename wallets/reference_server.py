"""Reference operator wallet server: the operator side of the S2S seamless-wallet protocol (SPEC §9).

A dependency-free WSGI app (standard library only, no Django) for development and tests, with
switches for latency, HTTP errors, timeouts, bad signatures and business refusals. Serve it with
``serve_in_thread`` (tests) or ``manage.py run_wallet_server``.

Wire protocol, including the choices made where SPEC §9 is silent
------------------------------------------------------------------
* ``POST /wallet/{balance,debit,credit,rollback,transaction}``, JSON body. Every request must carry
  ``X-Timestamp`` (unix seconds, at most 60 s off) and ``X-Signature`` =
  base64(HMAC-SHA256(secret, timestamp + "." + raw body)); several secrets may be accepted at once
  (rotation), responses are signed with the first. A missing, stale or wrong signature answers
  HTTP 200 ``INVALID_SIGNATURE``; the body of such a request is not trusted, so that answer
  carries ``transaction_id: null``, ``balance: "0.00"`` and the server's default currency.
* Every wallet answer is HTTP 200, ``Content-Type: application/json``, signed the same way
  (``X-Timestamp``, ``X-Signature`` over the raw response body), and echoes ``X-Request-Id``.
  Body: ``status``, ``transaction_id`` (as sent; null on balance unless sent),
  ``operator_transaction_id`` (``"ref-000001"``..., assigned to every recorded transaction,
  stable across replays; null when nothing was recorded), ``balance`` (always, a 2-dp decimal
  string such as ``"123.45"``; ``"0.00"`` for an unknown player), ``currency``; plus ``error``
  (a human-readable reason) on ``UNKNOWN_ERROR``, and the look-up fields below.
  Non-business failures are not HTTP 200: unknown path 404, wrong method 405 (JSON
  ``{"error": ...}``, unsigned).
* Malformed requests (body not a JSON object; a required field missing or of the wrong type;
  ``amount`` not a decimal *string* with exactly 2 dp and > 0, e.g. ``"10.00"``, except a loss
  notification below; ``currency`` not
  3 upper-case letters) answer HTTP 200 ``UNKNOWN_ERROR`` with ``error``, change nothing and are
  not recorded (the same id may be sent again, corrected).
  Required fields: balance ``user_id``; debit ``transaction_id, user_id, amount, currency,
  session_token``; credit ``transaction_id, user_id, amount, currency``; rollback
  ``transaction_id`` (the rollback's own id), ``reference_transaction_id`` (the debit undone),
  ``user_id``; transaction ``transaction_id``. Optional: ``currency`` (balance, rollback,
  checked when sent), ``amount`` (rollback: must equal the debit's amount when sent),
  ``round_id``, ``type``, ``description``. Ids are strings (a UUID is compared in canonical
  lower-case form); ``user_id`` may be a JSON string or integer.
* Transaction ids share one namespace across debit, credit and rollback. A recorded transaction
  is one whose first answer was final: ``OK`` or a definite refusal (``INSUFFICIENT_FUNDS``,
  ``INVALID_TOKEN``, ``TOKEN_EXPIRED``, ``USER_DISABLED``, ``LIMIT_REACHED``,
  ``WRONG_CURRENCY``, ``TRANSACTION_ROLLED_BACK``, ``TRANSACTION_NOT_FOUND``).
  ``TEMPORARY_ERROR``, ``UNKNOWN_ERROR``, ``INVALID_SIGNATURE`` and ``DUPLICATE_TRANSACTION``
  are never recorded: a retry under the same id is processed afresh.
* Replay: a request whose id is recorded with the same fields (operation, ``user_id``,
  ``amount``, ``currency``, ``type``, ``round_id``, ``reference_transaction_id``; not
  ``session_token`` nor ``description``) gets the first answer's body byte for byte (freshly
  signed) and changes nothing. Different fields: ``DUPLICATE_TRANSACTION``. Exception: once a
  debit has been rolled back, a replay of it answers ``TRANSACTION_ROLLED_BACK`` (the rollback
  wins; nothing is applied).
* Debit checks, in order: tombstone (below) → ``TRANSACTION_ROLLED_BACK``; unknown player →
  ``UNKNOWN_ERROR`` (or auto-created, below); ``USER_DISABLED``; ``WRONG_CURRENCY`` (request
  currency differs from the player's); token: empty → ``INVALID_TOKEN``, one of the player's
  expired tokens → ``TOKEN_EXPIRED``, player with a token set not containing it →
  ``INVALID_TOKEN`` (players accept any non-empty token by default); ``LIMIT_REACHED`` when the
  player's ``debit_limit`` (total of standing debits) would be exceeded; ``INSUFFICIENT_FUNDS``
  when balance < amount; else the amount is taken and the answer is ``OK``. The session token
  (required) and the debit limit apply to a ``trade_debit`` (or a debit without a type) only: a
  ``payout_reversal`` or ``refund_reversal`` debit (a reversed settlement taking back what it
  paid, with ``reference_transaction_id`` = the payout's id) carries no token and is refused
  only for ``USER_DISABLED``, ``WRONG_CURRENCY`` or ``INSUFFICIENT_FUNDS``.
* Credit: tombstoned id → ``TRANSACTION_ROLLED_BACK``; unknown player → ``UNKNOWN_ERROR`` (or
  auto-created); ``WRONG_CURRENCY``; else ``OK``. A disabled player is still credited (money
  owed is paid).
* Loss notification (SPEC §16): a credit of type ``loss`` and amount ``"0.00"`` (exactly; a
  ``loss`` with another amount, or on another endpoint, is malformed). Answered and recorded like
  any credit (``OK``, replayed by id), moves nothing; listed by ``loss_notifications`` and in
  ``GET /_state`` as ``loss_notifications``.
* Rollback (debits only): an unknown ``reference_transaction_id`` answers
  ``TRANSACTION_NOT_FOUND`` and leaves a tombstone, so a debit (or credit) arriving later with
  that id answers ``TRANSACTION_ROLLED_BACK`` and is not applied. A known debit is marked rolled
  back and, if it had taken money, the amount is restored: ``OK``. A debit that was refused is
  just marked rolled back (nothing to restore): ``OK``. A debit already rolled back: ``OK``
  again without restoring (a replay of the same rollback id returns the first body; a new
  rollback id gets a new body carrying the first rollback's ``operator_transaction_id``).
  Rolling back a credit or a rollback, another player's debit, or with an ``amount`` different
  from the debit's: ``UNKNOWN_ERROR``. A differing ``currency``: ``WRONG_CURRENCY``. Disabled
  players are rolled back.
* Balance: ``OK``; ``USER_DISABLED`` for a disabled player; ``WRONG_CURRENCY`` if a currency is
  sent and differs; unknown player ``UNKNOWN_ERROR`` (or auto-created).
* Transaction look-up (``/wallet/transaction``) answers the transaction's *current* state:
  ``OK`` (applied and standing), ``TRANSACTION_ROLLED_BACK`` (rolled back, or a late arrival
  refused by a tombstone), the first answer's refusal status for a refused transaction (e.g.
  ``INSUFFICIENT_FUNDS``), the first answer's status for a rollback (``OK`` or
  ``TRANSACTION_NOT_FOUND``). An id never seen answers ``TRANSACTION_NOT_FOUND``; an id only
  known from a tombstone (rolled back before it arrived) answers ``TRANSACTION_ROLLED_BACK``
  with ``tombstone: true``, since it can never be applied. Extra fields: ``found`` (bool),
  ``tombstone`` (bool), ``operation`` (debit/credit/rollback or null), ``type``, ``amount``,
  ``original_status``, ``applied`` (did it move money), ``rolled_back``, ``rolled_back_by``,
  ``reference_transaction_id``, ``user_id``. If ``user_id`` is sent and differs from the
  transaction's, the answer is ``TRANSACTION_NOT_FOUND``.
* Unknown players: with ``auto_create_players`` on (default), balance/debit/credit create the
  player with ``starting_balance`` (default 0) in the request's currency (or the default one).

Fault switches (``FaultRule``, ``add_fault``)
---------------------------------------------
Rules are checked in order for each wallet request (before the signature check); a rule
matches by ``endpoint`` (``"*"``, a name, or a list of names) and optional ``user_id``, while
``times`` (None: unlimited) lasts, and with ``probability`` drawn from the server's seeded
``random.Random``. Every matching ``latency`` rule adds its delay; the first other matching rule
is the request's fault. ``times`` counts requests a rule fired on.

=============== ==============================================================================
kind            effect
=============== ==============================================================================
latency         sleep ``seconds`` before handling (also ``server.latency_seconds`` and
                ``server.endpoint_latency[endpoint]``, always on)
http_error      answer HTTP ``http_status`` (default 500) with a plain-text body;
                ``apply="never"`` (default): without handling; ``apply="before"``: the request
                is handled (money moves, transaction recorded) and its answer replaced
refuse          answer the business ``status`` (e.g. ``INSUFFICIENT_FUNDS``, ``LIMIT_REACHED``,
                ``TEMPORARY_ERROR``) without applying; recorded like a real refusal when final
                (``record`` overrides); replays of recorded ids still get their first answer
timeout         stall ``seconds``: ``apply="before"`` (default) handle, then stall, then send
                the real answer; ``apply="after"`` stall, then handle and answer (a late
                arrival); ``apply="never"`` stall, then HTTP 504 without handling
bad_signature   handle, sign the answer with a wrong key
unsigned        handle, answer without ``X-Timestamp``/``X-Signature``
malformed_body  handle, answer HTTP 200 with a (correctly signed) non-JSON body
=============== ==============================================================================

Control over HTTP (only when built with ``control=True``; unsigned, for subprocess use):
``POST /_control`` with ``{"action": ...}``: ``set_player`` (``user_id``, ``balance``,
``currency``, ``disabled``, ``tokens`` (list or ``"any"``), ``expired_tokens``,
``debit_limit``), ``expire_token`` (``user_id``, ``token``), ``add_fault`` (``FaultRule``
fields), ``clear_faults``, ``summary`` (``transaction_ids`` optional: counts, see ``summary()``),
``reset_peak_in_flight``, ``configure`` (``latency_seconds``, ``endpoint_latency``,
``auto_create_players``, ``starting_balance``, ``secrets``, ``seed``), ``reset``;
``GET /_state`` returns players, transactions, tombstones, faults, request log, request ids, total and
``peak_in_flight`` (the most wallet requests handled at the same time: the server is threaded,
one thread per connection, so a client's concurrency shows there).

Python API: ``ReferenceWalletServer(secret | [secrets], control=False, currency="USD",
auto_create_players=True, starting_balance=0, latency_seconds=0, endpoint_latency=None,
seed=None, max_skew=60, clock=time.time)``; ``set_player(user_id, balance=, currency=,
disabled=, tokens=, expired_tokens=, debit_limit=)``, ``expire_token``, ``balance(user_id)``,
``player(user_id)``, ``total_balance()``, ``add_fault(FaultRule | kind, **fields)``,
``clear_faults()``, ``faults``, ``seed(n)``, ``transactions`` / ``tombstones`` (read-only
snapshots), ``loss_notifications`` (the loss notifications received, once per id),
``peak_in_flight`` / ``reset_peak_in_flight()``, ``request_log``
(``LogEntry(endpoint, transaction_id, status, http_status)``; ``status`` None when the request
was not handled), ``request_ids`` (``ReceivedRequestId(endpoint, transaction_id, request_id)``:
the ``X-Request-Id`` each wallet request arrived with), ``state()``, ``reset()``.
``serve_in_thread(app)`` -> ``(base_url, stop)``; ``make_server(app, host, port)``.
"""

import contextlib
import itertools
import json
import random
import re
import socket
import socketserver
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from http import HTTPStatus
from types import MappingProxyType
from typing import Any, NamedTuple
from wsgiref.simple_server import ServerHandler, WSGIRequestHandler, WSGIServer

from wallets.signing import MAX_SKEW_SECONDS, signed_headers, verify_any

ENDPOINTS = ("balance", "debit", "credit", "rollback", "transaction")
MONEY_OPERATIONS = ("debit", "credit", "rollback")

OK = "OK"
INSUFFICIENT_FUNDS = "INSUFFICIENT_FUNDS"
INVALID_TOKEN = "INVALID_TOKEN"
TOKEN_EXPIRED = "TOKEN_EXPIRED"
INVALID_SIGNATURE = "INVALID_SIGNATURE"
USER_DISABLED = "USER_DISABLED"
LIMIT_REACHED = "LIMIT_REACHED"
WRONG_CURRENCY = "WRONG_CURRENCY"
DUPLICATE_TRANSACTION = "DUPLICATE_TRANSACTION"
TRANSACTION_NOT_FOUND = "TRANSACTION_NOT_FOUND"
TRANSACTION_ROLLED_BACK = "TRANSACTION_ROLLED_BACK"
TEMPORARY_ERROR = "TEMPORARY_ERROR"
UNKNOWN_ERROR = "UNKNOWN_ERROR"
STATUSES = frozenset(
    {
        OK,
        INSUFFICIENT_FUNDS,
        INVALID_TOKEN,
        TOKEN_EXPIRED,
        INVALID_SIGNATURE,
        USER_DISABLED,
        LIMIT_REACHED,
        WRONG_CURRENCY,
        DUPLICATE_TRANSACTION,
        TRANSACTION_NOT_FOUND,
        TRANSACTION_ROLLED_BACK,
        TEMPORARY_ERROR,
        UNKNOWN_ERROR,
    }
)
# Answers that are not the transaction's final outcome: never recorded, a retry is processed afresh.
UNRECORDED_STATUSES = frozenset({TEMPORARY_ERROR, UNKNOWN_ERROR, INVALID_SIGNATURE, DUPLICATE_TRANSACTION})

FAULT_KINDS = ("latency", "http_error", "refuse", "timeout", "bad_signature", "unsigned", "malformed_body")
APPLY_MODES = ("before", "after", "never")

# A loss notification (SPEC §16): a credit of "0.00" with this type, recorded like any credit (moves nothing).
LOSS = "loss"

CENT = Decimal("0.01")
ZERO = Decimal("0.00")
_AMOUNT = re.compile(r"(0|[1-9][0-9]{0,11})\.[0-9]{2}")
_CURRENCY = re.compile(r"[A-Z]{3}")
_MAX_ID_LENGTH = 128
_KEEP = object()


class LogEntry(NamedTuple):
    endpoint: str
    transaction_id: str | None
    status: str | None
    http_status: int


class ReceivedRequestId(NamedTuple):
    endpoint: str
    transaction_id: str | None
    request_id: str | None  # the X-Request-Id header as received (None when absent)


@dataclass
class FaultRule:
    kind: str
    endpoint: str | Iterable[str] = "*"
    times: int | None = None
    probability: float = 1.0
    seconds: float = 0.0
    http_status: int = 500
    apply: str | bool | None = None
    status: str | None = None
    user_id: str | None = None
    record: bool | None = None
    fired: int = 0

    def __post_init__(self) -> None:
        self.seconds, self.probability = float(self.seconds), float(self.probability)
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; one of {FAULT_KINDS}")
        endpoints = (self.endpoint,) if isinstance(self.endpoint, str) else tuple(self.endpoint)
        if not endpoints or any(name != "*" and name not in ENDPOINTS for name in endpoints):
            raise ValueError(f"endpoint must be '*' or among {ENDPOINTS}: {self.endpoint!r}")
        self.endpoint = endpoints[0] if len(endpoints) == 1 else endpoints
        if self.kind in ("http_error", "timeout"):
            default = "never" if self.kind == "http_error" else "before"
            self.apply = {True: "before", False: "never", None: default}.get(self.apply, self.apply)
            allowed = ("before", "never") if self.kind == "http_error" else APPLY_MODES
            if self.apply not in allowed:
                raise ValueError(f"{self.kind} takes apply in {allowed}")
        elif self.apply is not None:
            raise ValueError("apply is a setting of http_error and timeout only")
        if self.kind in ("latency", "timeout") and self.seconds <= 0:
            raise ValueError(f"{self.kind} needs seconds > 0")
        if self.kind == "refuse" and (self.status not in STATUSES or self.status == OK):
            raise ValueError(f"refuse needs a non-OK status among {sorted(STATUSES)}")
        if not 0.0 <= self.probability <= 1.0:
            raise ValueError("probability must be within [0, 1]")
        if self.times is not None and self.times < 0:
            raise ValueError("times must be >= 0 or None")
        self.user_id = None if self.user_id is None else str(self.user_id)

    def applies_to(self, endpoint: str, user_id: str | None) -> bool:
        endpoints = (self.endpoint,) if isinstance(self.endpoint, str) else self.endpoint
        if "*" not in endpoints and endpoint not in endpoints:
            return False
        if self.user_id is not None and self.user_id != user_id:
            return False
        return self.times is None or self.fired < self.times


@dataclass
class Player:
    balance: Decimal
    currency: str
    disabled: bool = False
    tokens: set[str] | None = None  # None: any non-empty token is accepted
    expired_tokens: set[str] = field(default_factory=set)
    debit_limit: Decimal | None = None
    debited: Decimal = ZERO  # standing (not rolled back) debits, for debit_limit


@dataclass
class Transaction:
    transaction_id: str
    operation: str
    user_id: str
    amount: Decimal | None
    currency: str | None
    type: str
    round_id: str
    reference_transaction_id: str | None
    description: str
    request: dict
    status: str
    response_body: bytes
    operator_transaction_id: str
    applied: bool
    rolled_back: bool = False
    rolled_back_by: str | None = None

    @property
    def fingerprint(self) -> tuple:
        return (self.operation, self.user_id, self.amount, self.currency, self.type, self.round_id, self.reference_transaction_id)


@dataclass
class Tombstone:
    transaction_id: str
    rollback_id: str
    user_id: str


@dataclass
class _Request:
    endpoint: str
    raw: dict
    transaction_id: str | None
    user_id: str | None
    amount: Decimal | None
    currency: str | None
    session_token: str | None
    reference_transaction_id: str | None
    type: str
    round_id: str
    description: str

    @property
    def fingerprint(self) -> tuple:
        return (self.endpoint, self.user_id, self.amount, self.currency, self.type, self.round_id, self.reference_transaction_id)


class _BadRequest(ValueError):
    pass


@dataclass
class _Outcome:
    status: str
    body: bytes
    transaction_id: str | None


def _money(value: Decimal) -> str:
    return f"{value.quantize(CENT):f}"


def _canonical_id(value: Any, name: str, *, required: bool) -> str | None:
    if value is None:
        if required:
            raise _BadRequest(f"{name} is required")
        return None
    if isinstance(value, bool) or not isinstance(value, str | int) or not str(value) or len(str(value)) > _MAX_ID_LENGTH:
        raise _BadRequest(f"{name} must be a non-empty string of at most {_MAX_ID_LENGTH} characters")
    text = str(value)
    try:
        return str(uuid.UUID(text))
    except ValueError:
        return text


def _optional_text(data: dict, name: str) -> str:
    value = data.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _BadRequest(f"{name} must be a string")
    return value


def _parse_request(endpoint: str, data: dict) -> _Request:
    money_moves = endpoint in ("debit", "credit")
    amount = data.get("amount")
    if amount is None:
        if money_moves:
            raise _BadRequest("amount is required")
    elif not isinstance(amount, str) or not _AMOUNT.fullmatch(amount) or (Decimal(amount) <= 0 and not _is_loss_notice(endpoint, data)):
        raise _BadRequest('amount must be a positive decimal string with 2 decimal places, e.g. "10.00"')
    if data.get("type") == LOSS and (endpoint != "credit" or amount != "0.00"):
        raise _BadRequest('a loss notification is a credit of amount "0.00"')
    currency = data.get("currency")
    if currency is None:
        if money_moves:
            raise _BadRequest("currency is required")
    elif not isinstance(currency, str) or not _CURRENCY.fullmatch(currency):
        raise _BadRequest("currency must be an ISO 4217 code")
    session_token = data.get("session_token")
    if session_token is not None and not isinstance(session_token, str):
        raise _BadRequest("session_token must be a string")
    # The session token proves the player is at the table: a trade's debit needs it; a debit the
    # house makes on its own (a reversed payout taken back) has none (SPEC §9, §12).
    if endpoint == "debit" and session_token is None and _is_trade_debit(data.get("type")):
        raise _BadRequest("session_token is required on a trade_debit")
    return _Request(
        endpoint=endpoint,
        raw=data,
        transaction_id=_canonical_id(data.get("transaction_id"), "transaction_id", required=endpoint != "balance"),
        user_id=_canonical_id(data.get("user_id"), "user_id", required=endpoint != "transaction"),
        amount=None if amount is None else Decimal(amount),
        currency=currency,
        session_token=session_token,
        reference_transaction_id=_canonical_id(
            data.get("reference_transaction_id"), "reference_transaction_id", required=endpoint == "rollback"
        ),
        type=_optional_text(data, "type"),
        round_id=_optional_text(data, "round_id"),
        description=_optional_text(data, "description"),
    )


def _loose_json(raw: bytes) -> dict:
    try:
        data = json.loads(raw, parse_float=Decimal)
    except (ValueError, UnicodeDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def _loose_id(value: Any) -> str | None:
    try:
        return _canonical_id(value, "id", required=False)
    except _BadRequest:
        return None


def _loose_id_of(raw: bytes) -> str | None:
    """The transaction id of a request that is not handled (for the request log only)."""
    return _loose_id(_loose_json(raw).get("transaction_id"))


class ReferenceWalletServer:
    """WSGI app holding players, transactions and tombstones in memory (one lock guards them all)."""

    def __init__(
        self,
        secret: str | Iterable[str],
        *,
        control: bool = False,
        currency: str = "USD",
        auto_create_players: bool = True,
        starting_balance: Decimal = ZERO,
        latency_seconds: float = 0.0,
        endpoint_latency: dict[str, float] | None = None,
        seed: int | None = None,
        max_skew: int = MAX_SKEW_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.secrets = [secret] if isinstance(secret, str) else list(secret)
        if not self.secrets or not all(self.secrets):
            raise ValueError("at least one non-empty secret is required")
        self.control = control
        self.currency = currency
        self.auto_create_players = auto_create_players
        self.starting_balance = Decimal(starting_balance)
        self.latency_seconds = latency_seconds
        self.endpoint_latency = dict(endpoint_latency or {})
        self.max_skew = max_skew
        self.clock = clock
        self._lock = threading.Lock()
        self._random = random.Random(seed)
        self._players: dict[str, Player] = {}
        self._transactions: dict[str, Transaction] = {}
        self._tombstones: dict[str, Tombstone] = {}
        self._faults: list[FaultRule] = []
        self._log: list[LogEntry] = []
        self._request_ids: list[ReceivedRequestId] = []
        self._ids = itertools.count(1)
        self._handling = 0
        self._peak_in_flight = 0

    # ----- Python API -------------------------------------------------------------------------

    def set_player(
        self,
        user_id: str | int,
        balance: Decimal | str | object = _KEEP,
        currency: str | object = _KEEP,
        disabled: bool | object = _KEEP,
        tokens: Iterable[str] | None | object = _KEEP,
        expired_tokens: Iterable[str] | object = _KEEP,
        debit_limit: Decimal | str | None | object = _KEEP,
    ) -> None:
        """Create or update a player; arguments not given keep their value (new player: starting
        balance, default currency, enabled, any token, no limit). ``tokens=None`` accepts any token."""
        with self._lock:
            player = self._players.get(str(user_id)) or Player(balance=self.starting_balance, currency=self.currency)
            if balance is not _KEEP:
                player.balance = Decimal(str(balance)).quantize(CENT)
            if currency is not _KEEP:
                player.currency = currency
            if disabled is not _KEEP:
                player.disabled = bool(disabled)
            if tokens is not _KEEP:
                player.tokens = None if tokens is None or tokens == "any" else set(tokens)
            if expired_tokens is not _KEEP:
                player.expired_tokens = set(expired_tokens)
            if debit_limit is not _KEEP:
                player.debit_limit = None if debit_limit is None else Decimal(str(debit_limit))
            self._players[str(user_id)] = player

    def expire_token(self, user_id: str | int, token: str) -> None:
        with self._lock:
            player = self._players[str(user_id)]
            player.expired_tokens.add(token)
            if player.tokens is not None:
                player.tokens.discard(token)

    def balance(self, user_id: str | int) -> Decimal | None:
        with self._lock:
            player = self._players.get(str(user_id))
            return None if player is None else player.balance

    def player(self, user_id: str | int) -> dict | None:
        with self._lock:
            player = self._players.get(str(user_id))
            return None if player is None else _player_view(player)

    def total_balance(self) -> Decimal:
        with self._lock:
            return sum((player.balance for player in self._players.values()), ZERO)

    def add_fault(self, rule: FaultRule | str, /, **options: Any) -> FaultRule:
        """``add_fault(FaultRule(...))`` or ``add_fault("http_error", endpoint="debit", apply="before", times=1)``."""
        if isinstance(rule, str):
            rule = FaultRule(rule, **options)
        elif options:
            raise TypeError("options go in the FaultRule")
        with self._lock:
            self._faults.append(rule)
        return rule

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    @property
    def faults(self) -> list[FaultRule]:
        with self._lock:
            return list(self._faults)

    def seed(self, seed: int | None) -> None:
        with self._lock:
            self._random.seed(seed)

    @property
    def transactions(self) -> MappingProxyType:
        """Read-only snapshot: transaction id -> dict of the recorded transaction."""
        with self._lock:
            return MappingProxyType({tid: _transaction_view(tx) for tid, tx in self._transactions.items()})

    @property
    def tombstones(self) -> MappingProxyType:
        with self._lock:
            return MappingProxyType({tid: asdict(stone) for tid, stone in self._tombstones.items()})

    @property
    def loss_notifications(self) -> list[dict]:
        """The loss notifications received (SPEC §16: a credit of 0.00, type ``loss``), once per
        transaction id, in arrival order: ``transaction_id``, ``user_id``, ``round_id``, ``amount``,
        ``currency``, ``description``."""
        with self._lock:
            return [_loss_view(tx) for tx in self._transactions.values() if _is_loss(tx)]

    @property
    def request_log(self) -> list[LogEntry]:
        with self._lock:
            return list(self._log)

    @property
    def request_ids(self) -> list[ReceivedRequestId]:
        """The X-Request-Id of every wallet request, in arrival order (faulted ones included)."""
        with self._lock:
            return list(self._request_ids)

    def reset(self) -> None:
        """Forget players, transactions, tombstones, faults, the request log and the request ids."""
        with self._lock:
            self._players.clear()
            self._transactions.clear()
            self._tombstones.clear()
            self._faults.clear()
            self._log.clear()
            self._request_ids.clear()
            self._peak_in_flight = self._handling

    # ----- WSGI -------------------------------------------------------------------------------

    def __call__(self, environ: dict, start_response: Callable) -> list[bytes]:
        path = environ.get("PATH_INFO", "")
        method = environ.get("REQUEST_METHOD", "GET")
        request_id = environ.get("HTTP_X_REQUEST_ID")
        if path in ("/_control", "/_state") and self.control:
            return self._control_request(path, method, environ, start_response)
        endpoint = path.removeprefix("/wallet/") if path.startswith("/wallet/") else None
        if endpoint not in ENDPOINTS:
            return _send(start_response, 404, _plain_json({"error": "not found"}), request_id=request_id)
        if method != "POST":
            return _send(start_response, 405, _plain_json({"error": "method not allowed"}), request_id=request_id)
        with self._in_flight():
            return self._wallet_request(endpoint, environ, start_response, request_id)

    @contextlib.contextmanager
    def _in_flight(self):
        """Count the wallet requests being handled at once (a client's concurrency bound is checked on it)."""
        with self._lock:
            self._handling += 1
            self._peak_in_flight = max(self._peak_in_flight, self._handling)
        try:
            yield
        finally:
            with self._lock:
                self._handling -= 1

    @property
    def peak_in_flight(self) -> int:
        """The most wallet requests handled at the same time since start (or ``reset_peak_in_flight``)."""
        with self._lock:
            return self._peak_in_flight

    def reset_peak_in_flight(self) -> None:
        with self._lock:
            self._peak_in_flight = self._handling

    def _wallet_request(self, endpoint: str, environ: dict, start_response: Callable, request_id: str | None) -> list[bytes]:
        raw = _read_body(environ)
        with self._lock:
            self._request_ids.append(ReceivedRequestId(endpoint, _loose_id_of(raw), request_id))
        delay, fault = self._pick_faults(endpoint, raw)
        delay += float(self.latency_seconds) + float(self.endpoint_latency.get(endpoint, 0.0))
        if delay > 0:
            time.sleep(delay)

        kind = fault.kind if fault else None
        if kind == "http_error" and fault.apply == "never":
            return self._fail(start_response, endpoint, _loose_id_of(raw), None, fault.http_status, request_id)
        if kind == "timeout" and fault.apply in ("after", "never"):
            time.sleep(fault.seconds)
            if fault.apply == "never":
                return self._fail(start_response, endpoint, _loose_id_of(raw), None, HTTPStatus.GATEWAY_TIMEOUT, request_id)

        outcome = self._handle(endpoint, environ, raw, fault if kind == "refuse" else None)
        if kind == "http_error":
            return self._fail(start_response, endpoint, outcome.transaction_id, outcome.status, fault.http_status, request_id)
        self._log_request(LogEntry(endpoint, outcome.transaction_id, outcome.status, 200))
        body = outcome.body
        headers = signed_headers(self.secrets[0], body, now=self.clock())
        if kind == "timeout":
            time.sleep(fault.seconds)
        elif kind == "bad_signature":
            headers = signed_headers(self.secrets[0] + "-wrong", body, now=self.clock())
        elif kind == "unsigned":
            headers = {}
        elif kind == "malformed_body":
            body = b"<html><body>502 upstream hiccup</body></html>"
            headers = signed_headers(self.secrets[0], body, now=self.clock())
        return _send(start_response, 200, body, request_id=request_id, headers=headers)

    def _fail(self, start_response, endpoint, transaction_id, status, http_status, request_id) -> list[bytes]:
        self._log_request(LogEntry(endpoint, transaction_id, status, int(http_status)))
        body = f"injected fault: HTTP {int(http_status)}\n".encode()
        return _send(start_response, int(http_status), body, request_id=request_id, content_type="text/plain")

    def _log_request(self, entry: LogEntry) -> None:
        with self._lock:
            self._log.append(entry)

    def _pick_faults(self, endpoint: str, raw: bytes) -> tuple[float, FaultRule | None]:
        if not self._faults:
            return 0.0, None
        user_id = _loose_id(_loose_json(raw).get("user_id"))
        delay, chosen = 0.0, None
        with self._lock:
            for rule in self._faults:
                if (rule.kind != "latency" and chosen is not None) or not rule.applies_to(endpoint, user_id):
                    continue
                if rule.probability < 1.0 and self._random.random() >= rule.probability:
                    continue
                rule.fired += 1
                if rule.kind == "latency":
                    delay += rule.seconds
                else:
                    chosen = rule
        return delay, chosen

    # ----- protocol ---------------------------------------------------------------------------

    def _handle(self, endpoint: str, environ: dict, raw: bytes, refusal: FaultRule | None) -> _Outcome:
        timestamp, signature = environ.get("HTTP_X_TIMESTAMP"), environ.get("HTTP_X_SIGNATURE")
        if not verify_any(self.secrets, timestamp, raw, signature, max_skew=self.max_skew, now=self.clock()):
            return self._answer(INVALID_SIGNATURE, None, None, currency=self.currency)
        try:
            data = json.loads(raw, parse_float=Decimal)
            if not isinstance(data, dict):
                raise _BadRequest("body must be a JSON object")
            request = _parse_request(endpoint, data)
        except (ValueError, UnicodeDecodeError) as exc:
            error = str(exc) if isinstance(exc, _BadRequest) else "body must be a JSON object"
            return self._answer(UNKNOWN_ERROR, None, None, currency=self.currency, error=error)
        with self._lock:
            if endpoint in MONEY_OPERATIONS:
                replay = self._replay(request)
                if replay is not None:
                    return replay
            return getattr(self, f"_{endpoint}")(request, refusal)

    def _answer(
        self, status: str, request: _Request | None, player: Player | None, *, operator_transaction_id: str | None = None, **extra: Any
    ) -> _Outcome:
        transaction_id = request.transaction_id if request else None
        currency = extra.pop("currency", None) or (player.currency if player else None) or (request and request.currency) or self.currency
        document = {
            "status": status,
            "transaction_id": transaction_id,
            "operator_transaction_id": operator_transaction_id,
            "balance": _money(player.balance if player else ZERO),
            "currency": currency,
            **extra,
        }
        return _Outcome(status, json.dumps(document, separators=(",", ":")).encode(), transaction_id)

    def _player_for(self, request: _Request, *, create: bool) -> Player | None:
        player = self._players.get(request.user_id)
        if player is None and create and self.auto_create_players:
            player = Player(balance=self.starting_balance, currency=request.currency or self.currency)
            self._players[request.user_id] = player
        return player

    def _replay(self, request: _Request) -> _Outcome | None:
        recorded = self._transactions.get(request.transaction_id)
        if recorded is None:
            return None
        player = self._players.get(recorded.user_id)
        if recorded.fingerprint != request.fingerprint:
            return self._answer(DUPLICATE_TRANSACTION, request, self._players.get(request.user_id))
        if recorded.rolled_back and recorded.status != TRANSACTION_ROLLED_BACK:
            return self._answer(
                TRANSACTION_ROLLED_BACK,
                request,
                player,
                operator_transaction_id=recorded.operator_transaction_id,
                currency=recorded.currency,
            )
        return _Outcome(recorded.status, recorded.response_body, recorded.transaction_id)

    def _record(
        self,
        status: str,
        request: _Request,
        player: Player | None,
        *,
        applied: bool,
        refusal: FaultRule | None = None,
        operator_transaction_id: str | None = None,
        rolled_back_by: str | None = None,
    ) -> _Outcome:
        """Answer a debit/credit/rollback, recording it when the answer is final."""
        record = status not in UNRECORDED_STATUSES
        if refusal is not None and refusal.record is not None:
            record = refusal.record
        if not record:
            return self._answer(status, request, player)
        operator_transaction_id = operator_transaction_id or f"ref-{next(self._ids):06d}"
        outcome = self._answer(status, request, player, operator_transaction_id=operator_transaction_id)
        self._transactions[request.transaction_id] = Transaction(
            transaction_id=request.transaction_id,
            operation=request.endpoint,
            user_id=request.user_id,
            amount=request.amount,
            currency=request.currency,
            type=request.type,
            round_id=request.round_id,
            reference_transaction_id=request.reference_transaction_id,
            description=request.description,
            request=request.raw,
            status=status,
            response_body=outcome.body,
            operator_transaction_id=operator_transaction_id,
            applied=applied,
            rolled_back=rolled_back_by is not None,
            rolled_back_by=rolled_back_by,
        )
        return outcome

    def _balance(self, request: _Request, refusal: FaultRule | None) -> _Outcome:
        player = self._player_for(request, create=True)
        if player is None:
            return self._answer(UNKNOWN_ERROR, request, None, error="unknown user")
        if refusal is not None:
            status = refusal.status
        elif player.disabled:
            status = USER_DISABLED
        elif request.currency is not None and request.currency != player.currency:
            status = WRONG_CURRENCY
        else:
            status = OK
        return self._answer(status, request, player)

    def _debit(self, request: _Request, refusal: FaultRule | None) -> _Outcome:
        return self._move(request, refusal, sign=-1)

    def _credit(self, request: _Request, refusal: FaultRule | None) -> _Outcome:
        return self._move(request, refusal, sign=1)

    def _move(self, request: _Request, refusal: FaultRule | None, *, sign: int) -> _Outcome:
        stone = self._tombstones.get(request.transaction_id)
        if stone is not None:
            player = self._players.get(request.user_id)
            return self._record(TRANSACTION_ROLLED_BACK, request, player, applied=False, rolled_back_by=stone.rollback_id)
        player = self._player_for(request, create=True)
        if player is None:
            return self._answer(UNKNOWN_ERROR, request, None, error="unknown user")
        status = refusal.status if refusal is not None else self._refusal(request, player, debit=sign < 0)
        if status == OK:
            player.balance += sign * request.amount
            if sign < 0:
                player.debited += request.amount
        return self._record(status, request, player, applied=status == OK, refusal=refusal)

    @staticmethod
    def _refusal(request: _Request, player: Player, *, debit: bool) -> str:
        if debit and player.disabled:
            return USER_DISABLED
        if request.currency != player.currency:
            return WRONG_CURRENCY
        if not debit:
            return OK
        if not _is_trade_debit(request.type):  # a clawback: no token, no wager limit, only the funds
            return INSUFFICIENT_FUNDS if player.balance < request.amount else OK
        token = request.session_token
        if not token:
            return INVALID_TOKEN
        if token in player.expired_tokens:
            return TOKEN_EXPIRED
        if player.tokens is not None and token not in player.tokens:
            return INVALID_TOKEN
        if player.debit_limit is not None and player.debited + request.amount > player.debit_limit:
            return LIMIT_REACHED
        if player.balance < request.amount:
            return INSUFFICIENT_FUNDS
        return OK

    def _rollback(self, request: _Request, refusal: FaultRule | None) -> _Outcome:
        player = self._players.get(request.user_id)
        if refusal is not None:
            return self._record(refusal.status, request, player, applied=False, refusal=refusal)
        debit = self._transactions.get(request.reference_transaction_id)
        if debit is None:
            self._tombstones.setdefault(
                request.reference_transaction_id,
                Tombstone(request.reference_transaction_id, rollback_id=request.transaction_id, user_id=request.user_id),
            )
            return self._record(TRANSACTION_NOT_FOUND, request, player, applied=False)
        if debit.operation != "debit":
            return self._answer(UNKNOWN_ERROR, request, player, error="only debits can be rolled back")
        if debit.user_id != request.user_id:
            return self._answer(UNKNOWN_ERROR, request, player, error="reference_transaction_id belongs to another user")
        if request.amount is not None and request.amount != debit.amount:
            return self._answer(UNKNOWN_ERROR, request, player, error="amount differs from the debit's")
        if request.currency is not None and request.currency != debit.currency:
            return self._record(WRONG_CURRENCY, request, player, applied=False)
        if debit.rolled_back:
            first = self._transactions.get(debit.rolled_back_by)
            return self._record(OK, request, player, applied=False, operator_transaction_id=first and first.operator_transaction_id)
        restore = debit.applied and player is not None
        if restore:
            player.balance += debit.amount
            player.debited -= debit.amount
        debit.rolled_back, debit.rolled_back_by = True, request.transaction_id
        return self._record(OK, request, player, applied=restore)

    def _transaction(self, request: _Request, refusal: FaultRule | None) -> _Outcome:
        if refusal is not None:
            return self._answer(refusal.status, request, self._players.get(request.user_id))
        recorded = self._transactions.get(request.transaction_id)
        stone = self._tombstones.get(request.transaction_id)
        owner = recorded.user_id if recorded else stone.user_id if stone else request.user_id
        if request.user_id is not None and owner != request.user_id:
            recorded = stone = None
            owner = request.user_id
        lookup = {
            "found": recorded is not None,
            "tombstone": stone is not None,
            "operation": None,
            "type": None,
            "amount": None,
            "original_status": None,
            "applied": False,
            "rolled_back": stone is not None,
            "rolled_back_by": stone.rollback_id if stone else None,
            "reference_transaction_id": None,
            "user_id": owner,
        }
        if recorded is None:
            status = TRANSACTION_ROLLED_BACK if stone else TRANSACTION_NOT_FOUND
            return self._answer(status, request, self._players.get(owner), **lookup)
        lookup.update(
            operation=recorded.operation,
            type=recorded.type,
            amount=None if recorded.amount is None else _money(recorded.amount),
            original_status=recorded.status,
            applied=recorded.applied,
            rolled_back=recorded.rolled_back,
            rolled_back_by=recorded.rolled_back_by,
            reference_transaction_id=recorded.reference_transaction_id,
        )
        status = TRANSACTION_ROLLED_BACK if recorded.rolled_back else recorded.status
        return self._answer(
            status,
            request,
            self._players.get(owner),
            operator_transaction_id=recorded.operator_transaction_id,
            currency=recorded.currency,
            **lookup,
        )

    # ----- control endpoint -------------------------------------------------------------------

    def _control_request(self, path: str, method: str, environ: dict, start_response: Callable) -> list[bytes]:
        if path == "/_state":
            if method != "GET":
                return _send(start_response, 405, _plain_json({"error": "method not allowed"}))
            return _send(start_response, 200, _plain_json(self.state()))
        if method != "POST":
            return _send(start_response, 405, _plain_json({"error": "method not allowed"}))
        try:
            command = json.loads(_read_body(environ), parse_float=Decimal)
            if not isinstance(command, dict):
                raise ValueError("body must be a JSON object")
            result = self._control(command)
        except (ValueError, TypeError, KeyError) as exc:
            return _send(start_response, 400, _plain_json({"ok": False, "error": f"{type(exc).__name__}: {exc}"}))
        return _send(start_response, 200, _plain_json({"ok": True, **result}))

    def _control(self, command: dict) -> dict:
        action = command.pop("action", None)
        if action == "set_player":
            user_id = command.pop("user_id")
            self.set_player(user_id, **command)
            return {"player": self.player(user_id)}
        if action == "expire_token":
            self.expire_token(command["user_id"], command["token"])
            return {}
        if action == "add_fault":
            return {"fault": asdict(self.add_fault(FaultRule(**command)))}
        if action == "clear_faults":
            self.clear_faults()
            return {}
        if action == "reset":
            self.reset()
            return {}
        if action == "summary":
            return {"summary": self.summary(command.get("transaction_ids"))}
        if action == "reset_peak_in_flight":
            self.reset_peak_in_flight()
            return {}
        if action == "configure":
            settable = {"latency_seconds", "endpoint_latency", "auto_create_players", "starting_balance", "secrets", "seed"}
            unknown = set(command) - settable
            if unknown:
                raise ValueError(f"cannot configure {sorted(unknown)}")
            if "seed" in command:
                self.seed(command.pop("seed"))
            if "starting_balance" in command:
                command["starting_balance"] = Decimal(str(command["starting_balance"]))
            if "secrets" in command and (not command["secrets"] or not all(command["secrets"])):
                raise ValueError("secrets must be a non-empty list of non-empty strings")
            if "latency_seconds" in command:
                command["latency_seconds"] = float(command["latency_seconds"])
            if "endpoint_latency" in command:
                command["endpoint_latency"] = {name: float(value) for name, value in command["endpoint_latency"].items()}
            for name, value in command.items():
                setattr(self, name, value)
            return {}
        raise ValueError(f"unknown action {action!r}")

    def summary(self, transaction_ids: Iterable[str] | None = None) -> dict:
        """Counts instead of the whole state (what a benchmark of many transactions reads): total
        balance, players, transactions, requests by endpoint, peak in flight; with
        ``transaction_ids``, the same restricted to those ids plus how many of them were requested
        more than once per endpoint and how many are recorded as applied, by operation and status."""
        with self._lock:
            result: dict[str, Any] = {
                "total_balance": _money(sum((player.balance for player in self._players.values()), ZERO)),
                "players": len(self._players),
                "transactions": len(self._transactions),
                "requests": dict(Counter(entry.endpoint for entry in self._log)),
                "peak_in_flight": self._peak_in_flight,
            }
            if transaction_ids is None:
                return result
            ids = {_loose_id(tid) for tid in transaction_ids}
            per_id = Counter((entry.endpoint, entry.transaction_id) for entry in self._log if entry.transaction_id in ids)
            recorded = [self._transactions[tid] for tid in ids if tid in self._transactions]
            result["for_ids"] = {
                "ids": len(ids),
                "recorded": len(recorded),
                "applied": dict(Counter(f"{tx.operation} {tx.status}" for tx in recorded if tx.applied)),
                "requests": dict(Counter(endpoint for endpoint, _ in per_id.elements())),
                "requested_more_than_once": dict(Counter(endpoint for (endpoint, _), n in per_id.items() if n > 1)),
            }
            return result

    def state(self) -> dict:
        """JSON-ready picture of the whole state (what ``GET /_state`` returns)."""
        with self._lock:
            transactions = {}
            for tid, tx in self._transactions.items():
                view = _transaction_view(tx)
                view["response_body"] = tx.response_body.decode()
                transactions[tid] = view
            return {
                "players": {uid: _player_view(player) for uid, player in self._players.items()},
                "transactions": transactions,
                "tombstones": {tid: asdict(stone) for tid, stone in self._tombstones.items()},
                "loss_notifications": [_loss_view(tx) for tx in self._transactions.values() if _is_loss(tx)],
                "faults": [asdict(rule) for rule in self._faults],
                "request_log": [entry._asdict() for entry in self._log],
                "request_ids": [entry._asdict() for entry in self._request_ids],
                "peak_in_flight": self._peak_in_flight,
                "total_balance": sum((player.balance for player in self._players.values()), ZERO),
            }


def _player_view(player: Player) -> dict:
    view = asdict(player)
    view["tokens"] = None if player.tokens is None else sorted(player.tokens)
    view["expired_tokens"] = sorted(player.expired_tokens)
    return view


def _is_loss_notice(endpoint: str, data: dict) -> bool:
    return endpoint == "credit" and data.get("type") == LOSS


def _is_loss(tx: Transaction) -> bool:
    return tx.operation == "credit" and tx.type == LOSS and tx.status == OK


def _loss_view(tx: Transaction) -> dict:
    return {
        "transaction_id": tx.transaction_id,
        "user_id": tx.user_id,
        "round_id": tx.round_id,
        "amount": _money(tx.amount),
        "currency": tx.currency,
        "description": tx.description,
    }


def _transaction_view(tx: Transaction) -> dict:
    view = asdict(tx)
    view["request"] = dict(tx.request)
    return view


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return _money(value)
    if isinstance(value, set | tuple):
        return sorted(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _plain_json(document: dict) -> bytes:
    return json.dumps(document, default=_json_default).encode()


def _read_body(environ: dict) -> bytes:
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    return environ["wsgi.input"].read(length) if length > 0 else b""


def _send(
    start_response: Callable,
    status: int,
    body: bytes,
    *,
    request_id: str | None = None,
    headers: dict[str, str] | None = None,
    content_type: str = "application/json",
) -> list[bytes]:
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    header_list = [("Content-Type", content_type), ("Content-Length", str(len(body)))]
    header_list += list((headers or {}).items())
    if request_id:
        header_list.append(("X-Request-Id", request_id))
    start_response(f"{status} {phrase}", header_list)
    return [body]


# ----- serving ------------------------------------------------------------------------------------


class _Http11Handler(ServerHandler):
    http_version = "1.1"


class _Body:
    """A request body read at most to its Content-Length, the rest drained afterwards: on a kept-alive
    connection the next request starts right after it, whether the app read the body or not."""

    def __init__(self, rfile, length: int):
        self.rfile, self.left = rfile, length

    def read(self, size: int = -1) -> bytes:
        size = self.left if size is None or size < 0 else min(size, self.left)
        data = self.rfile.read(size) if size else b""
        self.left -= len(data)
        return data

    def readline(self, size: int = -1) -> bytes:
        size = self.left if size is None or size < 0 else min(size, self.left)
        data = self.rfile.readline(size) if size else b""
        self.left -= len(data)
        return data

    def drain(self) -> None:
        while self.left > 0 and self.read(65536):
            pass


class _QuietRequestHandler(WSGIRequestHandler):
    """HTTP/1.1 with keep-alive, as an operator's wallet server would answer: a client reuses its
    connections instead of opening one per call (wsgiref's own handler serves one request a
    connection). An idle connection is closed after ``timeout`` seconds, well after a client's
    own keep-alive expiry (httpx: 5 s), so a client never sends on a connection being closed."""

    protocol_version = "HTTP/1.1"
    timeout = 60

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def setup(self) -> None:
        super().setup()
        # A response is written in several sends (status, headers, body): without this, Nagle's
        # algorithm holds the body until the client's delayed ACK, 40 ms a call on a kept-alive connection.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def handle(self) -> None:
        self.close_connection = True
        self._handle_one()
        while not self.close_connection:
            self._handle_one()

    def _handle_one(self) -> None:
        try:
            self.raw_requestline = self.rfile.readline(65537)
        except OSError:  # idle timeout, reset by the client
            self.close_connection = True
            return
        if not self.raw_requestline or len(self.raw_requestline) > 65536:
            self.close_connection = True
            return
        if not self.parse_request():  # an error was sent; parse_request decided about the connection
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            self.send_error(400, "bad Content-Length")
            self.close_connection = True
            return
        body = _Body(self.rfile, max(length, 0))
        handler = _Http11Handler(body, self.wfile, self.get_stderr(), self.get_environ(), multithread=True)
        handler.request_handler = self
        handler.run(self.server.get_app())
        body.drain()


class ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True
    request_queue_size = 256

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host name (getfqdn), which can stall on a machine without DNS.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]
        self.setup_environ()

    def handle_error(self, request, client_address) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def make_server(app: Callable, host: str = "127.0.0.1", port: int = 0) -> ThreadingWSGIServer:
    """A threaded WSGI server (one thread per connection, connections kept alive) bound to host:port, not yet serving."""
    server = ThreadingWSGIServer((host, port), _QuietRequestHandler)
    server.set_app(app)
    return server


def server_url(server: ThreadingWSGIServer) -> str:
    host, port = server.server_address[:2]
    return f"http://{host}:{port}"


def _is_trade_debit(debit_type) -> bool:
    """A debit without a type is a trade's (the protocol's first callers sent none)."""
    return debit_type in (None, "", "trade_debit")


def serve_in_thread(app: Callable, host: str = "127.0.0.1", port: int = 0) -> tuple[str, Callable[[], None]]:
    """Serve ``app`` on loopback in a daemon thread; returns (base URL, stop function)."""
    server = make_server(app, host, port)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="reference-wallet", daemon=True)
    thread.start()

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

    return server_url(server), stop
