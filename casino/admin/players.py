"""Players: tier, status and the operator's limits (SPEC §13), balance, and the staff balance adjustment
(the service behind POST admin/balance)."""

import json
import uuid
from decimal import Decimal

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import IntegrityError
from django.http import HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path
from django.utils.html import format_html

from casino.models import Player, WalletMode
from core.admin import admin_change_url
from core.errors import HouseError
from core.idempotency import IdempotencySlot, idempotency_lookup, request_fingerprint
from risk.models import PlayerRiskProfile, TierChangeSource, tier_change_record
from wallets.services.balances import wallet_balance, wallet_ensure
from wallets.services.transfers import wallet_adjust


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
    list_display = ["external_id", "operator", "tier", "status", "currency", "balance_column", "total_wagered", "created_at"]
    list_filter = ["status", "operator__wallet_mode", "tier", "currency", "operator"]
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
        return [
            "id",
            "operator",
            "external_id",
            "tier",
            "status",
            "max_stake_per_trade",
            "max_daily_stake",
            "max_daily_loss",
            "currency",
            "balance",
            "total_wagered",
            "created_at",
            "player_class",
            "class_components",
        ]

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return []
        return ["id", "operator", "external_id", "currency", "balance", "total_wagered", "created_at", "player_class", "class_components"]

    def has_delete_permission(self, request, obj=None):
        return False  # the ledger and trades refer to the player

    def save_model(self, request, obj, form, change):
        if not change:
            obj.currency = obj.operator.currency
        super().save_model(request, obj, form, change)
        if change and "tier" in form.changed_data:  # SPEC §16: a staff override, recorded
            tier_change_record(
                player_ids=[obj.pk],
                from_tier=form.initial.get("tier", ""),
                to_tier=obj.tier,
                source=TierChangeSource.STAFF,
                actor=f"staff:{request.user.get_username()}",
            )
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

    # Issue 14 (SPEC §16): the player's class and its five components, for staff only.
    def _profile(self, obj) -> PlayerRiskProfile | None:
        return PlayerRiskProfile.objects.filter(player_id=obj.pk).first()

    @admin.display(description="class")
    def player_class(self, obj):
        profile = self._profile(obj)
        if profile is None:
            return "not scored yet"
        return f"{profile.player_class} (composite {profile.composite_score} / 100, sharp score {profile.sharp_score})"

    @admin.display(description="class components")
    def class_components(self, obj):
        profile = self._profile(obj)
        if profile is None:
            return "-"
        return format_html(
            "win rate {} · edge {} · timing {} · sizing {} · diversity {} (each 0-1; scored {}, trades scored {})",
            profile.win_rate,
            profile.edge,
            profile.timing,
            profile.sizing,
            profile.diversity,
            profile.computed_at or "never",
            profile.trades_scored,
        )

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
