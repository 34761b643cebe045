"""Operator (S2S) wallets: a chunk's credits recorded with the claim, sent concurrently with no
transaction open, their answers recorded per chunk.

    operator_payouts_hold   in the claim's transaction: the intents of pending payouts (bulk insert,
                            payouts marked sending) and the operations of payouts due for a retry,
                            all held by this worker; returns one batch per operator
    operator_payouts_send   no transaction open: the calls (at most the operator's
                            ``max_concurrent_calls`` in flight), then in one transaction the answers
                            and the payouts' new states

Exactly once: each payout's credit is the WalletOperation whose id is the payout's transaction_id,
committed before the first call and re-sent under that id until the operator answers definitely
(it answers a repeat with its first answer); its ledger row has that id too. A worker sends only
operations it holds (wallets.services.operation_batches), so two workers never send the same
credit at once; a killed worker's hold lapses and another sends the same ids again.
"""

import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal

from django.db import transaction

from core.metrics import SETTLEMENT_PAYOUTS
from settlement.models import Payout, PayoutStatus, Settlement
from settlement.services.events import payouts_paid_record, payouts_record_by_id
from settlement.services.payout_chunks import (
    ClaimedPayout,
    breaker_book_on_commit,
    payout_description,
    payout_ledger_type,
    payouts_mark,
    settlement_share,
)
from wallets.models import OperationKind, OperationStatus
from wallets.services.debts import debts_recover_bulk
from wallets.services.operation_batches import (
    OperationIntent,
    OperationOutcome,
    operations_call,
    operations_create_bulk,
    operations_hold,
    operations_hold_until,
    operations_record_bulk,
    operations_settled_without_call,
)
from wallets.services.operations import WalletTarget

ZERO = Decimal("0")


@dataclass
class OperatorBatch:
    """The credits this worker holds at one operator, and the payout each one pays."""

    target: WalletTarget
    intents: list[OperationIntent] = field(default_factory=list)
    payout_of: dict[uuid.UUID, uuid.UUID] = field(default_factory=dict)  # operation id -> payout id


def operator_payouts_hold(*, settlement: Settlement, pending: list[ClaimedPayout], retrying: list[ClaimedPayout]) -> list[OperatorBatch]:
    """Inside the claim's transaction (the payouts are row-locked by it)."""
    by_operator: dict[uuid.UUID, list[list[ClaimedPayout]]] = defaultdict(lambda: [[], []])
    for index, payouts in enumerate((pending, retrying)):
        for payout in payouts:
            by_operator[payout.operator_id][index].append(payout)
    batches = []
    for operator_id, (fresh, again) in by_operator.items():
        target = WalletTarget.for_operator(operator_id)
        batch = OperatorBatch(target)
        held_until = operations_hold_until(target=target, count=len(fresh) + len(again))
        _start(settlement, batch, fresh, held_until)
        _resume(settlement, batch, again, held_until)
        if batch.intents:
            batches.append(batch)
    return batches


def _start(settlement: Settlement, batch: OperatorBatch, payouts: list[ClaimedPayout], held_until) -> None:
    """Payouts to start: their credits recorded (pending, held), the payouts marked sending (those created
    sending by this transaction already are)."""
    if not payouts:
        return
    kind, round_id = payout_ledger_type(settlement), str(settlement.pk)
    recovered = debts_recover_bulk(
        credits=[(p.transaction_id, p.player_id, p.amount) for p in payouts],
        description=f"Debt recovered from {kind} in {settlement.market_id}",
    )
    intents = [
        OperationIntent(
            id=p.transaction_id,
            operator_id=p.operator_id,
            player_id=p.player_id,
            user_id=p.user_id,
            kind=OperationKind.CREDIT,
            type=kind,
            amount=p.amount - recovered.get(p.transaction_id, ZERO),  # a debt is taken out of the credit sent
            currency=p.currency,
            round_id=round_id,
            description=payout_description(settlement, p),
            payload=_payload(p, recovered.get(p.transaction_id)),
        )
        for p in payouts
    ]
    # A debt that takes the whole payout leaves nothing to send: booked as paid, no call.
    to_send = [i for i in intents if i.amount > 0]
    settled = [i for i in intents if i.amount <= 0]
    operations_create_bulk(intents=to_send, held_until=held_until)
    operations_settled_without_call(intents=settled)
    payouts_mark(ids=[p.id for p in payouts if not p.fresh], status=PayoutStatus.SENDING, attempts=True)
    if settled:
        paid = {i.id for i in settled}
        payouts_mark(ids=[p.id for p in payouts if p.transaction_id in paid], status=PayoutStatus.PAID)
        payouts_paid_record(settlement=settlement, payouts=[p for p in payouts if p.transaction_id in paid])
    batch.intents += to_send
    batch.payout_of.update({p.transaction_id: p.id for p in payouts})


def _payload(payout: ClaimedPayout, recovered) -> dict:
    payload = {"handler": "payout", "payout_id": str(payout.id)}
    if recovered:
        payload["debt_recovered"] = str(recovered)
    return payload


def _resume(settlement: Settlement, batch: OperatorBatch, payouts: list[ClaimedPayout], held_until) -> None:
    """Payouts already sending: the due credits held again; those the operator already answered are recorded."""
    if not payouts:
        return
    payout_of = {p.transaction_id: p.id for p in payouts}
    held, answered = operations_hold(ids=list(payout_of), held_until=held_until)
    _payouts_record(settlement, payout_of, answered)
    batch.intents += held
    batch.payout_of.update({i.id: payout_of[i.id] for i in held})


def operator_payouts_send(*, settlement: Settlement, batch: OperatorBatch) -> None:
    """No transaction open (the wallet client refuses otherwise): the calls, then the answers."""
    replies = operations_call(target=batch.target, intents=batch.intents)
    with transaction.atomic():
        # Held FOR SHARE like a chunk's (a reversal waits for it), but the answers are recorded
        # whatever the settlement's status: the operator has moved the money already.
        settlement_share(settlement_id=settlement.pk)
        outcomes = operations_record_bulk(intents=batch.intents, replies=replies)
        _payouts_record(settlement, batch.payout_of, outcomes)


def _payouts_record(settlement: Settlement, payout_of: dict, outcomes: dict[uuid.UUID, OperationOutcome]) -> None:
    """A payout is paid when its credit is OK, failed when it was refused (or needs manual handling:
    staff retry it from the admin), still sending otherwise. One UPDATE per (new state, error)."""
    groups: dict[tuple[str, str], list] = defaultdict(list)
    for operation_id, outcome in outcomes.items():
        if outcome.status == OperationStatus.OK:
            groups[(PayoutStatus.PAID, "")].append(payout_of[operation_id])
        elif outcome.status in (OperationStatus.REFUSED, OperationStatus.MANUAL):
            groups[(PayoutStatus.FAILED, outcome.error)].append(payout_of[operation_id])
        else:
            groups[(PayoutStatus.SENDING, outcome.error)].append(payout_of[operation_id])
    for (status, error), payout_ids in groups.items():
        last_error = None if status == PayoutStatus.PAID else error
        if status == PayoutStatus.SENDING:
            payouts_mark(ids=payout_ids, status=status, error=last_error, only_from=PayoutStatus.SENDING)
            continue
        moved = payouts_mark(ids=payout_ids, status=status, error=last_error, only_from=PayoutStatus.SENDING, returning=True)
        payouts_record_by_id(settlement=settlement, payout_ids=moved, status=status, error=error)  # the outbox
        if status == PayoutStatus.PAID:
            breaker_book_on_commit(losses=list(Payout.objects.filter(pk__in=moved).values_list("player_id", "amount")))
        SETTLEMENT_PAYOUTS.labels(action=payout_ledger_type(settlement), result=status).inc(len(moved))
