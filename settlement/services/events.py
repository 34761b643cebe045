"""What a settlement tells the operators (SPEC §14), written in the transaction of the change:

    payout.paid / payout.failed   per payout with money due, in the payout chunk's transaction, one
                                  statement for the whole chunk (core.events.events_records_bulk)
    settlement.completed          per operator whose players the settlement paid, with its share
    settlement.reversed           per operator whose players' payouts were taken back, with its share

A payout with nothing due (none is made for a losing position today) is no payout to the player: no event.
"""

from collections import defaultdict
from decimal import Decimal

from django.db.models import Count, Q, Sum

from core.api.rendering import iso
from core.events import events_record_bulk
from core.money import money
from settlement.models import Payout, PayoutStatus, Reversal, ReversalItem, Settlement

ZERO = Decimal("0")


def _payout_data(settlement: Settlement, *, payout_id, player_id, user_id, amount, currency, transaction_id) -> dict:
    return {
        "payoutId": str(payout_id),
        "settlementId": str(settlement.pk),
        "marketId": settlement.market_id,
        "action": settlement.action,
        "outcome": settlement.outcome,
        "playerId": user_id,
        "userId": str(player_id),
        "amount": money(amount),
        "currency": currency,
        "transactionId": str(transaction_id),
    }


def payouts_paid_record(*, settlement: Settlement, payouts) -> int:
    """``payout.paid`` for claimed payouts (settlement.services.payout_chunks.ClaimedPayout) just paid."""
    return events_record_bulk(
        (
            p.operator_id,
            "payout.paid",
            _payout_data(
                settlement,
                payout_id=p.id,
                player_id=p.player_id,
                user_id=p.user_id,
                amount=p.amount,
                currency=p.currency,
                transaction_id=p.transaction_id,
            ),
        )
        for p in payouts
        if p.amount > 0
    )


def payouts_record_by_id(*, settlement: Settlement, payout_ids: list, status: str, error: str = "") -> int:
    """``payout.paid`` or ``payout.failed`` for payouts known by id (S2S answers recorded in bulk)."""
    if not payout_ids:
        return 0
    kind = "payout.paid" if status == PayoutStatus.PAID else "payout.failed"
    rows = Payout.objects.filter(pk__in=payout_ids, amount__gt=0).values_list(
        "pk", "operator_id", "player_id", "player__external_id", "amount", "player__currency", "transaction_id"
    )
    events = []
    for payout_id, operator_id, player_id, user_id, amount, currency, transaction_id in rows:
        data = _payout_data(
            settlement,
            payout_id=payout_id,
            player_id=player_id,
            user_id=user_id,
            amount=amount,
            currency=currency,
            transaction_id=transaction_id,
        )
        if kind == "payout.failed":
            data["error"] = error
        events.append((operator_id, kind, data))
    return events_record_bulk(events)


def settlement_completed_record(*, settlement: Settlement) -> list:
    """``settlement.completed`` per operator with payouts in it (its players' share); returns those operators."""
    shares = (
        Payout.objects.filter(settlement_id=settlement.pk)
        .order_by()
        .values("operator_id")
        .annotate(payouts=Count("pk", filter=Q(amount__gt=0)), paid=Sum("amount", filter=Q(status=PayoutStatus.PAID)))
    )
    events, operators = [], []
    for share in shares:
        operators.append(share["operator_id"])
        events.append(
            (
                share["operator_id"],
                "settlement.completed",
                {
                    "settlementId": str(settlement.pk),
                    "marketId": settlement.market_id,
                    "action": settlement.action,
                    "outcome": settlement.outcome,
                    "completedAt": iso(settlement.completed_at),
                    "payouts": share["payouts"],
                    "totalPaid": money(share["paid"] or ZERO),
                },
            )
        )
    events_record_bulk(events)
    return operators


def settlement_reversed_record(*, reversal: Reversal, settlement: Settlement) -> None:
    """``settlement.reversed`` per operator whose players had payouts to take back."""
    shares = defaultdict(lambda: {"items": 0, "taken": ZERO, "uncollected": ZERO})
    rows = (
        ReversalItem.objects.filter(reversal_id=reversal.pk)
        .order_by()
        .values("player__operator_id")
        .annotate(items=Count("pk"), taken=Sum("amount_taken"), uncollected=Sum("amount_uncollected"))
    )
    for row in rows:
        shares[row["player__operator_id"]] = {
            "items": row["items"],
            "taken": row["taken"] or ZERO,
            "uncollected": row["uncollected"] or ZERO,
        }
    events_record_bulk(
        (
            operator_id,
            "settlement.reversed",
            {
                "settlementId": str(settlement.pk),
                "reversalId": str(reversal.pk),
                "marketId": settlement.market_id,
                "action": settlement.action,
                "outcome": settlement.outcome,
                "reason": reversal.reason,
                "completedAt": iso(reversal.completed_at),
                "payoutsReversed": share["items"],
                "amountTaken": money(share["taken"]),
                "amountUncollected": money(share["uncollected"]),
            },
        )
        for operator_id, share in shares.items()
    )
