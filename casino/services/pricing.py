"""Quotes: the spread-adjusted execution price, shares, cost and payout of a prospective trade."""

from dataclasses import dataclass
from decimal import Decimal

from casino.models import CasinoSettings, Market, Side
from core import money

# A market's liquidity when neither the house nor the client knows it.
DEFAULT_LIQUIDITY = Decimal("100000")


@dataclass(frozen=True)
class Quote:
    side: str
    mid_price: Decimal
    spread: Decimal
    execution_price: Decimal
    shares: Decimal
    cost: Decimal
    payout: Decimal

    @property
    def half_spread(self) -> Decimal:
        return abs(self.execution_price - self.mid_price)


def spread_effective(*, casino: CasinoSettings, market: Market | None, sharp_extra: Decimal) -> Decimal:
    """Per-market custom spread if set, else the default; plus the player's sharp widening."""
    base = market.custom_spread if market is not None and market.custom_spread is not None else casino.default_spread
    return base + sharp_extra


def quote_build(*, side: str, amount: Decimal, mid_price: Decimal, spread: Decimal) -> Quote:
    """Buy: ``amount`` dollars at the ask. Sell: ``amount`` shares at the bid."""
    if side == Side.BUY:
        price = money.buy_price(mid_price, spread)
        shares = money.shares_for_stake(amount, price)
        cost = money.money(amount)
    else:
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
    )
