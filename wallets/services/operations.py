"""Durable S2S money movements: intent committed before the call, outcome recorded after.

    operation_create   inside the caller's transaction: the intent (status pending)
    operation_send     outside any transaction: call the operator, record the outcome
    rollback_open      inside the caller's transaction: the compensating rollback of a debit
    operation_settle   drive any non-final operation to a definite answer (retries, recovery)

Ledger rows mirror exactly what the operator applied: a debit or credit gets its row when
the operator answers OK; a rollback answered OK means the debit had been applied and is now
undone (both rows, if the debit's own answer was never seen); a rollback answered
TRANSACTION_NOT_FOUND means the debit never happened (no rows, and the operator keeps a
tombstone so a late debit is refused). So each player's operator-side balance moves by
exactly the sum of their ledger rows.
"""

import logging
import random
import uuid
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from core.api.rendering import iso
from core.events import event_record
from core.metrics import WALLET_MANUAL
from core.money import money
from wallets.adapters.s2s import UNKNOWN, S2SWalletClient, WalletReply
from wallets.models import FINAL_STATUSES, LedgerType, OperationKind, OperationStatus, OperatorWallet, WalletOperation
from wallets.services.breaker import breaker_record
from wallets.services.debts import recovery_undo
from wallets.services.ledger import ledger_append_bulk, operation_ledger_rows

log = logging.getLogger("house.wallet.operations")


@dataclass(frozen=True)
class WalletTarget:
    """The operator wallet settings a call needs (read once per flow)."""

    operator_id: uuid.UUID
    base_url: str
    secret: str
    timeout: float
    breaker_failures: int
    breaker_window_seconds: int
    breaker_cooldown_seconds: int
    enabled: bool = True
    max_concurrent_calls: int = 1

    @classmethod
    def for_operator(cls, operator_id) -> "WalletTarget":
        config = OperatorWallet.objects.get(operator_id=operator_id)
        return cls(
            operator_id=config.operator_id,
            base_url=config.base_url,
            secret=config.secret,
            timeout=float(config.timeout_seconds),
            breaker_failures=config.breaker_failures,
            breaker_window_seconds=config.breaker_window_seconds,
            breaker_cooldown_seconds=config.breaker_cooldown_seconds,
            enabled=config.enabled,
            max_concurrent_calls=config.max_concurrent_calls,
        )

    def client(self) -> S2SWalletClient:
        return S2SWalletClient(operator_id=self.operator_id, base_url=self.base_url, secret=self.secret, timeout=self.timeout)


def operation_create(
    *,
    player,
    kind: str,
    type: str,
    amount: Decimal,
    round_id: str,
    description: str = "",
    payload: dict | None = None,
    reference: WalletOperation | None = None,
    id: uuid.UUID | None = None,
) -> WalletOperation:
    """Record the intent; call inside the transaction that reserves whatever the movement is for."""
    assert transaction.get_connection().in_atomic_block, "operation_create must run inside a transaction"
    return WalletOperation.objects.create(
        id=id or uuid.uuid4(),
        operator_id=player.operator_id,
        player=player,
        kind=kind,
        type=type,
        amount=amount,
        currency=player.currency,
        round_id=round_id,
        description=description[:500],
        payload=payload or {},
        reference=reference,
    )


def rollback_open(*, debit: WalletOperation, reason: str) -> WalletOperation:
    """The compensating rollback of a debit, in the caller's transaction (one per debit)."""
    existing = WalletOperation.objects.filter(kind=OperationKind.ROLLBACK, reference=debit).first()
    if existing is not None:
        return existing
    WalletOperation.objects.filter(pk=debit.pk, status=OperationStatus.PENDING).update(status=OperationStatus.UNKNOWN)
    return operation_create(
        player=debit.player,
        kind=OperationKind.ROLLBACK,
        type=LedgerType.ROLLBACK,
        amount=debit.amount,
        round_id=debit.round_id,
        description=f"Rollback: {reason}"[:500],
        reference=debit,
    )


def _request_body(op: WalletOperation, *, session_token: str = "") -> tuple[str, dict]:
    player = op.player
    body = {
        "transaction_id": str(op.id),
        "user_id": player.external_id,
        "currency": op.currency,
        "amount": f"{op.amount:.2f}",
        "round_id": op.round_id,
        "type": op.type,
        "description": op.description,
    }
    if op.kind == OperationKind.DEBIT:
        if op.type == LedgerType.TRADE_DEBIT:  # a reversal's debit carries no session token (SPEC §12)
            body["session_token"] = session_token
        if op.reference_id is not None:  # a reversal's debit names the payout it takes back
            body["reference_transaction_id"] = str(op.reference_id)
        return "debit", body
    if op.kind == OperationKind.CREDIT:
        return "credit", body
    body["reference_transaction_id"] = str(op.reference_id)
    return "rollback", body


def operation_send(
    *, operation: WalletOperation, target: WalletTarget | None = None, session_token: str = "", first_call: bool = False
) -> WalletReply:
    """Make (or repeat, same transaction id) the call and record its outcome in a short transaction.

    ``first_call``: the trade's own call, made once by the request that recorded the intent (nothing
    about the movement is unknown yet), so a TEMPORARY_ERROR refuses the trade (refused_for_good)."""
    target = target or WalletTarget.for_operator(operation.operator_id)
    endpoint, body = _request_body(operation, session_token=session_token)
    reply = target.client().call(endpoint, body)
    breaker_record(config=target, success=not reply.unknown)
    _operation_record(operation.pk, reply, first_call=first_call)
    operation.refresh_from_db()
    return reply


def operation_lookup(*, operation: WalletOperation, target: WalletTarget | None = None) -> WalletReply:
    target = target or WalletTarget.for_operator(operation.operator_id)
    return target.client().call("transaction", {"transaction_id": str(operation.id)})


# SPEC §9: TEMPORARY_ERROR is retryable, not a definite refusal. A trade's own first call answered so is
# refused (nothing moved; the player sees a 503 and may trade again). Every other call is retried under
# the same id, like an unknown outcome, until the operator answers definitely: a movement the house makes
# on its own (a payout, a refund, a reversal's debit) has nobody to try it again (found by the soak: such a
# payout was parked as failed), and a repeated call follows one whose outcome is unknown, which the
# operator may have applied (a sale's credit refused so on its retry left the sale standing without
# its proceeds).
RETRYABLE_STATUSES = frozenset({"TEMPORARY_ERROR"})
TRADE_TYPES = (LedgerType.TRADE_DEBIT, LedgerType.TRADE_CREDIT)


def refused_for_good(op: WalletOperation, reply: WalletReply, *, first_call: bool = False) -> bool:
    """Whether ``reply`` definitely refuses ``op`` (else it is retried, unless it was OK)."""
    if not reply.refused:
        return False
    if reply.status in RETRYABLE_STATUSES:
        return first_call and op.type in TRADE_TYPES
    return True


def _backoff(attempts: int) -> timedelta:
    base, cap = settings.HOUSE_WALLET_RETRY_BASE_SECONDS, settings.HOUSE_WALLET_RETRY_MAX_SECONDS
    delay = min(cap, base * (2 ** max(0, attempts - 1)))
    return timedelta(seconds=delay * random.uniform(0.8, 1.2))


def _operation_record(operation_id, reply: WalletReply, *, first_call: bool = False) -> None:
    with transaction.atomic():
        op = WalletOperation.objects.select_for_update().select_related("player").get(pk=operation_id)
        if op.status in FINAL_STATUSES or op.status == OperationStatus.MANUAL:
            return
        op.attempts += 1
        op.operator_status = reply.status[:32]
        if reply.operator_transaction_id:
            op.operator_transaction_id = reply.operator_transaction_id[:128]
        if op.kind == OperationKind.ROLLBACK:
            _record_rollback(op, reply)
        elif reply.ok:
            op.status = OperationStatus.OK
            op.balance_after = reply.balance
            _ledger_row(op, balance_after=reply.balance)
        elif refused_for_good(op, reply, first_call=first_call):
            if op.type == LedgerType.TRADE_CREDIT and op.settled_locally:
                # The sale was recorded on an unknown answer (a credit is never rolled back): it stands, and
                # its proceeds are owed. A refusal cannot undo it: staff settle it with the operator.
                op.status = OperationStatus.MANUAL
                op.last_error = f"{reply.status}: the sale stands, its proceeds were refused"[:500]
                WALLET_MANUAL.labels(kind=op.kind).inc()
                log.error("wallet operation %s: the operator refused the proceeds of a recorded sale (%s)", op.pk, reply.status)
                manual_intervention_record(op)
            else:
                op.status = OperationStatus.REFUSED
                op.last_error = reply.status
                recovery_undo(player_id=op.player_id, currency=op.currency, credit_id=op.pk, payload=op.payload)
        else:
            op.status = OperationStatus.UNKNOWN
            op.last_error = reply.status[:500]
            op.next_attempt_at = timezone.now() + _backoff(op.attempts)
        _flag_if_past_cutoff(op)
        op.save()


def _record_rollback(op: WalletOperation, reply: WalletReply) -> None:
    debit = WalletOperation.objects.select_for_update().get(pk=op.reference_id)
    if reply.ok:
        if debit.status != OperationStatus.OK:  # the debit's own answer was never seen: it was applied
            before_rollback = reply.balance - op.amount if reply.balance is not None else None
            _ledger_row(debit, balance_after=before_rollback)
        debit.status = OperationStatus.ROLLED_BACK
        debit.save(update_fields=["status", "updated_at"])
        op.status = OperationStatus.OK
        op.balance_after = reply.balance
        _ledger_row(op, balance_after=reply.balance)
    elif reply.status == "TRANSACTION_NOT_FOUND":
        if debit.status == OperationStatus.OK:
            op.status = OperationStatus.MANUAL
            op.last_error = "operator does not know a debit it confirmed"
            manual_intervention_record(op)
            return
        debit.status = OperationStatus.REFUSED  # never applied; the operator keeps a tombstone
        debit.last_error = "rolled back before it was applied"
        debit.save(update_fields=["status", "last_error", "updated_at"])
        op.status = OperationStatus.OK
    else:  # a rollback needs a definite answer: every other reply is retried
        op.status = OperationStatus.UNKNOWN
        op.last_error = reply.status[:500]
        op.next_attempt_at = timezone.now() + _backoff(op.attempts)


def _ledger_row(op: WalletOperation, *, balance_after: Decimal | None) -> None:
    is_trade = op.type in (LedgerType.TRADE_DEBIT, LedgerType.TRADE_CREDIT)
    rows = operation_ledger_rows(op, balance_after=balance_after, actor="player" if is_trade else "system")
    ledger_append_bulk(rows=rows, skip_existing=True)  # recorded again after a crash: the rows are there


def _flag_if_past_cutoff(op: WalletOperation) -> None:
    if op.status != OperationStatus.UNKNOWN:
        return
    if timezone.now() - op.created_at > timedelta(seconds=settings.HOUSE_WALLET_MANUAL_AFTER_SECONDS):
        op.status = OperationStatus.MANUAL
        WALLET_MANUAL.labels(kind=op.kind).inc()
        log.error("wallet operation %s (%s %s) needs manual handling: %s", op.pk, op.kind, op.amount, op.last_error)
        manual_intervention_record(op)


def manual_intervention_record(op: WalletOperation) -> None:
    """``wallet.manual_intervention`` (SPEC §14), in the transaction that flags the operation manual."""
    event_record(
        operator_id=op.operator_id,
        type="wallet.manual_intervention",
        data={
            "transactionId": str(op.pk),
            "kind": op.kind,
            "type": op.type,
            "amount": money(op.amount),
            "currency": op.currency,
            "userId": str(op.player_id),
            "playerId": WalletOperation.objects.filter(pk=op.pk).values_list("player__external_id", flat=True).first(),
            "roundId": op.round_id,
            "lastError": op.last_error,
            "createdAt": iso(op.created_at),
        },
    )


def operation_settle(*, operation: WalletOperation) -> WalletOperation:
    """One step towards a definite answer for a non-final operation (retry task, recovery, reconciliation).

    Trade debits are never re-sent: an unanswered debit is compensated by its rollback (opened
    by the trade's own failure path or by recovery). Credits, rollbacks and a reversal's debits
    (no session token, nothing to compensate) are re-sent under the same id until the operator
    answers definitely.
    """
    operation.refresh_from_db()
    if operation.status in FINAL_STATUSES or operation.status == OperationStatus.MANUAL:
        return operation
    if operation.kind == OperationKind.DEBIT and operation.type == LedgerType.TRADE_DEBIT:
        rollback = WalletOperation.objects.filter(kind=OperationKind.ROLLBACK, reference=operation).first()
        if rollback is not None:
            operation_settle(operation=rollback)
        else:
            _debit_reconcile(operation)
    else:
        operation_send(operation=operation)
    operation.refresh_from_db()
    return operation


def _debit_reconcile(debit: WalletOperation) -> None:
    """A debit left without a rollback: ask the operator what it knows and record that answer.

    TRANSACTION_NOT_FOUND is not a refusal: the debit may still be on its way (the process that sent it
    died, its request stalled in the network) and land after this look-up. It is compensated instead: the
    rollback of an unknown id leaves a tombstone at the operator, so a late arrival is refused there."""
    reply = operation_lookup(operation=debit)
    if reply.ok and (reply.body or {}).get("rolled_back") is not True:
        _operation_record(debit.pk, reply)
    elif reply.status == "TRANSACTION_ROLLED_BACK":
        _operation_record(debit.pk, WalletReply("refused", reply.status))
    elif reply.status == "TRANSACTION_NOT_FOUND":
        with transaction.atomic():
            rollback = rollback_open(debit=WalletOperation.objects.select_for_update().get(pk=debit.pk), reason="not found by a look-up")
        operation_send(operation=rollback)
    else:
        _operation_record(debit.pk, WalletReply(UNKNOWN, reply.status))


def operations_due(*, limit: int = 200):
    """Non-final operations whose next attempt is due."""
    now = timezone.now()
    return list(
        WalletOperation.objects.filter(status__in=[OperationStatus.UNKNOWN, OperationStatus.PENDING])
        .filter(next_attempt_at__isnull=True, created_at__lt=now - timedelta(seconds=settings.HOUSE_WALLET_STALL_SECONDS))
        .order_by("created_at")[:limit]
    ) + list(WalletOperation.objects.filter(status=OperationStatus.UNKNOWN, next_attempt_at__lte=now).order_by("next_attempt_at")[:limit])


def operation_resolve(*, operation: WalletOperation, note: str, actor: str) -> None:
    """Staff closed a manual case (after checking with the operator); recorded, nothing moved here."""
    with transaction.atomic():
        op = WalletOperation.objects.select_for_update().get(pk=operation.pk)
        if op.status in FINAL_STATUSES:
            return
        op.status = OperationStatus.RESOLVED
        op.resolution_note = f"{actor}: {note}"[:500]
        op.save(update_fields=["status", "resolution_note", "updated_at"])


def operation_requeue(*, operation_id) -> bool:
    """Put a manual case back into automatic handling (due now, a new cut-off); True if it was manual."""
    return bool(
        WalletOperation.objects.filter(pk=operation_id, status=OperationStatus.MANUAL).update(
            status=OperationStatus.UNKNOWN, created_at=timezone.now(), next_attempt_at=None
        )
    )


def operation_retry_manual(*, operation: WalletOperation) -> WalletOperation:
    """Put a manual case back into automatic handling and try it now."""
    operation_requeue(operation_id=operation.pk)
    return operation_settle(operation=operation)
