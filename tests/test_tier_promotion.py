"""Tiers with promotion (SPEC §16): rules as data, applied by the daily task exactly when every
condition holds, each change recorded once; staff and operator overrides recorded too."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils import timezone

from casino.models import Player, Trade
from casino.services.credentials import session_open
from core.api.rendering import dumps
from risk.models import PlayerRiskProfile, RiskDecision, Tier, TierChange, TierPromotionRule
from risk.services.promotion import tier_promotions_apply
from risk.tasks import tier_promotions_apply_task
from tests.conftest import decimal_json
from tests.factories import MarketFactory

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("no_rate_limits")]

DAYS, TRADES = 30, 50  # the default rule of risk 0007_promotion_classes: standard -> vip


def _trades(player, count: int) -> None:
    market = MarketFactory()
    Trade.objects.bulk_create(
        [
            Trade(
                player=player,
                operator_id=player.operator_id,
                market=market,
                side="buy",
                outcome="yes",
                shares=Decimal("10"),
                price_mid=Decimal("60"),
                price_executed=Decimal("62"),
                spread_applied=Decimal("2"),
                cost=Decimal("6.20"),
                balance_before=Decimal("0"),
                balance_after=Decimal("0"),
            )
            for _ in range(count)
        ]
    )


@pytest.fixture
def eligible(make_player):
    """eligible(**overrides) -> a standard player meeting every condition of the default rule by
    exactly one unit: account age 30 days (to the minute), 50 trades, no flags, no profile."""

    def make(age=timedelta(days=DAYS, minutes=1), trades=TRADES, external_id=None):
        player, _ = make_player(external_id=external_id)
        Player.objects.filter(pk=player.pk).update(created_at=timezone.now() - age)
        _trades(player, trades)
        return Player.objects.get(pk=player.pk)

    return make


def _tier(player) -> str:
    return Player.objects.get(pk=player.pk).tier


def test_the_default_rule_is_data():
    rule = TierPromotionRule.objects.get()
    assert (rule.from_tier_id, rule.to_tier_id, rule.min_account_age_days, rule.min_completed_trades, rule.enabled) == (
        "standard",
        "vip",
        DAYS,
        TRADES,
        True,
    )


def test_the_task_promotes_when_every_rule_holds_and_records_it_once(eligible):
    player = eligible()
    assert tier_promotions_apply_task.apply().get() == 1
    assert _tier(player) == "vip"
    change = TierChange.objects.get()
    rule = TierPromotionRule.objects.get()
    assert (change.player_id, change.from_tier, change.to_tier, change.source, change.rule_id, change.actor) == (
        player.pk,
        "standard",
        "vip",
        "rule",
        rule.pk,
        "tier-promotion",
    )
    # Idempotent: a second run (the same day or any later one) changes nothing.
    assert tier_promotions_apply_task.apply().get() == 0
    assert tier_promotions_apply() == 0
    assert TierChange.objects.count() == 1 and _tier(player) == "vip"


def _flag_sharp_refusal(player):
    RiskDecision.objects.create(player=player, wall="sharp", limit="refuse_at", code="risk.sharp.refuse_at", message="refused")


def _flag_loss_breaker(player):
    RiskDecision.objects.create(player=player, wall="velocity", limit="player_loss", code="risk.breaker.player_loss", message="halted")


def _flag_blocked(player):
    Player.objects.filter(pk=player.pk).update(status="blocked")


def _class(name):
    def set_class(player):
        PlayerRiskProfile.objects.create(player=player, player_class=name, composite_score=Decimal("61"), sharp_score=Decimal("0.61"))

    return set_class


@pytest.mark.parametrize(
    ("case", "overrides", "flag"),
    [
        ("account a day short", {"age": timedelta(days=DAYS - 1, minutes=1)}, None),
        ("one trade short", {"trades": TRADES - 1}, None),
        ("a sharp-wall refusal", {}, _flag_sharp_refusal),
        ("a player loss breaker", {}, _flag_loss_breaker),
        ("blocked", {}, _flag_blocked),
        ("class sharp", {}, _class("sharp")),
        ("class professional", {}, _class("professional")),
    ],
)
def test_one_rule_failing_by_one_unit_keeps_the_player_where_it_is(eligible, case, overrides, flag):
    kept = eligible(**overrides)
    if flag:
        flag(kept)
    promoted = eligible()  # the same run promotes a player meeting every condition
    assert tier_promotions_apply_task.apply().get() == 1, case
    assert (_tier(kept), _tier(promoted)) == ("standard", "vip"), case
    assert list(TierChange.objects.values_list("player_id", flat=True)) == [promoted.pk]


def test_a_moderate_or_unscored_player_is_below_sharp(eligible):
    moderate = eligible()
    _class("moderate")(moderate)
    recreational = eligible()
    _class("recreational")(recreational)
    unscored = eligible()
    assert tier_promotions_apply() == 3
    assert {_tier(p) for p in (moderate, recreational, unscored)} == {"vip"}


def test_other_refusals_are_not_risk_flags(eligible):
    player = eligible()
    RiskDecision.objects.create(player=player, wall="tier", limit="max_stake", code="risk.tier.max_stake", message="too big")
    assert tier_promotions_apply() == 1


def test_the_restricted_tier_is_never_left_or_entered_by_a_rule(eligible):
    player = eligible()
    Player.objects.filter(pk=player.pk).update(tier="restricted")
    for source, target in (("restricted", "standard"), ("vip", "restricted")):
        with pytest.raises(IntegrityError), transaction.atomic():
            TierPromotionRule.objects.create(from_tier_id=source, to_tier_id=target, min_account_age_days=0, min_completed_trades=0)
    assert tier_promotions_apply() == 0
    assert _tier(player) == "restricted"


def test_rules_chain_in_one_run_and_a_cycle_cannot_loop(eligible):
    Tier.objects.create(name="gold", max_stake=50000, max_position_per_market=100000, max_daily_loss=50000)
    TierPromotionRule.objects.create(from_tier_id="vip", to_tier_id="gold", min_account_age_days=30, min_completed_trades=50)
    TierPromotionRule.objects.create(from_tier_id="gold", to_tier_id="standard", min_account_age_days=0, min_completed_trades=0)
    player = eligible()
    assert tier_promotions_apply() == 2  # standard -> vip -> gold; never back to standard in the same run
    assert _tier(player) == "gold"
    assert list(TierChange.objects.order_by("id").values_list("from_tier", "to_tier")) == [("standard", "vip"), ("vip", "gold")]


def test_a_disabled_rule_does_nothing(eligible):
    TierPromotionRule.objects.update(enabled=False)
    player = eligible()
    assert tier_promotions_apply() == 0 and _tier(player) == "standard"


def test_staff_override_in_the_admin_is_recorded(admin_client, admin_user, eligible):
    player = eligible(trades=0)
    url = reverse("admin:casino_player_change", args=[player.pk])
    form = {"tier": "vip", "status": "active", "max_stake_per_trade": "", "max_daily_stake": "", "max_daily_loss": ""}
    assert admin_client.post(url, form).status_code == 302
    assert admin_client.post(url, form).status_code == 302  # saved again unchanged: nothing more to record
    change = TierChange.objects.get()
    assert (change.player_id, change.from_tier, change.to_tier, change.source, change.rule, change.actor) == (
        player.pk,
        "standard",
        "vip",
        "staff",
        None,
        f"staff:{admin_user.get_username()}",
    )
    assert _tier(player) == "vip"
    listing = admin_client.get(reverse("admin:risk_tierchange_changelist"), {"source": "staff"})
    assert player.external_id in listing.content.decode()


def test_operator_override_is_recorded(operator, operator_api, eligible):
    player = eligible(trades=0, external_id="op-player-1")
    response = operator_api.patch("operator/players/op-player-1", {"tier": "vip"})
    assert response.status_code == 200, response.content
    assert operator_api.patch("operator/players/op-player-1", {"tier": "vip"}).status_code == 200  # no change, no record
    # A session opened with a tier is the operator setting it too.
    session_open(operator=operator.operator, external_player_id="op-player-1", tier="restricted")
    changes = list(TierChange.objects.order_by("id").values_list("from_tier", "to_tier", "source", "actor"))
    actor = f"operator:{operator.operator.pk}"
    assert changes == [("standard", "vip", "operator", actor), ("vip", "restricted", "operator", actor)]
    assert _tier(player) == "restricted"
    assert tier_promotions_apply() == 0  # a restricted player stays restricted


def test_the_rules_are_editable_in_the_admin(admin_client):
    add = reverse("admin:risk_tierpromotionrule_add")
    refused = admin_client.post(add, {"from_tier": "restricted", "to_tier": "vip", "min_account_age_days": 1, "min_completed_trades": 1})
    assert refused.status_code == 200 and "restricted tier is never left or entered" in refused.content.decode()
    rule = TierPromotionRule.objects.get()
    change = reverse("admin:risk_tierpromotionrule_change", args=[rule.pk])
    body = {"from_tier": "standard", "to_tier": "vip", "min_account_age_days": 7, "min_completed_trades": 10, "enabled": "on"}
    assert admin_client.post(change, body).status_code == 302
    rule.refresh_from_db()
    assert (rule.min_account_age_days, rule.min_completed_trades) == (7, 10)


# -- the rules and the class settings over REST (admin/risk) ----------------------------------------


def _risk(api, body=None):
    if body is None:
        response = api.get("admin/risk")
    else:
        response = api.client.patch("/api/casino/admin/risk", data=dumps(body), content_type="application/json", headers=api.headers)
    return response.status_code, decimal_json(response)


def test_admin_risk_shows_and_merges_the_promotion_rules(staff_api):
    status, config = _risk(staff_api)
    assert status == 200
    assert config["promotions"] == {"standard": {"toTier": "vip", "minAccountAgeDays": 30, "minCompletedTrades": 50, "enabled": True}}
    status, config = _risk(
        staff_api,
        {
            "tiers": {"gold": {"maxStake": 50000, "maxPositionPerMarket": 100000, "maxDailyLoss": 50000}},
            "promotions": {
                "standard": {"minCompletedTrades": 20},
                "vip": {"toTier": "gold", "minAccountAgeDays": 90, "minCompletedTrades": 500},
            },
        },
    )
    assert status == 200, config
    assert config["promotions"] == {
        "standard": {"toTier": "vip", "minAccountAgeDays": 30, "minCompletedTrades": 20, "enabled": True},
        "vip": {"toTier": "gold", "minAccountAgeDays": 90, "minCompletedTrades": 500, "enabled": True},
    }
    status, config = _risk(staff_api, {"promotions": {"vip": None, "standard": {"enabled": False}}})
    assert (status, list(config["promotions"]), config["promotions"]["standard"]["enabled"]) == (200, ["standard"], False)


@pytest.mark.parametrize(
    ("promotions", "field"),
    [
        ({"restricted": {"toTier": "vip"}}, "promotions.restricted"),
        ({"standard": {"toTier": "restricted"}}, "promotions.standard.toTier"),
        ({"vip": {"minAccountAgeDays": 1}}, "promotions.vip"),  # a new rule needs toTier
        ({"vip": {"toTier": "vip"}}, "promotions.vip.toTier"),
        ({"vip": {"toTier": "platinum"}}, "promotions.vip.toTier"),
        ({"platinum": {"toTier": "vip"}}, "promotions.platinum"),
        ({"standard": {"minCompletedTrades": -1}}, "promotions.standard.minCompletedTrades"),
        ({"standard": {"enabled": "yes"}}, "promotions.standard.enabled"),
        ({"standard": {"upgradeTo": "vip"}}, "promotions.standard.upgradeTo"),
    ],
)
def test_admin_risk_refuses_a_bad_promotion_rule_and_changes_nothing(staff_api, promotions, field):
    _, before = _risk(staff_api)
    status, error = _risk(staff_api, {"sharp": {"classSharpAt": 65}, "promotions": promotions})
    assert (status, error["code"], error["field"]) == (400, "invalid_risk_config", field)
    assert _risk(staff_api) == (200, before)


def test_admin_risk_sets_the_class_thresholds(staff_api):
    status, config = _risk(staff_api, {"sharp": {"classModerateAt": 35.5, "classSharpAt": 65, "timingMovePoints": 3, "sizingMultiple": 3}})
    assert status == 200
    sharp = config["sharp"]
    assert (sharp["classModerateAt"], sharp["classSharpAt"], sharp["classProfessionalAt"]) == (Decimal("35.5"), 65, 80)
    assert (sharp["timingMovePoints"], sharp["sizingMultiple"]) == (3, 3)
    for bad in ({"classSharpAt": 100.01}, {"classSharpAt": 60.005}, {"sizingMultiple": 0.5}, {"timingMovePoints": -1}):
        status, error = _risk(staff_api, {"sharp": bad})
        assert (status, error["field"]) == (400, f"sharp.{next(iter(bad))}")
