"""Staff admin for settlement: pick an open market, preview what resolving or voiding it pays,
confirm, then follow the payouts (progress, totals, failures with a retry button).

Pages (all under /admin/settlement/settlement/, staff only, every write a CSRF-protected POST):
  settle/                                  open markets with links to resolve YES / NO / void
  resolve/<market id>/<yes|no|void>/       the confirmation page (settlement_plan), POST → market_settle
  <settlement id>/change/                  the settlement page (read-only)
  <settlement id>/run/                     POST: settle_market.delay (inline when Celery is eager)
  <settlement id>/payouts/<id>/retry/      POST: payout_retry, then settle_market.delay
  <settlement id>/reverse/                 the reversal confirmation page (what each player gives back),
                                           POST (reason required) → settlement_reverse
Decisions and payouts go through settlement.services only; this module parses, calls, shows.
"""

from decimal import Decimal

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.utils import quote
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Q, Sum
from django.http import HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from kombu.exceptions import OperationalError as BrokerError

from casino.models import Market, MarketStatus, PositionStatus
from core.admin import ReadOnlyAdminMixin
from core.errors import HouseError
from core.money import CENT, ZERO
from settlement.models import (
    LIVE_SETTLEMENT,
    LossNotice,
    Payout,
    PayoutStatus,
    ProposalStatus,
    ResolutionProposal,
    Reversal,
    ReversalItem,
    Settlement,
    SettlementAction,
    SettlementStatus,
)
from settlement.services.decide import market_settle, settlement_plan
from settlement.services.payouts import payout_retry
from settlement.services.proposals import proposal_confirm, proposal_reject
from settlement.services.reversal import settlement_reverse
from settlement.tasks import settle_market

SETTLE_TEMPLATE = "admin/settlement/settle.html"
CONFIRM_TEMPLATE = "admin/settlement/confirm.html"
REVERSE_TEMPLATE = "admin/settlement/reverse_confirm.html"
DETAIL_TEMPLATE = "admin/settlement/detail.html"
PROPOSALS_TEMPLATE = "admin/settlement/proposals_confirm.html"
SETTLE_ROWS = 100
FAILURE_ROWS = 200

# The three decisions, as they appear in the URL: (action, outcome, label).
DECISIONS = {
    "yes": (SettlementAction.RESOLVE, "yes", "Resolve YES"),
    "no": (SettlementAction.RESOLVE, "no", "Resolve NO"),
    "void": (SettlementAction.VOID, None, "Void"),
}


def _cents(value: Decimal | None) -> Decimal:
    """A sum of cent amounts, shown as such (SQLite's SUM comes back with float noise)."""
    return (value or ZERO).quantize(CENT)


def decision_label(action: str, outcome: str | None) -> str:
    return f"Resolve {outcome.upper()}" if action == SettlementAction.RESOLVE else "Void"


class SettleForm(forms.Form):
    reason = forms.CharField(
        max_length=500,
        required=False,
        widget=forms.Textarea(attrs={"rows": 2, "cols": 60}),
        help_text="Kept on the settlement record (a void without one records “Voided by admin”).",
    )


class ReverseForm(forms.Form):
    reason = forms.CharField(
        max_length=500,
        widget=forms.Textarea(attrs={"rows": 2, "cols": 60}),
        help_text="Required: why this settlement was wrong. Kept on the reversal record.",
    )


@admin.register(Settlement)
class SettlementAdmin(admin.ModelAdmin):
    list_display = [
        "market_column",
        "action",
        "outcome",
        "status",
        "progress_column",
        "total_positions",
        "total_winners",
        "total_payout",
        "paid_amount",
        "casino_profit",
        "failed_count",
        "requested_by",
        "requested_at",
    ]
    list_filter = ["status", "action"]
    search_fields = ["market__id", "market__title"]
    list_select_related = ["market", "requested_by"]
    ordering = ["-requested_at"]
    actions = None
    change_list_template = "admin/settlement/settlement/change_list.html"

    # A settlement is created by a decision (the settle pages), changed only by its payouts.
    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def _may_settle(self, request) -> bool:
        opts = self.opts
        return request.user.has_perm(f"{opts.app_label}.change_{opts.model_name}")

    @admin.display(description="market", ordering="market__title")
    def market_column(self, obj):
        return format_html("{}<br><span class='quiet'>{}</span>", obj.market.title or obj.market_id, obj.market_id)

    @admin.display(description="progress (paid/due)")
    def progress_column(self, obj):
        return obj.progress

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("settle/", view(self.settle_view), name="settlement_settlement_settle"),
            path("resolve/<str:market_id>/<str:decision>/", view(self.confirm_view), name="settlement_settlement_resolve"),
            path("<uuid:object_id>/run/", view(self.run_view), name="settlement_settlement_run"),
            path("<uuid:object_id>/reverse/", view(self.reverse_view), name="settlement_settlement_reverse"),
            path("<uuid:object_id>/payouts/<uuid:payout_id>/retry/", view(self.retry_view), name="settlement_settlement_retry"),
            *super().get_urls(),
        ]

    def _context(self, request, title: str, **extra) -> dict:
        return {**self.admin_site.each_context(request), "title": title, "opts": self.opts, **extra}

    # --- choosing a market ------------------------------------------------------------------

    def settle_view(self, request):
        if not self._may_settle(request):
            raise PermissionDenied
        query = request.GET.get("q", "").strip()
        markets = Market.objects.filter(status__in=[MarketStatus.OPEN, MarketStatus.CLOSED])
        if query:
            markets = markets.filter(Q(id__icontains=query) | Q(title__icontains=query) | Q(category__icontains=query))
        markets = markets.annotate(
            open_positions=Count("positions", filter=Q(positions__status=PositionStatus.OPEN, positions__shares__gt=0))
        ).order_by("-open_positions", "-updated_at")
        rows = list(markets[: SETTLE_ROWS + 1])
        context = self._context(
            request,
            "Settle a market",
            markets=rows[:SETTLE_ROWS],
            truncated=len(rows) > SETTLE_ROWS,
            row_limit=SETTLE_ROWS,
            query=query,
            decisions=[(key, label) for key, (_, _, label) in DECISIONS.items()],
        )
        return TemplateResponse(request, SETTLE_TEMPLATE, context)

    # --- the confirmation page --------------------------------------------------------------

    def confirm_view(self, request, market_id: str, decision: str):
        if not self._may_settle(request):
            raise PermissionDenied
        settle_url = reverse("admin:settlement_settlement_settle")
        if decision not in DECISIONS:
            messages.error(request, f"Unknown decision “{decision}”: resolve yes, resolve no or void.")
            return HttpResponseRedirect(settle_url)
        action, outcome, label = DECISIONS[decision]
        market = Market.objects.filter(pk=market_id).first()
        if market is None:
            messages.error(request, f"Market not found: {market_id}")
            return HttpResponseRedirect(settle_url)
        if request.method == "POST":
            form = SettleForm(request.POST)
            if form.is_valid():
                return self._settle(request, market, action, outcome, form.cleaned_data["reason"])
        else:
            existing = Settlement.objects.filter(market=market, status__in=LIVE_SETTLEMENT).first()
            if existing is not None:
                return self._already_settled(request, existing, action, outcome)
            form = SettleForm()
        plan = settlement_plan(market_id=market.pk, action=action, outcome=outcome)
        by_operator = [{"name": name, **row} for name, row in sorted(plan.by_operator.items())]
        context = self._context(
            request,
            f"{label}: {market.title or market.pk}",
            market=market,
            decision=decision,
            label=label,
            plan=plan,
            is_void=action == SettlementAction.VOID,
            by_operator=by_operator,
            form=form,
            market_url=reverse("admin:casino_market_change", args=[quote(market.pk)]),
            settle_url=settle_url,
        )
        return TemplateResponse(request, CONFIRM_TEMPLATE, context)

    def _settle(self, request, market: Market, action: str, outcome: str | None, reason: str):
        try:
            settlement = market_settle(market_id=market.pk, action=action, outcome=outcome, reason=reason, requested_by=request.user)
        except HouseError as exc:
            return self._settle_refused(request, market, exc)
        label = decision_label(action, outcome)
        self.log_change(request, settlement, f"{label} confirmed")
        messages.success(
            request,
            f"{label} recorded for “{market.title or market.pk}”: trading stopped, {settlement.total_positions} position(s), "
            f"payout {settlement.total_payout}, casino profit {settlement.casino_profit}.",
        )
        return HttpResponseRedirect(self._detail_url(settlement))

    def _settle_refused(self, request, market: Market, exc: HouseError):
        """Another decision taken first leads to that settlement; anything else back to the list."""
        if exc.code == "market_already_settled":
            existing = Settlement.objects.filter(market=market, status__in=LIVE_SETTLEMENT).first()
            taken = decision_label(existing.action, existing.outcome) if existing else "another decision"
            messages.error(request, f"{exc.message}: this market was already settled ({taken}); nothing was changed.")
            if existing is not None:
                return HttpResponseRedirect(self._detail_url(existing))
        else:
            messages.error(request, exc.message)
        return HttpResponseRedirect(reverse("admin:settlement_settlement_settle"))

    def _already_settled(self, request, existing: Settlement, action: str, outcome: str | None):
        taken = decision_label(existing.action, existing.outcome)
        if existing.action == action and existing.outcome == outcome:
            messages.info(request, f"This market is already settled ({taken}); here is its settlement.")
        else:
            messages.error(request, f"Market already settled ({taken}): it cannot be settled again with another decision.")
        return HttpResponseRedirect(self._detail_url(existing))

    # --- reversing a settlement (SPEC §12) ---------------------------------------------------

    REVERSE_ROWS = 200

    def reverse_view(self, request, object_id):
        if not self._may_settle(request):
            raise PermissionDenied
        settlement = get_object_or_404(Settlement.objects.select_related("market"), pk=object_id)
        latest = Settlement.objects.filter(market_id=settlement.market_id).order_by("-requested_at").first()
        if settlement.status not in (SettlementStatus.SETTLING, SettlementStatus.COMPLETED) or latest != settlement:
            messages.error(request, "Only the market's latest settlement can be reversed, once.")
            return HttpResponseRedirect(self._detail_url(settlement))
        form = ReverseForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                reversal = settlement_reverse(market_id=settlement.market_id, reason=form.cleaned_data["reason"], requested_by=request.user)
            except HouseError as exc:
                messages.error(request, exc.message)
                return HttpResponseRedirect(self._detail_url(settlement))
            self.log_change(request, settlement, f"Reversed: {reversal.reason}")
            messages.success(
                request,
                f"Settlement reversed: {reversal.total_positions} position(s) open again, {reversal.total_items} payout(s) "
                f"({reversal.total_due}) to take back, {reversal.total_cancelled} unpaid payout(s) cancelled; the market is closed.",
            )
            return HttpResponseRedirect(self._detail_url(settlement))
        takes = (
            Payout.objects.filter(settlement=settlement, status__in=[PayoutStatus.PAID, PayoutStatus.SENDING])
            .values("player__external_id", "operator__name", "operator__wallet_mode")
            .annotate(payouts=Count("pk"), amount=Sum("amount"))
            .order_by("-amount", "player__external_id")
        )
        rows = [{**row, "amount": _cents(row["amount"])} for row in takes[: self.REVERSE_ROWS + 1]]
        unpaid = Payout.objects.filter(settlement=settlement, status__in=[PayoutStatus.PENDING, PayoutStatus.FAILED]).count()
        total = _cents(
            Payout.objects.filter(settlement=settlement, status__in=[PayoutStatus.PAID, PayoutStatus.SENDING]).aggregate(s=Sum("amount"))[
                "s"
            ]
        )
        context = self._context(
            request,
            f"Reverse the settlement of {settlement.market.title or settlement.market_id}",
            settlement=settlement,
            market=settlement.market,
            label=decision_label(settlement.action, settlement.outcome),
            players=rows[: self.REVERSE_ROWS],
            truncated=len(rows) > self.REVERSE_ROWS,
            total=total,
            unpaid=unpaid,
            form=form,
            detail_url=self._detail_url(settlement),
        )
        return TemplateResponse(request, REVERSE_TEMPLATE, context)

    # --- the settlement page ----------------------------------------------------------------

    def _detail_url(self, settlement: Settlement) -> str:
        return reverse("admin:settlement_settlement_change", args=[quote(settlement.pk)])

    def change_view(self, request, object_id, form_url="", extra_context=None):
        """Read-only: a settlement moves through its payouts, never through a form."""
        if request.method != "GET":
            return HttpResponseNotAllowed(["GET"])
        settlement = self.get_object(request, object_id)
        if settlement is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        if not self.has_view_or_change_permission(request, settlement):
            raise PermissionDenied
        context = self._context(
            request,
            f"Settlement of {settlement.market.title or settlement.market_id}",
            **self._detail(settlement),
            may_settle=self._may_settle(request),
            **(extra_context or {}),
        )
        return TemplateResponse(request, DETAIL_TEMPLATE, context)

    def _detail(self, settlement: Settlement) -> dict:
        payouts = Payout.objects.filter(settlement=settlement)
        counts = dict(payouts.order_by().values_list("status").annotate(n=Count("pk")))
        due = settlement.total_winners if settlement.action == SettlementAction.RESOLVE else settlement.total_positions
        if settlement.status == SettlementStatus.COMPLETED or not due:
            percent = 100
        else:
            percent = min(100, settlement.paid_count * 100 // due)
        by_operator = (
            payouts.order_by("operator__name")
            .values("operator__name", "operator__wallet_mode")
            .annotate(
                positions=Count("pk"),
                payout=Sum("amount"),
                paid=Sum("amount", filter=Q(status=PayoutStatus.PAID)),
                failed=Count("pk", filter=Q(status=PayoutStatus.FAILED)),
            )
        )
        by_operator = [{**row, "payout": _cents(row["payout"]), "paid": _cents(row["paid"])} for row in by_operator]
        failed = list(
            payouts.filter(status=PayoutStatus.FAILED).select_related("player", "operator").order_by("updated_at")[: FAILURE_ROWS + 1]
        )
        return {
            "settlement": settlement,
            "original": settlement,
            "market": settlement.market,
            "label": decision_label(settlement.action, settlement.outcome),
            "is_void": settlement.action == SettlementAction.VOID,
            "completed": settlement.status != SettlementStatus.SETTLING,
            "reversible": settlement.status in (SettlementStatus.SETTLING, SettlementStatus.COMPLETED)
            and not Settlement.objects.filter(market_id=settlement.market_id, requested_at__gt=settlement.requested_at).exists(),
            "reversal": getattr(settlement, "reversal", None),
            "reversal_items": dict(
                ReversalItem.objects.filter(reversal__settlement=settlement).order_by().values_list("status").annotate(n=Count("pk"))
            ),
            "due": due,
            "percent": percent,
            "counts": {status: counts.get(status, 0) for status in PayoutStatus.values},
            # Losing positions are closed with no payout row (so is a winner whose shares round to no cent).
            "losers": settlement.total_positions - settlement.total_winners if settlement.action == SettlementAction.RESOLVE else 0,
            "by_operator": by_operator,
            "failed": failed[:FAILURE_ROWS],
            "failed_truncated": len(failed) > FAILURE_ROWS,
            "market_url": reverse("admin:casino_market_change", args=[quote(settlement.market_id)]),
            "payouts_url": reverse("admin:settlement_payout_changelist") + f"?settlement__id__exact={settlement.pk}",
            "failed_payouts_url": reverse("admin:settlement_payout_changelist")
            + f"?settlement__id__exact={settlement.pk}&status__exact={PayoutStatus.FAILED}",
        }

    # --- paying -----------------------------------------------------------------------------

    def _post_only(self, request, object_id) -> Settlement:
        if request.method != "POST":
            raise PermissionDenied  # writes are CSRF-checked POSTs from the settlement page
        if not self._may_settle(request):
            raise PermissionDenied
        return get_object_or_404(Settlement, pk=object_id)

    def run_view(self, request, object_id):
        settlement = self._post_only(request, object_id)
        if self._schedule(request, settlement):
            self._report_run(request, settlement)
        return HttpResponseRedirect(self._detail_url(settlement))

    def retry_view(self, request, object_id, payout_id):
        settlement = self._post_only(request, object_id)
        payout = get_object_or_404(Payout, pk=payout_id, settlement=settlement)
        if payout.status != PayoutStatus.FAILED:
            messages.info(request, f"The payout to {payout.player.external_id} is no longer failed ({payout.get_status_display()}).")
            return HttpResponseRedirect(self._detail_url(settlement))
        payout_retry(payout_id=payout.pk)
        self.log_change(request, settlement, f"Payout {payout.pk} to {payout.player.external_id} retried")
        messages.success(request, f"The payout of {payout.amount} to {payout.player.external_id} is queued again.")
        if self._schedule(request, settlement):
            self._report_run(request, settlement)
        return HttpResponseRedirect(self._detail_url(settlement))

    def _schedule(self, request, settlement: Settlement) -> bool:
        try:
            settle_market.delay(str(settlement.pk))
        except BrokerError:
            messages.error(request, "Could not reach the task broker; payouts were not started (the periodic resume will pick them up).")
            return False
        return True

    def _report_run(self, request, settlement: Settlement) -> None:
        settlement.refresh_from_db()
        if settlement.status == SettlementStatus.COMPLETED:
            messages.success(request, f"Settlement completed: {settlement.paid_count} paid, {settlement.paid_amount} in total.")
        elif settle_market.app.conf.task_always_eager:
            messages.warning(
                request,
                f"Payouts ran: {settlement.progress} paid, {settlement.failed_count} failed; the rest is waiting on operator wallets.",
            )
        else:
            messages.info(request, "Payout task queued: a Celery worker pays the outstanding payouts; refresh to follow the progress.")


@admin.register(Payout)
class PayoutAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = [
        "updated_at",
        "settlement_column",
        "player_column",
        "operator",
        "outcome",
        "shares",
        "cost_basis",
        "amount",
        "status",
        "attempts",
        "last_error",
        "transaction_id",
    ]
    list_filter = ["status", "settlement", "operator"]
    search_fields = ["player__external_id", "=player__id", "settlement__market__id", "settlement__market__title", "=transaction_id", "=id"]
    list_select_related = ["settlement__market", "player", "operator"]
    ordering = ["-updated_at"]

    @admin.display(description="settlement", ordering="settlement__requested_at")
    def settlement_column(self, obj):
        settlement = obj.settlement
        url = reverse("admin:settlement_settlement_change", args=[quote(settlement.pk)])
        label = f"{decision_label(settlement.action, settlement.outcome)}: {settlement.market.title or settlement.market_id}"
        return format_html('<a href="{}">{}</a>', url, label)

    @admin.display(description="player", ordering="player__external_id")
    def player_column(self, obj):
        return obj.player.external_id


class ProposalRejectForm(forms.Form):
    reason = forms.CharField(max_length=500, widget=forms.Textarea(attrs={"rows": 2, "cols": 60}), help_text="Kept on the proposal.")


@admin.register(ResolutionProposal)
class ResolutionProposalAdmin(admin.ModelAdmin):
    """What the market-data feed saw the source decide: staff confirm (settle, exactly as POST
    resolve) or reject. Each action shows a confirmation page first."""

    list_display = ["seen_at", "market_column", "decision", "status", "source_status", "decided_by", "decided_at", "settlement"]
    list_filter = ["status", "action"]
    search_fields = ["market__id", "market__title"]
    list_select_related = ["market", "settlement"]
    ordering = ["-seen_at"]
    actions = ["confirm_proposals", "reject_proposals"]
    readonly_fields = ["market", "action", "outcome", "evidence", "status", "seen_at", "decided_at", "decided_by", "reason", "settlement"]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="market", ordering="market__title")
    def market_column(self, obj):
        return format_html("{}<br><span class='quiet'>{}</span>", obj.market.title or obj.market_id, obj.market_id)

    @admin.display(description="decision")
    def decision(self, obj):
        return decision_label(obj.action, obj.outcome)

    @admin.display(description="source says")
    def source_status(self, obj):
        evidence = obj.evidence or {}
        return f"{evidence.get('umaResolutionStatus')} {evidence.get('outcomePrices')}"

    def _open(self, queryset):
        return list(queryset.filter(status=ProposalStatus.PROPOSED).select_related("market"))

    @admin.action(description="Confirm the selected proposals (settle the markets)", permissions=["change"])
    def confirm_proposals(self, request, queryset):
        proposals = self._open(queryset)
        if request.POST.get("post") == "yes":
            for proposal in proposals:
                try:
                    settlement = proposal_confirm(
                        proposal_id=proposal.pk, actor=f"staff:{request.user.get_username()}", requested_by=request.user
                    )
                except HouseError as exc:
                    messages.error(request, f"{proposal.market_id}: {exc.message}")
                    continue
                self.log_change(request, proposal, "Confirmed: settlement started")
                messages.success(request, f"{proposal}: {settlement.total_positions} positions, payout {_cents(settlement.total_payout)}.")
            return None
        plans = [(p, settlement_plan(market_id=p.market_id, action=p.action, outcome=p.outcome)) for p in proposals]
        return self._confirm_page(request, "Confirm resolution proposals", "confirm_proposals", plans=plans)

    @admin.action(description="Reject the selected proposals", permissions=["change"])
    def reject_proposals(self, request, queryset):
        proposals = self._open(queryset)
        form = ProposalRejectForm(request.POST if request.POST.get("post") == "yes" else None)
        if request.POST.get("post") == "yes" and form.is_valid():
            for proposal in proposals:
                proposal_reject(proposal_id=proposal.pk, actor=f"staff:{request.user.get_username()}", reason=form.cleaned_data["reason"])
                self.log_change(request, proposal, f"Rejected: {form.cleaned_data['reason']}")
            messages.success(request, f"Rejected {len(proposals)} proposal(s).")
            return None
        plans = [(p, None) for p in proposals]
        return self._confirm_page(request, "Reject resolution proposals", "reject_proposals", plans=plans, form=form)

    def _confirm_page(self, request, title: str, action: str, **extra):
        context = {
            **self.admin_site.each_context(request),
            "title": title,
            "opts": self.opts,
            "action": action,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            **extra,
        }
        return TemplateResponse(request, PROPOSALS_TEMPLATE, context)


@admin.register(Reversal)
class ReversalAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Reversed settlements (SPEC §12); each settlement's page shows its reversal in full."""

    list_display = [
        "settlement",
        "status",
        "reason",
        "total_positions",
        "total_items",
        "total_cancelled",
        "total_due",
        "total_reversed",
        "total_uncollected",
        "requested_by",
        "requested_at",
        "completed_at",
    ]
    list_filter = ["status"]
    search_fields = ["settlement__market__id", "settlement__market__title", "reason"]
    list_select_related = ["settlement__market", "requested_by"]
    ordering = ["-requested_at"]


@admin.register(ReversalItem)
class ReversalItemAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["reversal", "player", "status", "amount_due", "amount_taken", "amount_uncollected", "transaction_id", "updated_at"]
    list_filter = ["status"]
    search_fields = ["player__external_id", "=player__id", "=transaction_id", "=payout__transaction_id", "reversal__settlement__market__id"]
    list_select_related = ["reversal__settlement__market", "player"]
    ordering = ["-updated_at"]


# ----- issue 14 (SPEC §16): loss notifications to S2S wallets -----


@admin.register(LossNotice)
class LossNoticeAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Each losing position reported to its S2S operator (a 0.00 credit of type loss): sent once, retried by
    the beat task until the operator answers; nothing for staff to do but look."""

    list_display = [
        "updated_at", "settlement", "player_external_id", "operator", "outcome", "shares", "status", "attempts", "operator_status",
        "last_error", "transaction_id",
    ]  # fmt: skip
    list_filter = ["status", "operator"]
    search_fields = ["player__external_id", "=player__id", "settlement__market__id", "=transaction_id", "=id"]
    list_select_related = ["settlement__market", "player", "operator"]
    ordering = ["-updated_at"]

    @admin.display(description="player", ordering="player__external_id")
    def player_external_id(self, obj):
        return obj.player.external_id
