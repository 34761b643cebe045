"""GET/PATCH /api/casino/admin/risk: the effective risk configuration, validated atomic merges,
and changes that the very next trade obeys."""

import uuid
from decimal import Decimal

import pytest

from casino.services.credentials import operator_create
from casino.services.markets import reference_price_set
from core.api.rendering import dumps
from risk.models import MarketRiskLimit, OperatorRiskLimit, Tier
from risk.services.config import risk_settings
from tests.conftest import Api, buy_body, decimal_json

pytestmark = pytest.mark.django_db

PATH = "/api/casino/admin/risk"


def patch(api: Api, body=None, raw: str | None = None):
    data = raw if raw is not None else dumps(body)
    return api.client.patch(PATH, data=data, content_type="application/json", headers=api.headers)


def config_of(api: Api) -> dict:
    response = api.get("admin/risk")
    assert response.status_code == 200
    return decimal_json(response)


@pytest.fixture
def operator_id(operator):
    return str(operator.operator.pk)


def test_get_returns_every_section_with_the_defaults(staff_api):
    config = config_of(staff_api)
    assert list(config) == [
        "global",
        "velocity",
        "tiers",
        "markets",
        "operators",
        "sharp",
        "feed",
        "categories",
        "promotions",
        "pricing",
        "breakers",
    ]  # SPEC §16
    assert config["global"] == {
        "tradingEnabled": True,
        "exposureCap": Decimal("1000000"),
        "defaultMarketExposureCap": Decimal("50000"),
        "categoryExposureCap": Decimal("100000"),
    }
    assert config["categories"] == {}
    assert config["velocity"] == {
        "maxTradesPerMinute": 15,
        "maxStakePerMinute": Decimal("5000"),
        "marketBurstTrades": 200,
        "marketBurstWindowSeconds": 10,
    }
    assert set(config["tiers"]) == {"standard", "vip", "restricted"}
    assert config["tiers"]["standard"] == {"maxStake": 1000, "maxPositionPerMarket": 5000, "maxDailyLoss": 2000, "extraSpread": 0}
    assert config["markets"] == {} and config["operators"] == {}
    assert config["sharp"] == {
        "spreadWidenAt": Decimal("0.6"),
        "extraSpread": 2,
        "refuseAt": Decimal("0.9"),
        "limitAt": Decimal("0.75"),
        "limitFactor": Decimal("0.5"),
        "minTrades": 10,
        "fullEdge": Decimal("0.1"),
        "markoutHorizonsSeconds": [60, 300, 3600],
        # Issue 14 (SPEC §16): player classes
        "classModerateAt": 40,
        "classSharpAt": 60,
        "classProfessionalAt": 80,
        "timingMovePoints": 5,
        "sizingMultiple": 2,
    }


def test_counts_render_as_integers_and_money_as_numbers(staff_api):
    body = staff_api.get("admin/risk").content.decode()
    assert '"maxTradesPerMinute":15,' in body
    assert '"exposureCap":1000000.00' in body  # a JSON number, never a string
    assert '"tradingEnabled":true' in body


def test_patch_merges_a_partial_config_and_get_shows_it(staff_api, market, operator_id):
    before = config_of(staff_api)
    response = patch(
        staff_api,
        {
            "velocity": {"maxTradesPerMinute": 3},
            "tiers": {"vip": {"maxStake": 123.45}, "gold": {"maxStake": 5000, "maxPositionPerMarket": 20000, "maxDailyLoss": 8000}},
            "markets": {market.pk: {"exposureCap": 777}},
            "operators": {operator_id: {"maxDailyTurnover": 9000}},
            "sharp": {"refuseAt": 0.95, "markoutHorizonsSeconds": [300, 60]},
        },
    )
    assert response.status_code == 200
    assert decimal_json(response) == config_of(staff_api)
    after = config_of(staff_api)
    assert after["velocity"] == {**before["velocity"], "maxTradesPerMinute": 3}
    assert after["tiers"]["vip"] == {**before["tiers"]["vip"], "maxStake": Decimal("123.45")}
    assert after["tiers"]["gold"] == {"maxStake": 5000, "maxPositionPerMarket": 20000, "maxDailyLoss": 8000, "extraSpread": 0}
    assert after["tiers"]["standard"] == before["tiers"]["standard"]
    assert after["markets"] == {market.pk: {"exposureCap": 777}}
    assert after["operators"] == {
        operator_id: {"tradingEnabled": True, "maxOpenExposure": None, "maxDailyTurnover": 9000, "maxDailyNetLoss": None}
    }
    assert after["sharp"] == {**before["sharp"], "refuseAt": Decimal("0.95"), "markoutHorizonsSeconds": [60, 300]}
    assert after["global"] == before["global"]
    assert Tier.objects.get(name="gold").max_daily_loss == Decimal("8000")


def test_patch_of_the_spec_example_document_works(staff_api, market, operator_id):
    document = f"""
    {{"global":    {{"tradingEnabled": true, "exposureCap": 250000}},
     "velocity":  {{"maxTradesPerMinute": 10, "maxStakePerMinute": 1000}},
     "tiers":     {{"standard": {{"maxStake": 1000, "maxPositionPerMarket": 5000, "maxDailyLoss": 2000}}}},
     "markets":   {{"{market.pk}": {{"exposureCap": 10000}}}},
     "operators": {{"{operator_id}": {{"tradingEnabled": true, "maxOpenExposure": 100000,
                                    "maxDailyTurnover": 500000, "maxDailyNetLoss": 50000}}}},
     "sharp":     {{"spreadWidenAt": 0.6, "extraSpread": 2, "refuseAt": 0.9}}}}
    """
    response = patch(staff_api, raw=document)
    assert response.status_code == 200, response.content
    config = decimal_json(response)
    assert config["global"]["exposureCap"] == 250000 and config["global"]["tradingEnabled"] is True
    assert config["velocity"]["maxTradesPerMinute"] == 10 and config["velocity"]["maxStakePerMinute"] == 1000
    assert config["markets"] == {market.pk: {"exposureCap": 10000}}
    assert config["operators"][operator_id] == {
        "tradingEnabled": True,
        "maxOpenExposure": 100000,
        "maxDailyTurnover": 500000,
        "maxDailyNetLoss": 50000,
    }
    assert config["sharp"]["spreadWidenAt"] == Decimal("0.6") and config["sharp"]["refuseAt"] == Decimal("0.9")
    assert config == config_of(staff_api)


def test_an_empty_patch_changes_nothing(staff_api):
    before = config_of(staff_api)
    response = patch(staff_api, {})
    assert response.status_code == 200 and decimal_json(response) == before


def test_null_removes_a_market_cap_and_clears_an_operator_limit(staff_api, market, operator_id):
    assert (
        patch(staff_api, {"markets": {market.pk: {"exposureCap": 500}}, "operators": {operator_id: {"maxOpenExposure": 100}}}).status_code
        == 200
    )
    assert (
        patch(staff_api, {"markets": {market.pk: {"exposureCap": None}}, "operators": {operator_id: {"maxOpenExposure": None}}}).status_code
        == 200
    )
    config = config_of(staff_api)
    assert config["markets"] == {}
    assert config["operators"][operator_id]["maxOpenExposure"] is None
    assert not MarketRiskLimit.objects.exists()

    assert patch(staff_api, {"markets": {market.pk: {"exposureCap": 500}}}).status_code == 200
    assert patch(staff_api, {"markets": {market.pk: None}, "operators": {operator_id: None}}).status_code == 200
    config = config_of(staff_api)
    assert config["markets"] == {} and config["operators"] == {}
    assert not OperatorRiskLimit.objects.exists()


BAD_PATCHES = {
    "unknown top-level key": (lambda m, o: {"walls": {}}, "walls"),
    "unknown key in a section": (lambda m, o: {"global": {"killSwitch": False}}, "global.killSwitch"),
    "unknown tier field": (lambda m, o: {"tiers": {"vip": {"maxStakes": 1}}}, "tiers.vip.maxStakes"),
    "negative cap": (lambda m, o: {"global": {"exposureCap": -1}}, "global.exposureCap"),
    "negative operator limit": (lambda m, o: {"operators": {o: {"maxDailyNetLoss": -5}}}, "operators.{o}.maxDailyNetLoss"),
    "money with 3 decimals": (lambda m, o: {"velocity": {"maxStakePerMinute": 10.005}}, "velocity.maxStakePerMinute"),
    "money as a string": (lambda m, o: {"global": {"exposureCap": "100"}}, "global.exposureCap"),
    "score above 1": (lambda m, o: {"sharp": {"refuseAt": 1.5}}, "sharp.refuseAt"),
    "negative score": (lambda m, o: {"sharp": {"spreadWidenAt": -0.1}}, "sharp.spreadWidenAt"),
    "zero full edge": (lambda m, o: {"sharp": {"fullEdge": 0}}, "sharp.fullEdge"),
    "string for a boolean": (lambda m, o: {"global": {"tradingEnabled": "false"}}, "global.tradingEnabled"),
    "number for a boolean": (lambda m, o: {"operators": {o: {"tradingEnabled": 0}}}, "operators.{o}.tradingEnabled"),
    "null for a kill switch": (lambda m, o: {"global": {"tradingEnabled": None}}, "global.tradingEnabled"),
    "fraction for a count": (lambda m, o: {"velocity": {"maxTradesPerMinute": 2.5}}, "velocity.maxTradesPerMinute"),
    "boolean for a count": (lambda m, o: {"velocity": {"maxTradesPerMinute": True}}, "velocity.maxTradesPerMinute"),
    "zero burst window": (lambda m, o: {"velocity": {"marketBurstWindowSeconds": 0}}, "velocity.marketBurstWindowSeconds"),
    "empty horizons": (lambda m, o: {"sharp": {"markoutHorizonsSeconds": []}}, "sharp.markoutHorizonsSeconds"),
    "unknown market": (lambda m, o: {"markets": {"no-such-market": {"exposureCap": 1}}}, "markets.no-such-market"),
    "unknown operator": (lambda m, o: {"operators": {str(uuid.uuid4()): {"tradingEnabled": False}}}, None),
    "operator named twice": (lambda m, o: {"operators": {o.upper(): {"tradingEnabled": True}}}, "operators"),
    "operator id not a uuid": (lambda m, o: {"operators": {"lucky": {"tradingEnabled": False}}}, "operators.lucky"),
    "new tier missing a limit": (lambda m, o: {"tiers": {"gold": {"maxStake": 10, "maxDailyLoss": 10}}}, "tiers.gold"),
    "bad tier name": (lambda m, o: {"tiers": {"Gold Tier": {"maxStake": 1, "maxPositionPerMarket": 1, "maxDailyLoss": 1}}}, None),
    "tier set to null": (lambda m, o: {"tiers": {"vip": None}}, "tiers.vip"),
    "section not an object": (lambda m, o: {"velocity": [1, 2]}, "velocity"),
}


@pytest.mark.parametrize("case", BAD_PATCHES, ids=list(BAD_PATCHES))
def test_invalid_patch_is_400_naming_the_key_and_changes_nothing(staff_api, market, operator_id, case):
    make_bad, field = BAD_PATCHES[case]
    before = config_of(staff_api)
    # Valid changes in every section ride along: a refused patch must not apply any of them.
    body = {
        "global": {"tradingEnabled": False, "exposureCap": 1},
        "velocity": {"maxTradesPerMinute": 1},
        "tiers": {"vip": {"maxStake": 1}, "silver": {"maxStake": 1, "maxPositionPerMarket": 1, "maxDailyLoss": 1}},
        "markets": {market.pk: {"exposureCap": 1}},
        "operators": {operator_id: {"tradingEnabled": False}},
        "sharp": {"minTrades": 1},
    }
    for section, value in make_bad(market.pk, operator_id).items():
        body[section] = {**body[section], **value} if isinstance(body.get(section), dict) and isinstance(value, dict) else value
    response = patch(staff_api, body)
    assert response.status_code == 400, response.content
    error = decimal_json(response)
    assert error["code"] == "invalid_risk_config"
    assert error["error"].startswith("Invalid risk configuration: ")
    if field is not None:
        field = field.format(o=operator_id)
        assert error["field"] == field and field in error["error"]
    assert config_of(staff_api) == before
    assert not Tier.objects.filter(name="silver").exists()


def test_body_must_be_a_json_object(staff_api):
    response = patch(staff_api, [1, 2])
    assert response.status_code == 400 and decimal_json(response)["code"] == "invalid_body"
    assert patch(staff_api, raw="{not json").status_code == 400


def test_without_a_token_is_401_and_a_player_is_403(make_player):
    anonymous = Api()
    assert anonymous.get("admin/risk").status_code == 401
    assert patch(anonymous, {"global": {"tradingEnabled": False}}).status_code == 401
    _, player_api = make_player()
    for response in (player_api.get("admin/risk"), patch(player_api, {"global": {"tradingEnabled": False}})):
        assert response.status_code == 403
        assert decimal_json(response)["error"] == "Admin access required"
    assert risk_settings().trading_enabled


def test_responses_carry_rate_limit_headers(staff_api):
    response = staff_api.get("admin/risk")
    assert response["X-RateLimit-Limit"] == "60"


def test_the_endpoint_is_in_the_openapi_schema(staff_api):
    schema = staff_api.client.get("/api/schema/", {"format": "json"}).content.decode()
    assert "/api/casino/admin/risk" in schema and "RiskConfig" in schema


# --- changes apply to the next trade ----------------------------------------------------------


def test_global_kill_switch_stops_the_next_trade_but_not_balances(staff_api, make_player, market):
    _, api = make_player(Decimal("100"))
    assert api.post("trade", buy_body(amount="5")).status_code == 200

    assert patch(staff_api, {"global": {"tradingEnabled": False}}).status_code == 200
    refused = api.post("trade", buy_body(amount="5"))
    assert refused.status_code == 503
    assert decimal_json(refused)["error"] == "Trading is disabled"
    assert api.get("balance").status_code == 200
    assert api.get("positions").status_code == 200

    assert patch(staff_api, {"global": {"tradingEnabled": True}}).status_code == 200
    assert api.post("trade", buy_body(amount="5")).status_code == 200


def test_lower_tier_max_stake_refuses_the_next_trade(staff_api, make_player, market):
    _, api = make_player(Decimal("100"))
    assert api.post("trade", buy_body(amount="25")).status_code == 200

    assert patch(staff_api, {"tiers": {"standard": {"maxStake": 20}}}).status_code == 200
    refused = api.post("trade", buy_body(amount="25"))
    assert refused.status_code == 400
    assert decimal_json(refused)["code"] == "risk.tier.max_stake"
    assert api.post("trade", buy_body(amount="20")).status_code == 200


def test_operator_kill_switch_stops_only_that_operators_players(staff_api, make_player, market, operator_id):
    other = operator_create(name=f"other-{uuid.uuid4().hex[:8]}", wallet_mode="internal")
    _, api = make_player(Decimal("100"))
    _, other_api = make_player(Decimal("100"), op=other)

    assert patch(staff_api, {"operators": {operator_id: {"tradingEnabled": False}}}).status_code == 200
    refused = api.post("trade", buy_body(amount="5"))
    assert refused.status_code == 503 and decimal_json(refused)["error"] == "Trading is disabled"
    assert other_api.post("trade", buy_body(amount="5")).status_code == 200

    assert patch(staff_api, {"operators": {operator_id: {"tradingEnabled": True}}}).status_code == 200
    assert api.post("trade", buy_body(amount="5")).status_code == 200


def test_market_cap_patch_applies_to_the_next_trade(staff_api, make_player, market):
    _, api = make_player(Decimal("100"))
    assert patch(staff_api, {"markets": {market.pk: {"exposureCap": 5}}}).status_code == 200
    refused = api.post("trade", buy_body(amount="25"))
    assert refused.status_code == 400 and decimal_json(refused)["code"] == "risk.exposure.market_cap"

    assert patch(staff_api, {"markets": {market.pk: None}}).status_code == 200  # back to the default cap
    assert api.post("trade", buy_body(amount="25")).status_code == 200


def test_velocity_patch_applies_to_the_next_trade(staff_api, make_player, market):
    _, api = make_player(Decimal("100"))
    assert patch(staff_api, {"velocity": {"maxTradesPerMinute": 1}}).status_code == 200
    assert api.post("trade", buy_body(amount="1")).status_code == 200
    refused = api.post("trade", buy_body(amount="1"))
    assert refused.status_code == 400 and decimal_json(refused)["code"] == "risk.velocity.max_trades_per_minute"


def test_a_second_market_can_get_its_own_cap(staff_api):
    other = reference_price_set(market_id="0xother", outcome="yes", mid_price=Decimal("40"), title="Other").market
    assert patch(staff_api, {"markets": {other.pk: {"exposureCap": 12.5}}}).status_code == 200
    assert config_of(staff_api)["markets"] == {"0xother": {"exposureCap": Decimal("12.5")}}
