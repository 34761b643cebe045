"""The risk team's admin: every page renders, thresholds are checked like the REST API, the
refusals log is read-only, players rank by sharp score, and the exposure overview adds up."""

from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from casino.services.exposure import exposure_book
from risk.models import MarketRiskLimit, OperatorRiskLimit, PlayerRiskProfile, RiskDecision, RiskSettings, Tier
from risk.services.config import risk_config, risk_settings
from tests.conftest import MARKET, buy_body, decimal_json

pytestmark = pytest.mark.django_db

RISK_MODELS = ["risksettings", "tier", "marketrisklimit", "operatorrisklimit", "riskdecision", "playerriskprofile"]
OVERVIEW = "admin:risk_exposure_overview"


@pytest.fixture
def risk_book(make_player, market, operator):
    """A trade on the market, a refusal in the log, a sharp profile, an operator limit and a market cap."""
    player, api = make_player(Decimal("100"), external_id="sharp-sam")
    assert api.post("trade", buy_body(amount="25")).status_code == 200
    Tier.objects.filter(name="standard").update(max_stake=Decimal("10"))
    from risk.services.config import risk_config_changed

    risk_config_changed()
    refused = api.post("trade", buy_body(amount="25"))
    assert decimal_json(refused)["code"] == "risk.tier.max_stake"
    Tier.objects.filter(name="standard").update(max_stake=Decimal("1000"))
    risk_config_changed()
    PlayerRiskProfile.objects.create(player=player, sharp_score=Decimal("0.8"), trades_scored=12, computed_at=timezone.now())
    OperatorRiskLimit.objects.create(operator=operator.operator, max_daily_turnover=Decimal("1000"))
    MarketRiskLimit.objects.create(market=market, exposure_cap=Decimal("20000"))
    return player


def test_every_risk_admin_page_renders_for_a_superuser(admin_client, risk_book):
    for name in RISK_MODELS:
        assert admin_client.get(reverse(f"admin:risk_{name}_changelist")).status_code == 200, name
        add = admin_client.get(reverse(f"admin:risk_{name}_add")).status_code
        assert add == (403 if name in ("risksettings", "riskdecision", "playerriskprofile") else 200), name
    changes = [
        ("risksettings", 1),
        ("tier", "vip"),
        ("marketrisklimit", MARKET),
        ("operatorrisklimit", OperatorRiskLimit.objects.get().pk),
        ("riskdecision", RiskDecision.objects.get().pk),
        ("playerriskprofile", risk_book.pk),
    ]
    for name, pk in changes:
        assert admin_client.get(reverse(f"admin:risk_{name}_change", args=[pk])).status_code == 200, name
    assert admin_client.get(reverse("admin:app_list", args=["risk"])).status_code == 200
    assert admin_client.get(reverse(OVERVIEW)).status_code == 200


def test_the_overview_is_linked_from_the_risk_pages(admin_client, risk_book):
    url = reverse(OVERVIEW)
    assert url == "/admin/risk/marketrisklimit/exposure-overview/"
    for page in (
        reverse("admin:app_list", args=["risk"]),
        reverse("admin:risk_risksettings_change", args=[1]),
        reverse("admin:risk_marketrisklimit_changelist"),
    ):
        assert url in admin_client.get(page).content.decode(), page


def test_exposure_overview_shows_the_traded_market_with_its_worst_case_loss(admin_client, risk_book, make_player):
    book = exposure_book(market_id=MARKET)
    assert book.worst_case_loss > 0
    response = admin_client.get(reverse(OVERVIEW))
    html = response.content.decode()
    rows = response.context["rows"]
    assert [row["market_id"] for row in rows] == [MARKET]
    row = rows[0]
    assert row["worst_case_loss"] == book.worst_case_loss
    assert row["yes_shares"] == book.yes_shares and row["cash_in"] == book.cash_in
    assert row["net_exposure"] == book.net_exposure
    assert row["cap"] == Decimal("20000") and row["own_cap"]
    assert row["cap_used_pct"] == (book.worst_case_loss * 100 / Decimal("20000")).quantize(Decimal("0.1"))
    assert str(book.worst_case_loss) in html
    assert response.context["global_cap"] == risk_settings().global_exposure_cap
    assert response.context["global_bound"] >= book.worst_case_loss


def test_exposure_overview_sorts_by_worst_case_loss_and_uses_the_default_cap(admin_client, make_player, market):
    from casino.services.markets import reference_price_set

    reference_price_set(market_id="0xsmall", outcome="yes", mid_price=Decimal("50"), title="Small")
    _, api = make_player(Decimal("100"))
    assert api.post("trade", buy_body(amount="2", market_id="0xsmall", mid=50)).status_code == 200
    assert api.post("trade", buy_body(amount="30")).status_code == 200
    rows = admin_client.get(reverse(OVERVIEW)).context["rows"]
    assert [row["market_id"] for row in rows] == [MARKET, "0xsmall"]
    assert rows[0]["worst_case_loss"] > rows[1]["worst_case_loss"]
    assert all(not row["own_cap"] and row["cap"] == Decimal("50000") for row in rows)


def test_exposure_overview_aggregates_in_one_query(admin_client, risk_book, django_assert_max_num_queries):
    from risk.admin import exposure_overview

    with django_assert_max_num_queries(3):  # settings row, the per-market aggregate, the global bound
        exposure_overview()


def test_exposure_overview_needs_a_staff_login(client):
    response = client.get(reverse(OVERVIEW))
    assert response.status_code == 302 and "/login/" in response["Location"]


def test_decisions_log_lists_a_refusal_and_is_read_only(admin_client, risk_book):
    decision = RiskDecision.objects.get()
    assert (decision.wall, decision.limit, decision.code) == ("tier", "max_stake", "risk.tier.max_stake")
    changelist = admin_client.get(reverse("admin:risk_riskdecision_changelist"))
    html = changelist.content.decode()
    assert "risk.tier.max_stake" in html and "sharp-sam" in html
    for params in ({"q": "sharp-sam"}, {"q": str(risk_book.pk)}, {"q": MARKET}, {"wall__exact": "tier"}, {"code": "risk.tier.max_stake"}):
        response = admin_client.get(reverse("admin:risk_riskdecision_changelist"), params)
        assert response.status_code == 200 and response.context["cl"].result_count == 1, params

    change_url = reverse("admin:risk_riskdecision_change", args=[decision.pk])
    assert admin_client.post(change_url, {"code": "edited"}).status_code == 403
    assert admin_client.post(reverse("admin:risk_riskdecision_delete", args=[decision.pk]), {"post": "yes"}).status_code == 403
    assert admin_client.get(reverse("admin:risk_riskdecision_add")).status_code == 403
    assert RiskDecision.objects.get().code == "risk.tier.max_stake"


def test_profiles_rank_players_by_sharp_score(admin_client, risk_book, make_player):
    blunt, _ = make_player(external_id="blunt-bob")
    PlayerRiskProfile.objects.create(player=blunt, sharp_score=Decimal("0.1"), trades_scored=40)
    sharpest, _ = make_player(external_id="sharpest-sue")
    PlayerRiskProfile.objects.create(player=sharpest, sharp_score=Decimal("0.95"), trades_scored=40)
    response = admin_client.get(reverse("admin:risk_playerriskprofile_changelist"))
    ranked = [profile.player.external_id for profile in response.context["cl"].result_list]
    assert ranked == ["sharpest-sue", "sharp-sam", "blunt-bob"]
    html = response.content.decode()
    assert "refused" in html and "wider spread, lower limits" in html
    assert admin_client.post(reverse("admin:risk_playerriskprofile_delete", args=[blunt.pk]), {"post": "yes"}).status_code == 403


def _settings_form(**overrides) -> dict:
    row = risk_settings()
    data = {
        "trading_enabled": "on" if row.trading_enabled else "",
        "default_market_exposure_cap": row.default_market_exposure_cap,
        "global_exposure_cap": row.global_exposure_cap,
        "max_trades_per_minute": row.max_trades_per_minute,
        "max_stake_per_minute": row.max_stake_per_minute,
        "market_burst_trades": row.market_burst_trades,
        "market_burst_window_seconds": row.market_burst_window_seconds,
        "sharp_spread_widen_at": row.sharp_spread_widen_at,
        "sharp_extra_spread": row.sharp_extra_spread,
        "sharp_limit_at": row.sharp_limit_at,
        "sharp_limit_factor": row.sharp_limit_factor,
        "sharp_refuse_at": row.sharp_refuse_at,
        "sharp_min_trades": row.sharp_min_trades,
        "sharp_full_edge": row.sharp_full_edge,
        "markout_horizons_seconds": "[60, 300, 3600]",
        "category_exposure_cap": row.category_exposure_cap,
        "class_moderate_at": row.class_moderate_at,
        "class_sharp_at": row.class_sharp_at,
        "class_professional_at": row.class_professional_at,
        "timing_move_points": row.timing_move_points,
        "sizing_multiple": row.sizing_multiple,
        "player_loss_halt": row.player_loss_halt,
        "platform_loss_halt": row.platform_loss_halt,
    }
    data.update(overrides)
    return {k: v for k, v in data.items() if v != ""}


def test_risk_settings_form_groups_every_threshold_and_applies_to_the_walls(admin_client):
    url = reverse("admin:risk_risksettings_change", args=[1])
    response = admin_client.get(url)
    names = set(response.context["adminform"].form.fields)
    editable = {f.name for f in RiskSettings._meta.fields if f.editable} - {"updated_at"}
    assert editable == names
    html = response.content.decode()
    for title in ("Kill switch", "Exposure caps", "Velocity", "Sharp detection"):
        assert title in html

    assert admin_client.post(url, _settings_form(global_exposure_cap="123456.78", trading_enabled="")).status_code == 302
    config = risk_config()
    assert config.settings.global_exposure_cap == Decimal("123456.78")
    assert config.settings.trading_enabled is False


@pytest.mark.parametrize(
    "field, value",
    [
        ("sharp_refuse_at", "1.5"),
        ("sharp_limit_factor", "-0.1"),
        ("sharp_full_edge", "0"),
        ("global_exposure_cap", "-1"),
        ("market_burst_window_seconds", "0"),
        ("markout_horizons_seconds", "[60, -5]"),
        ("category_exposure_cap", "-1"),
    ],
)
def test_risk_settings_form_refuses_what_the_api_refuses(admin_client, field, value):
    before = risk_settings()
    response = admin_client.post(reverse("admin:risk_risksettings_change", args=[1]), _settings_form(**{field: value}))
    assert response.status_code == 200
    assert field in response.context["adminform"].form.errors
    after = RiskSettings.objects.get(pk=1)
    assert getattr(after, field) == getattr(before, field)


def test_trading_can_be_switched_off_from_the_settings_list(admin_client):
    risk_settings()
    url = reverse("admin:risk_risksettings_changelist")
    form = {"form-TOTAL_FORMS": "1", "form-INITIAL_FORMS": "1", "form-0-id": "1", "_save": "Save"}
    assert admin_client.post(url, form).status_code == 302
    assert risk_config().settings.trading_enabled is False


def test_operator_kill_switch_is_editable_in_the_list(admin_client, operator):
    limit = OperatorRiskLimit.objects.create(operator=operator.operator)
    url = reverse("admin:risk_operatorrisklimit_changelist")
    form = {"form-TOTAL_FORMS": "1", "form-INITIAL_FORMS": "1", "form-0-operator": str(limit.pk), "_save": "Save"}
    assert admin_client.post(url, form).status_code == 302
    limit.refresh_from_db()
    assert limit.trading_enabled is False


def test_operator_limit_negative_cap_is_refused(admin_client, operator):
    response = admin_client.post(
        reverse("admin:risk_operatorrisklimit_add"),
        {"operator": str(operator.operator.pk), "trading_enabled": "on", "max_open_exposure": "-5"},
    )
    assert response.status_code == 200 and "max_open_exposure" in response.context["adminform"].form.errors
    assert not OperatorRiskLimit.objects.exists()


def test_standard_tier_cannot_be_deleted_but_others_can(admin_client):
    assert admin_client.post(reverse("admin:risk_tier_delete", args=["standard"]), {"post": "yes"}).status_code == 403
    assert admin_client.post(reverse("admin:risk_tier_delete", args=["restricted"]), {"post": "yes"}).status_code == 302
    assert set(Tier.objects.values_list("name", flat=True)) == {"standard", "vip"}
    changelist = admin_client.get(reverse("admin:risk_tier_changelist"))
    assert "delete_selected" not in changelist.content.decode()


def test_a_tier_is_added_and_edited_in_the_list(admin_client):
    add = admin_client.post(
        reverse("admin:risk_tier_add"), {"name": "gold", "max_stake": "5000", "max_position_per_market": "20000", "max_daily_loss": "8000"}
    )
    assert add.status_code == 302
    bad = admin_client.post(
        reverse("admin:risk_tier_add"), {"name": "Gold", "max_stake": "1", "max_position_per_market": "1", "max_daily_loss": "1"}
    )
    assert bad.status_code == 200 and "name" in bad.context["adminform"].form.errors
    tiers = ["gold", "restricted", "standard", "vip"]
    form = {"form-TOTAL_FORMS": "4", "form-INITIAL_FORMS": "4", "_save": "Save"}
    for i, name in enumerate(tiers):
        tier = Tier.objects.get(name=name)
        form |= {
            f"form-{i}-name": name,
            f"form-{i}-max_stake": "7" if name == "standard" else tier.max_stake,
            f"form-{i}-max_position_per_market": tier.max_position_per_market,
            f"form-{i}-max_daily_loss": tier.max_daily_loss,
        }
    assert admin_client.post(reverse("admin:risk_tier_changelist"), form).status_code == 302
    assert risk_config().tier("standard").max_stake == Decimal("7")
