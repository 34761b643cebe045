"""Markets and their configuration, the casino settings, and the house reference prices."""

from datetime import timedelta
from decimal import Decimal

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import quote
from django.db.models import BooleanField, Case, OuterRef, Subquery, Sum, Value, When
from django.db.models.functions import Greatest
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from casino.models import CasinoSettings, Market, MarketEvent, MarketExposure, Outcome, ReferencePrice
from casino.services.exposure import exposure_book, exposure_categories_follow
from casino.services.market_state import market_disabled_set
from casino.services.markets import casino_settings, reference_price_set
from core.admin import ReadOnlyAdminMixin, SingletonAdminMixin, copy_saved
from core.api.inputs import MARKET_ID_RE
from core.money import PRICE_STEP
from risk.models import MarketRiskLimit
from risk.services.assessment import market_exposure_cap
from risk.services.configure import FEED_FIELDS as FEED_SETTINGS
from risk.services.configure import RiskConfigError


class MarketRiskLimitInline(admin.StackedInline):
    model = MarketRiskLimit
    can_delete = True
    max_num = 1
    extra = 0
    verbose_name = "exposure cap for this market"
    verbose_name_plural = "exposure cap (empty: the default cap in risk settings)"


def _market_worst_case_subquery():
    # Worst case of the whole market: max(sum yes, sum no) - sum cash, over its shards.
    return Subquery(
        MarketExposure.objects.filter(market=OuterRef("pk"))
        .order_by()
        .values("market")
        .annotate(worst=Greatest(Sum("yes_shares"), Sum("no_shares")) - Sum("cash_in"))
        .values("worst")[:1]
    )


RECENT_EVENTS = 10
FEED_FIELDS = ["listed", "suspended_reason", "suspended_until", "end_date", "volume_24h", "yes_label", "no_label"]


class SuspendedFilter(admin.SimpleListFilter):
    title = "suspended by the feed"
    parameter_name = "suspended"

    def lookups(self, request, model_admin):
        return [("yes", "Suspended"), ("no", "Trading")]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.exclude(suspended_reason="")
        if self.value() == "no":
            return queryset.filter(suspended_reason="")
        return queryset


@admin.register(MarketEvent)
class MarketEventAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["at", "market", "kind", "code", "detail"]
    list_filter = ["kind", "code"]
    search_fields = ["market__id", "market__title"]
    list_select_related = ["market"]
    date_hierarchy = "at"
    ordering = ["-at"]


@admin.register(Market)
class MarketAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "title",
        "category",
        "status",
        "outcome",
        "disabled",
        "custom_spread",
        "liquidity",
        "listed",
        "suspension",
        "yes_price",
        "worst_case_loss",
        "updated_at",
    ]
    list_filter = ["status", "listed", "disabled", SuspendedFilter, "suspended_reason", "category"]
    search_fields = ["id", "title", "category"]
    ordering = ["-updated_at"]
    inlines = [MarketRiskLimitInline]
    change_form_template = "admin/casino/market/change_form.html"

    def get_queryset(self, request):
        yes = ReferencePrice.objects.filter(market=OuterRef("pk"), outcome=Outcome.YES).values("mid_price")[:1]
        return super().get_queryset(request).annotate(_yes_price=Subquery(yes), _worst_case=_market_worst_case_subquery())

    def get_fields(self, request, obj=None):
        fields = ["id", "title", "category", "liquidity", "disabled", "custom_spread", "status", "outcome"]
        if obj is not None:
            fields += [*FEED_FIELDS, "recent_events", "reference_prices", "exposure", "created_at", "updated_at"]
        return fields

    def get_readonly_fields(self, request, obj=None):
        # Status and outcome belong to settlement (resolve / void), never to a form; what the
        # feed knows (listing, suspension, source data) belongs to the feed.
        readonly = ["status", "outcome"]
        if obj is not None:
            readonly += ["id", *FEED_FIELDS, "recent_events", "reference_prices", "exposure", "created_at", "updated_at"]
        return readonly

    @admin.display(description="recent events (feed)")
    def recent_events(self, obj):
        events = list(obj.events.order_by("-at")[:RECENT_EVENTS])
        if not events:
            return "none"
        rows = format_html_join("", "<li>{} {} {}</li>", ((f"{e.at:%Y-%m-%d %H:%M:%S}", e.kind, e.code) for e in events))
        url = reverse("admin:casino_marketevent_changelist") + f"?q={quote(obj.pk)}"
        return format_html('<ul style="margin:0">{}</ul><a href="{}">all events</a>', rows, url)

    @admin.display(description="suspended", ordering="suspended_reason")
    def suspension(self, obj):
        if not obj.suspended_reason:
            return "-"
        return f"{obj.suspended_reason} until {obj.suspended_until:%H:%M:%S}" if obj.suspended_until else obj.suspended_reason

    def has_delete_permission(self, request, obj=None):
        return False  # markets end by settlement (resolve or void)

    def save_model(self, request, obj, form, change):
        # Turning trading off or on is told to the operators (market.suspended / market.resumed).
        disabled_changed = change and "disabled" in form.changed_data
        wanted = obj.disabled
        if disabled_changed:
            obj.disabled = not wanted  # saved below through the service, with its event
        super().save_model(request, obj, form, change)
        if change and "category" in form.changed_data:  # issue 14: the book follows to its new category's cap
            exposure_categories_follow(categories={obj.pk: obj.category})
        if disabled_changed:
            market_disabled_set(market=obj, disabled=wanted, actor=request.user.get_username())

    @admin.display(description="YES mid", ordering="_yes_price")
    def yes_price(self, obj):
        return obj._yes_price

    @admin.display(description="worst-case loss", ordering="_worst_case")
    def worst_case_loss(self, obj):
        return obj._worst_case

    @admin.display(description="reference prices")
    def reference_prices(self, obj):
        prices = {p.outcome: p for p in obj.reference_prices.all()}
        if not prices:
            return "none (the market cannot trade until a price is set)"
        return ", ".join(
            f"{o.upper()} {prices[o].mid_price} (set {prices[o].updated_at:%Y-%m-%d %H:%M:%S})" for o in ("yes", "no") if o in prices
        )

    @admin.display(description="exposure")
    def exposure(self, obj):
        book = exposure_book(market_id=obj.pk)
        return (
            f"YES shares {book.yes_shares}, NO shares {book.no_shares}, cash in {book.cash_in}; "
            f"worst-case loss {book.worst_case_loss} of cap {market_exposure_cap(market_id=obj.pk)}; net exposure {book.net_exposure}"
        )


class CasinoSettingsForm(forms.ModelForm):
    class Meta:
        model = CasinoSettings
        fields = [
            "blocked_categories",
            "min_liquidity",
            "min_price",
            "max_price",
            "default_spread",
            "price_tolerance",
            "price_max_age_seconds",
            "feed_max_source_spread",
            "feed_jump_points",
            "feed_jump_window_seconds",
            "feed_jump_cooldown_seconds",
            "auto_settle_after_seconds",
            "max_listed_markets",
            "allowed_categories",
        ]

    def clean_blocked_categories(self):
        value = self.cleaned_data["blocked_categories"] or []
        if not isinstance(value, list) or not all(isinstance(c, str) and c for c in value):
            raise forms.ValidationError('A JSON list of category names, e.g. ["Sports", "Crypto"].')
        return value

    def clean(self):
        data = super().clean()
        low, high = data.get("min_price"), data.get("max_price")
        if low is not None and high is not None and not (Decimal("0") <= low < high <= Decimal("100")):
            raise forms.ValidationError("Prices must satisfy 0 ≤ min price < max price ≤ 100.")
        spread = data.get("default_spread")
        if spread is not None and not (Decimal("0") <= spread < Decimal("100")):
            self.add_error("default_spread", "Between 0 and 100 price points.")
        for setting in FEED_SETTINGS:  # the rules of PATCH admin/risk "feed", next to each field
            if setting.field in data and setting.field not in self.errors:
                try:
                    data[setting.field] = setting.parse(data[setting.field], f"feed.{setting.wire}")
                except RiskConfigError as exc:
                    self.add_error(setting.field, exc.reason)
        return data


@admin.register(CasinoSettings)
class CasinoSettingsAdmin(SingletonAdminMixin, admin.ModelAdmin):
    form = CasinoSettingsForm
    list_display = [
        "__str__",
        "default_spread",
        "min_price",
        "max_price",
        "min_liquidity",
        "price_tolerance",
        "price_max_age_seconds",
        "updated_at",
    ]
    readonly_fields = ["updated_at"]

    def changelist_view(self, request, extra_context=None):
        casino_settings()  # the row exists from the first look, with the defaults
        return super().changelist_view(request, extra_context)


class ReferencePriceForm(forms.ModelForm):
    """Set a price through reference_price_set: it writes both outcomes (NO = 100 - YES)."""

    market_id = forms.CharField(max_length=128, help_text="Market id (Polymarket condition id); a new id creates the market.")
    title = forms.CharField(max_length=500, required=False, help_text="Market title (new markets; leave empty to keep).")
    category = forms.CharField(max_length=64, required=False)

    class Meta:
        model = ReferencePrice
        fields = ["outcome", "mid_price"]

    def clean_market_id(self):
        value = self.cleaned_data["market_id"].strip()
        if not MARKET_ID_RE.match(value):
            raise forms.ValidationError("Letters, digits and _ - : . only.")
        return value

    def clean_mid_price(self):
        mid = self.cleaned_data["mid_price"]
        if not (Decimal("0") < mid < Decimal("100")):
            raise forms.ValidationError("Between 0 and 100, exclusive.")
        if mid != mid.quantize(PRICE_STEP):
            raise forms.ValidationError("At most 4 decimal places.")
        return mid


class ReferencePriceChangeForm(ReferencePriceForm):
    market_id = title = category = None

    class Meta(ReferencePriceForm.Meta):
        fields = ["mid_price"]


@admin.register(ReferencePrice)
class ReferencePriceAdmin(admin.ModelAdmin):
    list_display = ["market", "outcome", "mid_price", "updated_at", "stale"]
    list_filter = ["outcome"]
    search_fields = ["market__id", "market__title"]
    list_select_related = ["market"]
    ordering = ["market_id", "outcome"]

    def get_queryset(self, request):
        max_age = timedelta(seconds=casino_settings().price_max_age_seconds)
        stale = Case(When(updated_at__lt=timezone.now() - max_age, then=Value(True)), default=Value(False), output_field=BooleanField())
        return super().get_queryset(request).annotate(_stale=stale)

    def get_form(self, request, obj=None, change=False, **kwargs):
        kwargs["form"] = ReferencePriceForm if obj is None else ReferencePriceChangeForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["market_id", "title", "category", "outcome", "mid_price"]
        return ["market", "outcome", "mid_price", "updated_at"]

    def get_readonly_fields(self, request, obj=None):
        return [] if obj is None else ["market", "outcome", "updated_at"]

    def has_delete_permission(self, request, obj=None):
        return False  # a price is replaced, not removed; an old one is refused as stale

    @admin.display(description="stale", boolean=True, ordering="_stale")
    def stale(self, obj):
        return obj._stale

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        market_id = obj.market_id if change else data["market_id"]
        outcome = obj.outcome if change else data["outcome"]
        prices = reference_price_set(
            market_id=market_id,
            outcome=outcome,
            mid_price=data["mid_price"],
            title=data.get("title") or "",
            category=data.get("category") or "",
        )
        copy_saved(ReferencePrice.objects.get(market_id=market_id, outcome=outcome), into=obj)
        messages.info(request, f"Reference price of {prices.market.pk}: YES {prices.yes}, NO {prices.no}.")
