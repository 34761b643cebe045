"""What players and staff see of the feed (SPEC §11): the catalogue, trades and quotes priced by
the house, resolution proposals confirmed (exactly as POST resolve) or rejected, the "feed"
section of admin/risk."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from casino.models import Market, MarketPricePoint
from casino.services.market_state import point_bucket
from casino.services.markets import casino_settings, reference_price_set
from marketdata.services.catalogue import catalogue_apply
from marketdata.services.resolutions import auto_confirm, auto_confirm_candidates, resolutions_apply
from settlement.models import Payout, ProposalStatus, ResolutionProposal, Settlement
from settlement.services.payouts import settlement_advance
from tests.conftest import Api, decimal_json
from tests.test_market_feed_rules import source
from wallets.models import LedgerEntry

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("no_rate_limits", "no_velocity_limits")]

D = Decimal


@pytest.fixture
def listed():
    """Three listed markets from the feed with house prices (YES 62, 30, 55)."""
    markets = [source(1, question="Bitcoin above 100k?"), source(2, question="Rain in Paris?", category="weather"), source(3)]
    catalogue_apply(sources=markets, extra=[], at=timezone.now())
    for market, mid in zip(markets, ("62", "30", "55"), strict=True):
        reference_price_set(market_id=market.condition_id, outcome="yes", mid_price=D(mid))
    return markets


def test_the_catalogue_lists_markets_with_the_houses_bid_and_ask(listed):
    body = decimal_json(Api().get("catalog"))
    first = next(m for m in body["markets"] if m["marketId"] == listed[0].condition_id)
    assert {k: v for k, v in first.items() if k not in ("endDate", "priceUpdatedAt")} == {
        "marketId": listed[0].condition_id,
        "title": "Bitcoin above 100k?",
        "category": "crypto",
        "yesLabel": "Yes",
        "noLabel": "No",
        "status": "open",
        "tradeable": True,
        "reason": None,
        "yes": {"mid": 62, "bid": 60, "ask": 64},
        "no": {"mid": 38, "bid": 36, "ask": 40},
        "spreadPct": 4,
        "liquidity": 150000,
    }
    assert first["endDate"].endswith("Z") and first["priceUpdatedAt"].endswith("Z")
    assert body["nextCursor"] is None


def test_the_catalogue_pages_by_cursor_and_filters(listed):
    api = Api()
    first = decimal_json(api.get("catalog", {"limit": 2}))
    second = decimal_json(api.get("catalog", {"limit": 2, "cursor": first["nextCursor"]}))
    titles = [m["title"] for m in first["markets"] + second["markets"]]
    assert titles == sorted(titles) and len(titles) == 3 and second["nextCursor"] is None
    assert [m["category"] for m in decimal_json(api.get("catalog", {"category": "weather"}))["markets"]] == ["weather"]
    assert [m["title"] for m in decimal_json(api.get("catalog", {"q": "paris"}))["markets"]] == ["Rain in Paris?"]
    assert decimal_json(api.get("catalog", {"cursor": "forged"})) == {"error": "Invalid cursor", "code": "invalid_cursor"}
    assert api.get("catalog", {"limit": "0"}).status_code == 400


def test_a_suspended_or_unpriced_market_is_shown_not_tradeable_with_its_reason(listed):
    Market.objects.filter(pk=listed[1].condition_id).update(suspended_reason="price_jump")
    market = source(4)
    catalogue_apply(sources=[*listed, market], extra=[], at=timezone.now())
    rows = {m["marketId"]: m for m in decimal_json(Api().get("catalog"))["markets"]}
    assert (rows[listed[1].condition_id]["tradeable"], rows[listed[1].condition_id]["reason"]) == (False, "price_jump")
    assert (rows[market.condition_id]["reason"], rows[market.condition_id]["yes"]) == ("no_reference_price", None)


def test_a_catalogue_market_has_its_24_hour_history_at_5_minute_points(listed):
    market_id = listed[0].condition_id
    now = timezone.now()
    for minutes, mid in ((-30, "60"), (-25, "61"), (-24 * 60 - 10, "50")):
        MarketPricePoint.objects.update_or_create(
            market_id=market_id, at=point_bucket(now + timedelta(minutes=minutes)), defaults={"yes_mid": D(mid)}
        )
    body = decimal_json(Api().get(f"catalog/{market_id}"))
    assert [p["mid"] for p in body["history"]] == [60, 61, 62]  # the day-old point is out; 62 is reference_price_set's
    assert body["yes"]["mid"] == 62
    assert Api().get("catalog/0xnothere").status_code == 404


def test_a_trade_without_mid_price_is_priced_at_the_house_reference(listed, make_player):
    _, api = make_player(D("100"))
    body = decimal_json(api.post("trade", {"marketId": listed[0].condition_id, "side": "buy", "outcome": "yes", "amount": D("25.00")}))
    assert (body["executionPrice"], body["shares"], body["cost"], body["newBalance"]) == (64, D("39.0625"), D("25.00"), D("75.00"))
    quote = decimal_json(Api().get("quote", {"marketId": listed[0].condition_id, "side": "buy", "outcome": "yes", "amount": "25"}))
    assert quote == {"executionPrice": 64, "shares": D("39.0625"), "cost": D("25.00"), "spreadPct": 4, "payout": D("39.06"), "midPrice": 62}
    assert decimal_json(Api().get("quote", {"side": "buy", "outcome": "yes", "amount": "25"}))["error"] == "Missing required fields"


def test_a_client_mid_price_is_still_a_slippage_guard(listed, make_player):
    _, api = make_player(D("100"))
    body = decimal_json(
        api.post("trade", {"marketId": listed[0].condition_id, "side": "buy", "outcome": "yes", "amount": 25, "midPrice": 58})
    )
    assert body == {"error": "Price moved", "code": "price_moved", "reason": "outside_tolerance"}


# -- resolution proposals ------------------------------------------------------------------------


def _holders(market, make_player):
    """Two players on ``market``: 25 on YES at 64, 10 on NO at 40."""
    for outcome, amount in (("yes", "25.00"), ("no", "10.00")):
        _, api = make_player(D("100"))
        assert api.post("trade", {"marketId": market, "side": "buy", "outcome": outcome, "amount": D(amount)}).status_code == 200


def _resolved(n, prices, status="resolved"):
    return source(n, closed=True, accepting_orders=False, resolution_status=status, outcome_prices=tuple(D(p) for p in prices))


@pytest.mark.parametrize(
    ("prices", "status", "expected"),
    [
        (("1", "0"), "resolved", ("resolve", "yes")),
        (("0", "1"), "resolved", ("resolve", "no")),
        (("0.5", "0.5"), "resolved", ("void", None)),
    ],
)
def test_a_resolved_source_market_becomes_a_proposal(listed, prices, status, expected):
    result = resolutions_apply(sources=[_resolved(1, prices, status)], at=timezone.now())
    proposal = ResolutionProposal.objects.get(market_id=listed[0].condition_id)
    assert result.proposed == 1 and (proposal.action, proposal.outcome, proposal.status) == (*expected, "proposed")
    assert proposal.evidence["umaResolutionStatus"] == "resolved"
    assert resolutions_apply(sources=[_resolved(1, prices, status)], at=timezone.now()).proposed == 0  # once


@pytest.mark.parametrize("status", ["proposed", "disputed"])
def test_no_proposal_while_the_source_is_only_proposed_or_disputed(listed, status):
    resolutions_apply(sources=[_resolved(1, ("1", "0"), status)], at=timezone.now())
    assert not ResolutionProposal.objects.exists()


def test_confirming_a_proposal_pays_exactly_as_post_resolve(listed, make_player, staff_api):
    confirmed, resolved = listed[0].condition_id, listed[2].condition_id
    reference_price_set(market_id=resolved, outcome="yes", mid_price=D("62"))
    for market in (confirmed, resolved):
        _holders(market, make_player)
    resolutions_apply(sources=[_resolved(1, ("1", "0"))], at=timezone.now())
    proposal = ResolutionProposal.objects.get(market_id=confirmed)
    listing = decimal_json(staff_api.get("admin/resolutions"))
    assert [p["id"] for p in listing["proposals"]] == [str(proposal.pk)] and listing["proposals"][0]["outcome"] == "yes"

    by_proposal = decimal_json(staff_api.post(f"admin/resolutions/{proposal.pk}/confirm"))
    by_resolve = decimal_json(staff_api.post("resolve", {"marketId": resolved, "outcome": "yes"}))
    assert {**by_proposal, "marketId": None} == {**by_resolve, "marketId": None}
    assert by_proposal == {
        "success": True,
        "marketId": confirmed,
        "outcome": "yes",
        "totalPositions": 2,
        "totalWinners": 1,
        "totalPayout": D("39.06"),
        "casinoProfit": D("-4.06"),
    }
    for settlement in Settlement.objects.all():  # the payouts (a Celery task in production)
        while not settlement_advance(settlement_id=settlement.pk):
            pass
    paid = sorted(LedgerEntry.objects.filter(type="payout").values_list("amount", flat=True))
    assert paid == [D("39.06"), D("39.06")]
    assert Payout.objects.filter(status="paid").count() == 2
    proposal.refresh_from_db()
    assert proposal.status == ProposalStatus.CONFIRMED and proposal.decided_by == "staff:risk-desk"
    assert decimal_json(staff_api.post(f"admin/resolutions/{proposal.pk}/confirm")) == by_proposal  # again: the same answer


def test_a_rejected_proposal_is_kept_with_its_reason_and_not_proposed_again(listed, staff_api):
    resolutions_apply(sources=[_resolved(1, ("0", "1"))], at=timezone.now())
    proposal = ResolutionProposal.objects.get()
    assert decimal_json(staff_api.post(f"admin/resolutions/{proposal.pk}/reject", {})) == {
        "error": "Missing required fields",
        "code": "missing_fields",
    }
    body = decimal_json(staff_api.post(f"admin/resolutions/{proposal.pk}/reject", {"reason": "UMA result under appeal"}))
    assert (body["status"], body["reason"], body["decidedBy"]) == ("rejected", "UMA result under appeal", "staff:risk-desk")
    resolutions_apply(sources=[_resolved(1, ("0", "1"))], at=timezone.now())
    assert ResolutionProposal.objects.count() == 1 and Market.objects.get(pk=listed[0].condition_id).status == "open"
    assert decimal_json(staff_api.get("admin/resolutions", {"status": "rejected"}))["proposals"][0]["id"] == str(proposal.pk)
    assert staff_api.post(f"admin/resolutions/{proposal.pk}/confirm").status_code == 400
    assert staff_api.post("admin/resolutions/not-a-uuid/confirm").status_code == 400
    assert Api().get("admin/resolutions").status_code == 401


def test_auto_confirm_settles_only_while_the_evidence_holds(listed):
    row = casino_settings()
    row.auto_settle_after_seconds = 0
    row.save()
    resolutions_apply(sources=[_resolved(1, ("1", "0")), _resolved(2, ("0", "1"))], at=timezone.now() - timedelta(seconds=5))
    due = auto_confirm_candidates(at=timezone.now())
    assert len(due) == 2
    fresh = {listed[0].condition_id: _resolved(1, ("1", "0")), listed[1].condition_id: _resolved(2, ("0", "1"), status="disputed")}
    result = auto_confirm(proposals=due, sources=fresh, at=timezone.now())
    assert (result.confirmed, result.withdrawn) == (1, 1)
    assert Market.objects.get(pk=listed[0].condition_id).status in ("resolving", "resolved")
    assert Market.objects.get(pk=listed[1].condition_id).status == "open"


def test_no_auto_confirm_without_the_setting(listed):
    resolutions_apply(sources=[_resolved(1, ("1", "0"))], at=timezone.now() - timedelta(days=1))
    assert auto_confirm_candidates(at=timezone.now()) == []


# -- the "feed" section of admin/risk ------------------------------------------------------------


def test_the_feed_settings_are_read_and_merged_over_rest(staff_api):
    feed = decimal_json(staff_api.get("admin/risk"))["feed"]
    assert feed == {
        "maxSourceSpread": 10,
        "jumpPoints": 15,
        "jumpWindowSeconds": 60,
        "jumpCooldownSeconds": 120,
        "priceMaxAgeSeconds": 30,
        "autoSettleAfterSeconds": None,
        "maxListedMarkets": 500,
        "allowedCategories": [],
    }
    after = decimal_json(staff_api.patch("admin/risk", {"feed": {"jumpPoints": 20, "allowedCategories": ["Sports", "crypto"]}}))
    assert after["feed"]["jumpPoints"] == 20 and after["feed"]["allowedCategories"] == ["crypto", "sports"]
    refused = decimal_json(staff_api.patch("admin/risk", {"feed": {"jumpWindowSeconds": 0}}))
    assert refused["code"] == "invalid_risk_config" and refused["field"] == "feed.jumpWindowSeconds"
    assert casino_settings().feed_jump_points == D("20")


# -- the admin ---------------------------------------------------------------------------------


@pytest.fixture
def superuser(client):
    from django.contrib.auth import get_user_model

    client.force_login(get_user_model().objects.create_superuser(username="ops", email="ops@example.com", password="x"))
    return client


def test_staff_confirm_a_proposal_in_the_admin_after_seeing_what_it_pays(listed, make_player, superuser):
    from django.contrib.admin import helpers
    from django.urls import reverse

    _holders(listed[0].condition_id, make_player)
    resolutions_apply(sources=[_resolved(1, ("1", "0"))], at=timezone.now())
    proposal = ResolutionProposal.objects.get()
    url = reverse("admin:settlement_resolutionproposal_changelist")
    assert superuser.get(url).status_code == 200
    form = {"action": "confirm_proposals", helpers.ACTION_CHECKBOX_NAME: [str(proposal.pk)]}
    page = superuser.post(url, form)
    assert page.status_code == 200 and b"Yes, settle" in page.content and b"39.06" in page.content  # what it will pay
    assert Market.objects.get(pk=listed[0].condition_id).status == "open"  # nothing yet
    done = superuser.post(url, {**form, "post": "yes"}, follow=True)
    assert done.status_code == 200
    proposal.refresh_from_db()
    assert proposal.status == "confirmed" and proposal.settlement.total_payout == D("39.06") and proposal.decided_by == "staff:ops"
    assert Market.objects.get(pk=listed[0].condition_id).status in ("resolving", "resolved")


def test_staff_reject_a_proposal_in_the_admin_with_a_reason(listed, superuser):
    from django.contrib.admin import helpers
    from django.urls import reverse

    resolutions_apply(sources=[_resolved(1, ("0", "1"))], at=timezone.now())
    proposal = ResolutionProposal.objects.get()
    url = reverse("admin:settlement_resolutionproposal_changelist")
    form = {"action": "reject_proposals", helpers.ACTION_CHECKBOX_NAME: [str(proposal.pk)], "post": "yes"}
    assert b"This field is required" in superuser.post(url, form).content  # a reason is required
    superuser.post(url, {**form, "reason": "source under appeal"}, follow=True)
    proposal.refresh_from_db()
    assert (proposal.status, proposal.reason) == ("rejected", "source under appeal")


def test_the_feed_settings_form_applies_the_rest_rules(superuser):
    from django.urls import reverse

    casino_settings()
    url = reverse("admin:casino_casinosettings_change", args=[1])
    page = superuser.get(url)
    assert page.status_code == 200 and b"feed_jump_points" in page.content
    form = {
        "blocked_categories": "[]",
        "min_liquidity": "5000",
        "min_price": "5",
        "max_price": "95",
        "default_spread": "4",
        "price_tolerance": "2",
        "price_max_age_seconds": "30",
        "feed_max_source_spread": "10",
        "feed_jump_points": "0",
        "feed_jump_window_seconds": "60",
        "feed_jump_cooldown_seconds": "120",
        "auto_settle_after_seconds": "",
        "max_listed_markets": "500",
        "allowed_categories": '["Sports"]',
    }
    refused = superuser.post(url, form)
    assert refused.status_code == 200 and b"must be a number &gt; 0" in refused.content
    assert superuser.post(url, {**form, "feed_jump_points": "12.5"}).status_code == 302
    row = casino_settings()
    assert row.feed_jump_points == D("12.5") and row.allowed_categories == ["sports"]
