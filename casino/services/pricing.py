"""The one pricing module (SPEC §4, §16): the dynamic spread, the exposure skew, and the quote
(execution price, shares, cost, payout) of a prospective trade. Quotes, trades and the
catalogue all price through it.

Full spread (points) = clamp(base + extreme + liquidity + tierExtra + sharpExtra, minSpread, maxSpread):
  base       the market's custom spread, else the house default (CasinoSettings.default_spread)
  extreme    extremeWidening x max(0, extremeZone - min(mid, 100 - mid))
  liquidity  liquidityWidening x max(0, 1 - liquidity / liquidityReference); the house's own
             figure for the market, else the client's, else 100,000
  tierExtra  the player's tier (risk Tier.extra_spread); sharpExtra: wall 4's widening
Buy = mid + spread/2 + skew, sell = mid - spread/2, clamped to [1, 99]. The skew applies only to a
buy of the outcome whose win is the house's worst case on the market:
  skew = skewMax x clamp((u - skewStart) / (1 - skewStart), 0, 1), u = worst-case loss / the market's cap.
The parameters are RiskSettings fields (``rules``; admin and the "pricing" section of admin/risk).
"""

from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal

from casino.models import CasinoSettings, Market, Side
from core import money

# A market's liquidity when neither the house nor the client knows it.
DEFAULT_LIQUIDITY = Decimal("100000")
ZERO = Decimal("0")
ONE = Decimal("1")
TWO = Decimal("2")
HUNDRED = Decimal("100")


@dataclass(frozen=True)
class Quote:
    side: str
    mid_price: Decimal
    spread: Decimal  # the full spread (before the skew and the [1, 99] clamp)
    execution_price: Decimal
    shares: Decimal
    cost: Decimal
    payout: Decimal
    skew: Decimal = ZERO

    @property
    def half_spread(self) -> Decimal:
        return abs(self.execution_price - self.mid_price)

    @property
    def spread_applied(self) -> Decimal:
        """``spreadPct``: twice the distance of the price from mid (with the skew, after the clamp)."""
        return TWO * self.half_spread


# Defaults of SPEC §16, used when ``rules`` is None (no risk settings at hand).
@dataclass(frozen=True)
class PricingDefaults:
    min_spread: Decimal = Decimal("1")
    max_spread: Decimal = Decimal("15")
    extreme_zone: Decimal = Decimal("10")
    extreme_widening: Decimal = Decimal("0.3")
    liquidity_reference: Decimal = Decimal("50000")
    liquidity_widening: Decimal = Decimal("2")
    skew_start: Decimal = Decimal("0.25")
    skew_max: Decimal = Decimal("2")


PRICING_DEFAULTS = PricingDefaults()


def liquidity_known(market: Market | None, client_liquidity: Decimal | None) -> Decimal:
    """The house's own liquidity figure for the market, else the client's, else 100,000."""
    if market is not None and market.liquidity is not None:
        return market.liquidity
    return client_liquidity if client_liquidity is not None else DEFAULT_LIQUIDITY


def _up(value: Decimal) -> Decimal:
    """A spread term to 4 dp, rounded wider (the house's side)."""
    return value.quantize(money.PRICE_STEP, rounding=ROUND_CEILING)


def spread_full(
    *,
    casino: CasinoSettings,
    rules=None,
    market: Market | None,
    mid_price: Decimal | None,
    liquidity: Decimal | None = None,
    tier_extra: Decimal = ZERO,
    sharp_extra: Decimal = ZERO,
) -> Decimal:
    """The full spread in points (SPEC §16). ``liquidity``: the client's figure (the house's own wins);
    ``mid_price`` None (no price yet): no extreme-price widening."""
    r = rules if rules is not None else PRICING_DEFAULTS
    base = market.custom_spread if market is not None and market.custom_spread is not None else casino.default_spread
    extreme = ZERO
    if mid_price is not None:
        extreme = r.extreme_widening * max(ZERO, r.extreme_zone - min(mid_price, HUNDRED - mid_price))
    thin = ZERO
    if r.liquidity_reference > 0:
        known = max(ZERO, liquidity_known(market, liquidity))
        thin = r.liquidity_widening * max(ZERO, ONE - known / r.liquidity_reference)
    total = _up(base + extreme + thin + tier_extra + sharp_extra)
    return min(max(total, r.min_spread), r.max_spread)


def adverse_outcome(book) -> str | None:
    """The outcome whose win is the house's worst case on the market (more shares owed), or None."""
    if book is None or book.yes_shares == book.no_shares:
        return None
    return "yes" if book.yes_shares > book.no_shares else "no"


def skew_for(*, rules=None, book, cap: Decimal | None, side: str, outcome: str) -> Decimal:
    """Points added to a buy of the adverse outcome; zero for sells and for the other outcome."""
    r = rules if rules is not None else PRICING_DEFAULTS
    if side != Side.BUY or book is None or cap is None or adverse_outcome(book) != outcome:
        return ZERO
    worst = book.worst_case_loss
    if worst <= 0 or r.skew_max <= 0 or r.skew_start >= ONE:
        return ZERO
    used = worst / cap if cap > 0 else ONE
    fraction = min(max((used - r.skew_start) / (ONE - r.skew_start), ZERO), ONE)
    return _up(r.skew_max * fraction)


def quote_build(*, side: str, amount: Decimal, mid_price: Decimal, spread: Decimal, skew: Decimal = ZERO) -> Quote:
    """Buy: ``amount`` dollars at the ask (with the skew). Sell: ``amount`` shares at the bid."""
    if side == Side.BUY:
        price = money.buy_price(mid_price, spread + TWO * skew)
        shares = money.shares_for_stake(amount, price)
        cost = money.money(amount)
    else:
        skew = ZERO
        price = money.sell_price(mid_price, spread)
        shares = amount
        cost = money.proceeds_for_shares(shares, price)
    return Quote(
        side=side,
        mid_price=mid_price,
        spread=spread,
        execution_price=price,
        shares=shares,
        cost=cost,
        payout=money.payout_for_shares(shares),
        skew=skew,
    )


def quote_price(
    *,
    side: str,
    outcome: str,
    amount: Decimal,
    mid_price: Decimal,
    casino: CasinoSettings,
    rules=None,
    market: Market | None = None,
    liquidity: Decimal | None = None,
    tier_extra: Decimal = ZERO,
    sharp_extra: Decimal = ZERO,
    book=None,
    cap: Decimal | None = None,
) -> Quote:
    """The quote of a trade, as the trade itself prices it: quotes and trades call this.

    ``book`` (casino.services.exposure.Book) and ``cap``: the market's exposure book and cap (the
    skew); ``liquidity``: the client's figure; ``tier_extra``/``sharp_extra``: the player's."""
    spread = spread_full(
        casino=casino,
        rules=rules,
        market=market,
        mid_price=mid_price,
        liquidity=liquidity,
        tier_extra=tier_extra,
        sharp_extra=sharp_extra,
    )
    skew = skew_for(rules=rules, book=book, cap=cap, side=side, outcome=outcome)
    return quote_build(side=side, amount=amount, mid_price=mid_price, spread=spread, skew=skew)


@dataclass(frozen=True)
class SidePrices:
    mid: Decimal
    bid: Decimal
    ask: Decimal

    @property
    def buy_spread(self) -> Decimal:
        """The spread a buy of this side pays (twice the ask's distance from mid)."""
        return TWO * abs(self.ask - self.mid)


def side_prices(*, mid_price: Decimal, spread: Decimal, skew: Decimal = ZERO) -> SidePrices:
    """Bid and ask of one outcome (the catalogue), as quote_build prices a sell and a buy."""
    return SidePrices(mid=mid_price, bid=money.sell_price(mid_price, spread), ask=money.buy_price(mid_price, spread + TWO * skew))
