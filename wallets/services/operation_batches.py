"""Many S2S money movements at once (a chunk of settlement payouts): intents recorded in bulk, the calls
made concurrently, the answers recorded in bulk.

    operations_create_bulk   in the caller's transaction: the intents, held by the caller until ``held_until``
    operations_hold          in the caller's transaction: of some operations, take those due for another attempt
    operations_call          outside any transaction: the calls, the first alone (a probe), then at most
                             ``max_concurrent_calls`` in flight; no new call once the breaker opens
    operations_record_bulk   in the caller's transaction: the answers, a ledger row for each movement applied

Exactly once: a movement keeps its id (the transaction_id sent) across attempts, and the operator
answers a repeat with its first answer; its ledger row has the same id. Never sent by two workers
at once: a worker sends only operations it holds, and holding is a compare-and-set on
``next_attempt_at`` under the row lock (a lease: a worker that dies lets it lapse, and another
worker sends the same ids again). The rules of each answer are those of ``operations``.
"""

import contextvars
import json
import math
import threading
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import connection, transaction
from django.db.models.expressions import RawSQL
from django.utils import timezone

from wallets.adapters.s2s import MAX_CONCURRENT_CALLS, WalletCallInsideTransaction, WalletReply
from wallets.models import FINAL_STATUSES, LedgerEntry, OperationKind, OperationStatus, WalletOperation
from wallets.selectors import operations_due_or_done
from wallets.services.breaker import breaker_record
from wallets.services.debts import recovery_undo
from wallets.services.ledger import LedgerRow, ledger_append_bulk, operation_ledger_rows
from wallets.services.operations import WalletTarget, _backoff, _flag_if_past_cutoff, refused_for_good

DONE_STATUSES = (*FINAL_STATUSES, OperationStatus.MANUAL)


@dataclass(frozen=True)
class OperationIntent:
    """A credit (or a debit without session token) to send: everything the call and its ledger row need."""

    id: uuid.UUID  # the transaction_id sent, and the ledger row's id
    operator_id: uuid.UUID
    player_id: uuid.UUID
    user_id: str  # the operator's own player id
    kind: str
    type: str
    amount: Decimal
    currency: str
    round_id: str
    description: str
    payload: dict = field(default_factory=dict)
    reference_id: uuid.UUID | None = None  # a reversal's debit: the transaction it takes back


@dataclass(frozen=True)
class OperationOutcome:
    """Where an operation stands after an attempt: its status and the operator's answer or the error."""

    status: str
    error: str = ""


def operations_hold_until(*, target: WalletTarget, count: int) -> datetime:
    """Until when a worker holds ``count`` operations it is about to send: long enough for every round
    of calls to time out (the probe, then ``max_concurrent_calls`` at a time), plus a margin."""
    rounds = 1 + math.ceil(max(count - 1, 0) / _limit(target))
    return timezone.now() + timedelta(seconds=target.timeout * (rounds + 1) + settings.HOUSE_WALLET_HOLD_MARGIN_SECONDS)


# One statement whatever the number of intents (arrays; Django's bulk_create quotes every value in Python).
_CREATE_SQL = """
INSERT INTO wallet_operations (id, operator_id, player_id, kind, type, amount, currency, round_id, description, payload, reference_id,
                               status, settled_locally, operator_transaction_id, operator_status, balance_after, attempts,
                               next_attempt_at, last_error, resolution_note, created_at, updated_at)
SELECT i.id, i.operator_id, i.player_id, i.kind, i.type, i.amount, i.currency, i.round_id, i.description, i.payload::jsonb, i.reference_id,
       %(pending)s, false, '', '', NULL, 0, %(held_until)s, '', '', %(at)s, %(at)s
FROM unnest(%(id)s::uuid[], %(operator)s::uuid[], %(player)s::uuid[], %(kind)s::varchar[], %(type)s::varchar[], %(amount)s::numeric[],
            %(currency)s::varchar[], %(round)s::varchar[], %(description)s::varchar[], %(payload)s::text[], %(reference)s::uuid[])
     AS i (id, operator_id, player_id, kind, type, amount, currency, round_id, description, payload, reference_id)
"""


def operations_create_bulk(*, intents: list[OperationIntent], held_until: datetime) -> None:
    """Record the intents (status pending), held by the caller until ``held_until``."""
    assert transaction.get_connection().in_atomic_block, "operations_create_bulk must run inside a transaction"
    if not intents:
        return
    if connection.vendor == "postgresql":
        params = {
            "pending": OperationStatus.PENDING,
            "held_until": held_until,
            "at": timezone.now(),
            "id": [i.id for i in intents],
            "operator": [i.operator_id for i in intents],
            "player": [i.player_id for i in intents],
            "kind": [i.kind for i in intents],
            "type": [i.type for i in intents],
            "amount": [i.amount for i in intents],
            "currency": [i.currency for i in intents],
            "round": [i.round_id for i in intents],
            "description": [i.description[:500] for i in intents],
            "payload": [json.dumps(i.payload) for i in intents],
            "reference": [i.reference_id for i in intents],
        }
        with connection.cursor() as cursor:
            cursor.execute(_CREATE_SQL, params)
        return
    WalletOperation.objects.bulk_create(
        [
            WalletOperation(
                id=i.id,
                operator_id=i.operator_id,
                player_id=i.player_id,
                kind=i.kind,
                type=i.type,
                amount=i.amount,
                currency=i.currency,
                round_id=i.round_id,
                description=i.description[:500],
                payload=i.payload,
                reference_id=i.reference_id,
                next_attempt_at=held_until,
            )
            for i in intents
        ]
    )


def operations_hold(*, ids: list[uuid.UUID], held_until: datetime) -> tuple[list[OperationIntent], dict[uuid.UUID, OperationOutcome]]:
    """Of the operations ``ids``: hold (until ``held_until``) and return those due for another attempt,
    and return the outcome of those already answered definitely (nothing to send). Operations
    backing off, or held by another worker, are left out."""
    assert transaction.get_connection().in_atomic_block, "operations_hold must run inside a transaction"
    rows = (
        _with_ids(operations_due_or_done().select_for_update(of=("self",)), ids)
        .order_by("pk")
        .values(*_INTENT_FIELDS, "status", "operator_status", "last_error", "player__external_id")
    )
    held, done = [], {}
    for row in rows:
        if row["status"] in DONE_STATUSES:
            done[row["id"]] = _outcome(row["status"], row["operator_status"], row["last_error"])
        else:
            held.append(OperationIntent(user_id=row["player__external_id"], **{name: row[name] for name in _INTENT_FIELDS}))
    if held:
        WalletOperation.objects.filter(pk__in=[i.id for i in held]).update(next_attempt_at=held_until)
    return held, done


def _with_ids(operations, ids: list):
    """``operations`` with these ids: one array parameter on PostgreSQL (an IN list of 1,000 ids is
    1,000 parameters quoted in Python with client-side binding)."""
    if connection.vendor == "postgresql":
        return operations.filter(pk__in=RawSQL("SELECT unnest(%s::uuid[])", [ids]))
    return operations.filter(pk__in=ids)


_INTENT_FIELDS = (
    "id",
    "operator_id",
    "player_id",
    "kind",
    "type",
    "amount",
    "currency",
    "round_id",
    "description",
    "payload",
    "reference_id",
)


def operations_call(*, target: WalletTarget, intents: list[OperationIntent]) -> dict[uuid.UUID, WalletReply]:
    """Make the calls, at most ``max_concurrent_calls`` in flight; returns the answer of each call made.

    The first call goes alone, so a failing wallet server gets one call, not a burst. Then as many
    threads as the bound each take the next call until none is left; the breaker is fed as answers
    arrive, and once it is open no new call starts (those not made are not in the result). The
    threads only wait on the network: no database work happens in them.
    """
    if connection.in_atomic_block:
        raise WalletCallInsideTransaction("wallet calls made inside a database transaction")
    replies: dict[uuid.UUID, WalletReply] = {}
    if not intents:
        return replies
    client, tally = target.client(), _BreakerTally(target)
    replies[intents[0].id] = first = client.call(*_request(intents[0]))
    state = {"stopped": tally.add(first), "failure": None}
    waiting, lock = iter(intents[1:]), threading.Lock()

    def caller() -> None:
        while True:
            with lock:
                intent = None if state["stopped"] else next(waiting, None)
            if intent is None:
                return
            try:
                reply = client.call(*_request(intent))
                with lock:
                    replies[intent.id] = reply
                    state["stopped"] = tally.add(reply) or state["stopped"]
            except BaseException as exc:  # noqa: BLE001 - re-raised by the calling thread below
                with lock:
                    state["stopped"], state["failure"] = True, exc
                return

    # Each thread runs in a copy of the caller's context: its calls carry the caller's request id.
    threads = [
        threading.Thread(target=contextvars.copy_context().run, args=(caller,), name="wallet-call", daemon=True)
        for _ in range(min(_limit(target), len(intents) - 1))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    tally.flush()
    if state["failure"] is not None:
        raise state["failure"]
    return replies


def _limit(target: WalletTarget) -> int:
    return max(1, min(target.max_concurrent_calls, MAX_CONCURRENT_CALLS))


def _request(intent: OperationIntent) -> tuple[str, dict]:
    body = {
        "transaction_id": str(intent.id),
        "user_id": intent.user_id,
        "currency": intent.currency,
        "amount": f"{intent.amount:.2f}",
        "round_id": intent.round_id,
        "type": intent.type,
        "description": intent.description,
    }
    if intent.reference_id is not None:  # a reversal's debit names what it takes back (no session token)
        body["reference_transaction_id"] = str(intent.reference_id)
    return ("credit" if intent.kind == OperationKind.CREDIT else "debit"), body


class _BreakerTally:
    """Feeds the circuit breaker in the order answers arrive: each unknown outcome, and one success per
    run of definite answers (one cache round trip instead of two per call)."""

    def __init__(self, target: WalletTarget):
        self.target, self.success_pending = target, False

    def add(self, reply: WalletReply) -> bool:
        """True when the breaker is open: send nothing more."""
        if not reply.unknown:
            self.success_pending = True
            return False
        self.flush()
        return breaker_record(config=self.target, success=False)

    def flush(self) -> None:
        if self.success_pending:
            breaker_record(config=self.target, success=True)
            self.success_pending = False


def operations_record_bulk(*, intents: list[OperationIntent], replies: dict[uuid.UUID, WalletReply]) -> dict[uuid.UUID, OperationOutcome]:
    """Record the answers (an intent without answer was not sent: its hold is released so the next
    attempt is due at once). Returns every operation's outcome, as recorded."""
    assert transaction.get_connection().in_atomic_block, "operations_record_bulk must run inside a transaction"
    operations = list(_with_ids(WalletOperation.objects.select_for_update(), [i.id for i in intents]).order_by("pk"))
    outcomes, changed, rows = {}, [], []
    for op in operations:
        reply = replies.get(op.pk)
        if op.status not in DONE_STATUSES:
            if reply is None:
                op.next_attempt_at = None
            else:
                _answer(op, reply)
                if op.status == OperationStatus.OK:
                    rows += _ledger_rows(op)
                elif op.status == OperationStatus.REFUSED:
                    recovery_undo(player_id=op.player_id, currency=op.currency, credit_id=op.pk, payload=op.payload)
            changed.append(op)
        outcomes[op.pk] = _outcome(op.status, op.operator_status, op.last_error)
    ledger_append_bulk(rows=rows, skip_existing=True)
    _operations_write(changed)
    return outcomes


def _answer(op: WalletOperation, reply: WalletReply) -> None:
    """What ``operations._operation_record`` does with one answer to a debit or a credit."""
    op.attempts += 1
    op.operator_status = reply.status[:32]
    if reply.operator_transaction_id:
        op.operator_transaction_id = reply.operator_transaction_id[:128]
    if reply.ok:
        op.status, op.balance_after, op.next_attempt_at = OperationStatus.OK, reply.balance, None
    elif refused_for_good(op, reply):
        op.status, op.last_error, op.next_attempt_at = OperationStatus.REFUSED, reply.status, None
    else:
        op.status, op.last_error = OperationStatus.UNKNOWN, reply.status[:500]
        op.next_attempt_at = timezone.now() + _backoff(op.attempts)
    _flag_if_past_cutoff(op)


def _ledger_rows(op: WalletOperation) -> list[LedgerRow]:
    return operation_ledger_rows(op, balance_after=op.balance_after, actor="player")


def operations_settled_without_call(*, intents: list[OperationIntent]) -> None:
    """Credits a player's debt took whole (nothing left to send, so no operation and no call): booked
    like any credit that gave back a debt, the full credit then the debt_recovery row, at the
    player's last known balance at the operator."""
    assert transaction.get_connection().in_atomic_block, "operations_settled_without_call must run inside a transaction"
    rows = []
    for intent in intents:
        last = (
            LedgerEntry.objects.filter(player_id=intent.player_id).order_by("-created_at").values_list("balance_after", flat=True).first()
        )
        op = WalletOperation(
            id=intent.id, operator_id=intent.operator_id, player_id=intent.player_id, kind=intent.kind, type=intent.type,
            amount=intent.amount, currency=intent.currency, round_id=intent.round_id, description=intent.description[:500],
            payload=intent.payload, balance_after=last or Decimal("0"),
        )  # fmt: skip
        rows += _ledger_rows(op)
    ledger_append_bulk(rows=rows, skip_existing=True)


def _outcome(status: str, operator_status: str, last_error: str) -> OperationOutcome:
    failed = status in (OperationStatus.REFUSED, OperationStatus.MANUAL)
    return OperationOutcome(status, (operator_status or last_error) if failed else last_error)


_UPDATE_SQL = """
UPDATE wallet_operations AS o
SET status = v.status, attempts = v.attempts, operator_status = v.operator_status, operator_transaction_id = v.operator_transaction_id,
    balance_after = v.balance_after, last_error = v.last_error, next_attempt_at = v.next_attempt_at, updated_at = %(at)s
FROM unnest(%(id)s::uuid[], %(status)s::varchar[], %(attempts)s::int[], %(operator_status)s::varchar[], %(operator_tx)s::varchar[],
            %(balance_after)s::numeric[], %(last_error)s::varchar[], %(next_attempt_at)s::timestamptz[])
     AS v (id, status, attempts, operator_status, operator_transaction_id, balance_after, last_error, next_attempt_at)
WHERE o.id = v.id
"""
_UPDATED_FIELDS = ["status", "attempts", "operator_status", "operator_transaction_id", "balance_after", "last_error", "next_attempt_at"]


def _operations_write(operations: list[WalletOperation]) -> None:
    """One UPDATE for the whole batch on PostgreSQL; Django's bulk_update elsewhere."""
    if not operations:
        return
    now = timezone.now()
    if connection.vendor != "postgresql":
        for op in operations:
            op.updated_at = now
        WalletOperation.objects.bulk_update(operations, [*_UPDATED_FIELDS, "updated_at"])
        return
    params = {
        "at": now,
        "id": [op.pk for op in operations],
        "status": [op.status for op in operations],
        "attempts": [op.attempts for op in operations],
        "operator_status": [op.operator_status for op in operations],
        "operator_tx": [op.operator_transaction_id for op in operations],
        "balance_after": [op.balance_after for op in operations],
        "last_error": [op.last_error for op in operations],
        "next_attempt_at": [op.next_attempt_at for op in operations],
    }
    with connection.cursor() as cursor:
        cursor.execute(_UPDATE_SQL, params)
