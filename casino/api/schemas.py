"""Request/response shapes for the OpenAPI document (validation itself is in core.api.inputs)."""

from drf_spectacular.utils import OpenApiParameter
from rest_framework import serializers

QUOTE_PARAMETERS = [
    OpenApiParameter("side", str, enum=["buy", "sell"], required=True),
    OpenApiParameter("outcome", str, enum=["yes", "no"], required=True),
    OpenApiParameter("amount", str, required=True, description="USD (buy) or shares (sell)"),
    OpenApiParameter("midPrice", str, required=False, description="Mid price in cents, (0, 100); omitted: the house reference of marketId"),
    OpenApiParameter("marketId", str, required=False, description="Apply this market's custom spread (required without midPrice)"),
    OpenApiParameter("liquidity", str, required=False, description="The market's liquidity as the client knows it (the house's wins)"),
]


class TradeRequestSerializer(serializers.Serializer):
    marketId = serializers.CharField()
    side = serializers.ChoiceField(["buy", "sell"])
    outcome = serializers.ChoiceField(["yes", "no"])
    amount = serializers.DecimalField(max_digits=20, decimal_places=6, help_text="USD to spend (buy) or shares to sell (sell)")
    midPrice = serializers.DecimalField(
        max_digits=8, decimal_places=4, required=False, help_text="Slippage guard; omitted: priced at the house reference price"
    )
    marketTitle = serializers.CharField(required=False)
    category = serializers.CharField(required=False)
    liquidity = serializers.DecimalField(max_digits=20, decimal_places=2, required=False)


class TradeResponseSerializer(serializers.Serializer):
    success = serializers.BooleanField()
    tradeId = serializers.UUIDField()
    positionId = serializers.UUIDField()
    executionPrice = serializers.DecimalField(max_digits=8, decimal_places=4, coerce_to_string=False)
    shares = serializers.DecimalField(max_digits=20, decimal_places=6, coerce_to_string=False)
    cost = serializers.DecimalField(max_digits=14, decimal_places=2, coerce_to_string=False)
    newBalance = serializers.DecimalField(max_digits=14, decimal_places=2, coerce_to_string=False)
    realizedPnl = serializers.DecimalField(max_digits=14, decimal_places=2, coerce_to_string=False, required=False)


class QuoteResponseSerializer(serializers.Serializer):
    executionPrice = serializers.DecimalField(max_digits=8, decimal_places=4, coerce_to_string=False)
    shares = serializers.DecimalField(max_digits=20, decimal_places=6, coerce_to_string=False)
    cost = serializers.DecimalField(max_digits=14, decimal_places=2, coerce_to_string=False)
    spreadPct = serializers.DecimalField(max_digits=8, decimal_places=4, coerce_to_string=False)
    payout = serializers.DecimalField(max_digits=14, decimal_places=2, coerce_to_string=False)
    midPrice = serializers.DecimalField(max_digits=8, decimal_places=4, coerce_to_string=False)


class LedgerEntrySerializer(serializers.Serializer):
    id = serializers.UUIDField()
    user_id = serializers.UUIDField()
    amount = serializers.DecimalField(max_digits=14, decimal_places=2, coerce_to_string=False, help_text="Signed: debits are negative")
    type = serializers.CharField()
    description = serializers.CharField()
    balance_after = serializers.DecimalField(max_digits=14, decimal_places=2, coerce_to_string=False)
    trade_id = serializers.UUIDField(allow_null=True)
    created_at = serializers.DateTimeField()


class BalanceResponseSerializer(serializers.Serializer):
    balance = serializers.DecimalField(max_digits=14, decimal_places=2, coerce_to_string=False)
    ledger = LedgerEntrySerializer(many=True, allow_null=True)


class AmountRequestSerializer(serializers.Serializer):
    amount = serializers.DecimalField(max_digits=14, decimal_places=2)


class DepositResponseSerializer(serializers.Serializer):
    balance = serializers.DecimalField(max_digits=14, decimal_places=2, coerce_to_string=False)


class WithdrawResponseSerializer(serializers.Serializer):
    success = serializers.BooleanField()
    newBalance = serializers.DecimalField(max_digits=14, decimal_places=2, coerce_to_string=False)
    amount = serializers.DecimalField(max_digits=14, decimal_places=2, coerce_to_string=False)


class PositionSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    user_id = serializers.UUIDField()
    market_id = serializers.CharField()
    market_title = serializers.CharField()
    outcome = serializers.CharField()
    shares = serializers.DecimalField(max_digits=20, decimal_places=6, coerce_to_string=False)
    avg_price = serializers.DecimalField(max_digits=8, decimal_places=4, coerce_to_string=False)
    status = serializers.CharField()
    realized_pnl = serializers.DecimalField(max_digits=14, decimal_places=2, coerce_to_string=False)
    operator_id = serializers.UUIDField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


class PositionsResponseSerializer(serializers.Serializer):
    positions = PositionSerializer(many=True)


class TradeRowSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    user_id = serializers.UUIDField()
    market_id = serializers.CharField()
    market_title = serializers.CharField()
    side = serializers.CharField()
    outcome = serializers.CharField()
    shares = serializers.DecimalField(max_digits=20, decimal_places=6, coerce_to_string=False)
    price_mid = serializers.DecimalField(max_digits=8, decimal_places=4, coerce_to_string=False)
    price_executed = serializers.DecimalField(max_digits=8, decimal_places=4, coerce_to_string=False)
    spread_applied = serializers.DecimalField(max_digits=8, decimal_places=4, coerce_to_string=False)
    cost = serializers.DecimalField(max_digits=14, decimal_places=2, coerce_to_string=False)
    balance_before = serializers.DecimalField(max_digits=14, decimal_places=2, coerce_to_string=False)
    balance_after = serializers.DecimalField(max_digits=14, decimal_places=2, coerce_to_string=False)
    realized_pnl = serializers.DecimalField(max_digits=14, decimal_places=2, coerce_to_string=False)
    operator_id = serializers.UUIDField()
    s2s_transaction_id = serializers.UUIDField(allow_null=True)
    created_at = serializers.DateTimeField()


class TradesResponseSerializer(serializers.Serializer):
    trades = TradeRowSerializer(many=True)


class MarketsResponseSerializer(serializers.Serializer):
    blockedCategories = serializers.ListField(child=serializers.CharField())
    disabledMarketIds = serializers.ListField(child=serializers.CharField())
    criteria = serializers.DictField()
    customSpreads = serializers.DictField()
    defaultSpread = serializers.DecimalField(max_digits=8, decimal_places=4, coerce_to_string=False)


class SessionRequestSerializer(serializers.Serializer):
    playerId = serializers.CharField(help_text="The operator's own player id")
    currency = serializers.CharField(required=False)
    tier = serializers.CharField(required=False)


class SessionResponseSerializer(serializers.Serializer):
    token = serializers.CharField()
    userId = serializers.UUIDField()
    expiresAt = serializers.DateTimeField()


class AdminBalanceRequestSerializer(serializers.Serializer):
    targetUserId = serializers.UUIDField()
    amount = serializers.DecimalField(max_digits=14, decimal_places=2)
    action = serializers.ChoiceField(["deposit", "withdraw"])
    description = serializers.CharField(required=False)


class AdminBalanceResponseSerializer(serializers.Serializer):
    success = serializers.BooleanField()
    newBalance = serializers.DecimalField(max_digits=14, decimal_places=2, coerce_to_string=False)


class AdminPriceRequestSerializer(serializers.Serializer):
    marketId = serializers.CharField()
    outcome = serializers.ChoiceField(["yes", "no"], required=False)
    midPrice = serializers.DecimalField(max_digits=8, decimal_places=4)
    marketTitle = serializers.CharField(required=False)
    category = serializers.CharField(required=False)


class AdminPriceResponseSerializer(serializers.Serializer):
    success = serializers.BooleanField()
    marketId = serializers.CharField()
    yes = serializers.DecimalField(max_digits=8, decimal_places=4, coerce_to_string=False)
    no = serializers.DecimalField(max_digits=8, decimal_places=4, coerce_to_string=False)
