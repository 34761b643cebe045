"""Reads of settlements for the API: an operator's share of each settlement (SPEC §13)."""

from dataclasses import dataclass
from decimal import Decimal

from django.db.models import Count, Exists, OuterRef, Q, Sum

from casino.models import Position, PositionStatus
from core.api.pagination import Page, PageParams, keyset_page
from core.db import reads
from settlement.models import Payout, PayoutStatus, ReversalItem, Settlement, SettlementStatus

ZERO = Decimal("0")
NEWEST_FIRST = ("-requested_at", "-id")
# A settlement that stands holds the positions it closed; a reversed one opened them again.
STANDING = (SettlementStatus.SETTLING, SettlementStatus.COMPLETED)
PAID = (PayoutStatus.PAID, PayoutStatus.REVERSED)  # a reversed payout had been paid
DUE = (PayoutStatus.PENDING, PayoutStatus.SENDING, PayoutStatus.FAILED)


@dataclass(frozen=True)
class OperatorShare:
    """One operator's part of a settlement: its players' positions, payouts (refunds for a void) paid and
    still due, and what a reversal took back from them (and could not: their debts)."""

    positions: int = 0
    paid_count: int = 0
    paid_amount: Decimal = ZERO
    due_count: int = 0
    due_amount: Decimal = ZERO
    reversed_count: int = 0
    reversed_amount: Decimal = ZERO
    uncollected_amount: Decimal = ZERO


def operator_settlements_page(*, operator, params: PageParams) -> Page:
    """Settlements touching the operator's players, newest first; each item carries ``share`` (an OperatorShare).

    A settlement touches them when one of its payouts is theirs or, while it stands, it closed one of their
    positions (losers get no payout row). The page is one query, the shares three grouped ones.
    """
    theirs = Payout.objects.filter(settlement_id=OuterRef("pk"), operator_id=operator.pk)
    closed = Position.objects.filter(
        market_id=OuterRef("market_id"), operator_id=operator.pk, status__in=[PositionStatus.RESOLVED, PositionStatus.VOIDED]
    )
    settlements = (
        Settlement.objects.using(reads()).select_related("market").filter(Q(Exists(theirs)) | Q(Exists(closed), status__in=STANDING))
    )
    page = keyset_page(settlements, ordering=NEWEST_FIRST, params=params, scope="operator.settlements")
    if not page.items:
        return page
    ids = [s.pk for s in page.items]
    payouts = {
        row["settlement_id"]: row
        for row in Payout.objects.using(reads())
        .filter(settlement_id__in=ids, operator_id=operator.pk)
        .values("settlement_id")
        .annotate(
            n=Count("pk"),
            paid_count=Count("pk", filter=Q(status__in=PAID)),
            paid_amount=Sum("amount", filter=Q(status__in=PAID)),
            due_count=Count("pk", filter=Q(status__in=DUE)),
            due_amount=Sum("amount", filter=Q(status__in=DUE)),
        )
        .order_by()
    }
    standing_markets = [s.market_id for s in page.items if s.status in STANDING]
    closed_positions = dict(
        Position.objects.using(reads())
        .filter(market_id__in=standing_markets, operator_id=operator.pk, status__in=[PositionStatus.RESOLVED, PositionStatus.VOIDED])
        .values("market_id")
        .annotate(n=Count("pk"))
        .order_by()
        .values_list("market_id", "n")
    )
    reversals = {
        row["payout__settlement_id"]: row
        for row in ReversalItem.objects.using(reads())
        .filter(payout__settlement_id__in=ids, payout__operator_id=operator.pk)
        .values("payout__settlement_id")
        .annotate(n=Count("pk"), taken=Sum("amount_taken"), uncollected=Sum("amount_uncollected"))
        .order_by()
    }
    for s in page.items:
        paid = payouts.get(s.pk, {})
        taken = reversals.get(s.pk, {})
        s.share = OperatorShare(
            positions=closed_positions.get(s.market_id, 0) if s.status in STANDING else paid.get("n", 0),
            paid_count=paid.get("paid_count", 0),
            paid_amount=paid.get("paid_amount") or ZERO,
            due_count=paid.get("due_count", 0),
            due_amount=paid.get("due_amount") or ZERO,
            reversed_count=taken.get("n", 0),
            reversed_amount=taken.get("taken") or ZERO,
            uncollected_amount=taken.get("uncollected") or ZERO,
        )
    return page
