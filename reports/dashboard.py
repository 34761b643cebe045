"""The staff operations dashboard (the admin's front page): today's figures per operator from the rollup,
open liability by market, 30 days of trades and GGR as an inline SVG chart drawn here (no script, no CDN),
settlements and reversals in progress, wallet operations waiting for a person, pending resolution
proposals, the market feed's health and webhook endpoints disabled or failing. Each part links to the admin list it summarises."""

import datetime
from decimal import Decimal

from django.contrib.admin.utils import quote
from django.db.models import Count, F, Q, Sum
from django.db.models.functions import Greatest
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from casino.models import MarketExposure, Operator
from marketdata.status import feed_status
from reports.selectors import daily_series, daily_totals_by_operator, monthly_totals_by_operator, revenue_share
from risk.models import RiskEvent
from risk.services.breakers import platform_window_loss
from risk.services.config import risk_settings
from settlement.models import ProposalStatus, ResolutionProposal, Reversal, ReversalStatus, Settlement, SettlementStatus
from wallets.models import OperationStatus, WalletOperation
from webhooks.models import WebhookEndpoint

LIABILITY_ROWS = 20
CHART_DAYS = 30
WAITING = (OperationStatus.MANUAL, OperationStatus.UNKNOWN)


def dashboard_context() -> dict:
    today = timezone.now().astimezone(datetime.UTC).date()
    return {
        "today": today,
        "operators_today": _with_shares(_operators_today(today)),
        "operators_month": _operators_month(today),
        "month_start": today.replace(day=1),
        "liability": _liability(),
        "chart": _chart(today),
        "settlements": list(
            Settlement.objects.filter(status__in=[SettlementStatus.SETTLING, SettlementStatus.REVERSING])
            .select_related("market")
            .order_by("requested_at")[:20]
        ),
        "reversals": list(Reversal.objects.filter(status=ReversalStatus.REVERSING).select_related("settlement__market")[:20]),
        "settlements_url": reverse("admin:settlement_settlement_changelist"),
        "waiting_operations": list(
            WalletOperation.objects.filter(status__in=WAITING).select_related("operator").order_by("created_at")[:10]
        ),
        "waiting_counts": dict(
            WalletOperation.objects.filter(status__in=WAITING)
            .order_by()
            .values_list("status")
            .annotate(n=Count("pk"))
            .values_list("status", "n")
        ),
        "operations_url": reverse("admin:wallets_walletoperation_changelist"),
        "proposals": list(
            ResolutionProposal.objects.filter(status=ProposalStatus.PROPOSED).select_related("market").order_by("seen_at")[:10]
        ),
        "proposals_count": ResolutionProposal.objects.filter(status=ProposalStatus.PROPOSED).count(),
        "proposals_url": reverse("admin:settlement_resolutionproposal_changelist"),
        "feed": feed_status(),
        "feed_url": reverse("admin:marketdata_feedstate_changelist"),
        # Webhook endpoints needing a person: disabled after 3 days of failure, or failing now.
        "webhooks_troubled": list(
            WebhookEndpoint.objects.filter(Q(enabled=False) | Q(failing_since__isnull=False))
            .select_related("operator")
            .order_by("enabled", "failing_since")[:10]
        ),
        "webhooks_url": reverse("admin:webhooks_webhookendpoint_changelist"),
        "breakers": _breakers(),
    }


def _operators_today(today: datetime.date) -> list[dict]:
    rows = daily_totals_by_operator(day=today)
    names = dict(Operator.objects.filter(pk__in=[r["operator_id"] for r in rows]).values_list("pk", "name"))
    return [
        {
            **row,
            "name": names.get(row["operator_id"], str(row["operator_id"])),
            "url": reverse("admin:casino_operator_change", args=[quote(row["operator_id"])]),
        }
        for row in rows
    ]


def _liability() -> list[dict]:
    """Markets by open worst-case loss (max of YES and NO shares owed, less the cash taken in), top 20."""
    books = (
        MarketExposure.objects.order_by()
        .values("market_id", "market__title", "market__status")
        .annotate(yes=Sum("yes_shares"), no=Sum("no_shares"), cash=Sum("cash_in"))
        .annotate(worst=Greatest(F("yes"), F("no")) - F("cash"))
        .filter(worst__gt=0)
        .order_by("-worst", "market_id")[:LIABILITY_ROWS]
    )
    return [{**book, "url": reverse("admin:casino_market_change", args=[quote(book["market_id"])])} for book in books]


WIDTH, HEIGHT, PAD_LEFT, PAD_RIGHT, PAD_TOP, PAD_BOTTOM = 760, 240, 56, 64, 16, 36


def _chart(today: datetime.date) -> dict:
    """30 days of all operators' trades (bars, left axis) and GGR (line, right axis), as SVG markup."""
    start = today - datetime.timedelta(days=CHART_DAYS - 1)
    series = daily_series(start=start, end=today)
    days = [start + datetime.timedelta(days=i) for i in range(CHART_DAYS)]
    trades = [series.get(d, {}).get("trades", 0) for d in days]
    ggr = [series.get(d, {}).get("ggr", Decimal("0")) for d in days]
    return {"svg": _svg(days, trades, ggr), "total_trades": sum(trades), "total_ggr": sum(ggr, Decimal("0")), "start": start}


def _svg(days: list[datetime.date], trades: list[int], ggr: list[Decimal]) -> SafeString:
    """Numbers and ISO dates only go into the markup (escaped all the same)."""
    plot_w, plot_h = WIDTH - PAD_LEFT - PAD_RIGHT, HEIGHT - PAD_TOP - PAD_BOTTOM
    step = plot_w / len(days)
    max_trades = max(trades) or 1
    low, high = min(min(ggr), Decimal("0")), max(max(ggr), Decimal("0"))
    span = (high - low) or Decimal("1")
    left, right, top, bottom = PAD_LEFT, WIDTH - PAD_RIGHT, PAD_TOP, HEIGHT - PAD_BOTTOM

    def y_ggr(value: Decimal) -> float:
        return top + plot_h * float((high - value) / span)

    parts = [
        f'<svg id="dashboard-chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" width="100%" role="img" '
        f'aria-label="Trades and GGR, last {len(days)} days">',
        "<style>.bar{fill:#79aec8}.ggr{fill:none;stroke:#ba2121;stroke-width:2}.axis{stroke:#999;stroke-width:1}"
        ".zero{stroke:#ba2121;stroke-dasharray:3 3;stroke-width:1}text{font:11px sans-serif;fill:#666}</style>",
        f'<line class="axis" x1="{left}" y1="{bottom}" x2="{right}" y2="{bottom}"/>',
        f'<line class="zero" x1="{left}" y1="{y_ggr(Decimal(0)):.1f}" x2="{right}" y2="{y_ggr(Decimal(0)):.1f}"/>',
    ]
    for i, (day, n, value) in enumerate(zip(days, trades, ggr, strict=True)):
        date = escape(day.isoformat())
        height = plot_h * n / max_trades
        parts.append(
            f'<rect class="bar" x="{left + i * step + step * 0.15:.1f}" y="{bottom - height:.1f}" width="{step * 0.7:.1f}" '
            f'height="{height:.1f}" data-date="{date}" data-trades="{n}" data-ggr="{escape(value)}">'
            f"<title>{date}: {n} trades, GGR {escape(value)}</title></rect>"
        )
    points = " ".join(f"{left + (i + 0.5) * step:.1f},{y_ggr(value):.1f}" for i, value in enumerate(ggr))
    parts.append(f'<polyline class="ggr" id="ggr-line" points="{points}"/>')
    for i, day in enumerate(days):
        if i == 0 or i % 5 == 4:
            parts.append(f'<text class="day" x="{left + (i + 0.5) * step:.1f}" y="{bottom + 16}" text-anchor="middle">{day:%m-%d}</text>')
    parts += [
        f'<text x="{left}" y="{top}" text-anchor="end" dx="-4" dy="10">{max_trades}</text>',
        f'<text x="{left}" y="{bottom}" text-anchor="end" dx="-4">0</text>',
        f'<text x="{right}" y="{top}" dx="4" dy="10">{escape(high)}</text>',
        f'<text x="{right}" y="{y_ggr(low):.1f}" dx="4">{escape(low)}</text>',
        "</svg>",
    ]
    return mark_safe("".join(parts))  # noqa: S308 - built from numbers and escaped dates above


# ----- issue 14 (SPEC §16): the revenue share per operator, today and month to date --------------


def _with_shares(rows: list[dict]) -> list[dict]:
    """Each row with its operator's share percent (now) and the operator's and the house's share of its GGR."""
    pcts = dict(Operator.objects.filter(pk__in=[r["operator_id"] for r in rows]).values_list("pk", "operator_share_pct"))
    out = []
    for row in rows:
        pct = pcts.get(row["operator_id"], Decimal("0"))
        operator_share, house_share = revenue_share(row["ggr"], pct)
        out.append({**row, "share_pct": pct, "operator_share": operator_share, "house_share": house_share})
    return out


def _operators_month(today: datetime.date) -> list[dict]:
    """Every operator's GGR of the month so far and its split (the monthly report's figures, per operator)."""
    rows = monthly_totals_by_operator(month=today)
    names = dict(Operator.objects.filter(pk__in=[r["operator_id"] for r in rows]).values_list("pk", "name"))
    return _with_shares(
        [
            {
                **row,
                "name": names.get(row["operator_id"], str(row["operator_id"])),
                "url": reverse("admin:casino_operator_change", args=[quote(row["operator_id"])]),
            }
            for row in rows
        ]
    )


# --- Issue 14: the circuit breakers (SPEC §16) ------------------------------------------------------

BREAKER_EVENTS = 10


def _breakers() -> dict:
    """The platform halt (a red banner while halted), the loss against the halts, the latest risk events."""
    s = risk_settings()
    try:
        loss = platform_window_loss()
    except Exception:  # noqa: BLE001 - the shared store is down: the page still shows the halt and the events
        loss = None
    return {
        "halted": s.platform_halted,
        "halted_at": s.platform_halted_at,
        "window_start": s.platform_window_start,
        "platform_loss": loss,
        "platform_loss_halt": s.platform_loss_halt,
        "player_loss_halt": s.player_loss_halt,
        "events": list(RiskEvent.objects.select_related("player").order_by("-created_at")[:BREAKER_EVENTS]),
        "events_url": reverse("admin:risk_riskevent_changelist"),
        "settings_url": reverse("admin:risk_risksettings_changelist"),
    }
