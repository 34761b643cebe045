"""Operators (create, rotate the API key or the wallet signing secret) and staff API tokens.

A new key or secret is shown once, in a message, right after it is issued: the database holds
only hashes or unreadable fields.
"""

import re

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import quote
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils.html import format_html

from casino.models import Operator, StaffToken, WalletMode
from casino.services.credentials import operator_create, operator_rotate_key
from core.admin import admin_change_url, confirm_rotation, copy_saved
from wallets.admin import rotate_wallet_secrets, wallet_secret_message
from wallets.services.operator_wallet import operator_wallet_rotate_secret

CURRENCY_RE = re.compile(r"^[A-Z]{3}$")


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


@admin.register(Operator)
class OperatorAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "id",
        "wallet_mode",
        "currency",
        "is_active",
        "operator_share_pct",
        "notify_losses",
        "api_key_prefix",
        "created_at",
    ]
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
        return [
            "id", "name", "wallet_mode", "currency", "is_active", "notify_losses", "operator_share_pct", "api_key_prefix",
            "wallet_settings", "created_at",
        ]  # fmt: skip

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
        copy_saved(issued.operator, into=obj)
        messages.warning(request, _api_key_message(issued.operator, issued.api_key))
        if issued.operator.wallet_mode == WalletMode.S2S:
            messages.warning(request, wallet_secret_message(issued.operator, issued.wallet_secret))

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
            describe=wallet_secret_message,
        )


def _api_key_message(operator: Operator, api_key: str) -> str:
    return f"New API key for operator “{operator.name}” (shown once, store it now; the previous key no longer works): {api_key}"


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
