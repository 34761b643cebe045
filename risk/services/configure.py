"""The risk configuration as the risk team's tooling sees it (SPEC §6): the effective thresholds
in the wire shape, and a validated merge of a partial configuration applied in one transaction."""

import json
import logging
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

from django.db import transaction

from casino.models import CasinoSettings, Market, Operator
from casino.services.markets import casino_settings
from core.api.rendering import iso
from core.errors import HouseError
from core.money import MAX_AMOUNT, money, plain
from risk.models import RESTRICTED_TIER, CategoryRiskLimit, MarketRiskLimit, OperatorRiskLimit, RiskSettings, Tier, TierPromotionRule
from risk.services.breakers import breaker_platform_halt, breaker_platform_reset
from risk.services.config import risk_config_changed, risk_settings

log = logging.getLogger("house.risk")

TIER_NAME_RE = re.compile(r"^[a-z0-9_-]{1,32}$")
MAX_COUNT = 2_147_483_647  # PositiveIntegerField
MAX_HORIZONS = 10
MAX_HORIZON_SECONDS = 7 * 24 * 3600
ONE = Decimal("1")
ZERO = Decimal("0")


# --- value parsers: (value, path) -> the model value, or HouseError naming the key -------------


class RiskConfigError(HouseError):
    """400 naming the offending key (``field``); ``reason`` alone is what the admin forms show."""

    def __init__(self, path: str, reason: str):
        super().__init__(f"Invalid risk configuration: {path} {reason}", code="invalid_risk_config", extra={"field": path})
        self.reason = reason


def invalid_config(path: str, reason: str) -> RiskConfigError:
    return RiskConfigError(path, reason)


def _boolean(value, path: str) -> bool:
    if not isinstance(value, bool):
        raise invalid_config(path, "must be true or false")
    return value


def _number(value, path: str, *, places: int, what: str) -> Decimal:
    # JSON numbers arrive as int or Decimal; strings, booleans and floats are refused.
    if isinstance(value, bool) or not isinstance(value, (int, Decimal)):
        raise invalid_config(path, f"must be {what}")
    number = Decimal(value)
    if not number.is_finite() or abs(number) > MAX_AMOUNT:
        raise invalid_config(path, f"must be {what}")
    step = Decimal(1).scaleb(-places)
    if number != number.quantize(step):
        raise invalid_config(path, f"must have at most {places} decimal places")
    return number.quantize(step)


def _money(value, path: str) -> Decimal:
    amount = _number(value, path, places=2, what="a number of dollars >= 0")
    if amount < 0:
        raise invalid_config(path, "must be a number of dollars >= 0")
    return amount


def _money_or_none(value, path: str) -> Decimal | None:
    return None if value is None else _money(value, path)


def _bounded(low: Decimal, high: Decimal, *, low_open: bool = False) -> Callable:
    what = f"a number {'>' if low_open else '>='} {low} and <= {high}"

    def parse(value, path: str) -> Decimal:
        number = _number(value, path, places=4, what=what)
        if number > high or number < low or (low_open and number == low):
            raise invalid_config(path, f"must be {what}")
        return number

    return parse


def _count(low: int, high: int = MAX_COUNT) -> Callable:
    def parse(value, path: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not (low <= value <= high):
            raise invalid_config(path, f"must be an integer >= {low} and <= {high}")
        return value

    return parse


def _horizons(value, path: str) -> list[int]:
    if not isinstance(value, list) or not (1 <= len(value) <= MAX_HORIZONS):
        raise invalid_config(path, f"must be a list of 1 to {MAX_HORIZONS} integers (seconds)")
    seconds = [_count(1, MAX_HORIZON_SECONDS)(item, f"{path}[{i}]") for i, item in enumerate(value)]
    return sorted(set(seconds))


_score = _bounded(ZERO, ONE)


def _composite_score(value, path: str) -> Decimal:
    """A player-class threshold on the composite score (0-100, 2 places)."""
    number = _number(value, path, places=2, what="a number >= 0 and <= 100")
    if not (ZERO <= number <= Decimal("100")):
        raise invalid_config(path, "must be a number >= 0 and <= 100")
    return number


MAX_CATEGORIES = 100


def _count_or_none(low: int, high: int) -> Callable:
    count = _count(low, high)
    return lambda value, path: None if value is None else count(value, path)


def _categories(value, path: str) -> list[str]:
    if not isinstance(value, list) or len(value) > MAX_CATEGORIES:
        raise invalid_config(path, f"must be a list of at most {MAX_CATEGORIES} category names")
    names = []
    for i, item in enumerate(value):
        if not isinstance(item, str) or not (1 <= len(item.strip()) <= 64):
            raise invalid_config(f"{path}[{i}]", "must be a category name (1 to 64 characters)")
        names.append(item.strip().lower())
    return sorted(set(names))


# --- the wire shape -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Setting:
    wire: str
    field: str
    parse: Callable
    render: Callable


SETTINGS_SECTIONS: dict[str, tuple[Setting, ...]] = {
    "global": (
        Setting("tradingEnabled", "trading_enabled", _boolean, bool),
        Setting("exposureCap", "global_exposure_cap", _money, money),
        Setting("defaultMarketExposureCap", "default_market_exposure_cap", _money, money),
        Setting("categoryExposureCap", "category_exposure_cap", _money, money),  # issue 14
    ),
    "velocity": (
        Setting("maxTradesPerMinute", "max_trades_per_minute", _count(0), int),
        Setting("maxStakePerMinute", "max_stake_per_minute", _money, money),
        Setting("marketBurstTrades", "market_burst_trades", _count(0), int),
        Setting("marketBurstWindowSeconds", "market_burst_window_seconds", _count(1, 86400), int),
    ),
    "sharp": (
        Setting("spreadWidenAt", "sharp_spread_widen_at", _score, plain),
        Setting("extraSpread", "sharp_extra_spread", _bounded(ZERO, Decimal("100")), plain),
        Setting("refuseAt", "sharp_refuse_at", _score, plain),
        Setting("limitAt", "sharp_limit_at", _score, plain),
        Setting("limitFactor", "sharp_limit_factor", _score, plain),
        Setting("minTrades", "sharp_min_trades", _count(0), int),
        Setting("fullEdge", "sharp_full_edge", _bounded(ZERO, ONE, low_open=True), plain),
        Setting("markoutHorizonsSeconds", "markout_horizons_seconds", _horizons, list),
        # Issue 14, player classes (SPEC §16): composite thresholds (0-100) and two component parameters.
        Setting("classModerateAt", "class_moderate_at", _composite_score, plain),
        Setting("classSharpAt", "class_sharp_at", _composite_score, plain),
        Setting("classProfessionalAt", "class_professional_at", _composite_score, plain),
        Setting("timingMovePoints", "timing_move_points", _bounded(ZERO, Decimal("100")), plain),
        Setting("sizingMultiple", "sizing_multiple", _bounded(ONE, Decimal("1000")), plain),
    ),
}
TIER_FIELDS = (
    Setting("maxStake", "max_stake", _money, money),
    Setting("maxPositionPerMarket", "max_position_per_market", _money, money),
    Setting("maxDailyLoss", "max_daily_loss", _money, money),
)
MARKET_FIELDS = (Setting("exposureCap", "exposure_cap", _money_or_none, money),)
OPERATOR_FIELDS = (
    Setting("tradingEnabled", "trading_enabled", _boolean, bool),
    Setting("maxOpenExposure", "max_open_exposure", _money_or_none, money),
    Setting("maxDailyTurnover", "max_daily_turnover", _money_or_none, money),
    Setting("maxDailyNetLoss", "max_daily_net_loss", _money_or_none, money),
)
# The market-data feed's thresholds and listing rules (SPEC §11), kept in the casino settings.
FEED_FIELDS = (
    Setting("maxSourceSpread", "feed_max_source_spread", _bounded(ZERO, Decimal("100")), plain),
    Setting("jumpPoints", "feed_jump_points", _bounded(ZERO, Decimal("100"), low_open=True), plain),
    Setting("jumpWindowSeconds", "feed_jump_window_seconds", _count(1, 86400), int),
    Setting("jumpCooldownSeconds", "feed_jump_cooldown_seconds", _count(0, 86400), int),
    Setting("priceMaxAgeSeconds", "price_max_age_seconds", _count(1, 7 * 86400), int),
    Setting("autoSettleAfterSeconds", "auto_settle_after_seconds", _count_or_none(0, 30 * 86400), int),
    Setting("maxListedMarkets", "max_listed_markets", _count(0, 100_000), int),
    Setting("allowedCategories", "allowed_categories", _categories, list),
)
SECTIONS = ("global", "velocity", "tiers", "markets", "operators", "sharp", "feed", "categories", "promotions")


# --- Issue 14, pricing (SPEC §16 "Dynamic spread"): the "pricing" section --------------------------


def _positive_money(value, path: str) -> Decimal:
    amount = _number(value, path, places=2, what="a number of dollars > 0")
    if amount <= 0:
        raise invalid_config(path, "must be a number of dollars > 0")
    return amount


def _below_one(value, path: str) -> Decimal:
    number = _number(value, path, places=4, what="a number >= 0 and < 1")
    if not (ZERO <= number < ONE):
        raise invalid_config(path, "must be a number >= 0 and < 1")
    return number


_points = _bounded(ZERO, Decimal("100"))
SETTINGS_SECTIONS["pricing"] = (
    Setting("minSpread", "min_spread", _points, plain),
    Setting("maxSpread", "max_spread", _points, plain),
    Setting("extremeZone", "extreme_zone", _bounded(ZERO, Decimal("50")), plain),
    Setting("extremeWidening", "extreme_widening", _points, plain),
    Setting("liquidityReference", "liquidity_reference", _positive_money, money),
    Setting("liquidityWidening", "liquidity_widening", _points, plain),
    Setting("skewStart", "skew_start", _below_one, plain),
    Setting("skewMax", "skew_max", _points, plain),
)
# The house's default spread stays a casino setting (the casino admin edits it too); "pricing" shows and sets it.
PRICING_CASINO_FIELDS = (Setting("defaultSpread", "default_spread", _points, plain),)
TIER_FIELDS = (*TIER_FIELDS, Setting("extraSpread", "extra_spread", _points, plain))
TIER_OPTIONAL = frozenset({"extra_spread"})  # a new tier without it: 0
SECTIONS = (*SECTIONS, "pricing")


def pricing_split(patch: dict) -> tuple[dict, dict]:
    """(the patch without the casino's keys of "pricing", those keys parsed as casino field values)."""
    section = patch.get("pricing")
    if not isinstance(section, dict):
        return patch, {}
    wires = {setting.wire for setting in PRICING_CASINO_FIELDS}
    known = [setting.wire for setting in (*SETTINGS_SECTIONS["pricing"], *PRICING_CASINO_FIELDS)]
    for key in section:
        if key not in known:
            raise invalid_config(f"pricing.{key}", f"is not a known key (expected one of: {', '.join(known)})")
    casino_part = {k: v for k, v in section.items() if k in wires}
    if not casino_part:
        return patch, {}
    rest = {k: v for k, v in section.items() if k not in wires}
    return {**patch, "pricing": rest}, _parse_fields(casino_part, PRICING_CASINO_FIELDS, "pricing")


def spread_bounds_check(min_spread: Decimal, max_spread: Decimal, path: str = "pricing.minSpread") -> None:
    if min_spread > max_spread:
        raise invalid_config(path, "must be <= pricing.maxSpread")


def _render(row, fields: tuple[Setting, ...]) -> dict:
    out = {}
    for setting in fields:
        value = getattr(row, setting.field)
        out[setting.wire] = None if value is None else setting.render(value)
    return out


def risk_configuration() -> dict:
    """The effective configuration, read from the database (not the walls' cache), every key present."""
    row = risk_settings()
    config = {name: _render(row, fields) for name, fields in SETTINGS_SECTIONS.items()}
    config["sharp"]["markoutHorizonsSeconds"] = row.horizons  # empty in the row = the built-in default
    config["tiers"] = {tier.name: _render(tier, TIER_FIELDS) for tier in Tier.objects.order_by("name")}
    config["markets"] = {limit.market_id: _render(limit, MARKET_FIELDS) for limit in MarketRiskLimit.objects.order_by("market_id")}
    config["operators"] = {
        str(limit.operator_id): _render(limit, OPERATOR_FIELDS) for limit in OperatorRiskLimit.objects.order_by("operator_id")
    }
    config["feed"] = _render(casino_settings(), FEED_FIELDS)
    config["pricing"].update(_render(casino_settings(), PRICING_CASINO_FIELDS))
    config["categories"] = {limit.category: _render(limit, CATEGORY_FIELDS) for limit in CategoryRiskLimit.objects.order_by("category")}
    config["promotions"] = promotions_render()
    config["breakers"] = breakers_render(row)
    return {name: config[name] for name in SECTIONS}


# --- the merge ----------------------------------------------------------------------------------


def _object(value, path: str) -> dict:
    if not isinstance(value, dict):
        raise invalid_config(path, "must be a JSON object")
    return value


def _parse_fields(body, fields: tuple[Setting, ...], path: str) -> dict[str, object]:
    """{model field: parsed value} for the keys present in ``body``; any other key is refused."""
    body = _object(body, path)
    by_wire = {setting.wire: setting for setting in fields}
    parsed = {}
    for key, value in body.items():
        setting = by_wire.get(key)
        if setting is None:
            raise invalid_config(f"{path}.{key}", f"is not a known key (expected one of: {', '.join(by_wire)})")
        parsed[setting.field] = setting.parse(value, f"{path}.{key}")
    return parsed


def _plan_settings(patch: dict) -> dict[str, object]:
    changes = {}
    for section, fields in SETTINGS_SECTIONS.items():
        if section in patch:
            changes.update(_parse_fields(patch[section], fields, section))
    return changes


def _plan_tiers(section) -> list[Tier]:
    section = _object(section, "tiers")
    existing = Tier.objects.select_for_update().in_bulk([name for name in section if isinstance(name, str)])
    tiers = []
    for name, body in section.items():
        path = f"tiers.{name}"
        if not isinstance(name, str) or not TIER_NAME_RE.match(name):
            raise invalid_config(path, "is not a valid tier name (lowercase letters, digits, '_' or '-', at most 32)")
        values = _parse_fields(body, TIER_FIELDS, path)
        tier = existing.get(name)
        if tier is None:
            missing = [s.wire for s in TIER_FIELDS if s.field not in values and s.field not in TIER_OPTIONAL]
            if missing:
                raise invalid_config(path, f"is a new tier and needs every limit (missing: {', '.join(missing)})")
            tier = Tier(name=name)
        for field, value in values.items():
            setattr(tier, field, value)
        tiers.append(tier)
    return tiers


def _plan_markets(section) -> tuple[list[MarketRiskLimit], list[str]]:
    """(caps to save, market ids whose own cap goes)."""
    section = _object(section, "markets")
    known = set(Market.objects.filter(pk__in=[k for k in section if isinstance(k, str)]).values_list("pk", flat=True))
    existing = MarketRiskLimit.objects.select_for_update().in_bulk(list(known))

    def entries():
        for market_id, body in section.items():
            path = f"markets.{market_id}"
            if market_id not in known:
                raise invalid_config(path, "is not a known market")
            yield market_id, body, path

    return _plan_caps(entries(), MARKET_FIELDS, existing, lambda market_id: MarketRiskLimit(market_id=market_id))


def _plan_caps(entries, fields, existing: dict, new_limit) -> tuple[list, list]:
    """Own caps by key, from (key, body, path) in order: (limits to save, keys whose own cap goes: null,
    or a body whose exposureCap is null). A body without exposureCap changes nothing."""
    saves, removals = [], []
    for key, body, path in entries:
        values = {"exposure_cap": None} if body is None else _parse_fields(body, fields, path)
        if "exposure_cap" not in values:
            continue
        if values["exposure_cap"] is None:
            removals.append(key)
            continue
        limit = existing.get(key) or new_limit(key)
        limit.exposure_cap = values["exposure_cap"]
        saves.append(limit)
    return saves, removals


def _operator_id(key, path: str) -> uuid.UUID:
    try:
        return uuid.UUID(key) if isinstance(key, str) else uuid.UUID(str(key))
    except ValueError:
        raise invalid_config(path, "is not a known operator") from None


def _plan_operators(section) -> tuple[list[OperatorRiskLimit], list[uuid.UUID]]:
    """(limit rows to save, operators whose limit row goes: no limits, trading on)."""
    section = _object(section, "operators")
    ids = {key: _operator_id(key, f"operators.{key}") for key in section}
    if len(set(ids.values())) < len(ids):  # the same id spelled twice (case, braces): which one wins?
        raise invalid_config("operators", "names the same operator more than once")
    known = set(Operator.objects.filter(pk__in=ids.values()).values_list("pk", flat=True))
    existing = OperatorRiskLimit.objects.select_for_update().in_bulk(list(known))
    saves, removals = [], []
    for key, body in section.items():
        path = f"operators.{key}"
        operator_id = ids[key]
        if operator_id not in known:
            raise invalid_config(path, "is not a known operator")
        if body is None:
            removals.append(operator_id)
            continue
        values = _parse_fields(body, OPERATOR_FIELDS, path)
        limit = existing.get(operator_id) or OperatorRiskLimit(operator_id=operator_id)
        for field, value in values.items():
            setattr(limit, field, value)
        saves.append(limit)
    return saves, removals


def risk_configure(*, patch: dict, actor: str) -> dict:
    """Merge a partial configuration (every key optional) and return the new effective one.

    Everything is validated before anything is written, in one transaction: a refused patch
    changes nothing. Writes go through save()/delete() so the config signals tell every
    worker to reload before its next trade.
    """
    patch = _object(patch, "configuration")
    patch, halt = breakers_halt_split(patch)
    for key in patch:
        if key not in SECTIONS:
            raise invalid_config(str(key), f"is not a known key (expected one of: {', '.join(SECTIONS)})")
    risk_settings()  # the row exists (with the defaults) before it is locked
    with transaction.atomic():
        row = RiskSettings.objects.select_for_update().get(pk=1)
        settings_patch, pricing_casino = pricing_split(patch)
        settings_changes = _plan_settings(settings_patch)
        spread_bounds_check(settings_changes.get("min_spread", row.min_spread), settings_changes.get("max_spread", row.max_spread))
        tiers = _plan_tiers(patch["tiers"]) if "tiers" in patch else []
        market_saves, market_removals = _plan_markets(patch["markets"]) if "markets" in patch else ([], [])
        operator_saves, operator_removals = _plan_operators(patch["operators"]) if "operators" in patch else ([], [])
        feed_changes = _parse_fields(patch["feed"], FEED_FIELDS, "feed") if "feed" in patch else {}
        category_saves, category_removals = _plan_categories(patch["categories"]) if "categories" in patch else ([], [])
        promotion_saves, promotion_removals = _plan_promotions(patch["promotions"], tiers) if "promotions" in patch else ([], [])

        if settings_changes:
            for field, value in settings_changes.items():
                setattr(row, field, value)
            row.save()
        for obj in [*tiers, *market_saves, *operator_saves]:
            obj.save()
        if feed_changes or pricing_casino:
            casino = CasinoSettings.objects.select_for_update().get(pk=casino_settings().pk)
            for field, value in {**feed_changes, **pricing_casino}.items():
                setattr(casino, field, value)
            casino.save()
        for limit in MarketRiskLimit.objects.filter(market_id__in=market_removals):
            limit.delete()
        for limit in OperatorRiskLimit.objects.filter(operator_id__in=operator_removals):
            limit.delete()
        for obj in category_saves:
            obj.save()
        for limit in CategoryRiskLimit.objects.filter(category__in=category_removals):
            limit.delete()
        for rule in promotion_saves:
            rule.save()
        TierPromotionRule.objects.filter(from_tier_id__in=promotion_removals).delete()
        if halt is not None:
            breakers_halt_apply(halted=halt, actor=actor)
        # The save signals fire before commit; a worker reloading in between could cache the old
        # rows under the new version, so the version is bumped again once the rows are visible.
        transaction.on_commit(risk_config_changed)
    risk_config_changed()
    log.info("risk configuration changed by %s: %s", actor, json.dumps(patch, default=str, sort_keys=True))
    return risk_configuration()


# --- Issue 14: category caps (SPEC §16) -----------------------------------------------------------

CATEGORY_FIELDS = (Setting("exposureCap", "exposure_cap", _money_or_none, money),)


def _plan_categories(section) -> tuple[list[CategoryRiskLimit], list[str]]:
    """(caps to save, category keys whose own cap goes). Keys are categories as markets carry them,
    compared trimmed and lowercased (the key the exposure book counts them under)."""
    section = _object(section, "categories")
    keys = {}
    for name in section:
        path = f"categories.{name}"
        if not isinstance(name, str) or not (1 <= len(name.strip()) <= 64):
            raise invalid_config(path, "is not a category name (1 to 64 characters)")
        keys[name] = name.strip().lower()
    if len(set(keys.values())) < len(keys):  # "Sports" and "sports" are one category
        raise invalid_config("categories", "names the same category more than once")
    existing = CategoryRiskLimit.objects.select_for_update().in_bulk(list(keys.values()))
    entries = ((keys[name], body, f"categories.{name}") for name, body in section.items())
    return _plan_caps(entries, CATEGORY_FIELDS, existing, lambda key: CategoryRiskLimit(category=key))


# --- Issue 14: tier promotion rules (SPEC §16), the "promotions" section --------------------------

PROMOTION_FIELDS = (
    Setting("toTier", "to_tier_id", lambda value, path: _tier_name(value, path), str),
    Setting("minAccountAgeDays", "min_account_age_days", _count(0, 36500), int),
    Setting("minCompletedTrades", "min_completed_trades", _count(0), int),
    Setting("enabled", "enabled", _boolean, bool),
)


def _tier_name(value, path: str) -> str:
    if not isinstance(value, str) or not TIER_NAME_RE.match(value):
        raise invalid_config(path, "is not a valid tier name")
    if value == RESTRICTED_TIER:
        raise invalid_config(path, "cannot be the restricted tier (never entered by a promotion)")
    return value


def promotions_render() -> dict:
    """{source tier: {"toTier", "minAccountAgeDays", "minCompletedTrades", "enabled"}}"""
    return {rule.from_tier_id: _render(rule, PROMOTION_FIELDS) for rule in TierPromotionRule.objects.order_by("from_tier_id")}


def _plan_promotions(section, planned_tiers: list[Tier]) -> tuple[list[TierPromotionRule], list[str]]:
    """(rules to save, source tiers whose rule goes). Tiers must exist (or be created by the same patch)."""
    section = _object(section, "promotions")
    known = set(Tier.objects.values_list("name", flat=True)) | {tier.name for tier in planned_tiers}
    wanted = [key for key in section if isinstance(key, str)]
    existing = {rule.from_tier_id: rule for rule in TierPromotionRule.objects.select_for_update().filter(from_tier_id__in=wanted)}
    saves, removals = [], []
    for source, body in section.items():
        path = f"promotions.{source}"
        if not isinstance(source, str) or source not in known:
            raise invalid_config(path, "is not a known tier")
        if source == RESTRICTED_TIER:
            raise invalid_config(path, "cannot be the restricted tier (never left by a promotion)")
        if body is None:
            removals.append(source)
            continue
        values = _parse_fields(body, PROMOTION_FIELDS, path)
        rule = existing.get(source)
        if rule is None:
            if "to_tier_id" not in values:
                raise invalid_config(path, "is a new rule and needs toTier")
            rule = TierPromotionRule(from_tier_id=source)
        for field, value in values.items():
            setattr(rule, field, value)
        if rule.to_tier_id not in known:
            raise invalid_config(f"{path}.toTier", "is not a known tier")
        if rule.to_tier_id == source:
            raise invalid_config(f"{path}.toTier", "must be another tier")
        saves.append(rule)
    return saves, removals


# --- Issue 14: the "breakers" section (SPEC §16; risk/services/breakers.py) ---------------------------

BREAKER_FIELDS = (
    Setting("playerLossHalt", "player_loss_halt", _money, money),
    Setting("platformLossHalt", "platform_loss_halt", _money, money),
)
SETTINGS_SECTIONS["breakers"] = BREAKER_FIELDS
SECTIONS = (*SECTIONS, "breakers")


def breakers_render(row: RiskSettings) -> dict:
    """The thresholds, and the platform halt's state (platformHaltedAt: null when not halted)."""
    return {
        "platformHalted": row.platform_halted,
        "platformHaltedAt": iso(row.platform_halted_at) if row.platform_halted_at else None,
        **_render(row, BREAKER_FIELDS),
    }


def breakers_halt_split(patch: dict) -> tuple[dict, bool | None]:
    """(the patch without breakers.platformHalted, the halt staff asked for or None). platformHaltedAt is
    read-only; ``platformHalted: false`` resets the platform halt, ``true`` halts by hand."""
    section = patch.get("breakers")
    if not isinstance(section, dict) or not ({"platformHalted", "platformHaltedAt"} & section.keys()):
        return patch, None
    if "platformHaltedAt" in section:
        raise invalid_config("breakers.platformHaltedAt", "is read-only (set platformHalted)")
    rest = {key: value for key, value in section.items() if key != "platformHalted"}
    halt = _boolean(section["platformHalted"], "breakers.platformHalted")
    return {**patch, "breakers": rest}, halt


def breakers_halt_apply(*, halted: bool, actor: str) -> None:
    """Inside risk_configure's transaction, after the other writes: halt or reset (recorded as risk events)."""
    if halted:
        breaker_platform_halt(actor=actor)
    else:
        breaker_platform_reset(actor=actor)
