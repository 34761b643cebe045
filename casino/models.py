"""Operators, players, sessions, markets and their configuration, trades, positions, exposure."""

import uuid
from decimal import Decimal

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

MONEY = {"max_digits": 14, "decimal_places": 2}
SHARES = {"max_digits": 20, "decimal_places": 6}
PRICE = {"max_digits": 8, "decimal_places": 4}
NONNEGATIVE = MinValueValidator(Decimal("0"))


class WalletMode(models.TextChoices):
    INTERNAL = "internal", "Internal (house-held balances)"
    S2S = "s2s", "S2S seamless wallet"


class Outcome(models.TextChoices):
    YES = "yes", "YES"
    NO = "no", "NO"


class Side(models.TextChoices):
    BUY = "buy", "Buy"
    SELL = "sell", "Sell"


class Operator(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=200, unique=True)
    # sha256 of the API key; the key itself is shown once, at creation or rotation.
    api_key_hash = models.CharField(max_length=64, unique=True, editable=False)
    api_key_prefix = models.CharField(max_length=16, editable=False, help_text="First characters of the key, to recognise it.")
    wallet_mode = models.CharField(max_length=16, choices=WalletMode.choices, default=WalletMode.INTERNAL)
    currency = models.CharField(max_length=3, default="USD")
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # ----- issue 14 (SPEC §16): loss notifications and the revenue share -----
    notify_losses = models.BooleanField(
        default=True,
        help_text="S2S wallets: report each losing position at settlement as a 0.00 credit of type loss (closes the round).",
    )
    operator_share_pct = models.DecimalField(
        max_digits=5,
        decimal_places=2,
        default=Decimal("70"),
        validators=[NONNEGATIVE, MaxValueValidator(Decimal("100"))],
        help_text="The operator's contract share of GGR, in percent (0-100); the house keeps the rest.",
    )

    class Meta:
        db_table = "casino_operators"
        constraints = [
            models.CheckConstraint(condition=Q(wallet_mode__in=["internal", "s2s"]), name="operator_wallet_mode_valid"),
            models.CheckConstraint(condition=Q(operator_share_pct__gte=0, operator_share_pct__lte=100), name="operator_share_pct_range"),
        ]

    def __str__(self) -> str:
        return self.name


class PlayerStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    BLOCKED = "blocked", "Blocked (no buys, no new sessions; sells, payouts and refunds go on)"


class Player(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    operator = models.ForeignKey(Operator, on_delete=models.PROTECT, related_name="players")
    external_id = models.CharField(max_length=128, help_text="The operator's own player id.")
    tier = models.CharField(max_length=32, default="standard")
    currency = models.CharField(max_length=3, default="USD")
    total_wagered = models.DecimalField(**MONEY, default=Decimal("0"))
    # Player controls set by the operator (SPEC §13), applied on the next trade on top of the
    # house's walls (risk/services/assessment.py). An empty limit is no limit.
    status = models.CharField(max_length=8, choices=PlayerStatus.choices, default=PlayerStatus.ACTIVE)
    max_stake_per_trade = models.DecimalField(
        **MONEY, null=True, blank=True, validators=[NONNEGATIVE], help_text="Largest stake of one buy; empty = no limit."
    )
    max_daily_stake = models.DecimalField(
        **MONEY, null=True, blank=True, validators=[NONNEGATIVE], help_text="Largest sum of buy stakes in a UTC day; empty = no limit."
    )
    max_daily_loss = models.DecimalField(
        **MONEY,
        null=True,
        blank=True,
        validators=[NONNEGATIVE],
        help_text="Largest net amount put at risk in a UTC day (stakes minus sale proceeds, as the tier's limit); empty = no limit.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "casino_players"
        constraints = [
            models.UniqueConstraint(fields=["operator", "external_id"], name="player_unique_per_operator"),
            models.CheckConstraint(condition=Q(status__in=["active", "blocked"]), name="player_status_valid"),
            models.CheckConstraint(
                condition=(Q(max_stake_per_trade__isnull=True) | Q(max_stake_per_trade__gte=0))
                & (Q(max_daily_stake__isnull=True) | Q(max_daily_stake__gte=0))
                & (Q(max_daily_loss__isnull=True) | Q(max_daily_loss__gte=0)),
                name="player_limits_nonnegative",
            ),
        ]
        # The operator's player list: newest first, keyset pages (casino/services/player_controls.py).
        indexes = [models.Index(fields=["operator", "-created_at", "-id"], name="player_operator_recent")]

    def __str__(self) -> str:
        return f"{self.external_id} @ {self.operator_id}"


class PlayerSession(models.Model):
    token_hash = models.CharField(max_length=64, primary_key=True)
    player = models.ForeignKey(Player, on_delete=models.CASCADE, related_name="sessions")
    expires_at = models.DateTimeField(db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "casino_player_sessions"


class StaffToken(models.Model):
    token_hash = models.CharField(max_length=64, primary_key=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="house_tokens")
    created_at = models.DateTimeField(auto_now_add=True)
    revoked = models.BooleanField(default=False)

    class Meta:
        db_table = "casino_staff_tokens"


class MarketStatus(models.TextChoices):
    OPEN = "open", "Open"
    RESOLVING = "resolving", "Resolving (settlement in progress)"
    RESOLVED = "resolved", "Resolved"
    VOIDED = "voided", "Voided"
    CLOSED = "closed", "Closed (settlement reversed, awaiting a new decision)"


class Market(models.Model):
    # Polymarket condition id (0x + 64 hex), or any id the price feed uses.
    id = models.CharField(primary_key=True, max_length=128)
    title = models.CharField(max_length=500, blank=True, default="")
    category = models.CharField(max_length=64, blank=True, default="")
    liquidity = models.DecimalField(
        max_digits=20, decimal_places=2, null=True, blank=True, help_text="Known liquidity; overrides the client's value when set."
    )
    status = models.CharField(max_length=16, choices=MarketStatus.choices, default=MarketStatus.OPEN)
    outcome = models.CharField(max_length=3, choices=Outcome.choices, null=True, blank=True)  # noqa: DJ001 - NULL = undecided
    disabled = models.BooleanField(default=False, help_text="Manually disabled: no trading.")
    custom_spread = models.DecimalField(**PRICE, null=True, blank=True, help_text="Spread in price points; empty = default spread.")
    # What the market-data feed knows (SPEC §11); a market created by hand keeps the defaults.
    yes_label = models.CharField(max_length=64, default="Yes")
    no_label = models.CharField(max_length=64, default="No")
    end_date = models.DateTimeField(null=True, blank=True)
    volume_24h = models.DecimalField(max_digits=20, decimal_places=2, null=True, blank=True)
    listed = models.BooleanField(default=True, help_text="In the player catalogue and open to buys (the feed's listing rules).")
    suspended_reason = models.CharField(
        max_length=40, blank=True, default="", help_text="Why the feed stopped trading (a refusal code); empty = not suspended."
    )
    suspended_until = models.DateTimeField(
        null=True, blank=True, help_text="End of a price-jump cool-down; empty = until the cause clears."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "casino_markets"
        indexes = [models.Index(fields=["listed", "title", "id"], name="market_catalogue")]
        constraints = [
            models.CheckConstraint(
                condition=Q(custom_spread__isnull=True) | Q(custom_spread__gte=0, custom_spread__lt=100), name="market_custom_spread_range"
            ),
            models.CheckConstraint(condition=~Q(status="resolved") | Q(outcome__isnull=False), name="market_resolved_has_outcome"),
        ]

    def __str__(self) -> str:
        return self.title or self.id


class CasinoSettings(models.Model):
    """The single row of house-wide market configuration (pk is always 1)."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1, editable=False)
    blocked_categories = models.JSONField(default=list, blank=True)
    min_liquidity = models.DecimalField(max_digits=20, decimal_places=2, default=Decimal("5000"))
    min_price = models.DecimalField(**PRICE, default=Decimal("5"))
    max_price = models.DecimalField(**PRICE, default=Decimal("95"))
    default_spread = models.DecimalField(**PRICE, default=Decimal("4"))
    price_tolerance = models.DecimalField(
        **PRICE, default=Decimal("2"), help_text="Max distance (price points) between the client's midPrice and the house reference."
    )
    price_max_age_seconds = models.PositiveIntegerField(
        default=30, help_text="A reference price older than this is stale: trades are refused with 'Price moved'."
    )
    # The market-data feed (SPEC §11): when a market stops trading, and which markets are listed.
    feed_max_source_spread = models.DecimalField(
        **PRICE,
        default=Decimal("10"),
        help_text="A source book wider than this (price points), or with an empty side, suspends the market.",
    )
    feed_jump_points = models.DecimalField(**PRICE, default=Decimal("15"), help_text="A YES mid move larger than this (points) ...")
    feed_jump_window_seconds = models.PositiveIntegerField(default=60, help_text="... within this many seconds suspends the market ...")
    feed_jump_cooldown_seconds = models.PositiveIntegerField(default=120, help_text="... for this long; then it resumes if the price held.")
    auto_settle_after_seconds = models.PositiveIntegerField(
        null=True, blank=True, help_text="Confirm a resolution proposal whose evidence still holds after this delay; empty = staff confirm."
    )
    max_listed_markets = models.PositiveIntegerField(default=500, help_text="Markets listed at most, the most traded (24 h volume) first.")
    allowed_categories = models.JSONField(default=list, blank=True, help_text="Only these categories are listed; empty = all.")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "casino_settings"
        verbose_name = "casino settings"
        verbose_name_plural = "casino settings"
        constraints = [models.CheckConstraint(condition=Q(id=1), name="casino_settings_singleton")]

    def __str__(self) -> str:
        return "Casino settings"


class ReferencePrice(models.Model):
    """The house's own mid price per market and outcome; the client's midPrice is checked against it."""

    market = models.ForeignKey(Market, on_delete=models.CASCADE, related_name="reference_prices")
    outcome = models.CharField(max_length=3, choices=Outcome.choices)
    mid_price = models.DecimalField(**PRICE)
    updated_at = models.DateTimeField()

    class Meta:
        db_table = "casino_reference_prices"
        constraints = [
            models.UniqueConstraint(fields=["market", "outcome"], name="reference_price_unique"),
            models.CheckConstraint(condition=Q(mid_price__gt=0, mid_price__lt=100), name="reference_price_range"),
        ]


class ReferencePriceTick(models.Model):
    """History of the house reference price (markout of players' trades is measured on it)."""

    market = models.ForeignKey(Market, on_delete=models.CASCADE, related_name="price_ticks")
    outcome = models.CharField(max_length=3, choices=Outcome.choices)
    mid_price = models.DecimalField(**PRICE)
    at = models.DateTimeField()

    class Meta:
        db_table = "casino_reference_price_ticks"
        indexes = [models.Index(fields=["market", "outcome", "at"], name="price_tick_lookup")]


class MarketPricePoint(models.Model):
    """The YES mid at 5-minute points (the last one seen in each), for the catalogue's charts."""

    market = models.ForeignKey(Market, on_delete=models.CASCADE, related_name="price_points")
    at = models.DateTimeField(help_text="Start of the 5-minute bucket.")
    yes_mid = models.DecimalField(**PRICE)

    class Meta:
        db_table = "casino_market_price_points"
        constraints = [models.UniqueConstraint(fields=["market", "at"], name="market_price_point_unique")]


class MarketEventKind(models.TextChoices):
    SUSPENDED = "suspended", "Suspended"
    RESUMED = "resumed", "Resumed"
    CLOSED = "closed", "Closed at source"
    LISTED = "listed", "Listed"
    UNLISTED = "unlisted", "Unlisted"


class MarketEvent(models.Model):
    """Something that happened to a market's tradeability: suspensions, resumptions, listing."""

    market = models.ForeignKey(Market, on_delete=models.CASCADE, related_name="events")
    kind = models.CharField(max_length=16, choices=MarketEventKind.choices)
    code = models.CharField(max_length=40, blank=True, default="")
    detail = models.JSONField(default=dict, blank=True)
    at = models.DateTimeField(db_index=True)

    class Meta:
        db_table = "casino_market_events"
        indexes = [models.Index(fields=["market", "-at"], name="market_event_recent")]


class GlobalExposure(models.Model):
    """Shards of the bound on the house's worst-case loss across all markets (wall 3, global cap).

    ``bound`` adds up, over every market exposure shard, max(yes_i, no_i) - cash_i, which is
    at least the true total worst case. Quotas work as for a market (casino/services/exposure.py).
    """

    shard = models.PositiveSmallIntegerField(primary_key=True)
    bound = models.DecimalField(max_digits=20, decimal_places=6, default=Decimal("0"))
    quota = models.DecimalField(max_digits=20, decimal_places=6, default=Decimal("0"))
    cap = models.DecimalField(**MONEY, default=Decimal("0"))

    class Meta:
        db_table = "casino_global_exposure"


class Trade(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # No index of its own: trade_player_recent starts with player (one index less per trade).
    player = models.ForeignKey(Player, on_delete=models.PROTECT, related_name="trades", db_index=False)
    # No index of its own: trade_operator_recent starts with operator.
    operator = models.ForeignKey(Operator, on_delete=models.PROTECT, related_name="trades", db_index=False)
    market = models.ForeignKey(Market, on_delete=models.PROTECT, related_name="trades")
    market_title = models.CharField(max_length=500, blank=True, default="")
    side = models.CharField(max_length=4, choices=Side.choices)
    outcome = models.CharField(max_length=3, choices=Outcome.choices)
    shares = models.DecimalField(**SHARES)
    price_mid = models.DecimalField(**PRICE)
    price_executed = models.DecimalField(**PRICE)
    spread_applied = models.DecimalField(**PRICE, help_text="Half the spread: distance between mid and execution price.")
    cost = models.DecimalField(**MONEY, help_text="Stake (buy) or proceeds (sell).")
    balance_before = models.DecimalField(**MONEY)
    balance_after = models.DecimalField(**MONEY)
    realized_pnl = models.DecimalField(**MONEY, default=Decimal("0"))
    wallet_transaction_id = models.UUIDField(null=True, blank=True, help_text="The wallet transaction (ledger id) that moved the money.")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        db_table = "casino_trades"
        indexes = [
            # With the id: a page of one player's trades (newest first, keyset) is one index range, no sort.
            models.Index(fields=["player", "-created_at", "-id"], name="trade_player_recent"),
            models.Index(fields=["player", "market", "-created_at"], name="trade_player_market_recent"),
            # The operator's trade list (SPEC §13), newest first in keyset pages: a page is one index range.
            models.Index(fields=["operator", "-created_at", "-id"], name="trade_operator_recent"),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(shares__gt=0), name="trade_shares_positive"),
            models.CheckConstraint(condition=Q(cost__gte=0), name="trade_cost_nonnegative"),
            models.CheckConstraint(condition=Q(price_executed__gte=1, price_executed__lte=99), name="trade_price_range"),
        ]


class PositionStatus(models.TextChoices):
    OPEN = "open", "Open"
    CLOSED = "closed", "Closed"
    RESOLVED = "resolved", "Resolved"
    VOIDED = "voided", "Voided"


class Position(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # No index of its own: position_unique_per_outcome starts with player.
    player = models.ForeignKey(Player, on_delete=models.PROTECT, related_name="positions", db_index=False)
    # No index of its own: position_operator_recent starts with operator.
    operator = models.ForeignKey(Operator, on_delete=models.PROTECT, related_name="positions", db_index=False)
    market = models.ForeignKey(Market, on_delete=models.PROTECT, related_name="positions")
    market_title = models.CharField(max_length=500, blank=True, default="")
    outcome = models.CharField(max_length=3, choices=Outcome.choices)
    shares = models.DecimalField(**SHARES, default=Decimal("0"))
    avg_price = models.DecimalField(**PRICE, default=Decimal("0"))
    status = models.CharField(max_length=10, choices=PositionStatus.choices, default=PositionStatus.OPEN)
    realized_pnl = models.DecimalField(**MONEY, default=Decimal("0"))
    # Optimistic concurrency: every write is "UPDATE ... WHERE version = <read version>".
    version = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "casino_positions"
        constraints = [
            models.UniqueConstraint(fields=["player", "market", "outcome"], name="position_unique_per_outcome"),
            models.CheckConstraint(condition=Q(shares__gte=0), name="position_shares_nonnegative"),
        ]
        # updated_at is not indexed, so a trade's position update (shares, average, version,
        # updated_at) is a HOT update that writes no index entry (fillfactor, migration 0005).
        # A settlement closes every position of its market, a write to each of these indexes (the update
        # cannot be HOT: status changes): none is kept that another covers. A player's positions are
        # found through position_unique_per_outcome (player first); market_id's own index serves the
        # foreign key and the market's positions (its varchar_pattern_ops copy is dropped, migration 0009).
        indexes = [
            # A settlement's workers claim a market's open positions a chunk at a time in id order
            # (SKIP LOCKED): this hands them over without reading the closed ones or sorting. Partial:
            # a position closing writes no entry here, and status is indexed already (the update of a
            # trade stays HOT).
            models.Index(fields=["market", "id"], name="position_open_by_market", condition=Q(status="open")),
            # The operator's position list (SPEC §13), newest first: created_at never changes, so the
            # trade's update of a position stays HOT.
            models.Index(fields=["operator", "-created_at", "-id"], name="position_operator_recent"),
        ]


class MarketExposure(models.Model):
    """One shard of a market's book, as the house sees it.

    A market's book is split over HOUSE_EXPOSURE_SHARDS rows so concurrent trades on one hot
    market update different rows. The market totals are the sums over its shards:
    worst-case loss = max(yes_shares, no_shares) - cash_in. Each shard carries a slice of
    the cap (``quota``); the slices add up to the cap, so while every shard stays inside its
    own slice the market stays inside its cap. See casino/services/exposure.py.
    """

    market = models.ForeignKey(Market, on_delete=models.CASCADE, related_name="exposure_shards")
    shard = models.PositiveSmallIntegerField()
    yes_shares = models.DecimalField(**SHARES, default=Decimal("0"))
    no_shares = models.DecimalField(**SHARES, default=Decimal("0"))
    cash_in = models.DecimalField(**MONEY, default=Decimal("0"), help_text="Stakes collected minus proceeds paid.")
    quota = models.DecimalField(**MONEY, default=Decimal("0"))
    cap = models.DecimalField(**MONEY, default=Decimal("0"), help_text="The market cap the quotas were cut from.")
    updated_at = models.DateTimeField(auto_now=True)
    # Issue 14, category caps: the category this book is counted under (casino/services/exposure.py;
    # the same on every shard of a market; it follows the market's category under the shards' locks).
    category = models.CharField(max_length=64, blank=True, default="", help_text="Category key the book is counted under.")

    class Meta:
        db_table = "casino_exposure"
        constraints = [models.UniqueConstraint(fields=["market", "shard"], name="exposure_shard_unique")]


# --- Issue 14: category caps (SPEC §16) -----------------------------------------------------------


class CategoryExposure(models.Model):
    """Shards of the bound on the house's worst-case loss over one category's markets.

    ``bound`` adds up, over every market exposure shard counted under the category, max(yes_i,
    no_i) - cash_i; quotas are cut from the category's cap as the global ones are from the
    global cap (casino/services/exposure.py). ``category`` is the key: the market's category,
    trimmed and lowercased ("" for markets without one).
    """

    category = models.CharField(max_length=64)
    shard = models.PositiveSmallIntegerField()
    bound = models.DecimalField(max_digits=20, decimal_places=6, default=Decimal("0"))
    quota = models.DecimalField(max_digits=20, decimal_places=6, default=Decimal("0"))
    cap = models.DecimalField(**MONEY, default=Decimal("0"))

    class Meta:
        db_table = "casino_category_exposure"
        constraints = [models.UniqueConstraint(fields=["category", "shard"], name="category_exposure_shard_unique")]

    def __str__(self) -> str:
        return f"{self.category or '(no category)'} #{self.shard}"
