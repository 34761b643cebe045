"""Reversing a settlement (SPEC §12): the decision, then taking back what was paid, a chunk at a time.

    settlement_reverse     the decision, one transaction under the market's and the settlement's
                           row locks: unpaid payouts cancelled, one ReversalItem per payout paid (or
                           whose credit is still in flight), the positions open again with the shares
                           and cost basis they had, the exposure book rebuilt from the records, the
                           market closed (market_reversed) awaiting a new decision
    reversal_advance       one pass of a worker:
      _waiting_settle        items whose payout credit was in flight: that credit driven to its answer
                             (paid: to take back; refused: nothing to take back)
      reversal_items_claim   pending items, then S2S items due for another attempt: row locks, SKIP LOCKED
      _house_take            house-held wallets: what the balance holds, in the claim's transaction;
                             the rest is the player's debt
      _operator_hold/_send   S2S: debits (type payout_reversal / refund_reversal, no session token,
                             reference_transaction_id = the payout's transaction) recorded and held in
                             the claim's transaction, sent with no transaction open, answers per chunk;
                             INSUFFICIENT_FUNDS (any refusal) takes nothing: all of it is debt
    reversal_finalize      when no item is left: totals, the settlement reversed

Exactly once, like payouts: an item leaves pending only under its row lock in the transaction
that takes the money (ledger row id = the item's transaction id, unique) or records its debit
(the WalletOperation with that id, re-sent under it until the operator answers definitely). A
debt is incurred once per item (DebtEntry unique per reference).
"""

import logging
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal

from django.db import connection, transaction
from django.db.models import Count, Exists, F, OuterRef, Q, Sum
from django.utils import timezone

from casino.models import Market, MarketStatus, Outcome, Position, PositionStatus, Side, WalletMode
from casino.selectors import market_book_from_records
from casino.services.exposure import Book, exposure_restore_market
from casino.services.market_state import market_event_record
from core.errors import HouseError, missing_fields
from core.metrics import SETTLEMENTS
from settlement.models import (
    Payout,
    PayoutStatus,
    Reversal,
    ReversalItem,
    ReversalItemStatus,
    ReversalStatus,
    Settlement,
    SettlementAction,
    SettlementStatus,
)
from settlement.services.events import settlement_reversed_record
from settlement.services.payout_chunks import payouts_mark
from wallets.models import LedgerType, OperationKind, OperationStatus, WalletOperation
from wallets.selectors import operations_due_or_done, trades_in_flight
from wallets.services.balances import BulkChange, wallet_takes_bulk
from wallets.services.breaker import breaker_is_open
from wallets.services.debts import debt_incur
from wallets.services.operation_batches import (
    OperationIntent,
    OperationOutcome,
    operations_call,
    operations_create_bulk,
    operations_hold,
    operations_hold_until,
    operations_record_bulk,
)
from wallets.services.operations import WalletTarget, operation_settle

log = logging.getLogger("house.settlement.reversal")

CHUNK = 1000
ZERO = Decimal("0")
OPEN_ITEMS = (ReversalItemStatus.WAITING, ReversalItemStatus.PENDING, ReversalItemStatus.SENDING)


# ----- the decision ------------------------------------------------------------------------------


def settlement_reverse(*, market_id: str, reason: str, requested_by=None) -> Reversal:
    """Reverse the market's latest settlement. Repeating it answers the same reversal; a market
    with no settlement to reverse is a 400."""
    if not (reason or "").strip():
        raise missing_fields()
    if not Market.objects.filter(pk=market_id).exists():
        raise HouseError("Market not found", code="market_not_found", status=404)
    # Locks are taken from the least to the most shared, so the busy ones are held only at the end: the
    # settlement row first (payout chunks of this settlement wait for it) while the items are written and
    # the positions reopened (seconds at 100,000 positions), then the market row (the feed writes it) and
    # the exposure rows (the global shards every trade updates), for the last milliseconds.
    with transaction.atomic():
        settlement = Settlement.objects.select_for_update().filter(market_id=market_id).order_by("-requested_at").first()
        if settlement is None:
            raise HouseError("Market has no settlement to reverse", code="no_settlement", status=400)
        if settlement.status in (SettlementStatus.REVERSING, SettlementStatus.REVERSED):
            return settlement.reversal
        reversal = Reversal.objects.create(settlement=settlement, reason=reason.strip()[:500], requested_by=requested_by)
        cancelled = _payouts_cancel_unpaid(settlement)
        items = _items_create(reversal)
        _positions_reopen(settlement)
        reopened = Position.objects.filter(market_id=market_id, status=PositionStatus.OPEN, shares__gt=0).count()
        due = ReversalItem.objects.filter(reversal=reversal).aggregate(s=Sum("amount_due"))["s"] or ZERO
        Reversal.objects.filter(pk=reversal.pk).update(
            total_positions=reopened, total_items=items, total_cancelled=cancelled, total_due=due
        )
        settlement.status = SettlementStatus.REVERSING
        settlement.save(update_fields=["status"])
        market = Market.objects.select_for_update().get(pk=market_id)
        market.status, market.outcome = MarketStatus.CLOSED, None
        market.save(update_fields=["status", "outcome", "updated_at"])
        market_event_record(market_id=market_id, type="market.closed", at=timezone.now(), reason="settlement_reversed")
        # With what the S2S trades still in flight hold on the book (the soak: a sale recorded after the
        # reversal left the book richer by its proceeds).
        exposure_restore_market(market_id=market_id, book=_book_to_restore(market_id))
        SETTLEMENTS.labels(action="reverse", stage="decided").inc()
        transaction.on_commit(lambda: _start(reversal.pk))
    reversal.refresh_from_db()
    log.info("settlement %s of %s reversal %s: %s items, %s cancelled", settlement.pk, market_id, reversal.pk, items, cancelled)
    return reversal


def _book_to_restore(market_id: str) -> Book:
    """What the market's records imply, plus what the S2S trades still in flight on it hold on the book and
    their records do not show yet: a buy's shares (reserved on the book, not on a position yet); a sale's
    shares (off its position, still on the book) and proceeds (already off the book's cash). Finishing
    those trades later (recorded or given back, casino.services.trade_executor.operator_wallet) then moves
    the book as it would have moved the book they were reserved on."""
    records = market_book_from_records(market_id=market_id)
    yes, no, cash = records.yes_shares, records.no_shares, records.cash_in
    for p in trades_in_flight(market_id=market_id):
        shares = Decimal(p["shares"])
        yes, no = (yes + shares, no) if p["outcome"] == Outcome.YES else (yes, no + shares)
        if p["side"] == Side.SELL:
            cash -= Decimal(p["cost"])
    return Book(yes, no, cash)


def _payouts_cancel_unpaid(settlement: Settlement) -> int:
    """Payouts not paid and not in flight are cancelled: pending ones, and failed ones whose credit
    was refused (it moved nothing). A failed payout whose credit needs manual handling may have
    been applied: it waits for its answer like one in flight."""
    manual = WalletOperation.objects.filter(pk=OuterRef("transaction_id"), status=OperationStatus.MANUAL)
    return (
        Payout.objects.filter(settlement=settlement)
        .filter(Q(status=PayoutStatus.PENDING) | Q(status=PayoutStatus.FAILED) & ~Exists(manual))
        .update(status=PayoutStatus.CANCELLED, updated_at=timezone.now())
    )


_ITEMS_SQL = """
INSERT INTO settlement_reversal_items (id, reversal_id, payout_id, player_id, transaction_id, amount_due, amount_taken, amount_uncollected,
                                       status, updated_at)
SELECT gen_random_uuid(), %(reversal)s, p.id, p.player_id, gen_random_uuid(), p.amount, 0, 0,
       CASE WHEN p.status = %(paid)s THEN %(pending)s ELSE %(waiting)s END, %(now)s
FROM settlement_payouts p
WHERE p.settlement_id = %(settlement)s AND p.status IN (%(paid)s, %(sending)s, %(failed)s)
"""


def _items_create(reversal: Reversal) -> int:
    """One item per payout paid (to take back) or still in flight (waiting for its answer)."""
    if connection.vendor == "postgresql":
        params = {
            "reversal": reversal.pk,
            "settlement": reversal.settlement_id,
            "paid": PayoutStatus.PAID,
            "sending": PayoutStatus.SENDING,
            "failed": PayoutStatus.FAILED,
            "pending": ReversalItemStatus.PENDING,
            "waiting": ReversalItemStatus.WAITING,
            "now": timezone.now(),
        }
        with connection.cursor() as cursor:
            cursor.execute(_ITEMS_SQL, params)
            return cursor.rowcount
    payouts = Payout.objects.filter(
        settlement_id=reversal.settlement_id, status__in=[PayoutStatus.PAID, PayoutStatus.SENDING, PayoutStatus.FAILED]
    ).values_list("pk", "player_id", "amount", "status")
    items = [
        ReversalItem(
            reversal=reversal,
            payout_id=pk,
            player_id=player_id,
            amount_due=amount,
            status=ReversalItemStatus.PENDING if status == PayoutStatus.PAID else ReversalItemStatus.WAITING,
        )
        for pk, player_id, amount, status in payouts.iterator(chunk_size=CHUNK)
    ]
    ReversalItem.objects.bulk_create(items, batch_size=CHUNK)
    return len(items)


def _positions_reopen(settlement: Settlement) -> int:
    """The settled positions open again, with the shares and cost basis they kept: every position of the
    market the settlement closed (winners and losers alike; only the market's live settlement closes
    positions as resolved or voided, a sale to zero closes them as closed)."""
    closed = PositionStatus.VOIDED if settlement.action == SettlementAction.VOID else PositionStatus.RESOLVED
    settled = Position.objects.filter(market_id=settlement.market_id, status=closed)
    return settled.update(status=PositionStatus.OPEN, version=F("version") + 1, updated_at=timezone.now())


def _start(reversal_id) -> None:
    from settlement.tasks import reverse_settlement

    reverse_settlement.delay(str(reversal_id))


# ----- taking the money back, a chunk at a time --------------------------------------------------


@dataclass(slots=True)  # built per row of a chunk: slots, not frozen (frozen pays a setattr call per field)
class ClaimedItem:
    id: uuid.UUID
    transaction_id: uuid.UUID
    payout_id: uuid.UUID
    payout_transaction_id: uuid.UUID
    player_id: uuid.UUID
    operator_id: uuid.UUID
    wallet_mode: str
    user_id: str
    currency: str
    amount_due: Decimal

    @property
    def at_operator(self) -> bool:
        return self.wallet_mode == WalletMode.S2S


_FIELDS = (
    "pk",
    "transaction_id",
    "payout_id",
    "payout__transaction_id",
    "player_id",
    "payout__operator_id",
    "payout__operator__wallet_mode",
    "player__external_id",
    "player__currency",
    "amount_due",
)


def reversal_advance(*, reversal_id, chunk: int = CHUNK) -> bool:
    """Take back up to ``chunk`` payouts and retry up to ``chunk`` S2S debits due again; finalize when
    none is left. True when complete. Safe to run concurrently and again after a crash."""
    reversal = Reversal.objects.select_related("settlement").get(pk=reversal_id)
    if reversal.status == ReversalStatus.COMPLETED:
        return True
    _waiting_settle(reversal)
    for batch in _chunk_take(reversal, chunk):
        _operator_send(reversal, batch)
    return reversal_finalize(reversal_id=reversal_id)


def _waiting_settle(reversal: Reversal) -> None:
    """Items whose payout credit was in flight when the reversal was decided: the credit is driven to
    a definite answer under its own id (never a second credit), then the item is to take back
    (paid) or has nothing to take back (refused)."""
    waiting = list(
        ReversalItem.objects.filter(reversal=reversal, status=ReversalItemStatus.WAITING).values_list(
            "pk", "payout_id", "payout__transaction_id"
        )
    )
    for item_id, payout_id, operation_id in waiting:
        operation = WalletOperation.objects.filter(pk=operation_id).first()
        if operation is not None and operation.status not in (OperationStatus.OK, OperationStatus.REFUSED, OperationStatus.MANUAL):
            operation = operation_settle(operation=operation)  # no transaction open: a wallet call
        status = operation.status if operation is not None else OperationStatus.REFUSED
        if status == OperationStatus.MANUAL:
            continue  # staff settle it (wallet operations admin); the reversal waits
        with transaction.atomic():
            item = ReversalItem.objects.select_for_update().get(pk=item_id)
            if item.status != ReversalItemStatus.WAITING:
                continue
            if status == OperationStatus.OK:
                payouts_mark(ids=[payout_id], status=PayoutStatus.PAID)
                item.status = ReversalItemStatus.PENDING
            elif status in (OperationStatus.REFUSED, OperationStatus.RESOLVED, OperationStatus.ROLLED_BACK):
                payouts_mark(ids=[payout_id], status=PayoutStatus.CANCELLED)
                item.status = ReversalItemStatus.CANCELLED
            else:
                continue
            item.save(update_fields=["status", "updated_at"])


def reversal_items_claim(*, reversal_id, status: str, chunk: int) -> list[ClaimedItem]:
    """Lock up to ``chunk`` items in ``status`` (pending, or sending with their debit due) for this
    transaction; none of an operator whose breaker is open (they wait, like payouts)."""
    rows = ReversalItem.objects.select_for_update(skip_locked=True, of=("self",)).filter(reversal_id=reversal_id, status=status)
    if status == ReversalItemStatus.SENDING:
        rows = rows.filter(Exists(operations_due_or_done().filter(pk=OuterRef("transaction_id"))))
    claimed = [ClaimedItem(*row) for row in rows.order_by("pk").values_list(*_FIELDS)[:chunk]]
    blocked = {i.operator_id for i in claimed if i.at_operator and breaker_is_open(operator_id=i.operator_id)}
    return [i for i in claimed if i.operator_id not in blocked]


@dataclass
class _OperatorBatch:
    target: WalletTarget
    intents: list[OperationIntent] = field(default_factory=list)
    item_of: dict = field(default_factory=dict)  # operation id -> ClaimedItem


def _chunk_take(reversal: Reversal, chunk: int) -> list[_OperatorBatch]:
    with transaction.atomic():
        pending = reversal_items_claim(reversal_id=reversal.pk, status=ReversalItemStatus.PENDING, chunk=chunk)
        retrying = reversal_items_claim(reversal_id=reversal.pk, status=ReversalItemStatus.SENDING, chunk=chunk)
        _house_take(reversal, [i for i in pending if not i.at_operator])
        return _operator_hold(reversal, [i for i in pending if i.at_operator], retrying)


def _ledger_type(reversal: Reversal) -> str:
    return LedgerType.REFUND_REVERSAL if reversal.settlement.action == SettlementAction.VOID else LedgerType.PAYOUT_REVERSAL


def _description(reversal: Reversal) -> str:
    what = "Refund" if reversal.settlement.action == SettlementAction.VOID else "Payout"
    return f"{what} reversed: market {reversal.settlement.market_id} ({reversal.reason})"[:500]


def _house_take(reversal: Reversal, items: list[ClaimedItem]) -> None:
    """Inside the claim's transaction: what each balance holds, up to what is due (never below zero)."""
    if not items:
        return
    kind, description, round_id = _ledger_type(reversal), _description(reversal), str(reversal.settlement_id)
    taken = wallet_takes_bulk(
        changes=[
            BulkChange(
                player_id=i.player_id,
                operator_id=i.operator_id,
                currency=i.currency,
                amount=-i.amount_due,
                type=kind,
                description=description,
                entry_id=i.transaction_id,
                round_id=round_id,
                reference_id=i.payout_transaction_id,
            )
            for i in items
        ]
    )
    _items_done(reversal, [(i, take) for i, take in zip(items, taken, strict=True)])


def _items_done(reversal: Reversal, results: list[tuple[ClaimedItem, Decimal]]) -> None:
    """Record what each item took; the rest is the player's debt (once per item); payouts reversed."""
    description = f"Reversal of market {reversal.settlement.market_id}: not taken back"
    rows = []
    for item, take in results:
        rest = item.amount_due - take
        if rest > 0:
            debt_incur(player_id=item.player_id, currency=item.currency, amount=rest, reference_id=item.id, description=description)
        rows.append((item.id, take, rest))
    _items_write(rows)
    payouts_mark(ids=[item.payout_id for item, _ in results], status=PayoutStatus.REVERSED)


_ITEMS_DONE_SQL = """
UPDATE settlement_reversal_items AS i SET status = %(done)s, amount_taken = v.taken, amount_uncollected = v.rest, updated_at = %(at)s
FROM unnest(%(id)s::uuid[], %(taken)s::numeric[], %(rest)s::numeric[]) AS v (id, taken, rest)
WHERE i.id = v.id
"""


def _items_write(rows: list[tuple]) -> None:
    if not rows:
        return
    if connection.vendor == "postgresql":
        params = {"done": ReversalItemStatus.DONE, "at": timezone.now(), "id": [r[0] for r in rows]}
        params.update(taken=[r[1] for r in rows], rest=[r[2] for r in rows])
        with connection.cursor() as cursor:
            cursor.execute(_ITEMS_DONE_SQL, params)
        return
    for item_id, take, rest in rows:
        ReversalItem.objects.filter(pk=item_id).update(status=ReversalItemStatus.DONE, amount_taken=take, amount_uncollected=rest)


def _operator_hold(reversal: Reversal, pending: list[ClaimedItem], retrying: list[ClaimedItem]) -> list[_OperatorBatch]:
    """Inside the claim's transaction: the debits of pending items recorded (held by this worker), the
    debits of items due again held; those already answered recorded."""
    by_operator: dict = defaultdict(lambda: ([], []))
    for index, items in enumerate((pending, retrying)):
        for item in items:
            by_operator[item.operator_id][index].append(item)
    kind, description, round_id = _ledger_type(reversal), _description(reversal), str(reversal.settlement_id)
    batches = []
    for operator_id, (fresh, again) in by_operator.items():
        target = WalletTarget.for_operator(operator_id)
        batch = _OperatorBatch(target)
        held_until = operations_hold_until(target=target, count=len(fresh) + len(again))
        if fresh:
            intents = [
                OperationIntent(
                    id=i.transaction_id,
                    operator_id=i.operator_id,
                    player_id=i.player_id,
                    user_id=i.user_id,
                    kind=OperationKind.DEBIT,
                    type=kind,
                    amount=i.amount_due,
                    currency=i.currency,
                    round_id=round_id,
                    description=description,
                    payload={"handler": "reversal", "item_id": str(i.id)},
                    reference_id=i.payout_transaction_id,
                )
                for i in fresh
            ]
            operations_create_bulk(intents=intents, held_until=held_until)
            ReversalItem.objects.filter(pk__in=[i.id for i in fresh]).update(status=ReversalItemStatus.SENDING, updated_at=timezone.now())
            batch.intents += intents
            batch.item_of.update({i.transaction_id: i for i in fresh})
        if again:
            item_of = {i.transaction_id: i for i in again}
            held, answered = operations_hold(ids=list(item_of), held_until=held_until)
            _operator_record(reversal, item_of, answered)
            batch.intents += held
            batch.item_of.update({i.id: item_of[i.id] for i in held})
        if batch.intents:
            batches.append(batch)
    return batches


def _operator_send(reversal: Reversal, batch: _OperatorBatch) -> None:
    """No transaction open: the debits, then their answers."""
    replies = operations_call(target=batch.target, intents=batch.intents)
    with transaction.atomic():
        outcomes = operations_record_bulk(intents=batch.intents, replies=replies)
        _operator_record(reversal, batch.item_of, outcomes)


def _operator_record(reversal: Reversal, item_of: dict, outcomes: dict[uuid.UUID, OperationOutcome]) -> None:
    """OK took it all; a refusal (INSUFFICIENT_FUNDS, a disabled player) took nothing: all of it is
    debt; a manual case closed by staff counts as not taken; anything else is retried, same id."""
    finished = []
    locked = set(
        ReversalItem.objects.select_for_update()
        .filter(pk__in=[item_of[op].id for op in outcomes], status=ReversalItemStatus.SENDING)
        .values_list("pk", flat=True)
    )
    for operation_id, outcome in outcomes.items():
        item = item_of[operation_id]
        if item.id not in locked:
            continue
        if outcome.status == OperationStatus.OK:
            finished.append((item, item.amount_due))
        elif outcome.status in (OperationStatus.REFUSED, OperationStatus.RESOLVED):
            finished.append((item, ZERO))
    _items_done(reversal, finished)


def reversal_finalize(*, reversal_id) -> bool:
    if ReversalItem.objects.filter(reversal_id=reversal_id, status__in=OPEN_ITEMS).exists():
        return False
    with transaction.atomic():
        reversal = Reversal.objects.select_for_update().get(pk=reversal_id)
        if reversal.status == ReversalStatus.COMPLETED:
            return True
        totals = ReversalItem.objects.filter(reversal_id=reversal_id).aggregate(
            taken=Sum("amount_taken"), rest=Sum("amount_uncollected"), cancelled=Count("pk", filter=Q(status=ReversalItemStatus.CANCELLED))
        )
        reversal.total_reversed = totals["taken"] or ZERO
        reversal.total_uncollected = totals["rest"] or ZERO
        reversal.total_cancelled += totals["cancelled"]
        reversal.status, reversal.completed_at = ReversalStatus.COMPLETED, timezone.now()
        reversal.save()
        Settlement.objects.filter(pk=reversal.settlement_id).update(status=SettlementStatus.REVERSED)
        settlement_reversed_record(reversal=reversal, settlement=Settlement.objects.get(pk=reversal.settlement_id))
        SETTLEMENTS.labels(action="reverse", stage="completed").inc()
        transaction.on_commit(_after_reversal)
    log.info("reversal %s completed", reversal_id)
    return True


def _after_reversal() -> None:
    """Wall 5's open-exposure totals count the reopened positions again (exact rebuild)."""
    try:
        from risk.tasks import operator_open_exposure_rebuild

        operator_open_exposure_rebuild.delay()
    except Exception:  # noqa: BLE001 - the beat task rebuilds it anyway
        log.warning("could not schedule the open-exposure rebuild", exc_info=True)
