"""Player-facing endpoints of the Casino API (session bearer token), plus quote and markets."""

import json
from contextlib import nullcontext
from decimal import Decimal

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.permissions import AllowAny
from rest_framework.response import Response

from casino import presenters, selectors
from casino.api import schemas as s
from casino.models import PositionStatus
from casino.services.markets import casino_settings, market_prefetch, market_price_book, reference_mid
from casino.services.pricing import quote_price
from casino.services.trade_executor import TradeRequest, trade_execute
from core import errors
from core.api import inputs
from core.api.auth import IsPlayer, PlayerPrincipal
from core.api.base import HouseAPIView
from core.api.openapi import BAD_REQUEST, IDEMPOTENCY_HEADER, ErrorSerializer
from core.errors import HouseError
from core.money import money, plain
from risk.services.assessment import pricing_view
from wallets.selectors import ledger_recent
from wallets.services.balances import wallet_balance
from wallets.services.transfers import wallet_deposit, wallet_withdraw


class TradeView(HouseAPIView):
    permission_classes = [IsPlayer]
    rate_group, rate = "trade", "20/m"

    def dispatch(self, request, *args, **kwargs):
        """The market the body names is read in the round trip of the session look-up (one round trip
        less per trade, casino.services.markets.market_prefetch). Only a peek: the body is parsed and
        checked as always below, and a body that names no valid market is simply not peeked at."""
        wanted = _market_wanted(request)
        with market_prefetch(market_id=wanted[0], outcome=wanted[1]) if wanted else nullcontext():
            return super().dispatch(request, *args, **kwargs)

    @extend_schema(
        request=s.TradeRequestSerializer,
        responses={200: s.TradeResponseSerializer, 400: ErrorSerializer},
        parameters=[IDEMPOTENCY_HEADER],
        summary="Buy or sell shares",
    )
    def post(self, request):
        data = inputs.require_object(request.data)
        inputs.require_fields(data, "marketId", "side", "outcome", "amount")
        side = inputs.choice_field(data["side"], "side", ("buy", "sell"))
        outcome = inputs.choice_field(data["outcome"], "outcome", ("yes", "no"))
        trade = TradeRequest(
            market_id=inputs.market_id_field(data["marketId"]),
            side=side,
            outcome=outcome,
            amount=inputs.amount_field(data["amount"], places=2 if side == "buy" else 6),
            mid_price=inputs.mid_price_field(data["midPrice"]) if data.get("midPrice") is not None else None,
            market_title=inputs.text_field(data.get("marketTitle"), "marketTitle"),
            category=inputs.text_field(data.get("category"), "category", max_length=64),
            liquidity=inputs.decimal_field(data["liquidity"], "liquidity") if data.get("liquidity") is not None else None,
        )
        player = request.user.player
        return self.run_idempotent(
            request,
            execute=lambda slot: trade_execute(player=player, request=trade, idempotency=slot, session_token=request.auth or ""),
            render_body=presenters.trade_result,
        )


_PEEK_MAX_BYTES = 2048


def _market_wanted(request) -> tuple[str, str] | None:
    """(marketId, outcome) of a small JSON trade body, or None (anything else: the view decides)."""
    try:
        if request.method != "POST" or not 0 < int(request.META.get("CONTENT_LENGTH") or 0) <= _PEEK_MAX_BYTES:
            return None
        data = json.loads(request.body)
        market_id, outcome = data["marketId"], data["outcome"]
        inputs.market_id_field(market_id)
    except (ValueError, TypeError, LookupError, RecursionError, OSError, HouseError):
        return None
    return (market_id, outcome) if outcome in ("yes", "no") else None


class QuoteView(HouseAPIView):
    permission_classes = [AllowAny]
    rate_group, rate = "quote", "60/m"

    @extend_schema(
        parameters=s.QUOTE_PARAMETERS,
        responses={200: s.QuoteResponseSerializer, 400: ErrorSerializer},
        summary="Price a prospective trade (no authentication required)",
    )
    def get(self, request):
        params = request.query_params
        inputs.require_fields(params, "side", "outcome", "amount")
        side = inputs.choice_field(params["side"], "side", ("buy", "sell"))
        outcome = inputs.choice_field(params["outcome"], "outcome", ("yes", "no"))
        amount = inputs.amount_field(params["amount"], places=2 if side == "buy" else 6)
        if not params.get("midPrice") and not params.get("marketId"):
            raise errors.missing_fields()
        mid = inputs.mid_price_field(params["midPrice"]) if params.get("midPrice") else None
        liquidity = inputs.decimal_field(params["liquidity"], "liquidity") if params.get("liquidity") else None
        if liquidity is not None and liquidity < 0:
            raise errors.invalid("liquidity")
        market = book = None
        if params.get("marketId"):
            market, ref, book = market_price_book(market_id=inputs.market_id_field(params["marketId"]), outcome=outcome)
            if mid is None:
                mid = reference_mid(market, ref)
        view = pricing_view(player=request.user.player if isinstance(request.user, PlayerPrincipal) else None)
        quote = quote_price(
            side=side,
            outcome=outcome,
            amount=amount,
            mid_price=mid,
            casino=casino_settings(),
            rules=view.rules,
            market=market,
            liquidity=liquidity,
            tier_extra=view.tier_extra,
            sharp_extra=view.sharp_extra,
            book=book,
            cap=view.market_cap(market.pk) if market is not None else None,
        )
        return Response(presenters.quote(quote))


class BalanceView(HouseAPIView):
    permission_classes = [IsPlayer]
    rate_group, rate = "balance", "60/m"

    @extend_schema(
        parameters=[OpenApiParameter("ledger", str, description='"true" to include the 50 most recent ledger entries')],
        responses={200: s.BalanceResponseSerializer, 400: BAD_REQUEST},
        summary="Current balance (and ledger)",
    )
    def get(self, request):
        player = request.user.player
        body = {"balance": money(_player_balance(player)), "ledger": None}
        if request.query_params.get("ledger", "").lower() == "true":
            body["ledger"] = [presenters.ledger_entry(e) for e in ledger_recent(player=player, limit=50)]
        return Response(body)


def _player_balance(player) -> Decimal:
    if player.operator.wallet_mode != "internal":
        from wallets.adapters import wallet_adapter_for

        return wallet_adapter_for(player.operator).balance(player=player)
    return wallet_balance(player=player)


class _TransferView(HouseAPIView):
    """Deposit and withdraw: one amount, idempotent, internal wallets only."""

    permission_classes = [IsPlayer]
    service = None

    def post(self, request):
        data = inputs.require_object(request.data)
        inputs.require_fields(data, "amount")
        amount = inputs.amount_field(data["amount"], places=2)
        player = request.user.player
        return self.run_idempotent(
            request,
            execute=lambda slot: type(self).service(player=player, amount=amount, idempotency=slot),
            render_body=lambda change: self.body(change, amount),
        )


class DepositView(_TransferView):
    rate_group, rate = "deposit", "5/m"
    service = staticmethod(wallet_deposit)

    @staticmethod
    def body(change, amount):
        return {"balance": money(change.balance_after)}

    @extend_schema(
        request=s.AmountRequestSerializer,
        responses={200: s.DepositResponseSerializer, 400: ErrorSerializer},
        parameters=[IDEMPOTENCY_HEADER],
        summary="Deposit (internal wallets; balance cap $100,000)",
    )
    def post(self, request):
        return super().post(request)


class WithdrawView(_TransferView):
    rate_group, rate = "withdraw", "5/m"
    service = staticmethod(wallet_withdraw)

    @staticmethod
    def body(change, amount):
        return {"success": True, "newBalance": money(change.balance_after), "amount": money(amount)}

    @extend_schema(
        request=s.AmountRequestSerializer,
        responses={200: s.WithdrawResponseSerializer, 400: ErrorSerializer},
        parameters=[IDEMPOTENCY_HEADER],
        summary="Withdraw (internal wallets; $100,000 per request)",
    )
    def post(self, request):
        return super().post(request)


class PositionsView(HouseAPIView):
    permission_classes = [IsPlayer]
    rate_group, rate = "positions", "30/m"

    @extend_schema(
        parameters=[OpenApiParameter("status", str, enum=list(PositionStatus.values), description="Default: open")],
        responses={200: s.PositionsResponseSerializer, 400: ErrorSerializer},
        summary="The player's positions",
    )
    def get(self, request):
        status = request.query_params.get("status", "open")
        if status not in PositionStatus.values:
            raise HouseError("Invalid status", code="invalid_status")
        rows = selectors.positions_for_player(player=request.user.player, status=status)
        return Response({"positions": [presenters.position(p) for p in rows]})


class TradesView(HouseAPIView):
    permission_classes = [IsPlayer]
    rate_group, rate = "trades", "30/m"

    @extend_schema(
        parameters=[OpenApiParameter("limit", int, description="Default 50, max 200"), OpenApiParameter("marketId", str)],
        responses={200: s.TradesResponseSerializer, 400: ErrorSerializer},
        summary="The player's trade history",
    )
    def get(self, request):
        raw_limit = request.query_params.get("limit", "50")
        if not raw_limit.isdigit() or int(raw_limit) < 1:
            raise HouseError("Invalid limit", code="invalid_limit")
        limit = min(int(raw_limit), 200)
        market_id = request.query_params.get("marketId")
        if market_id is not None:
            market_id = inputs.market_id_field(market_id)
        rows = selectors.trades_for_player(player=request.user.player, limit=limit, market_id=market_id)
        return Response({"trades": [presenters.trade(t) for t in rows]})


class MarketsView(HouseAPIView):
    permission_classes = [AllowAny]
    rate_group, rate = "markets", "30/m"

    @extend_schema(
        responses={200: s.MarketsResponseSerializer, 400: BAD_REQUEST}, summary="Market configuration (no authentication required)"
    )
    def get(self, request):
        config = selectors.market_configuration()
        return Response(
            {
                "blockedCategories": config["blocked_categories"],
                "disabledMarketIds": config["disabled_market_ids"],
                "criteria": {k: plain(v) for k, v in config["criteria"].items()},
                "customSpreads": {k: plain(v) for k, v in config["custom_spreads"].items()},
                "defaultSpread": plain(config["default_spread"]),
            }
        )
