"""The risk configuration document for the OpenAPI schema (validation is in risk.services.configure)."""

from rest_framework import serializers


def _money(**kwargs):
    return serializers.DecimalField(max_digits=14, decimal_places=2, coerce_to_string=False, **kwargs)


def _score(**kwargs):
    return serializers.DecimalField(max_digits=6, decimal_places=4, coerce_to_string=False, **kwargs)


class RiskGlobalSerializer(serializers.Serializer):
    tradingEnabled = serializers.BooleanField(required=False, help_text="Global kill switch: false = every trade gets 503.")
    exposureCap = _money(required=False, help_text="Worst-case loss allowed across all markets (dollars).")
    defaultMarketExposureCap = _money(required=False, help_text="Worst-case loss allowed per market without its own cap.")
    categoryExposureCap = _money(required=False, help_text="Worst-case loss allowed over one category's markets without its own cap.")


class RiskVelocitySerializer(serializers.Serializer):
    maxTradesPerMinute = serializers.IntegerField(required=False, min_value=0)
    maxStakePerMinute = _money(required=False)
    marketBurstTrades = serializers.IntegerField(required=False, min_value=0)
    marketBurstWindowSeconds = serializers.IntegerField(required=False, min_value=1, max_value=86400)


class RiskTierSerializer(serializers.Serializer):
    maxStake = _money(required=False, help_text="All three are required for a new tier.")
    maxPositionPerMarket = _money(required=False)
    maxDailyLoss = _money(required=False)
    extraSpread = serializers.DecimalField(
        max_digits=8, decimal_places=4, coerce_to_string=False, required=False, help_text="Extra spread (points) of the tier; default 0."
    )


class RiskMarketSerializer(serializers.Serializer):
    exposureCap = _money(required=False, allow_null=True, help_text="null (or a null market entry) removes the market's own cap.")


class RiskCategorySerializer(serializers.Serializer):
    exposureCap = _money(required=False, allow_null=True, help_text="null (or a null category entry) removes the category's own cap.")


class RiskOperatorSerializer(serializers.Serializer):
    tradingEnabled = serializers.BooleanField(required=False, help_text="Operator kill switch.")
    maxOpenExposure = _money(required=False, allow_null=True, help_text="null = no limit")
    maxDailyTurnover = _money(required=False, allow_null=True, help_text="null = no limit")
    maxDailyNetLoss = _money(required=False, allow_null=True, help_text="null = no limit")


class RiskSharpSerializer(serializers.Serializer):
    spreadWidenAt = _score(required=False, help_text="Score in [0, 1] from which the spread widens.")
    extraSpread = serializers.DecimalField(max_digits=8, decimal_places=4, coerce_to_string=False, required=False)
    refuseAt = _score(required=False, help_text="Score in [0, 1] from which trades are refused.")
    limitAt = _score(required=False, help_text="Score in [0, 1] from which tier limits are scaled down.")
    limitFactor = _score(required=False, help_text="Multiplier in [0, 1] on tier limits.")
    minTrades = serializers.IntegerField(required=False, min_value=0)
    fullEdge = _score(required=False, help_text="Edge per dollar staked that scores 1.0, in (0, 1].")
    markoutHorizonsSeconds = serializers.ListField(child=serializers.IntegerField(min_value=1), required=False)
    # Issue 14 (SPEC §16): player classes.
    classModerateAt = serializers.DecimalField(
        max_digits=5,
        decimal_places=2,
        coerce_to_string=False,
        required=False,
        help_text="Composite score (0-100) from which a player is moderate.",
    )
    classSharpAt = serializers.DecimalField(
        max_digits=5, decimal_places=2, coerce_to_string=False, required=False, help_text="... sharp (sharp score = composite / 100)."
    )
    classProfessionalAt = serializers.DecimalField(
        max_digits=5, decimal_places=2, coerce_to_string=False, required=False, help_text="... professional."
    )
    timingMovePoints = serializers.DecimalField(
        max_digits=8, decimal_places=4, coerce_to_string=False, required=False, help_text="A large favourable mid move (points) for timing."
    )
    sizingMultiple = serializers.DecimalField(
        max_digits=8, decimal_places=4, coerce_to_string=False, required=False, help_text="A large stake: this many times the median."
    )


class RiskFeedSerializer(serializers.Serializer):
    maxSourceSpread = serializers.DecimalField(
        max_digits=8, decimal_places=4, coerce_to_string=False, required=False, help_text="Source book wider than this (points): suspended."
    )
    jumpPoints = serializers.DecimalField(
        max_digits=8, decimal_places=4, coerce_to_string=False, required=False, help_text="YES mid move (points) that suspends ..."
    )
    jumpWindowSeconds = serializers.IntegerField(required=False, min_value=1, max_value=86400, help_text="... within this many seconds ...")
    jumpCooldownSeconds = serializers.IntegerField(required=False, min_value=0, max_value=86400, help_text="... for this long.")
    priceMaxAgeSeconds = serializers.IntegerField(required=False, min_value=1, help_text="Older reference: 400 Price moved.")
    autoSettleAfterSeconds = serializers.IntegerField(
        required=False, allow_null=True, min_value=0, help_text="Auto-confirm resolution proposals after this delay; null = staff confirm."
    )
    maxListedMarkets = serializers.IntegerField(required=False, min_value=0)
    allowedCategories = serializers.ListField(child=serializers.CharField(), required=False, help_text="Empty = every category.")


def _points(**kwargs):
    return serializers.DecimalField(max_digits=8, decimal_places=4, coerce_to_string=False, **kwargs)


class RiskPricingSerializer(serializers.Serializer):
    """Issue 14, SPEC §16 "Dynamic spread"."""

    defaultSpread = _points(required=False, help_text="Base spread (points) of a market without its own.")
    minSpread = _points(required=False, help_text="The full spread is clamped to [minSpread, maxSpread].")
    maxSpread = _points(required=False)
    extremeZone = _points(required=False, help_text="A mid this close (points) to 0 or 100 widens the spread ...")
    extremeWidening = _points(required=False, help_text="... by this many points per point inside the zone.")
    liquidityReference = _money(required=False, help_text="Liquidity from which a market is not widened (dollars, > 0).")
    liquidityWidening = _points(required=False, help_text="Widening (points) of a market with no liquidity.")
    skewStart = _score(required=False, help_text="Share of the market cap (worst case), in [0, 1), from which adverse buys skew.")
    skewMax = _points(required=False, help_text="The skew (points on the buy price) at the cap.")


class RiskPromotionSerializer(serializers.Serializer):
    """Issue 14 (SPEC §16): the promotion rule out of one tier (keyed by that tier)."""

    toTier = serializers.CharField(required=False, help_text="Required for a new rule; never 'restricted'.")
    minAccountAgeDays = serializers.IntegerField(required=False, min_value=0)
    minCompletedTrades = serializers.IntegerField(required=False, min_value=0)
    enabled = serializers.BooleanField(required=False)


class RiskBreakersSerializer(serializers.Serializer):
    platformHalted = serializers.BooleanField(
        required=False, help_text="The platform loss halt tripped (buys get 503). PATCH false resets it, true halts by hand."
    )
    platformHaltedAt = serializers.DateTimeField(read_only=True, allow_null=True, help_text="When it tripped; null when not halted.")
    playerLossHalt = _money(required=False, help_text="A player's buys are refused above this net loss of the house in 24 h.")
    platformLossHalt = _money(required=False, help_text="Every buy is refused (503) above this net loss of the house in 24 h.")


class RiskConfigSerializer(serializers.Serializer):
    global_ = RiskGlobalSerializer(required=False)
    velocity = RiskVelocitySerializer(required=False)
    tiers = serializers.DictField(child=RiskTierSerializer(), required=False, help_text="By tier name.")
    markets = serializers.DictField(child=RiskMarketSerializer(allow_null=True), required=False, help_text="By market id.")
    operators = serializers.DictField(child=RiskOperatorSerializer(allow_null=True), required=False, help_text="By operator id.")
    sharp = RiskSharpSerializer(required=False)
    feed = RiskFeedSerializer(required=False, help_text="The market-data feed's thresholds and listing rules (SPEC §11).")
    pricing = RiskPricingSerializer(required=False, help_text="The dynamic spread and the exposure skew (SPEC §16).")
    categories = serializers.DictField(
        child=RiskCategorySerializer(allow_null=True), required=False, help_text="By category (compared lowercased); SPEC §16."
    )
    promotions = serializers.DictField(
        child=RiskPromotionSerializer(allow_null=True), required=False, help_text="By source tier; null removes the rule (SPEC §16)."
    )
    breakers = RiskBreakersSerializer(required=False, help_text="The automatic circuit breakers (SPEC §16).")

    def get_fields(self):
        fields = super().get_fields()
        return {"global": fields.pop("global_"), **fields}  # "global" is a Python keyword
