"""Wallet admin: the ledger and house-held balances (read-only), operator wallet server settings.

The ledger is append-only (PostgreSQL refuses UPDATE and DELETE); the admin never offers
either. Balances change through wallets.services only: the player page has the adjustment form.
"""

from decimal import Decimal

from django import forms
from django.contrib import admin

from casino.models import WalletMode
from core.admin import ReadOnlyAdminMixin, confirm_rotation
from wallets.adapters.s2s import MAX_CONCURRENT_CALLS
from wallets.models import DebtEntry, LedgerEntry, OperatorWallet, PlayerDebt, PlayerWallet, WalletOperation
from wallets.services.operator_wallet import operator_wallet_rotate_secret


def wallet_secret_message(operator, secret: str) -> str:
    return f"New wallet signing secret for operator “{operator.name}” (shown once, store it now): {secret}"


def rotate_wallet_secrets(modeladmin, request, queryset):
    return confirm_rotation(
        modeladmin,
        request,
        queryset,
        what="wallet signing secret",
        action="rotate_wallet_secret",
        rotate=lambda op: operator_wallet_rotate_secret(operator=op),
        describe=wallet_secret_message,
    )


@admin.register(LedgerEntry)
class LedgerEntryAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["created_at", "id", "player", "operator", "type", "amount", "balance_after", "currency", "actor", "description"]
    list_filter = ["type", "operator", "currency"]
    search_fields = ["player__id", "player__external_id", "id", "trade_id", "round_id", "actor"]
    list_select_related = ["player", "operator"]
    date_hierarchy = "created_at"
    ordering = ["-created_at"]


@admin.register(PlayerWallet)
class PlayerWalletAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["player", "operator", "balance", "updated_at"]
    list_filter = ["player__operator"]
    search_fields = ["player__id", "player__external_id"]
    list_select_related = ["player__operator"]
    ordering = ["-updated_at"]

    @admin.display(description="operator", ordering="player__operator__name")
    def operator(self, obj):
        return obj.player.operator


@admin.register(PlayerDebt)
class PlayerDebtAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """What players owe after reversed settlements (SPEC §12), recovered from their later credits."""

    list_display = ["player", "operator", "amount", "currency", "updated_at"]
    list_filter = ["player__operator", "currency"]
    search_fields = ["player__id", "player__external_id"]
    list_select_related = ["player__operator"]
    ordering = ["-amount"]

    @admin.display(description="operator", ordering="player__operator__name")
    def operator(self, obj):
        return obj.player.operator


@admin.register(DebtEntry)
class DebtEntryAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["created_at", "player", "kind", "amount", "reference_id", "description"]
    list_filter = ["kind"]
    search_fields = ["player__id", "player__external_id", "=reference_id"]
    list_select_related = ["player"]
    date_hierarchy = "created_at"
    ordering = ["-created_at"]


class OperatorWalletForm(forms.ModelForm):
    base_url = forms.URLField(
        required=False, assume_scheme="https", help_text="The operator's wallet server, e.g. https://wallet.example.com/s2s"
    )

    class Meta:
        model = OperatorWallet
        fields = ["base_url", "timeout_seconds", "max_concurrent_calls", "enabled"]

    def clean_max_concurrent_calls(self):
        limit = self.cleaned_data["max_concurrent_calls"]
        if not (1 <= limit <= MAX_CONCURRENT_CALLS):
            raise forms.ValidationError(f"Between 1 and {MAX_CONCURRENT_CALLS}.")
        return limit

    def clean_timeout_seconds(self):
        timeout = self.cleaned_data["timeout_seconds"]
        if not (Decimal("0") < timeout <= Decimal("60")):
            raise forms.ValidationError("Between 0 and 60 seconds.")
        return timeout

    def clean(self):
        data = super().clean()
        operator = self.instance.operator
        if operator.wallet_mode == WalletMode.S2S and data.get("enabled") and not data.get("base_url"):
            self.add_error("base_url", "An S2S operator's enabled wallet needs its server URL.")
        return data


@admin.register(OperatorWallet)
class OperatorWalletAdmin(admin.ModelAdmin):
    """Created with the operator (operator_create); the signing secret is never displayed, only rotated."""

    form = OperatorWalletForm
    list_display = ["operator", "wallet_mode", "base_url", "timeout_seconds", "max_concurrent_calls", "enabled", "updated_at"]
    list_filter = ["enabled", "operator__wallet_mode"]
    search_fields = ["operator__name", "base_url"]
    list_select_related = ["operator"]
    ordering = ["operator__name"]
    fields = ["operator", "wallet_mode", "base_url", "timeout_seconds", "max_concurrent_calls", "enabled", "updated_at"]
    readonly_fields = ["operator", "wallet_mode", "updated_at"]
    actions = ["rotate_wallet_secret"]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="wallet mode", ordering="operator__wallet_mode")
    def wallet_mode(self, obj):
        return obj.operator.get_wallet_mode_display()

    @admin.action(description="Rotate the signing secret of the selected wallets", permissions=["change"])
    def rotate_wallet_secret(self, request, queryset):
        operators = [wallet.operator for wallet in queryset.select_related("operator")]
        return rotate_wallet_secrets(self, request, operators)


@admin.register(WalletOperation)
class WalletOperationAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """S2S money movements. Operations flagged 'manual' (no definite answer before the cut-off)
    are the staff's queue: retry them, or resolve them after checking with the operator."""

    list_display = (
        "id",
        "created_at",
        "operator",
        "player",
        "kind",
        "type",
        "amount",
        "status",
        "operator_status",
        "attempts",
        "settled_locally",
    )
    list_filter = ("status", "kind", "type", "operator")
    search_fields = ("id", "round_id", "player__external_id", "operator_transaction_id")
    list_select_related = ("operator", "player")
    ordering = ("-created_at",)
    actions = ["retry_now", "mark_resolved"]

    @admin.action(description="Retry now (ask the operator again)")
    def retry_now(self, request, queryset):
        from wallets.services.operations import operation_retry_manual

        done = 0
        for operation in queryset.exclude(status__in=["ok", "refused", "rolled_back", "resolved"]):
            operation_retry_manual(operation=operation)
            done += 1
        self.message_user(request, f"Retried {done} operation(s).")

    @admin.action(description="Mark resolved (checked with the operator by hand)")
    def mark_resolved(self, request, queryset):
        from wallets.services.operations import operation_resolve

        for operation in queryset:
            operation_resolve(operation=operation, note="resolved in the admin site", actor=f"staff:{request.user.get_username()}")
        self.message_user(request, f"Resolved {queryset.count()} operation(s).")
