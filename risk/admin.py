"""The risk team's admin: house thresholds, tiers, market and operator limits, the refusals log,
players ranked by sharp score, and the market exposure overview.

Thresholds are checked with the same rules as PATCH /api/casino/admin/risk
(risk.services.configure); every write is a model save, so the walls reload before the next trade.
The exposure overview lives at /admin/risk/marketrisklimit/exposure-overview/ (URL name
``admin:risk_exposure_overview``), linked from the risk app page, the risk settings form and the
market caps list.
"""

import json
from decimal import Decimal
from urllib.parse import urlencode

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import quote
from django.core.exceptions import PermissionDenied
from django.db.models import Count, OuterRef, Subquery, Sum
from django.db.models.functions import Greatest
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from casino.models import MarketExposure, Player
from casino.services.exposure import global_exposure_bound
from core.admin import ReadOnlyAdminMixin, SingletonAdminMixin
from risk.models import MarketRiskLimit, OperatorRiskLimit, PlayerRiskProfile, RiskDecision, RiskEvent, RiskSettings, Tier
from risk.selectors import operator_open_exposure
from risk.services.breakers import breaker_platform_halt, breaker_platform_reset
from risk.services.config import risk_config, risk_settings
from risk.services.configure import (
    MARKET_FIELDS,
    OPERATOR_FIELDS,
    SETTINGS_SECTIONS,
    TIER_FIELDS,
    TIER_NAME_RE,
    RiskConfigError,
    Setting,
)

EXPOSURE_OVERVIEW_TEMPLATE = "admin/risk/exposure_overview.html"
# Issue 14: the circuit breakers on the risk settings page (the halt's state is changed by the actions only).
BREAKER_STATE_FIELDS = ["platform_halted", "platform_halted_at", "platform_window_start"]
BREAKERS_FIELDSET = (
    "Circuit breakers (automatic, SPEC §16)",
    {
        "fields": ["player_loss_halt", "platform_loss_halt", *BREAKER_STATE_FIELDS],
        "description": (
            "The house's net loss over a rolling 24 h (payouts + sale proceeds − stakes). Above the player halt, that player's "
            "buys are refused until the window clears; above the platform halt, every buy gets 503 until staff reset it "
            "(the “Reset the platform loss halt” action on the list page). Sells are never refused by a breaker."
        ),
    },
)
EXPOSURE_OVERVIEW_ROWS = 500
HUNDRED = Decimal("100")


# --- forms: the REST rules, shown next to the field -------------------------------------------


class RiskRulesForm(forms.ModelForm):
    """Runs each field through its risk.services.configure parser (same limits as the REST API)."""

    rules: tuple[Setting, ...] = ()

    def clean(self):
        cleaned = super().clean()
        for setting in self.rules:
            if setting.field not in cleaned or setting.field in self.errors:
                continue
            value = cleaned[setting.field]
            if setting.field == "markout_horizons_seconds" and value in (None, [], ""):
                cleaned[setting.field] = []  # empty = the built-in horizons
                continue
            try:
                cleaned[setting.field] = setting.parse(value, setting.wire)
            except RiskConfigError as exc:
                self.add_error(setting.field, exc.reason[:1].upper() + exc.reason[1:] + ".")
        return cleaned


class RiskSettingsForm(RiskRulesForm):
    rules = tuple(setting for settings in SETTINGS_SECTIONS.values() for setting in settings)

    class Meta:
        model = RiskSettings
        fields = [setting.field for settings in SETTINGS_SECTIONS.values() for setting in settings]


class TierForm(RiskRulesForm):
    rules = TIER_FIELDS

    class Meta:
        model = Tier
        fields = ["name", "max_stake", "max_position_per_market", "max_daily_loss"]

    def clean_name(self):
        name = self.cleaned_data["name"]
        if isinstance(name, str) and not TIER_NAME_RE.match(name):  # the list form's pk field holds the Tier
            raise forms.ValidationError("Lowercase letters, digits, '_' or '-', at most 32 characters.")
        return name


class MarketRiskLimitForm(RiskRulesForm):
    rules = MARKET_FIELDS

    class Meta:
        model = MarketRiskLimit
        fields = ["market", "exposure_cap"]


class OperatorRiskLimitForm(RiskRulesForm):
    rules = OPERATOR_FIELDS

    class Meta:
        model = OperatorRiskLimit
        fields = ["operator", "trading_enabled", "max_open_exposure", "max_daily_turnover", "max_daily_net_loss"]


class RulesInChangelistMixin:
    """list_editable forms get the same rules as the change form."""

    def get_changelist_form(self, request, **kwargs):
        return super().get_changelist_form(request, form=self.form, **kwargs)


# --- thresholds ---------------------------------------------------------------------------------


@admin.register(RiskSettings)
class RiskSettingsAdmin(RulesInChangelistMixin, SingletonAdminMixin, admin.ModelAdmin):
    form = RiskSettingsForm
    list_display = ["__str__", "trading_enabled", "global_exposure_cap", "default_market_exposure_cap", "platform_halted", "updated_at"]
    list_editable = ["trading_enabled"]
    readonly_fields = ["updated_at", *BREAKER_STATE_FIELDS]
    actions = ["platform_halt_reset", "platform_halt_set"]
    change_form_template = "admin/risk/risksettings/change_form.html"
    fieldsets = [
        ("Kill switch", {"fields": ["trading_enabled"], "description": "Off: every trade gets 503 “Trading is disabled”."}),
        ("Exposure caps (wall 3)", {"fields": ["default_market_exposure_cap", "global_exposure_cap"]}),
        (
            "Velocity (wall 1)",
            {"fields": ["max_trades_per_minute", "max_stake_per_minute", "market_burst_trades", "market_burst_window_seconds"]},
        ),
        (
            "Sharp detection (wall 4)",
            {
                "fields": [
                    "sharp_spread_widen_at",
                    "sharp_extra_spread",
                    "sharp_limit_at",
                    "sharp_limit_factor",
                    "sharp_refuse_at",
                    "sharp_min_trades",
                    "sharp_full_edge",
                    "markout_horizons_seconds",
                ],
                "description": "Scores and factors are between 0 and 1. Tier limits and operator limits have their own pages.",
            },
        ),
        BREAKERS_FIELDSET,
        ("Record", {"fields": ["updated_at"]}),
    ]

    @admin.action(description="Reset the platform loss halt (buys resume; a new platform loss window starts)", permissions=["change"])
    def platform_halt_reset(self, request, queryset):
        if breaker_platform_reset(actor=f"staff:{request.user.get_username()}"):
            self.message_user(request, "Platform halt reset: buys resume, and the platform loss window starts again now.")
        else:
            self.message_user(request, "The platform was not halted.", level=messages.WARNING)

    @admin.action(description="Halt the platform by hand (every buy gets 503; sells go on)", permissions=["change"])
    def platform_halt_set(self, request, queryset):
        if breaker_platform_halt(actor=f"staff:{request.user.get_username()}"):
            self.message_user(request, "Platform halted: every buy gets 503 until the halt is reset.", level=messages.WARNING)
        else:
            self.message_user(request, "The platform was halted already.", level=messages.WARNING)

    def changelist_view(self, request, extra_context=None):
        risk_settings()  # the row exists from the first look, with the defaults
        return super().changelist_view(request, extra_context)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        risk_settings()
        return super().change_view(request, object_id, form_url, extra_context)


@admin.register(Tier)
class TierAdmin(RulesInChangelistMixin, admin.ModelAdmin):
    form = TierForm
    list_display = ["name", "max_stake", "max_position_per_market", "max_daily_loss", "players"]
    list_editable = ["max_stake", "max_position_per_market", "max_daily_loss"]
    ordering = ["name"]

    def get_queryset(self, request):
        players = Player.objects.filter(tier=OuterRef("name")).order_by().values("tier").annotate(n=Count("pk")).values("n")[:1]
        return super().get_queryset(request).annotate(_players=Subquery(players))

    @admin.display(description="players", ordering="_players")
    def players(self, obj):
        return obj._players or 0

    def get_readonly_fields(self, request, obj=None):
        return ["name"] if obj is not None else []  # the name is the key players carry

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)  # one at a time, so "standard" cannot go in a batch
        return actions

    def has_delete_permission(self, request, obj=None):
        # Players of a deleted tier fall back to "standard", which must therefore stay.
        if obj is not None and obj.pk == "standard":
            return False
        return super().has_delete_permission(request, obj)


@admin.register(MarketRiskLimit)
class MarketRiskLimitAdmin(admin.ModelAdmin):
    form = MarketRiskLimitForm
    list_display = ["market", "exposure_cap"]
    search_fields = ["market__id", "market__title"]
    list_select_related = ["market"]
    autocomplete_fields = ["market"]
    ordering = ["market_id"]
    change_list_template = "admin/risk/marketrisklimit/change_list.html"

    def get_readonly_fields(self, request, obj=None):
        return ["market"] if obj is not None else []

    def get_urls(self):
        overview = path("exposure-overview/", self.admin_site.admin_view(self.exposure_overview_view), name="risk_exposure_overview")
        return [overview, *super().get_urls()]

    def exposure_overview_view(self, request):
        if not self.has_view_permission(request):
            raise PermissionDenied
        context = {
            **self.admin_site.each_context(request),
            "title": "Market exposure overview",
            "opts": self.model._meta,
            **exposure_overview(),
        }
        return TemplateResponse(request, EXPOSURE_OVERVIEW_TEMPLATE, context)


def _percent(part: Decimal, whole: Decimal) -> Decimal | None:
    if whole <= 0:
        return None
    return (part * HUNDRED / whole).quantize(Decimal("0.1"))


def exposure_overview() -> dict:
    """Every market with a book, worst-case loss first, against its cap; the global bound against the global cap."""
    settings_row = risk_settings()
    worst = Greatest(Sum("yes_shares"), Sum("no_shares")) - Sum("cash_in")
    books = list(
        MarketExposure.objects.order_by()
        .values("market_id", "market__title", "market__status", "market__risk_limit__exposure_cap")
        .annotate(yes=Sum("yes_shares"), no=Sum("no_shares"), cash=Sum("cash_in"), worst=worst)
        .order_by("-worst", "market_id")[: EXPOSURE_OVERVIEW_ROWS + 1]
    )
    rows = []
    for book in books[:EXPOSURE_OVERVIEW_ROWS]:
        own_cap = book["market__risk_limit__exposure_cap"]
        cap = own_cap if own_cap is not None else settings_row.default_market_exposure_cap
        rows.append(
            {
                "market_id": book["market_id"],
                "title": book["market__title"],
                "status": book["market__status"],
                "market_url": reverse("admin:casino_market_change", args=[quote(book["market_id"])]),
                "cap_url": (
                    reverse("admin:risk_marketrisklimit_change", args=[quote(book["market_id"])])
                    if own_cap is not None
                    else reverse("admin:risk_marketrisklimit_add") + "?" + urlencode({"market": book["market_id"]})
                ),
                "yes_shares": book["yes"],
                "no_shares": book["no"],
                "cash_in": book["cash"],
                "worst_case_loss": book["worst"],
                "net_exposure": book["yes"] - book["no"],
                "cap": cap,
                "own_cap": own_cap is not None,
                "cap_used_pct": _percent(book["worst"], cap),
            }
        )
    bound = global_exposure_bound()
    return {
        "rows": rows,
        "truncated": len(books) > EXPOSURE_OVERVIEW_ROWS,
        "row_limit": EXPOSURE_OVERVIEW_ROWS,
        "trading_enabled": settings_row.trading_enabled,
        "global_bound": bound,
        "global_cap": settings_row.global_exposure_cap,
        "global_used_pct": _percent(bound, settings_row.global_exposure_cap),
        "default_cap": settings_row.default_market_exposure_cap,
        "markets_worst_total": sum((max(r["worst_case_loss"], Decimal("0")) for r in rows), Decimal("0")),
    }


@admin.register(OperatorRiskLimit)
class OperatorRiskLimitAdmin(RulesInChangelistMixin, admin.ModelAdmin):
    form = OperatorRiskLimitForm
    list_display = ["operator", "trading_enabled", "max_open_exposure", "max_daily_turnover", "max_daily_net_loss", "open_exposure"]
    list_editable = ["trading_enabled"]
    list_filter = ["trading_enabled"]
    list_select_related = ["operator"]
    search_fields = ["operator__name", "operator__id"]
    autocomplete_fields = ["operator"]
    ordering = ["operator__name"]

    def get_readonly_fields(self, request, obj=None):
        return ["operator"] if obj is not None else []

    @admin.display(description="open exposure now")
    def open_exposure(self, obj):
        return operator_open_exposure(operator_id=obj.operator_id).quantize(Decimal("0.01"))


# --- what the walls did and whom they watch ----------------------------------------------------


@admin.register(RiskDecision)
class RiskDecisionAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Every refusal, newest first: who, what, which wall and limit, and the numbers the wall saw."""

    list_display = ["created_at", "player", "operator", "market_id", "side", "amount", "wall", "limit", "code", "values_display"]
    list_filter = ["wall", "code", "operator"]
    date_hierarchy = "created_at"
    search_fields = ["player__external_id", "player__id", "market_id"]
    list_select_related = ["player", "operator"]
    ordering = ["-created_at"]

    @admin.display(description="values")
    def values_display(self, obj):
        return json.dumps(obj.values, sort_keys=True)


@admin.register(PlayerRiskProfile)
class PlayerRiskProfileAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Players ranked by sharp score (recomputed by the sharp-scoring task)."""

    list_display = [
        "player",
        "operator",
        "tier",
        "sharp_score",
        "treatment",
        "markout_edge",
        "results_edge",
        "trades_scored",
        "computed_at",
    ]
    list_filter = ["player__tier", "player__operator"]
    search_fields = ["player__external_id", "player__id"]
    list_select_related = ["player__operator"]
    ordering = ["-sharp_score", "player_id"]

    @admin.display(description="operator", ordering="player__operator__name")
    def operator(self, obj):
        return obj.player.operator

    @admin.display(description="tier", ordering="player__tier")
    def tier(self, obj):
        return obj.player.tier

    @admin.display(description="treatment now")
    def treatment(self, obj):
        """What wall 4 does with this score under the current thresholds."""
        s = risk_config().settings
        score = obj.sharp_score
        if score >= s.sharp_refuse_at:
            return format_html('<strong style="color:#ba2121">{}</strong>', "refused")
        parts = [label for label, at in (("wider spread", s.sharp_spread_widen_at), ("lower limits", s.sharp_limit_at)) if score >= at]
        return ", ".join(parts) or "-"


# --- Issue 14: risk events (breaker trips and resets) --------------------------------------------


@admin.register(RiskEvent)
class RiskEventAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Breaker trips (critical: the platform halt) and staff resets, newest first."""

    list_display = ["created_at", "severity_display", "kind", "player", "message", "actor"]
    list_filter = ["severity", "kind"]
    date_hierarchy = "created_at"
    search_fields = ["player__external_id", "player__id", "message"]
    list_select_related = ["player"]
    ordering = ["-created_at"]

    @admin.display(description="severity", ordering="severity")
    def severity_display(self, obj):
        if obj.severity == "critical":
            return format_html('<strong style="color:#ba2121">{}</strong>', obj.get_severity_display())
        return obj.get_severity_display()
