"""Loss notifications to S2S wallets (SPEC §16): each losing position of a resolved market, at an
operator with ``notify_losses`` on, reported as a ``credit`` of amount 0.00, type ``loss``, so the
operator can close the round.

    (recorded)           by the settlement chunk that closes the position, in its transaction
                         (settlement.services.snapshot: one LossNotice per position and settlement)
    loss_notices_send    one pass: due notices held (a lease), the calls with no transaction open
                         (per operator, at most its ``max_concurrent_calls`` in flight), the answers
    loss_notices_kick    after a chunk that recorded notices commits: the sending task queued

Exactly once: the notice is committed before any call, and every attempt sends it under its own
``transaction_id`` (the operator answers a repeat with its first answer). A sender sends only the
notices it holds: holding sets ``next_attempt_at`` under the row lock (SKIP LOCKED), so two senders
never send the same notice at once; a killed sender's hold lapses and another sends the same id
again. Retried like a credit: an unknown outcome (timeout, 5xx, bad signature) or TEMPORARY_ERROR
backs off and goes again under the same id; another refusal is final (``refused``, nothing moves).

Never in the way of the winners: the payouts do not wait for notices (their own task, after the
chunk's commit; the settlement completes without them), an operator whose breaker is open is
skipped, and no database lock is held across a call. Not a money movement: no ledger row and no
WalletOperation (a 0.00 credit changes no balance; docs/decisions.md). A notice of a settlement
reversed before it was sent is cancelled (the position is open again).
"""

import logging
import uuid
from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from settlement.models import LossNotice, LossNoticeStatus, SettlementStatus
from wallets.models import OperationKind
from wallets.services.breaker import breaker_is_open
from wallets.services.operation_batches import OperationIntent, operations_call, operations_hold_until
from wallets.services.operations import RETRYABLE_STATUSES, WalletTarget, _backoff

log = logging.getLogger("house.settlement")

LOSS = "loss"  # the type sent on the wire
ZERO_AMOUNT = Decimal("0.00")
CHUNK = 500  # notices held per pass
LIVE = (SettlementStatus.SETTLING, SettlementStatus.COMPLETED)
TAKEN_BACK = (SettlementStatus.REVERSING, SettlementStatus.REVERSED)


@dataclass
class NoticeBatch:
    """The notices this sender holds at one operator."""

    target: WalletTarget
    intents: list[OperationIntent]
    notice_of: dict[uuid.UUID, uuid.UUID]  # transaction id -> notice id


def loss_notices_send(*, settlement_id=None, limit: int = CHUNK) -> int:
    """One pass over the due notices (of one settlement when given): returns how many calls were answered
    or attempted. Safe to run concurrently and again after a crash."""
    attempted = 0
    for batch in _hold(settlement_id, limit):
        replies = operations_call(target=batch.target, intents=batch.intents)
        _record(batch, replies)
        attempted += len(replies)
    return attempted


def loss_notices_kick() -> None:
    """Queue the sending task (after the commit of the chunk that recorded notices)."""
    try:
        from settlement.tasks import loss_notices_send_task

        loss_notices_send_task.delay()
    except Exception:  # noqa: BLE001 - the beat task sends them anyway
        log.warning("could not queue the loss notices", exc_info=True)


_FIELDS = (
    "pk",
    "transaction_id",
    "settlement_id",
    "settlement__market_id",
    "operator_id",
    "player_id",
    "player__external_id",
    "player__currency",
    "outcome",
    "shares",
)


def _hold(settlement_id, limit: int) -> list[NoticeBatch]:
    """In one short transaction: notices of reversed settlements cancelled; up to ``limit`` due notices
    locked (SKIP LOCKED, id order), those of operators whose breaker is open left alone, the others held
    until every call of their batch can time out."""
    now = timezone.now()
    with transaction.atomic():
        pending = LossNotice.objects.filter(status=LossNoticeStatus.PENDING)
        if settlement_id is not None:
            pending = pending.filter(settlement_id=settlement_id)
        # A reversed settlement's notices are cancelled only if never handed to a sender: one held before may
        # have reached the operator (a sender killed during its calls, an answer lost), so it is driven to a
        # definite answer under its id like any other (found by the soak: the house said cancelled, the
        # operator had it).
        never_sent = Q(attempts=0, next_attempt_at__isnull=True)
        pending.filter(never_sent, settlement__status__in=TAKEN_BACK).update(
            status=LossNoticeStatus.CANCELLED, next_attempt_at=None, updated_at=now
        )
        due = (
            pending.select_for_update(skip_locked=True, of=("self",))
            .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
            .filter(Q(settlement__status__in=LIVE) | ~never_sent)
            .order_by("pk")
        )
        by_operator = defaultdict(list)
        for row in due.values_list(*_FIELDS)[:limit]:
            by_operator[row[4]].append(row)
        batches = []
        for operator_id, rows in by_operator.items():
            if breaker_is_open(operator_id=operator_id):
                continue  # they wait for the breaker to close, like payouts
            target = WalletTarget.for_operator(operator_id)
            held_until = operations_hold_until(target=target, count=len(rows))
            LossNotice.objects.filter(pk__in=[row[0] for row in rows]).update(next_attempt_at=held_until, updated_at=now)
            batches.append(NoticeBatch(target, [_intent(row) for row in rows], {row[1]: row[0] for row in rows}))
        return batches


def _intent(row) -> OperationIntent:
    _, transaction_id, settlement_id, market_id, operator_id, player_id, user_id, currency, outcome, shares = row
    return OperationIntent(
        id=transaction_id,
        operator_id=operator_id,
        player_id=player_id,
        user_id=user_id,
        kind=OperationKind.CREDIT,
        type=LOSS,
        amount=ZERO_AMOUNT,
        currency=currency,
        round_id=str(settlement_id),
        description=f"Loss: {shares.normalize()} shares {outcome.upper()} in {market_id}",
    )


def _record(batch: NoticeBatch, replies: dict) -> None:
    """The answers, in one short transaction under the notices' row locks. OK is recorded whatever the
    notice's state (the operator has it); anything else only while the notice is pending."""
    now = timezone.now()
    with transaction.atomic():
        notices = list(LossNotice.objects.select_for_update().filter(pk__in=list(batch.notice_of.values())).order_by("pk"))
        by_id = {notice.transaction_id: notice for notice in notices}
        changed = []
        for transaction_id, notice in by_id.items():
            reply = replies.get(transaction_id)
            if notice.status == LossNoticeStatus.SENT:
                continue
            if reply is None:  # not sent (the breaker opened meanwhile): due again at once
                if notice.status == LossNoticeStatus.PENDING:
                    notice.next_attempt_at = None
                    changed.append(notice)
                continue
            if not reply.ok and notice.status != LossNoticeStatus.PENDING:
                continue
            notice.attempts += 1
            notice.operator_status = reply.status[:32]
            if reply.ok:
                notice.status, notice.next_attempt_at, notice.last_error = LossNoticeStatus.SENT, None, ""
            elif reply.refused and reply.status not in RETRYABLE_STATUSES:
                notice.status, notice.next_attempt_at, notice.last_error = LossNoticeStatus.REFUSED, None, reply.status[:500]
            else:  # unknown outcome or TEMPORARY_ERROR: again under the same id, backing off
                notice.last_error = reply.status[:500]
                notice.next_attempt_at = now + _backoff(notice.attempts)
            changed.append(notice)
        for notice in changed:
            notice.updated_at = now
        LossNotice.objects.bulk_update(
            changed, ["status", "attempts", "operator_status", "last_error", "next_attempt_at", "updated_at"], batch_size=CHUNK
        )
