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
from casino.services.exposure import category_exposure_bound, category_exposure_bounds, global_exposure_bound
from core.admin import ReadOnlyAdminMixin, SingletonAdminMixin
from risk.models import (
    RESTRICTED_TIER,
    CategoryRiskLimit,
    MarketRiskLimit,
    OperatorRiskLimit,
    PlayerRiskProfile,
    RiskDecision,
    RiskEvent,
    RiskSettings,
    Tier,
    TierChange,
    TierPromotionRule,
)
from risk.selectors import operator_open_exposure
from risk.services.breakers import breaker_platform_halt, breaker_platform_reset
from risk.services.config import risk_config, risk_settings
from risk.services.configure import (
    CATEGORY_FIELDS,
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


class KeepWhenOmittedMixin:
    """Issue 14: fields added by SPEC §16 keep their current value when a form leaves them out
    (a list edit or a script posting the older form); the rules still check any value sent."""

    keep_when_omitted: tuple[str, ...] = ()

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for name in self.keep_when_omitted:
            if name in self.fields:
                self.fields[name].required = False

    def clean(self):
        for name in self.keep_when_omitted:
            if name in self.fields and self.cleaned_data.get(name) is None and name not in self.errors:
                self.cleaned_data[name] = getattr(self.instance, name)
        return super().clean()


PRICING_FIELDS = tuple(setting.field for setting in SETTINGS_SECTIONS["pricing"])


class RiskSettingsForm(KeepWhenOmittedMixin, RiskRulesForm):
    rules = tuple(setting for settings in SETTINGS_SECTIONS.values() for setting in settings)
    keep_when_omitted = PRICING_FIELDS

    class Meta:
        model = RiskSettings
        fields = [setting.field for settings in SETTINGS_SECTIONS.values() for setting in settings]

    def clean(self):
        cleaned = super().clean()
        low, high = cleaned.get("min_spread"), cleaned.get("max_spread")
        if low is not None and high is not None and low > high and "min_spread" not in self.errors:
            self.add_error("min_spread", "Must be at most the maximum spread.")
        return cleaned


class TierForm(KeepWhenOmittedMixin, RiskRulesForm):
    rules = TIER_FIELDS
    keep_when_omitted = ("extra_spread",)

    class Meta:
        model = Tier
        fields = ["name", "max_stake", "max_position_per_market", "max_daily_loss", "extra_spread"]

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
        ("Exposure caps (wall 3)", {"fields": ["default_market_exposure_cap", "global_exposure_cap", "category_exposure_cap"]}),
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
        (
            "Pricing (SPEC §16 dynamic spread)",
            {
                "fields": [
                    "min_spread",
                    "max_spread",
                    "extreme_zone",
                    "extreme_widening",
                    "liquidity_reference",
                    "liquidity_widening",
                    "skew_start",
                    "skew_max",
                ],
                "description": "Full spread = clamp(base + extreme + liquidity + tier extra + sharp extra, min, max); "
                "buys of the outcome the house stands to lose most on skew up to skew max at the market's cap. "
                "The default spread is in the casino settings; each tier's extra spread on the tiers page.",
            },
        ),
        (
            "Player classes (SPEC §16)",
            {
                "fields": ["class_moderate_at", "class_sharp_at", "class_professional_at", "timing_move_points", "sizing_multiple"],
                "description": "Class thresholds on the composite score (0-100); the sharp score of wall 4 is the composite / 100. "
                "Timing: a favourable mid move (points) that counts as large; sizing: a stake this many times the player's median.",
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
    list_display = ["name", "max_stake", "max_position_per_market", "max_daily_loss", "extra_spread", "players"]
    list_editable = ["max_stake", "max_position_per_market", "max_daily_loss", "extra_spread"]
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
            **category_overview(),
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
        "player_class",
        "composite_score",
        "win_rate",
        "edge",
        "timing",
        "sizing",
        "diversity",
    ]
    list_filter = ["player_class", "player__tier", "player__operator"]
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


# --- Issue 14: category caps (SPEC §16) -----------------------------------------------------------


class CategoryRiskLimitForm(RiskRulesForm):
    rules = CATEGORY_FIELDS

    class Meta:
        model = CategoryRiskLimit
        fields = ["category", "exposure_cap"]

    def clean_category(self):
        category = self.cleaned_data["category"]
        key = category.strip().lower() if isinstance(category, str) else category
        if isinstance(key, str) and not (1 <= len(key) <= 64):
            raise forms.ValidationError("A category name, 1 to 64 characters.")
        return key


@admin.register(CategoryRiskLimit)
class CategoryRiskLimitAdmin(RulesInChangelistMixin, admin.ModelAdmin):
    """A category's own cap on the worst-case loss summed over its markets (else the default in the risk settings)."""

    form = CategoryRiskLimitForm
    list_display = ["category", "exposure_cap", "bound_now", "used_pct"]
    list_editable = ["exposure_cap"]
    search_fields = ["category"]
    ordering = ["category"]

    def get_readonly_fields(self, request, obj=None):
        return ["category"] if obj is not None else []

    @admin.display(description="worst-case bound now")
    def bound_now(self, obj):
        return category_exposure_bound(category=obj.category).quantize(Decimal("0.01"))

    @admin.display(description="% of cap")
    def used_pct(self, obj):
        return _percent(category_exposure_bound(category=obj.category), obj.exposure_cap)


def category_overview() -> dict:
    """Every category with a bound or its own cap, fullest first: the bound against the cap (the exposure overview)."""
    settings_row = risk_settings()
    own = dict(CategoryRiskLimit.objects.values_list("category", "exposure_cap"))
    bounds = category_exposure_bounds()
    rows = []
    for category in set(own) | {c for c, b in bounds.items() if b}:
        cap = own.get(category, settings_row.category_exposure_cap)
        bound = bounds.get(category, Decimal("0"))
        rows.append({"category": category, "bound": bound, "cap": cap, "own_cap": category in own, "cap_used_pct": _percent(bound, cap)})
    rows.sort(key=lambda r: (-(r["cap_used_pct"] or Decimal("0")), r["category"]))
    return {"category_rows": rows, "default_category_cap": settings_row.category_exposure_cap}


# --- Issue 14: tier promotion rules and the tier audit (SPEC §16) ------------------------------


class TierPromotionRuleForm(forms.ModelForm):
    class Meta:
        model = TierPromotionRule
        fields = ["from_tier", "to_tier", "min_account_age_days", "min_completed_trades", "enabled"]

    def clean(self):
        cleaned = super().clean()
        source, target = cleaned.get("from_tier"), cleaned.get("to_tier")
        if source is None or target is None:
            return cleaned
        if RESTRICTED_TIER in (source.pk, target.pk):
            raise forms.ValidationError("The restricted tier is never left or entered by a promotion rule.")
        if source.pk == target.pk:
            raise forms.ValidationError("A rule promotes to another tier.")
        return cleaned


@admin.register(TierPromotionRule)
class TierPromotionRuleAdmin(admin.ModelAdmin):
    """From a tier to a higher one after an account age and a number of trades, for players with no
    risk flags and a class below sharp; applied daily (risk.services.promotion)."""

    form = TierPromotionRuleForm
    list_display = ["__str__", "min_account_age_days", "min_completed_trades", "enabled", "created_at"]
    list_editable = ["min_account_age_days", "min_completed_trades", "enabled"]
    list_display_links = ["__str__"]
    ordering = ["from_tier_id"]


@admin.register(TierChange)
class TierChangeAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Every tier change: by a promotion rule, by staff (player page) or by the operator (REST)."""

    list_display = ["created_at", "player", "from_tier", "to_tier", "source", "rule", "actor"]
    list_filter = ["source", "to_tier", "from_tier"]
    search_fields = ["player__external_id", "player__id", "actor"]
    list_select_related = ["player__operator", "rule"]
    date_hierarchy = "created_at"
    ordering = ["-created_at"]


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
