"""House staff admin for operators, players, markets, prices, trades, positions and exposure.

Money, keys and prices change only through the services; this module parses forms, calls
them and shows the result. Secrets (API keys, wallet signing secrets) are shown once, in a
message, right after they are issued: the database holds only hashes or unreadable fields.
"""

import json
import re
import uuid
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.utils import quote
from django.core.exceptions import PermissionDenied
from django.db import IntegrityError
from django.db.models import BooleanField, Case, ExpressionWrapper, F, OuterRef, Subquery, Sum, Value, When
from django.db.models.functions import Greatest
from django.http import HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html

from casino.errors import HouseError
from casino.models import (
    CasinoSettings,
    IdempotencyRecord,
    Market,
    MarketExposure,
    Operator,
    Outcome,
    Player,
    Position,
    ReferencePrice,
    StaffToken,
    Trade,
    WalletMode,
)
from casino.money import PRICE_STEP
from casino.services.credentials import operator_create, operator_rotate_key
from casino.services.exposure import exposure_book
from casino.services.idempotency import IdempotencySlot, idempotency_lookup, request_fingerprint
from casino.services.markets import casino_settings, reference_price_set
from risk.models import MarketRiskLimit
from risk.services.assessment import market_exposure_cap
from wallets.services.balances import wallet_balance, wallet_ensure
from wallets.services.operator_wallet import operator_wallet_rotate_secret
from wallets.services.transfers import wallet_adjust

admin.site.site_header = "House operations"
admin.site.site_title = "House admin"
admin.site.index_title = "Operations"

CURRENCY_RE = re.compile(r"^[A-Z]{3}$")
MARKET_ID_RE = re.compile(r"^[A-Za-z0-9_\-:.]{1,128}$")
CONFIRM_TEMPLATE = "admin/house/confirm_rotation.html"


# --- shared building blocks -------------------------------------------------------------------


class ReadOnlyAdminMixin:
    """Records written only by services (trades, ledger, ...): staff may look, never touch."""

    actions = None

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class SingletonAdminMixin:
    """Configuration held in one row (pk 1): edit it, never add a second one or delete it."""

    def has_add_permission(self, request):
        return super().has_add_permission(request) and not self.model.objects.exists()

    def has_delete_permission(self, request, obj=None):
        return False


def admin_change_url(obj) -> str:
    opts = obj._meta
    return reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[quote(obj.pk)])


def confirm_rotation(
    modeladmin: admin.ModelAdmin,
    request,
    objects,
    *,
    what: str,
    rotate: Callable[[object], str],
    describe: Callable[[object, str], str],
    action: str | None = None,
):
    """Ask before rotating a credential (the old one stops working at once), then rotate.

    Used by change-list actions (``action`` set: the confirmation posts the action again) and
    by the per-object views. Returns the confirmation page, or None once rotated.
    """
    objects = list(objects)
    if request.method == "POST" and request.POST.get("post") == "yes":
        for obj in objects:
            secret = rotate(obj)
            modeladmin.log_change(request, obj, [{"changed": {"fields": [what]}}])
            messages.warning(request, describe(obj, secret))
        return None
    context = {
        **modeladmin.admin_site.each_context(request),
        "title": f"Rotate {what}?",
        "what": what,
        "objects": objects,
        "opts": modeladmin.model._meta,
        "action": action,
        "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
    }
    return TemplateResponse(request, CONFIRM_TEMPLATE, context)


def _api_key_message(operator: Operator, api_key: str) -> str:
    return f"New API key for operator “{operator.name}” (shown once, store it now; the previous key no longer works): {api_key}"


def _wallet_secret_message(operator: Operator, secret: str) -> str:
    return f"New wallet signing secret for operator “{operator.name}” (shown once, store it now): {secret}"


# --- operators ----------------------------------------------------------------------------------


class OperatorCreateForm(forms.ModelForm):
    """Add form: the key and wallet secret are issued by operator_create, not by a model save."""

    wallet_url = forms.URLField(
        required=False, assume_scheme="https", help_text="The operator's wallet server (S2S mode); can be set later."
    )

    class Meta:
        model = Operator
        fields = ["name", "wallet_mode", "currency"]

    def clean_currency(self):
        currency = self.cleaned_data["currency"].strip().upper()
        if not CURRENCY_RE.match(currency):
            raise forms.ValidationError("Three-letter ISO code, e.g. USD.")
        return currency


def rotate_api_keys(modeladmin, request, queryset):
    return confirm_rotation(
        modeladmin,
        request,
        queryset,
        what="API key",
        action="rotate_api_key",
        rotate=lambda op: operator_rotate_key(operator=op),
        describe=_api_key_message,
    )


def rotate_wallet_secrets(modeladmin, request, queryset):
    return confirm_rotation(
        modeladmin,
        request,
        queryset,
        what="wallet signing secret",
        action="rotate_wallet_secret",
        rotate=lambda op: operator_wallet_rotate_secret(operator=op),
        describe=_wallet_secret_message,
    )


@admin.register(Operator)
class OperatorAdmin(admin.ModelAdmin):
    list_display = ["name", "id", "wallet_mode", "currency", "is_active", "api_key_prefix", "created_at"]
    list_filter = ["wallet_mode", "is_active", "currency"]
    search_fields = ["name", "id"]
    ordering = ["name"]
    actions = ["rotate_api_key", "rotate_wallet_secret"]
    change_form_template = "admin/casino/operator/change_form.html"

    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is None:
            kwargs["form"] = OperatorCreateForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["name", "wallet_mode", "currency", "wallet_url"]
        return ["id", "name", "wallet_mode", "currency", "is_active", "api_key_prefix", "wallet_settings", "created_at"]

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return []
        # Switching wallet mode or currency would strand the balances already held.
        return ["id", "wallet_mode", "currency", "api_key_prefix", "wallet_settings", "created_at"]

    def has_delete_permission(self, request, obj=None):
        return False  # players, trades and the ledger refer to it; deactivate instead

    @admin.display(description="wallet settings")
    def wallet_settings(self, obj):
        url = reverse("admin:wallets_operatorwallet_change", args=[quote(obj.pk)])
        return format_html('<a href="{}">Wallet server settings</a>', url)

    def save_model(self, request, obj, form, change):
        if change:
            return super().save_model(request, obj, form, change)
        issued = operator_create(
            name=form.cleaned_data["name"],
            wallet_mode=form.cleaned_data["wallet_mode"],
            currency=form.cleaned_data["currency"],
            wallet_url=form.cleaned_data.get("wallet_url") or "",
        )
        _copy_saved(issued.operator, into=obj)
        messages.warning(request, _api_key_message(issued.operator, issued.api_key))
        if issued.operator.wallet_mode == WalletMode.S2S:
            messages.warning(request, _wallet_secret_message(issued.operator, issued.wallet_secret))

    @admin.action(description="Rotate API key of the selected operators", permissions=["change"])
    def rotate_api_key(self, request, queryset):
        return rotate_api_keys(self, request, queryset)

    @admin.action(description="Rotate wallet signing secret of the selected operators", permissions=["change"])
    def rotate_wallet_secret(self, request, queryset):
        return rotate_wallet_secrets(self, request, queryset)

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("<path:object_id>/rotate-key/", view(self.rotate_key_view), name="casino_operator_rotate_key"),
            path(
                "<path:object_id>/rotate-wallet-secret/",
                view(self.rotate_wallet_secret_view),
                name="casino_operator_rotate_wallet_secret",
            ),
        ] + super().get_urls()

    def _rotate_one(self, request, object_id, *, what, rotate, describe):
        operator = get_object_or_404(Operator, pk=object_id)
        if not self.has_change_permission(request, operator):
            raise PermissionDenied
        response = confirm_rotation(self, request, [operator], what=what, rotate=rotate, describe=describe)
        return response or HttpResponseRedirect(admin_change_url(operator))

    def rotate_key_view(self, request, object_id):
        return self._rotate_one(
            request, object_id, what="API key", rotate=lambda op: operator_rotate_key(operator=op), describe=_api_key_message
        )

    def rotate_wallet_secret_view(self, request, object_id):
        return self._rotate_one(
            request,
            object_id,
            what="wallet signing secret",
            rotate=lambda op: operator_wallet_rotate_secret(operator=op),
            describe=_wallet_secret_message,
        )


def _copy_saved(saved, *, into) -> None:
    """Make the admin's unsaved instance the row a service created (for the log entry and redirect)."""
    for field in saved._meta.concrete_fields:
        setattr(into, field.attname, getattr(saved, field.attname))
    into._state.adding = False
    into._state.db = saved._state.db


# --- players ------------------------------------------------------------------------------------


class BalanceAdjustmentForm(forms.Form):
    amount = forms.DecimalField(max_digits=14, decimal_places=2, min_value=Decimal("0.01"), help_text="Dollars, up to 2 decimal places.")
    action = forms.ChoiceField(choices=[("deposit", "Deposit (credit the player)"), ("withdraw", "Withdraw (debit the player)")])
    description = forms.CharField(max_length=500, required=False, help_text="Why: promotion, refund, correction ... (kept in the ledger).")
    # One id per rendered form: a double click or a browser resubmit moves the money once.
    submission_id = forms.UUIDField(widget=forms.HiddenInput)


class PlayerAddForm(forms.ModelForm):
    class Meta:
        model = Player
        fields = ["operator", "external_id", "tier"]


@admin.register(Player)
class PlayerAdmin(admin.ModelAdmin):
    list_display = ["external_id", "operator", "tier", "currency", "balance_column", "total_wagered", "created_at"]
    list_filter = ["operator__wallet_mode", "tier", "currency", "operator"]
    search_fields = ["external_id", "id", "operator__name"]
    list_select_related = ["operator", "wallet"]
    ordering = ["-created_at"]
    change_form_template = "admin/casino/player/change_form.html"
    adjust_template = "admin/casino/player/adjust_balance.html"

    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is None:
            kwargs["form"] = PlayerAddForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["operator", "external_id", "tier"]
        return ["id", "operator", "external_id", "tier", "currency", "balance", "total_wagered", "created_at"]

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return []
        return ["id", "operator", "external_id", "currency", "balance", "total_wagered", "created_at"]

    def has_delete_permission(self, request, obj=None):
        return False  # the ledger and trades refer to the player

    def save_model(self, request, obj, form, change):
        if not change:
            obj.currency = obj.operator.currency
        super().save_model(request, obj, form, change)
        if not change and obj.operator.wallet_mode == WalletMode.INTERNAL:
            wallet_ensure(player=obj)

    @admin.display(description="balance", ordering="wallet__balance")
    def balance_column(self, obj):
        if obj.operator.wallet_mode != WalletMode.INTERNAL:
            return "held by operator"
        wallet = getattr(obj, "wallet", None)
        return wallet.balance if wallet is not None else Decimal("0.00")

    @admin.display(description="balance")
    def balance(self, obj):
        if obj.operator.wallet_mode != WalletMode.INTERNAL:
            return "Held by the operator's wallet (S2S)"
        return f"{wallet_balance(player=obj)} {obj.currency}"

    def get_urls(self):
        return [
            path(
                "<path:object_id>/adjust-balance/",
                self.admin_site.admin_view(self.adjust_balance_view),
                name="casino_player_adjust_balance",
            ),
        ] + super().get_urls()

    def adjust_balance_view(self, request, object_id):
        """Staff credit/debit through wallet_adjust, the service behind POST admin/balance."""
        player = get_object_or_404(Player.objects.select_related("operator"), pk=object_id)
        if not self.has_change_permission(request, player):
            raise PermissionDenied
        if request.method == "POST":
            form = BalanceAdjustmentForm(request.POST)
            if form.is_valid():
                try:
                    new_balance = self._adjust(request, player, form.cleaned_data)
                except HouseError as exc:
                    form.add_error(None, exc.message)
                else:
                    if new_balance is not None:
                        self.log_change(request, player, f"Balance adjustment: {form.cleaned_data['action']} {form.cleaned_data['amount']}")
                        messages.success(request, f"Balance of {player.external_id} is now {new_balance} {player.currency}.")
                    return HttpResponseRedirect(admin_change_url(player))
        else:
            form = BalanceAdjustmentForm(initial={"action": "deposit", "submission_id": uuid.uuid4()})
        context = {
            **self.admin_site.each_context(request),
            "title": f"Adjust balance of {player.external_id}",
            "opts": self.model._meta,
            "original": player,
            "player": player,
            "form": form,
            "internal_wallet": player.operator.wallet_mode == WalletMode.INTERNAL,
            "current_balance": wallet_balance(player=player) if player.operator.wallet_mode == WalletMode.INTERNAL else None,
        }
        return TemplateResponse(request, self.adjust_template, context)

    def _adjust(self, request, player, data) -> Decimal | None:
        """Adjust once per submission id; None when this submission was already applied."""
        scope = f"admin:{request.user.pk}:adjust-balance:{player.pk}"
        key = str(data["submission_id"])
        fingerprint = request_fingerprint(str(data["amount"]), data["action"], data["description"])
        stored = idempotency_lookup(scope=scope, key=key)
        if stored is None:
            slot = IdempotencySlot(
                scope=scope,
                key=key,
                request_hash=fingerprint,
                render=lambda change: (200, json.dumps({"success": True, "newBalance": str(change.balance_after)})),
            )
            try:
                change = wallet_adjust(
                    player=player,
                    amount=data["amount"],
                    action=data["action"],
                    description=data["description"],
                    actor=f"staff:{request.user.get_username()}",
                    idempotency=slot,
                )
            except IntegrityError:
                stored = idempotency_lookup(scope=scope, key=key)
                if stored is None:
                    raise
            else:
                return change.balance_after
        if stored.request_hash != fingerprint:
            raise HouseError(
                "This form was already submitted with other values; reload the page to make another adjustment.",
                code="idempotency_key_reused",
            )
        messages.info(request, "This adjustment was already applied; it was not repeated.")
        return None


# --- markets, configuration, prices -------------------------------------------------------------


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
        "yes_price",
        "worst_case_loss",
        "updated_at",
    ]
    list_filter = ["status", "disabled", "category"]
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
            fields += ["reference_prices", "exposure", "created_at", "updated_at"]
        return fields

    def get_readonly_fields(self, request, obj=None):
        # Status and outcome belong to settlement (resolve / void), never to a form.
        readonly = ["status", "outcome"]
        if obj is not None:
            readonly += ["id", "reference_prices", "exposure", "created_at", "updated_at"]
        return readonly

    def has_delete_permission(self, request, obj=None):
        return False  # markets end by settlement (resolve or void)

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
        _copy_saved(ReferencePrice.objects.get(market_id=market_id, outcome=outcome), into=obj)
        messages.info(request, f"Reference price of {prices.market.pk}: YES {prices.yes}, NO {prices.no}.")


# --- read-only records ------------------------------------------------------------------------


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

    list_display = ["market", "shard", "yes_shares", "no_shares", "cash_in", "shard_worst_case", "quota", "cap", "updated_at"]
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


@admin.register(IdempotencyRecord)
class IdempotencyRecordAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["created_at", "scope", "key", "status_code"]
    list_filter = ["status_code"]
    search_fields = ["scope", "key"]
    ordering = ["-created_at"]


@admin.register(StaffToken)
class StaffTokenAdmin(admin.ModelAdmin):
    """Staff API tokens are issued by `create_staff_token` (shown once there); here they are revoked."""

    list_display = ["user", "token_hash_prefix", "created_at", "revoked"]
    list_filter = ["revoked"]
    search_fields = ["user__username"]
    list_select_related = ["user"]
    ordering = ["-created_at"]
    actions = ["revoke"]
    fields = ["user", "token_hash_prefix", "created_at", "revoked"]
    readonly_fields = ["user", "token_hash_prefix", "created_at", "revoked"]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="token hash")
    def token_hash_prefix(self, obj):
        return f"{obj.token_hash[:12]}…"

    @admin.action(description="Revoke the selected staff tokens", permissions=["change"])
    def revoke(self, request, queryset):
        count = queryset.filter(revoked=False).update(revoked=True)
        messages.success(request, f"Revoked {count} token(s).")
