"""The operator's read lists (SPEC §13): trades, positions, transactions, exposure, settlements.

Every list is the calling operator's only (``X-Operator-Key``): each query starts from its id. A filter
naming another operator's player (or an unknown one) answers an empty list, the same answer as a player
of its own with no rows, so nothing tells an operator whether another's id exists. Lists are newest
first in keyset pages (``limit`` default 100, max 1000, ``cursor``; ``nextCursor`` null on the last).
``from``/``to`` take an ISO 8601 timestamp (UTC when it has no offset) or a date (a UTC day):
``from`` <= createdAt < ``to``, and a date ``to`` includes its whole day.
"""

import re
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal

from django.utils.dateparse import parse_date, parse_datetime
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.response import Response

from casino import presenters, selectors
from casino.models import PositionStatus, WalletMode
from core.api.auth import IsOperator, OperatorKeyAuthentication
from core.api.base import HouseAPIView
from core.api.inputs import market_id_field
from core.api.openapi import ErrorSerializer
from core.api.pagination import Page, page_params
from core.api.rendering import iso
from core.errors import HouseError, invalid
from core.money import money, plain
from settlement.selectors import operator_settlements_page
from wallets.models import LedgerType
from wallets.selectors import operator_ledger_page, operator_operations_page

DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}")
INTERNAL_STATE = "completed"  # a ledger row of a house-held wallet: the money moved when it was written

PAGE_PARAMETERS = [
    OpenApiParameter("limit", int, description="Rows per page: default 100, max 1000"),
    OpenApiParameter("cursor", str, description="The previous page's nextCursor"),
]
PLAYER_PARAMETER = OpenApiParameter("playerId", str, description="The operator's own player id; an unknown one gives an empty list")
MARKET_PARAMETER = OpenApiParameter("marketId", str)
RANGE_PARAMETERS = [
    OpenApiParameter("from", str, description="ISO 8601 timestamp or date (UTC), inclusive"),
    OpenApiParameter("to", str, description="ISO 8601 timestamp (exclusive) or date (UTC, the whole day included)"),
]


def _money(**kw):
    return serializers.DecimalField(max_digits=16, decimal_places=2, coerce_to_string=False, **kw)


def _shares(**kw):
    return serializers.DecimalField(max_digits=20, decimal_places=6, coerce_to_string=False, **kw)


class OperatorListView(HouseAPIView):
    authentication_classes = [OperatorKeyAuthentication]
    permission_classes = [IsOperator]
    rate = "600/m"


# ---- parsing -------------------------------------------------------------------------------------


def _text(params, name: str, *, max_length: int) -> str | None:
    value = params.get(name)
    if value is None:
        return None
    if not (1 <= len(value) <= max_length) or "\x00" in value:  # PostgreSQL text cannot hold NUL
        raise invalid(name)
    return value


def _player_pk(operator, params):
    """(filtered, pk): filtered is False without playerId; pk is None for a player that is not the operator's."""
    external_id = _text(params, "playerId", max_length=128)
    if external_id is None:
        return False, None
    return True, selectors.operator_player_pk(operator=operator, external_id=external_id)


def _market_id(params) -> str | None:
    value = params.get("marketId")
    return None if value is None else market_id_field(value)


def _instant(params, name: str, *, end: bool) -> datetime | None:
    raw = params.get(name)
    if raw is None:
        return None
    try:
        if DATE_RE.fullmatch(raw):  # a day (Python would also read it as that day's midnight)
            day = parse_date(raw)
            moment = datetime.combine(day + timedelta(days=1) if end else day, time.min)
        else:
            moment = parse_datetime(raw)
    except (ValueError, OverflowError):  # well formed but impossible (month 13, hour 25, year 9999 + 1 day)
        moment = None
    if moment is None:
        raise invalid(name)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def _range(params) -> tuple[datetime | None, datetime | None]:
    since, until = _instant(params, "from", end=False), _instant(params, "to", end=True)
    if since is not None and until is not None and since >= until:
        raise HouseError("from must be before to", code="invalid_range")
    return since, until


def _choice(params, name: str, choices) -> str | None:
    value = params.get(name)
    if value is not None and value not in choices:
        raise invalid(name)
    return value


def _empty(key: str) -> Response:
    return Response({key: [], "nextCursor": None})


def _with_player_ids(page: Page, render) -> list[dict]:
    """Rows rendered, each with ``playerId`` (the operator's own id) and ``userId`` (the house's)."""
    rendered = []
    for row in page.items:
        body = render(row)
        body["playerId"], body["userId"] = row.player_external_id, str(row.player_id)
        rendered.append(body)
    return rendered


# ---- trades --------------------------------------------------------------------------------------


class OperatorTradesView(OperatorListView):
    rate_group = "operator_trades"

    @extend_schema(
        parameters=[PLAYER_PARAMETER, MARKET_PARAMETER, *RANGE_PARAMETERS, *PAGE_PARAMETERS],
        responses={
            200: inline_serializer(
                "OperatorTradePage",
                {
                    "trades": inline_serializer(
                        "OperatorTrade",
                        {
                            "id": serializers.UUIDField(),
                            "user_id": serializers.UUIDField(),
                            "market_id": serializers.CharField(),
                            "market_title": serializers.CharField(),
                            "side": serializers.ChoiceField(["buy", "sell"]),
                            "outcome": serializers.ChoiceField(["yes", "no"]),
                            "shares": _shares(),
                            "price_mid": serializers.DecimalField(max_digits=8, decimal_places=4, coerce_to_string=False),
                            "price_executed": serializers.DecimalField(max_digits=8, decimal_places=4, coerce_to_string=False),
                            "spread_applied": serializers.DecimalField(max_digits=8, decimal_places=4, coerce_to_string=False),
                            "cost": _money(),
                            "balance_before": _money(),
                            "balance_after": _money(),
                            "realized_pnl": _money(),
                            "operator_id": serializers.UUIDField(),
                            "s2s_transaction_id": serializers.UUIDField(allow_null=True),
                            "created_at": serializers.DateTimeField(),
                            "playerId": serializers.CharField(help_text="The operator's own player id"),
                            "userId": serializers.UUIDField(help_text="The house's player id"),
                        },
                        many=True,
                    ),
                    "nextCursor": serializers.CharField(allow_null=True),
                },
            ),
            400: ErrorSerializer,
        },
        summary="The operator's trades, newest first (the player API's trade records plus playerId)",
    )
    def get(self, request):
        operator, params = request.user.operator, request.query_params
        page_in = page_params(params)
        filtered, player_pk = _player_pk(operator, params)
        market_id = _market_id(params)
        since, until = _range(params)
        if filtered and player_pk is None:
            return _empty("trades")
        page = selectors.operator_trades_page(
            operator=operator, params=page_in, player_pk=player_pk, market_id=market_id, since=since, until=until
        )
        mode = operator.wallet_mode
        return Response({"trades": _with_player_ids(page, lambda t: presenters.trade(t, wallet_mode=mode)), "nextCursor": page.next_cursor})


# ---- positions -----------------------------------------------------------------------------------


class OperatorPositionsView(OperatorListView):
    rate_group = "operator_positions"

    @extend_schema(
        parameters=[
            PLAYER_PARAMETER,
            MARKET_PARAMETER,
            OpenApiParameter("status", str, enum=list(PositionStatus.values), description="Default: every status"),
            *PAGE_PARAMETERS,
        ],
        responses={
            200: inline_serializer(
                "OperatorPositionPage",
                {
                    "positions": inline_serializer(
                        "OperatorPosition",
                        {
                            "id": serializers.UUIDField(),
                            "user_id": serializers.UUIDField(),
                            "market_id": serializers.CharField(),
                            "market_title": serializers.CharField(),
                            "outcome": serializers.ChoiceField(["yes", "no"]),
                            "shares": _shares(),
                            "avg_price": serializers.DecimalField(max_digits=8, decimal_places=4, coerce_to_string=False),
                            "status": serializers.ChoiceField(PositionStatus.values),
                            "realized_pnl": _money(),
                            "operator_id": serializers.UUIDField(),
                            "created_at": serializers.DateTimeField(),
                            "updated_at": serializers.DateTimeField(),
                            "playerId": serializers.CharField(),
                            "userId": serializers.UUIDField(),
                        },
                        many=True,
                    ),
                    "nextCursor": serializers.CharField(allow_null=True),
                },
            ),
            400: ErrorSerializer,
        },
        summary="The operator's positions, newest opened first",
    )
    def get(self, request):
        operator, params = request.user.operator, request.query_params
        page_in = page_params(params)
        filtered, player_pk = _player_pk(operator, params)
        market_id = _market_id(params)
        status = _choice(params, "status", PositionStatus.values)
        if filtered and player_pk is None:
            return _empty("positions")
        page = selectors.operator_positions_page(operator=operator, params=page_in, player_pk=player_pk, market_id=market_id, status=status)
        return Response({"positions": _with_player_ids(page, presenters.position), "nextCursor": page.next_cursor})


# ---- transactions --------------------------------------------------------------------------------


def _ledger_row(e) -> dict:
    """A house-held wallet's ledger row: final when written."""
    return {
        "transactionId": str(e.id),
        "playerId": e.player_external_id,
        "userId": str(e.player_id),
        "type": e.type,
        "amount": money(e.amount),
        "currency": e.currency,
        "state": INTERNAL_STATE,
        "balanceAfter": money(e.balance_after),
        "roundId": e.round_id or None,
        "tradeId": str(e.trade_id) if e.trade_id else None,
        "referenceTransactionId": str(e.reference_id) if e.reference_id else None,
        "operatorTransactionId": None,
        "description": e.description,
        "createdAt": iso(e.created_at),
    }


def _operation_row(op) -> dict:
    """A movement attempted at the operator's wallet, signed as the ledger signs it (debits negative),
    with its state and, once confirmed, the balance after it as the house's ledger has it."""
    is_trade = op.type in (LedgerType.TRADE_DEBIT, LedgerType.TRADE_CREDIT)
    balance = op.ledger_balance_after
    return {
        "transactionId": str(op.id),
        "playerId": op.player_external_id,
        "userId": str(op.player_id),
        "type": op.type,
        "amount": money(-op.amount if op.kind == "debit" else op.amount),
        "currency": op.currency,
        "state": op.status,
        "balanceAfter": money(balance) if balance is not None else None,
        "roundId": op.round_id or None,
        # The trade it paid for exists once the movement is confirmed (a refused debit's trade never was).
        "tradeId": op.round_id if is_trade and op.round_id and op.status == "ok" else None,
        "referenceTransactionId": str(op.reference_id) if op.reference_id else None,
        "operatorTransactionId": op.operator_transaction_id or None,
        "description": op.description,
        "createdAt": iso(op.created_at),
    }


TRANSACTION_STATES = [INTERNAL_STATE, "pending", "ok", "refused", "unknown", "rolled_back", "manual", "resolved"]


class OperatorTransactionsView(OperatorListView):
    rate_group = "operator_transactions"

    @extend_schema(
        parameters=[
            PLAYER_PARAMETER,
            OpenApiParameter("type", str, enum=list(LedgerType.values)),
            OpenApiParameter("roundId", str, description="The trade or settlement the movement belongs to"),
            *RANGE_PARAMETERS,
            *PAGE_PARAMETERS,
        ],
        responses={
            200: inline_serializer(
                "OperatorTransactionPage",
                {
                    "transactions": inline_serializer(
                        "OperatorTransaction",
                        {
                            "transactionId": serializers.UUIDField(
                                help_text="The ledger id; for S2S the transaction_id sent to the wallet"
                            ),
                            "playerId": serializers.CharField(),
                            "userId": serializers.UUIDField(),
                            "type": serializers.ChoiceField(LedgerType.values),
                            "amount": _money(help_text="Signed: debits are negative"),
                            "currency": serializers.CharField(),
                            "state": serializers.ChoiceField(
                                TRANSACTION_STATES, help_text="completed (house-held wallets); S2S: the movement's state"
                            ),
                            "balanceAfter": _money(allow_null=True, help_text="Null until an S2S movement is confirmed"),
                            "roundId": serializers.CharField(allow_null=True),
                            "tradeId": serializers.UUIDField(allow_null=True),
                            "referenceTransactionId": serializers.UUIDField(allow_null=True),
                            "operatorTransactionId": serializers.CharField(allow_null=True, help_text="S2S: the wallet's own id"),
                            "description": serializers.CharField(),
                            "createdAt": serializers.DateTimeField(),
                        },
                        many=True,
                    ),
                    "nextCursor": serializers.CharField(allow_null=True),
                },
            ),
            400: ErrorSerializer,
        },
        summary="The wallet movements of the operator's players (S2S: every attempted movement and its state)",
    )
    def get(self, request):
        operator, params = request.user.operator, request.query_params
        page_in = page_params(params)
        filtered, player_pk = _player_pk(operator, params)
        kind = _choice(params, "type", LedgerType.values)
        round_id = _text(params, "roundId", max_length=64)
        since, until = _range(params)
        if filtered and player_pk is None:
            return _empty("transactions")
        s2s = operator.wallet_mode == WalletMode.S2S
        read = operator_operations_page if s2s else operator_ledger_page
        page = read(operator=operator, params=page_in, player_pk=player_pk, type=kind, round_id=round_id, since=since, until=until)
        render = _operation_row if s2s else _ledger_row
        return Response({"transactions": [render(row) for row in page.items], "nextCursor": page.next_cursor})


# ---- exposure ------------------------------------------------------------------------------------


_EXPOSURE_FIELDS = {"yesShares": _shares(), "noShares": _shares(), "cashIn": _money(), "worstCaseLoss": _money()}


class OperatorExposureView(OperatorListView):
    rate_group = "operator_exposure"

    @extend_schema(
        responses={
            200: inline_serializer(
                "OperatorExposure",
                {
                    "markets": inline_serializer(
                        "OperatorMarketExposure",
                        {"marketId": serializers.CharField(), "title": serializers.CharField(), **_EXPOSURE_FIELDS},
                        many=True,
                    ),
                    "totals": inline_serializer("OperatorExposureTotals", {"markets": serializers.IntegerField(), **_EXPOSURE_FIELDS}),
                },
            ),
            400: ErrorSerializer,
        },
        summary="Open exposure of the operator's players per market (worst case first), and totals",
    )
    def get(self, request):
        book = selectors.operator_exposure(operator=request.user.operator)
        markets = [
            {
                "marketId": r["market_id"],
                "title": r["title"],
                "yesShares": plain(r["yes"]),
                "noShares": plain(r["no"]),
                "cashIn": money(r["cash"]),
                "worstCaseLoss": money(r["worst"]),
            }
            for r in book
        ]
        zero = Decimal("0")
        totals = {
            "markets": len(book),
            "yesShares": plain(sum((r["yes"] for r in book), zero)),
            "noShares": plain(sum((r["no"] for r in book), zero)),
            "cashIn": money(sum((r["cash"] for r in book), zero)),
            "worstCaseLoss": money(sum((r["worst"] for r in book), zero)),
        }
        return Response({"markets": markets, "totals": totals})


# ---- settlements ---------------------------------------------------------------------------------


def _count_amount(name: str):
    return inline_serializer(name, {"count": serializers.IntegerField(), "amount": _money()})


class OperatorSettlementsView(OperatorListView):
    rate_group = "operator_settlements"

    @extend_schema(
        parameters=PAGE_PARAMETERS,
        responses={
            200: inline_serializer(
                "OperatorSettlementPage",
                {
                    "settlements": inline_serializer(
                        "OperatorSettlement",
                        {
                            "settlementId": serializers.UUIDField(),
                            "marketId": serializers.CharField(),
                            "title": serializers.CharField(),
                            "action": serializers.ChoiceField(["resolve", "void"]),
                            "outcome": serializers.CharField(allow_null=True),
                            "status": serializers.ChoiceField(["settling", "completed", "reversing", "reversed"]),
                            "requestedAt": serializers.DateTimeField(),
                            "completedAt": serializers.DateTimeField(allow_null=True),
                            "positions": serializers.IntegerField(help_text="The operator's players' positions it settled"),
                            "payouts": _count_amount("OperatorSettlementPaid"),
                            "refunds": _count_amount("OperatorSettlementRefunded"),
                            "due": _count_amount("OperatorSettlementDue"),
                            "reversals": inline_serializer(
                                "OperatorSettlementReversed",
                                {"count": serializers.IntegerField(), "amount": _money(), "uncollected": _money()},
                            ),
                        },
                        many=True,
                    ),
                    "nextCursor": serializers.CharField(allow_null=True),
                },
            ),
            400: ErrorSerializer,
        },
        summary="Settlements touching the operator's players, newest first, with the operator's share",
    )
    def get(self, request):
        page = operator_settlements_page(operator=request.user.operator, params=page_params(request.query_params))
        return Response({"settlements": [_settlement(s) for s in page.items], "nextCursor": page.next_cursor})


def _settlement(s) -> dict:
    share = s.share
    paid = {"count": share.paid_count, "amount": money(share.paid_amount)}
    nothing = {"count": 0, "amount": money(Decimal("0"))}
    void = s.action == "void"
    return {
        "settlementId": str(s.pk),
        "marketId": s.market_id,
        "title": s.market.title,
        "action": s.action,
        "outcome": s.outcome,
        "status": s.status,
        "requestedAt": iso(s.requested_at),
        "completedAt": iso(s.completed_at) if s.completed_at else None,
        "positions": share.positions,
        "payouts": nothing if void else paid,
        "refunds": paid if void else nothing,
        "due": {"count": share.due_count, "amount": money(share.due_amount)},
        "reversals": {
            "count": share.reversed_count,
            "amount": money(share.reversed_amount),
            "uncollected": money(share.uncollected_amount),
        },
    }
