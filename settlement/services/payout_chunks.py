"""Taking a chunk to work on, safely with any number of workers, and what each payout says.

Every chunk's transaction first takes its settlement row FOR SHARE and goes on only while the
settlement is settling: a reversal (or the completion) takes it FOR UPDATE, so it waits for the
chunks in flight and no chunk starts under it. Rows are then taken with ``SELECT … FOR UPDATE SKIP
LOCKED`` in id order: two workers take disjoint chunks, and a worker never waits for another's.
Three kinds are taken: the market's open positions (their payouts are created by the chunk that
pays them, ``payouts_from_positions``), payouts left pending, and S2S payouts waiting for a
definite answer whose wallet operation is due for another attempt (or already answered). Payouts of
an operator whose circuit breaker is open are left pending (they queue, SPEC §9) and the chunk goes
on with other operators' payouts.
"""

import logging
import uuid
from dataclasses import dataclass
from decimal import Decimal

from django.db import connection, transaction
from django.db.models import Exists, F, OuterRef
from django.utils import timezone

from casino.models import WalletMode
from core.arrays import pg_array
from risk.services.breakers import breaker_book
from settlement.models import Payout, PayoutStatus, Settlement, SettlementAction, SettlementStatus
from settlement.services.snapshot import payouts_create
from wallets.models import LedgerType
from wallets.selectors import operations_due_or_done
from wallets.services.breaker import breaker_is_open

log = logging.getLogger("house.settlement")


@dataclass(slots=True)  # built per row of a chunk: slots, not frozen (frozen pays a setattr call per field)
class ClaimedPayout:
    """A payout taken by this worker, with what paying it needs (read in the claim, not again)."""

    id: uuid.UUID
    transaction_id: uuid.UUID
    player_id: uuid.UUID
    operator_id: uuid.UUID
    wallet_mode: str
    user_id: str  # the operator's own player id
    currency: str
    amount: Decimal
    shares: Decimal
    outcome: str
    # Created by this transaction from its position, already in the state paying it leaves it in
    # (house wallet: paid; S2S: sending), so nothing marks it again.
    fresh: bool = False

    @property
    def at_operator(self) -> bool:
        return self.wallet_mode == WalletMode.S2S


_SHARE_SQL = "SELECT status FROM settlements WHERE id = %s FOR SHARE"


def settlement_share(*, settlement_id) -> bool:
    """Inside a chunk's transaction, before anything else: the settlement row held FOR SHARE until the
    end of it. False (the chunk must do nothing) when the settlement is no longer settling."""
    if connection.vendor != "postgresql":  # one writer at a time: a plain read
        status = Settlement.objects.filter(pk=settlement_id).values_list("status", flat=True).first()
    else:
        with connection.cursor() as cursor:
            cursor.execute(_SHARE_SQL, [settlement_id])
            row = cursor.fetchone()
        status = row[0] if row else None
    return status == SettlementStatus.SETTLING


# Settlement id -> the last position id this process claimed: the next claim starts after it instead of
# walking again the index entries of the positions closed since (a hint: any worker may claim any position).
_claimed_up_to: dict = {}


@dataclass(frozen=True)
class FromPositions:
    """What a chunk made of open positions: the payouts to pay now, and whether it took a full chunk
    (more positions may be open)."""

    payouts: list[ClaimedPayout]
    full: bool
    notices: int = 0  # loss notices recorded (SPEC §16): sent after the chunk commits


def payouts_from_positions(*, settlement: Settlement, chunk: int) -> FromPositions:
    """Inside the chunk's transaction: up to ``chunk`` open positions locked, their payouts created and
    the positions closed (after this process's last claim, then, at the end of the market's positions,
    from the start: positions another worker held, or whose chunk rolled back). The payouts to pay now
    are house wallet ones (created paid, the caller moves the money in this transaction) and S2S ones
    (created sending, the caller records their credits in it). Losing positions get a payout with
    nothing due; an S2S operator's payouts wait pending while its breaker is open."""
    after = _claimed_up_to.get(settlement.pk)
    created = payouts_create(settlement=settlement, chunk=chunk, after=after)
    made, claimed, last = list(created.payouts), created.claimed, created.last_position_id
    duplicates = created.duplicates
    notices = created.notices
    if claimed < chunk and after is not None:
        wrapped = payouts_create(settlement=settlement, chunk=chunk - claimed, up_to=after)
        made += wrapped.payouts
        claimed += wrapped.claimed
        last = wrapped.last_position_id or last
        duplicates += wrapped.duplicates
        notices += wrapped.notices
    if claimed:
        _claimed_up_to[settlement.pk] = last
    else:
        _claimed_up_to.pop(settlement.pk, None)
    if duplicates:  # a payout already there for an open position: left as it is, not paid again
        log.error("settlement %s: %d open positions already had a payout", settlement.pk, duplicates)
    s2s = {due.operator_id for _, _, due in made if due.wallet_mode == WalletMode.S2S}
    blocked = {operator_id for operator_id in s2s if breaker_is_open(operator_id=operator_id)}
    if blocked:  # they queue (SPEC §9): pending, not attempted, taken by a later chunk once the breaker closes
        queued = [payout_id for payout_id, _, due in made if due.operator_id in blocked]
        Payout.objects.filter(pk__in=queued).update(status=PayoutStatus.PENDING, attempts=0)
    payouts = [
        ClaimedPayout(
            id=payout_id,
            transaction_id=transaction_id,
            player_id=due.player_id,
            operator_id=due.operator_id,
            wallet_mode=due.wallet_mode,
            user_id=due.user_id,
            currency=due.currency,
            amount=due.amount,
            shares=due.shares,
            outcome=due.outcome,
            fresh=True,
        )
        for payout_id, transaction_id, due in made
        if due.operator_id not in blocked
    ]
    return FromPositions(payouts, full=claimed == chunk, notices=notices)


_FIELDS = (
    "pk",
    "transaction_id",
    "player_id",
    "operator_id",
    "operator__wallet_mode",
    "player__external_id",
    "player__currency",
    "amount",
    "shares",
    "outcome",
)


def payouts_claim(*, settlement_id, status: str, chunk: int) -> list[ClaimedPayout]:
    """Lock up to ``chunk`` payouts in ``status`` (pending, or sending with their operation due) for
    this transaction; none of an operator whose breaker is open."""
    claimed: list[ClaimedPayout] = []
    blocked: set = set()
    checked: set = set()
    while len(claimed) < chunk:
        rows = _claimable(settlement_id, status).exclude(operator_id__in=blocked).exclude(pk__in=[p.id for p in claimed])
        taken = [ClaimedPayout(*row) for row in rows.values_list(*_FIELDS)[: chunk - len(claimed)]]
        operators = {p.operator_id for p in taken if p.at_operator} - checked
        checked |= operators
        now_blocked = {operator_id for operator_id in operators if breaker_is_open(operator_id=operator_id)}
        claimed += [p for p in taken if p.operator_id not in now_blocked]
        if not now_blocked:
            break
        blocked |= now_blocked  # the rows just locked stay as they are; take other operators' instead
    return claimed


def _claimable(settlement_id, status: str):
    rows = Payout.objects.select_for_update(skip_locked=True, of=("self",)).filter(settlement_id=settlement_id, status=status)
    if status == PayoutStatus.SENDING:
        rows = rows.filter(Exists(operations_due_or_done().filter(pk=OuterRef("transaction_id"))))
    return rows.order_by("pk")


_MARK_SQL = """
UPDATE settlement_payouts SET status = %(status)s, updated_at = %(at)s{attempts}{error}
WHERE id = ANY(%(ids)s::uuid[]){only_from}{returning}
"""


def payouts_mark(
    *, ids: list, status: str, attempts: bool = False, error: str | None = None, only_from: str | None = None, returning: bool = False
):
    """Move payouts to ``status`` in one UPDATE (one array parameter on PostgreSQL, not one per id):
    counting an attempt, setting last_error, and only those still in ``only_from`` when given.
    Returns how many moved, or with ``returning`` the ids of those that moved."""
    if not ids:
        return [] if returning else 0
    now = timezone.now()
    if connection.vendor != "postgresql":
        rows = Payout.objects.filter(pk__in=ids)
        if only_from is not None:
            rows = rows.filter(status=only_from)
        if returning:
            moved = list(rows.values_list("pk", flat=True))
            rows = Payout.objects.filter(pk__in=moved)
        fields = {"status": status, "updated_at": now}
        if attempts:
            fields["attempts"] = F("attempts") + 1
        if error is not None:
            fields["last_error"] = error[:500]
        count = rows.update(**fields)
        return moved if returning else count
    sql = _MARK_SQL.format(
        attempts=", attempts = attempts + 1" if attempts else "",
        error=", last_error = %(error)s" if error is not None else "",
        only_from=" AND status = %(only_from)s" if only_from is not None else "",
        returning=" RETURNING id" if returning else "",
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, {"status": status, "at": now, "ids": pg_array(ids), "error": (error or "")[:500], "only_from": only_from})
        return [row[0] for row in cursor.fetchall()] if returning else cursor.rowcount


def payout_ledger_type(settlement: Settlement) -> str:
    return LedgerType.REFUND if settlement.action == SettlementAction.VOID else LedgerType.PAYOUT


def payout_description(settlement: Settlement, payout: ClaimedPayout) -> str:
    if settlement.action == SettlementAction.VOID:
        return f"Refund: market {settlement.market_id} voided"
    return f"Payout: {payout.shares.normalize()} winning shares {payout.outcome.upper()} in {settlement.market_id}"


# --- Issue 14: payouts book into the circuit breakers' loss windows (SPEC §16) ---------------------


def breaker_book_on_commit(*, losses: list[tuple]) -> None:
    """When the chunk commits, add what it paid, [(player id, dollars)], to the player and platform
    loss windows (risk/services/breakers.py); the breakers' rebuild corrects anything missed."""
    totals: dict = {}
    for player_id, amount in losses:
        totals[player_id] = totals.get(player_id, Decimal("0")) + amount
    if totals:
        transaction.on_commit(lambda: breaker_book(losses=totals))
