"""Reads of balances and the ledger, for the API and other apps."""

from decimal import Decimal

from django.db.models import Sum

from wallets.models import LedgerEntry


def ledger_recent(*, player, limit: int = 50) -> list[LedgerEntry]:
    return list(LedgerEntry.objects.filter(player_id=player.pk).order_by("-created_at", "-id")[:limit])


def ledger_sum(*, player) -> Decimal:
    return LedgerEntry.objects.filter(player_id=player.pk).aggregate(total=Sum("amount"))["total"] or Decimal("0")
