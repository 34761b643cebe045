"""Reads of balances and the ledger, for the API and other apps."""

from decimal import Decimal

from django.db.models import Q, Sum
from django.utils import timezone

from wallets.models import FINAL_STATUSES, LedgerEntry, OperationStatus, WalletOperation


def ledger_recent(*, player, limit: int = 50) -> list[LedgerEntry]:
    return list(LedgerEntry.objects.filter(player_id=player.pk).order_by("-created_at", "-id")[:limit])


def ledger_sum(*, player) -> Decimal:
    return LedgerEntry.objects.filter(player_id=player.pk).aggregate(total=Sum("amount"))["total"] or Decimal("0")


def operations_due_or_done():
    """S2S operations a worker may take now: answered definitely (only their outcome is left to record),
    or without a definite answer and due for another attempt (not backing off, not held by a worker)."""
    due = Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=timezone.now())
    return WalletOperation.objects.filter(
        Q(status__in=[*FINAL_STATUSES, OperationStatus.MANUAL]) | (Q(status__in=[OperationStatus.PENDING, OperationStatus.UNKNOWN]) & due)
    )
