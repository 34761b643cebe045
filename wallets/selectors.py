"""Reads of balances and the ledger, for the API and other apps."""

from decimal import Decimal

from django.db.models import F, OuterRef, Q, Subquery, Sum
from django.db.models.fields.json import KeyTextTransform
from django.utils import timezone

from core.api.pagination import Page, PageParams, keyset_page
from core.db import filter_given, reads
from core.db_rows import uuids_as_text
from wallets.models import FINAL_STATUSES, LedgerEntry, LedgerType, OperationStatus, WalletOperation


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


# The operator's reconciliation list (SPEC §13), newest first in keyset pages: the ledger of an internal
# operator's players, or every movement attempted at an S2S operator's wallet with its state.
NEWEST_FIRST = ("-created_at", "-id")


def _rows(queryset, *extra: str):
    """Named rows (the model's field names, ``player_external_id`` and ``extra`` annotations): no model instances;
    their uuids are text on PostgreSQL (core.db_rows)."""
    fields = [f.attname for f in queryset.model._meta.concrete_fields]
    return queryset.annotate(player_external_id=F("player__external_id")).values_list(*fields, "player_external_id", *extra, named=True)


def _filtered(rows, *, player_pk, type, round_id, since, until):
    return filter_given(rows, player_id=player_pk, type=type, round_id=round_id, created_at__gte=since, created_at__lt=until)


def operator_ledger_page(
    *, operator, params: PageParams, player_pk=None, type: str | None = None, round_id: str | None = None, since=None, until=None
) -> Page:
    """The ledger rows of the operator's players (house-held wallets), newest first."""
    rows = _filtered(
        LedgerEntry.objects.using(reads()).filter(operator_id=operator.pk),
        player_pk=player_pk,
        type=type,
        round_id=round_id,
        since=since,
        until=until,
    )
    with uuids_as_text(using=rows.db):
        return keyset_page(_rows(rows), ordering=NEWEST_FIRST, params=params, scope="operator.transactions.ledger")


def operator_operations_page(
    *, operator, params: PageParams, player_pk=None, type: str | None = None, round_id: str | None = None, since=None, until=None
) -> Page:
    """Every movement attempted at the operator's wallet (S2S), newest first, each with ``ledger_balance_after``:
    its ledger row's balance once the operator confirmed it (None before, or when it never moved money)."""
    ledger = LedgerEntry.objects.filter(pk=OuterRef("pk")).values("balance_after")[:1]
    rows = _filtered(
        WalletOperation.objects.using(reads()).filter(operator_id=operator.pk),
        player_pk=player_pk,
        type=type,
        round_id=round_id,
        since=since,
        until=until,
    ).annotate(ledger_balance_after=Subquery(ledger))
    with uuids_as_text(using=rows.db):
        return keyset_page(_rows(rows, "ledger_balance_after"), ordering=NEWEST_FIRST, params=params, scope="operator.transactions.s2s")


def sales_in_flight(*, market_id: str) -> bool:
    """An S2S sale on the market whose shares are off their position while its credit is decided (its
    local side not yet recorded or given back). Index: wallet_op_trade_in_flight."""
    return _trades_in_flight(market_id).filter(type=LedgerType.TRADE_CREDIT).exists()


def trades_in_flight(*, market_id: str) -> list[dict]:
    """The payloads of the S2S trades on the market whose local side is not settled yet (recorded or
    given back): what they reserved is on the market's exposure book and not in its records yet."""
    return list(_trades_in_flight(market_id).values_list("payload", flat=True))


def _trades_in_flight(market_id: str):
    return (
        WalletOperation.objects.filter(settled_locally=False, type__in=[LedgerType.TRADE_DEBIT, LedgerType.TRADE_CREDIT])
        .alias(trade_market=KeyTextTransform("market_id", "payload"))
        .filter(trade_market=market_id)
    )
