"""Risk limits of the five walls, the risk decisions log, and players' sharp profiles.

All thresholds live here (database, admin-editable, REST-scriptable); the defaults below are
what a new house starts with.
"""

from decimal import Decimal

from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

MONEY = {"max_digits": 14, "decimal_places": 2}
SCORE = {"max_digits": 6, "decimal_places": 4}


class RiskSettings(models.Model):
    """House-wide thresholds (single row, pk 1)."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1, editable=False)
    # Wall 5 (global part): the house kill switch.
    trading_enabled = models.BooleanField(default=True, help_text="Global kill switch: off = every trade gets 503.")
    # Wall 3: exposure.
    default_market_exposure_cap = models.DecimalField(
        **MONEY, default=Decimal("50000"), help_text="Worst-case loss allowed per market unless the market has its own cap."
    )
    global_exposure_cap = models.DecimalField(**MONEY, default=Decimal("1000000"), help_text="Worst-case loss allowed across all markets.")
    # Wall 1: velocity.
    max_trades_per_minute = models.PositiveIntegerField(default=15, help_text="Trades per player in any rolling 60 s.")
    max_stake_per_minute = models.DecimalField(**MONEY, default=Decimal("5000"), help_text="Dollars staked per player in any rolling 60 s.")
    market_burst_trades = models.PositiveIntegerField(default=200, help_text="Trades on one market (all players) within the burst window.")
    market_burst_window_seconds = models.PositiveIntegerField(default=10)
    # Wall 4: sharp detection.
    sharp_spread_widen_at = models.DecimalField(**SCORE, default=Decimal("0.6"), help_text="Score from which the spread widens.")
    sharp_extra_spread = models.DecimalField(
        max_digits=8, decimal_places=4, default=Decimal("2"), help_text="Extra spread (points) for sharp players."
    )
    sharp_limit_at = models.DecimalField(**SCORE, default=Decimal("0.75"), help_text="Score from which tier limits are scaled down.")
    sharp_limit_factor = models.DecimalField(**SCORE, default=Decimal("0.5"), help_text="Multiplier on tier limits for sharp players.")
    sharp_refuse_at = models.DecimalField(**SCORE, default=Decimal("0.9"), help_text="Score from which trades are refused.")
    sharp_min_trades = models.PositiveIntegerField(default=10, help_text="Trades needed before a score counts.")
    sharp_full_edge = models.DecimalField(
        **SCORE, default=Decimal("0.10"), help_text="Edge per dollar staked that scores 1.0 (score = edge / this, clamped to [0, 1])."
    )
    markout_horizons_seconds = models.JSONField(default=list, blank=True, help_text="Markout horizons, e.g. [60, 300, 3600].")
    # Issue 14, player classes (SPEC §16): the composite score's class thresholds (0-100) and the
    # parameters of its timing and sizing components (risk/services/sharp.py docstring).
    class_moderate_at = models.DecimalField(
        max_digits=5, decimal_places=2, default=Decimal("40"), help_text="Composite score (0-100) from which a player is moderate."
    )
    class_sharp_at = models.DecimalField(
        max_digits=5, decimal_places=2, default=Decimal("60"), help_text="Composite score (0-100) from which a player is sharp."
    )
    class_professional_at = models.DecimalField(
        max_digits=5, decimal_places=2, default=Decimal("80"), help_text="Composite score (0-100) from which a player is professional."
    )
    timing_move_points = models.DecimalField(
        max_digits=8,
        decimal_places=4,
        default=Decimal("5"),
        help_text="A move of the mid (points, in the trade's favour) after a trade that counts as large for the timing component.",
    )
    sizing_multiple = models.DecimalField(
        max_digits=8,
        decimal_places=4,
        default=Decimal("2"),
        help_text="A stake at least this many times the player's median stake is a large stake (sizing component).",
    )
    updated_at = models.DateTimeField(auto_now=True)
    # Issue 14, pricing (SPEC §16 "Dynamic spread"): the full spread and the exposure skew.
    min_spread = models.DecimalField(max_digits=8, decimal_places=4, default=Decimal("1"), help_text="Narrowest full spread (points).")
    max_spread = models.DecimalField(max_digits=8, decimal_places=4, default=Decimal("15"), help_text="Widest full spread (points).")
    extreme_zone = models.DecimalField(
        max_digits=8, decimal_places=4, default=Decimal("10"), help_text="A mid closer than this (points) to 0 or 100 widens the spread ..."
    )
    extreme_widening = models.DecimalField(
        max_digits=8, decimal_places=4, default=Decimal("0.3"), help_text="... by this many points per point inside the zone."
    )
    liquidity_reference = models.DecimalField(
        max_digits=20, decimal_places=2, default=Decimal("50000"), help_text="Liquidity from which thin markets are not widened ..."
    )
    liquidity_widening = models.DecimalField(
        max_digits=8, decimal_places=4, default=Decimal("2"), help_text="... and the widening (points) of a market with no liquidity."
    )
    skew_start = models.DecimalField(
        **SCORE, default=Decimal("0.25"), help_text="Share of the market's cap (worst case) from which buys of the adverse side skew ..."
    )
    skew_max = models.DecimalField(
        max_digits=8, decimal_places=4, default=Decimal("2"), help_text="... up to this many points on the price at the cap."
    )
    # Issue 14, category caps (SPEC §16): wall 3 over a category's markets.
    category_exposure_cap = models.DecimalField(
        **MONEY,
        default=Decimal("100000"),
        validators=[MinValueValidator(Decimal("0"))],
        help_text="Worst-case loss allowed over one category's markets unless the category has its own cap.",
    )
    # --- Issue 14: the automatic circuit breakers (SPEC §16; risk/services/breakers.py) ---
    player_loss_halt = models.DecimalField(
        **MONEY,
        default=Decimal("5000"),
        help_text="A player's buys are refused while the house's net loss to them over a rolling 24 h is above this.",
    )
    platform_loss_halt = models.DecimalField(
        **MONEY,
        default=Decimal("250000"),
        help_text="Every buy is refused (503) once the house's net loss over a rolling 24 h goes above this, until staff reset.",
    )
    # The halt's state changes only through risk.services.breakers (trip, staff reset: recorded as risk events).
    platform_halted = models.BooleanField(
        default=False, editable=False, help_text="The platform breaker has tripped: buys get 503 until staff reset it (sells go on)."
    )
    platform_halted_at = models.DateTimeField(null=True, blank=True, editable=False)
    platform_window_start = models.DateTimeField(
        null=True, blank=True, editable=False, help_text="Last staff reset: the platform breaker counts only losses booked after it."
    )

    class Meta:
        db_table = "risk_settings"
        verbose_name = "risk settings"
        verbose_name_plural = "risk settings"
        constraints = [
            models.CheckConstraint(condition=Q(id=1), name="risk_settings_singleton"),
            models.CheckConstraint(condition=Q(default_market_exposure_cap__gte=0), name="risk_default_cap_nonnegative"),
            models.CheckConstraint(condition=Q(global_exposure_cap__gte=0), name="risk_global_cap_nonnegative"),
        ]

    def __str__(self) -> str:
        return "Risk settings"

    def save(self, *args, **kwargs):
        # Issue 14: a save of the thresholds (admin form, PATCH admin/risk, a test's fixture) never writes the
        # platform halt's state back as it was read (a trip landing in between would be undone, with no event):
        # only risk.services.breakers changes it, by UPDATE.
        if kwargs.get("update_fields") is None and not self._state.adding:
            kwargs["update_fields"] = [f.name for f in self._meta.concrete_fields if not f.primary_key and f.name not in BREAKER_STATE]
        super().save(*args, **kwargs)

    @property
    def horizons(self) -> list[int]:
        return [int(h) for h in (self.markout_horizons_seconds or [60, 300, 3600])]


class Tier(models.Model):
    """Wall 2 limits for the players of one tier (players carry a tier name)."""

    name = models.SlugField(max_length=32, primary_key=True)
    max_stake = models.DecimalField(**MONEY, help_text="Largest stake of one buy.")
    max_position_per_market = models.DecimalField(**MONEY, help_text="Largest cost basis held in one market.")
    max_daily_loss = models.DecimalField(**MONEY, help_text="Largest net amount a player may put at risk in a UTC day.")
    # Issue 14, pricing: the tier's own widening of the spread (SPEC §16 tierExtra).
    extra_spread = models.DecimalField(
        max_digits=8, decimal_places=4, default=Decimal("0"), help_text="Extra spread (points) for this tier."
    )

    class Meta:
        db_table = "risk_tiers"
        constraints = [
            models.CheckConstraint(
                condition=Q(max_stake__gte=0, max_position_per_market__gte=0, max_daily_loss__gte=0), name="tier_limits_nonnegative"
            )
        ]

    def __str__(self) -> str:
        return self.name


class MarketRiskLimit(models.Model):
    market = models.OneToOneField("casino.Market", on_delete=models.CASCADE, primary_key=True, related_name="risk_limit")
    exposure_cap = models.DecimalField(**MONEY)

    class Meta:
        db_table = "risk_market_limits"
        constraints = [models.CheckConstraint(condition=Q(exposure_cap__gte=0), name="risk_market_cap_nonnegative")]


class OperatorRiskLimit(models.Model):
    """Wall 5 limits of one operator (empty = no limit)."""

    operator = models.OneToOneField("casino.Operator", on_delete=models.CASCADE, primary_key=True, related_name="risk_limit")
    trading_enabled = models.BooleanField(default=True, help_text="Operator kill switch: off = its players' trades get 503.")
    max_open_exposure = models.DecimalField(
        **MONEY, null=True, blank=True, help_text="Payout owed on its players' open positions, minus their cost."
    )
    max_daily_turnover = models.DecimalField(**MONEY, null=True, blank=True, help_text="Stakes and proceeds of its players in a UTC day.")
    max_daily_net_loss = models.DecimalField(
        **MONEY, null=True, blank=True, help_text="Money the house pays its players beyond what it takes, in a UTC day."
    )

    class Meta:
        db_table = "risk_operator_limits"


class Wall(models.TextChoices):
    KILL_SWITCH = "kill_switch", "Kill switch"
    VELOCITY = "velocity", "1 Velocity"
    TIER = "tier", "2 Tier limits"
    EXPOSURE = "exposure", "3 Exposure caps"
    SHARP = "sharp", "4 Sharp detection"
    OPERATOR = "operator", "5 Operator limits"
    BREAKER = "breaker", "Circuit breakers"


class RiskDecision(models.Model):
    """A refusal by a wall: who, what, which wall and limit, and the numbers it saw."""

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    player = models.ForeignKey("casino.Player", on_delete=models.SET_NULL, null=True, blank=True, related_name="risk_decisions")
    operator = models.ForeignKey("casino.Operator", on_delete=models.SET_NULL, null=True, blank=True, related_name="risk_decisions")
    market_id = models.CharField(max_length=128, blank=True, default="", db_index=True)
    side = models.CharField(max_length=4, blank=True, default="")
    outcome = models.CharField(max_length=3, blank=True, default="")
    amount = models.DecimalField(max_digits=20, decimal_places=6, null=True, blank=True)
    wall = models.CharField(max_length=16, choices=Wall.choices, db_index=True)
    limit = models.CharField(max_length=64)
    code = models.CharField(max_length=96, db_index=True)
    message = models.CharField(max_length=200)
    values = models.JSONField(default=dict, blank=True)

    class Meta:
        db_table = "risk_decisions"
        indexes = [models.Index(fields=["player", "-created_at"], name="risk_decision_player")]


class PlayerRiskProfile(models.Model):
    """Wall 4 inputs, recomputed by the sharp-scoring task."""

    player = models.OneToOneField("casino.Player", on_delete=models.CASCADE, primary_key=True, related_name="risk_profile")
    sharp_score = models.DecimalField(**SCORE, default=Decimal("0"))
    markout_edge = models.DecimalField(**SCORE, default=Decimal("0"), help_text="Average markout per dollar staked.")
    results_edge = models.DecimalField(**SCORE, default=Decimal("0"), help_text="Profit per dollar staked on resolved markets.")
    trades_scored = models.PositiveIntegerField(default=0)
    computed_at = models.DateTimeField(null=True, blank=True)
    # Issue 14, player classes (SPEC §16): the five components (each 0-1), the composite (0-100)
    # and its class. sharp_score above is composite / 100 (risk/services/sharp.py).
    win_rate = models.DecimalField(**SCORE, default=Decimal("0.5"), help_text="Win-rate component, 0-1 (weight 0.30).")
    edge = models.DecimalField(**SCORE, default=Decimal("0"), help_text="Markout edge component, 0-1 (weight 0.25).")
    timing = models.DecimalField(**SCORE, default=Decimal("0"), help_text="Timing component, 0-1 (weight 0.15).")
    sizing = models.DecimalField(**SCORE, default=Decimal("0"), help_text="Sizing component, 0-1 (weight 0.15).")
    diversity = models.DecimalField(**SCORE, default=Decimal("0"), help_text="Market diversity component, 0-1 (weight 0.15).")
    composite_score = models.DecimalField(max_digits=5, decimal_places=2, default=Decimal("0"), help_text="0-100.")
    player_class = models.CharField(max_length=16, default="recreational", db_index=True)

    class Meta:
        db_table = "risk_player_profiles"
        indexes = [models.Index(fields=["-sharp_score"], name="risk_profile_score")]


# --- Issue 14: category caps (SPEC §16) -----------------------------------------------------------


class CategoryRiskLimit(models.Model):
    """A category's own cap on the worst-case loss summed over its markets (else the house default)."""

    category = models.CharField(max_length=64, primary_key=True, help_text="Category key: trimmed and lowercased.")
    exposure_cap = models.DecimalField(**MONEY, validators=[MinValueValidator(Decimal("0"))])

    class Meta:
        db_table = "risk_category_limits"
        constraints = [models.CheckConstraint(condition=Q(exposure_cap__gte=0), name="risk_category_cap_nonnegative")]

    def __str__(self) -> str:
        return self.category


# --- Issue 14: player classes, tier promotion rules and the tier audit (SPEC §16) -----------------


class PlayerClass(models.TextChoices):
    RECREATIONAL = "recreational", "Recreational"
    MODERATE = "moderate", "Moderate"
    SHARP = "sharp", "Sharp"
    PROFESSIONAL = "professional", "Professional"


# Classes a promotion rule accepts ("a sharp class below sharp").
PROMOTABLE_CLASSES = (PlayerClass.RECREATIONAL, PlayerClass.MODERATE)
# Never promoted out of or into automatically.
RESTRICTED_TIER = "restricted"


class TierPromotionRule(models.Model):
    """From one tier to a higher one when every condition holds (applied daily by
    risk.tasks.tier_promotions_apply_task; risk/services/promotion.py defines each condition)."""

    from_tier = models.ForeignKey(Tier, on_delete=models.CASCADE, related_name="promotions_out")
    to_tier = models.ForeignKey(Tier, on_delete=models.CASCADE, related_name="promotions_in")
    min_account_age_days = models.PositiveIntegerField(default=30, help_text="Days since the player's account was created.")
    min_completed_trades = models.PositiveIntegerField(default=50, help_text="Trades (buys and sells) the player has made.")
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "risk_tier_promotion_rules"
        ordering = ["from_tier_id", "to_tier_id"]
        constraints = [
            models.UniqueConstraint(fields=["from_tier"], name="tier_promotion_one_rule_per_tier"),
            models.CheckConstraint(condition=~Q(from_tier=models.F("to_tier")), name="tier_promotion_to_another_tier"),
            models.CheckConstraint(
                condition=~Q(from_tier=RESTRICTED_TIER) & ~Q(to_tier=RESTRICTED_TIER), name="tier_promotion_not_restricted"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.from_tier_id} -> {self.to_tier_id}"


class TierChangeSource(models.TextChoices):
    RULE = "rule", "Promotion rule"
    STAFF = "staff", "Staff"
    OPERATOR = "operator", "Operator"


class TierChange(models.Model):
    """Every change of a player's tier: by a promotion rule, by staff, or by the operator."""

    player = models.ForeignKey("casino.Player", on_delete=models.CASCADE, related_name="tier_changes")
    from_tier = models.CharField(max_length=32)
    to_tier = models.CharField(max_length=32)
    source = models.CharField(max_length=8, choices=TierChangeSource.choices)
    rule = models.ForeignKey(TierPromotionRule, on_delete=models.SET_NULL, null=True, blank=True, related_name="changes")
    actor = models.CharField(max_length=200, blank=True, default="", help_text="Staff user, operator id or 'tier-promotion'.")
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        db_table = "risk_tier_changes"
        indexes = [models.Index(fields=["player", "-created_at"], name="risk_tier_change_player")]

    def __str__(self) -> str:
        return f"{self.player_id}: {self.from_tier} -> {self.to_tier} ({self.source})"


def tier_change_record(*, player_ids, from_tier: str, to_tier: str, source: str, actor: str = "", rule=None, at=None) -> int:
    """Record a tier change of each player (the caller changed the tier in the same transaction)."""
    at = at or timezone.now()
    rows = [
        TierChange(player_id=pk, from_tier=from_tier, to_tier=to_tier, source=source, actor=actor[:200], rule=rule, created_at=at)
        for pk in player_ids
    ]
    TierChange.objects.bulk_create(rows)
    return len(rows)


# --- Issue 14: risk events (breaker trips and staff resets; SPEC §16) ------------------------------

BREAKER_STATE = ("platform_halted", "platform_halted_at", "platform_window_start")


class RiskEventSeverity(models.TextChoices):
    INFO = "info", "Info"
    WARNING = "warning", "Warning"
    CRITICAL = "critical", "Critical"


class RiskEventKind(models.TextChoices):
    PLAYER_HALT = "player_halt", "Player loss halt tripped"
    PLATFORM_HALT = "platform_halt", "Platform loss halt tripped"
    PLATFORM_RESET = "platform_reset", "Platform halt reset by staff"


class RiskEvent(models.Model):
    """Something the risk team must see: a breaker tripping (once per trip, not per refused buy), a reset."""

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    kind = models.CharField(max_length=32, choices=RiskEventKind.choices, db_index=True)
    severity = models.CharField(max_length=10, choices=RiskEventSeverity.choices)
    player = models.ForeignKey("casino.Player", on_delete=models.SET_NULL, null=True, blank=True, related_name="risk_events")
    message = models.CharField(max_length=300)
    values = models.JSONField(default=dict, blank=True)
    actor = models.CharField(max_length=150, blank=True, default="", help_text="system, or staff:<username>.")

    class Meta:
        db_table = "risk_events"
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} at {self.created_at:%Y-%m-%d %H:%M}"
