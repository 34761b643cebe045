"""Risk configuration admin: house-wide thresholds and per-market exposure caps."""

from django.contrib import admin

from casino.admin import SingletonAdminMixin
from risk.models import MarketRiskLimit, RiskSettings
from risk.services.assessment import risk_settings


@admin.register(RiskSettings)
class RiskSettingsAdmin(SingletonAdminMixin, admin.ModelAdmin):
    list_display = ["__str__", "default_market_exposure_cap", "updated_at"]
    fields = ["default_market_exposure_cap", "updated_at"]
    readonly_fields = ["updated_at"]

    def changelist_view(self, request, extra_context=None):
        risk_settings()  # the row exists from the first look, with the defaults
        return super().changelist_view(request, extra_context)


@admin.register(MarketRiskLimit)
class MarketRiskLimitAdmin(admin.ModelAdmin):
    list_display = ["market", "exposure_cap"]
    search_fields = ["market__id", "market__title"]
    list_select_related = ["market"]
    autocomplete_fields = ["market"]
    ordering = ["market_id"]

    def get_readonly_fields(self, request, obj=None):
        return ["market"] if obj is not None else []
