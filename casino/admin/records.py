"""Read-only records written by the trade executor: trades, positions, exposure shards."""

from django.contrib import admin
from django.db.models import ExpressionWrapper, F
from django.db.models.functions import Greatest

from casino.models import MarketExposure, Position, Trade
from core.admin import ReadOnlyAdminMixin


@admin.register(Trade)
class TradeAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = [
        "created_at",
        "id",
        "player",
        "operator",
        "market",
        "side",
        "outcome",
        "shares",
        "price_executed",
        "cost",
        "realized_pnl",
    ]
    list_filter = ["side", "outcome", "operator"]
    search_fields = ["id", "player__id", "player__external_id", "market__id", "market_title", "wallet_transaction_id"]
    list_select_related = ["player", "operator", "market"]
    date_hierarchy = "created_at"
    ordering = ["-created_at"]


@admin.register(Position)
class PositionAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["updated_at", "player", "operator", "market", "outcome", "shares", "avg_price", "status", "realized_pnl"]
    list_filter = ["status", "outcome", "operator"]
    search_fields = ["id", "player__id", "player__external_id", "market__id", "market_title"]
    list_select_related = ["player", "operator", "market"]
    ordering = ["-updated_at"]


@admin.register(MarketExposure)
class MarketExposureAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """One row per shard; the market totals are on the market page and the market list."""

    list_display = ["market", "shard", "category", "yes_shares", "no_shares", "cash_in", "shard_worst_case", "quota", "cap", "updated_at"]
    search_fields = ["market__id", "market__title"]
    list_filter = ["market__status"]
    list_select_related = ["market"]
    ordering = ["market_id", "shard"]

    def get_queryset(self, request):
        worst = ExpressionWrapper(
            Greatest(F("yes_shares"), F("no_shares")) - F("cash_in"), output_field=MarketExposure._meta.get_field("yes_shares")
        )
        return super().get_queryset(request).annotate(_worst=worst)

    @admin.display(description="shard worst case", ordering="_worst")
    def shard_worst_case(self, obj):
        return obj._worst
