"""The feed's records for staff: where each market is found at its source, and the feed process's heartbeat."""

from django.contrib import admin
from django.utils import timezone

from core.admin import ReadOnlyAdminMixin
from marketdata.models import FeedState, MarketSource


@admin.register(MarketSource)
class MarketSourceAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["market", "tracked", "active", "closed", "accepting_orders", "resolution_status", "best_bid", "best_ask", "seen_at"]
    list_filter = ["tracked", "closed", "resolution_status"]
    search_fields = ["market__id", "market__title", "yes_token", "no_token"]
    list_select_related = ["market"]
    ordering = ["-seen_at"]


@admin.register(FeedState)
class FeedStateAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["holder", "alive", "heartbeat_at", "stream_connected", "last_refresh_at", "last_catalogue_at", "started_at"]
    readonly_fields = [
        "holder",
        "started_at",
        "heartbeat_at",
        "stream_connected",
        "last_event_at",
        "last_refresh_at",
        "last_catalogue_at",
        "stats",
    ]

    @admin.display(description="alive", boolean=True)
    def alive(self, obj):
        return obj.heartbeat_at is not None and (timezone.now() - obj.heartbeat_at).total_seconds() < 30
