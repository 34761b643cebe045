"""Money, shares and prices: the one place where quantization and rounding rules live.

Rounding always favours the house (SPEC §3): shares bought and proceeds/payouts round
down, costs round up. Everything is Decimal; building money from a float is an error.
"""

from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal, InvalidOperation

CENT = Decimal("0.01")
SHARE_STEP = Decimal("0.000001")
PRICE_STEP = Decimal("0.0001")
ZERO = Decimal("0")
HUNDRED = Decimal("100")
ONE_DOLLAR = Decimal("1")
MIN_EXECUTION_PRICE = Decimal("1")
MAX_EXECUTION_PRICE = Decimal("99")
# Upper bound on any amount the API accepts (far above every cap; keeps NUMERIC in range).
MAX_AMOUNT = Decimal("1000000000")


class FloatMoneyError(TypeError):
    """Raised when a float is about to become money."""


def to_decimal(value) -> Decimal:
    """Decimal from an int, str or Decimal. Floats are refused: they cannot hold cents."""
    if isinstance(value, bool) or isinstance(value, float):
        raise FloatMoneyError(f"refusing to build money from {type(value).__name__}: {value!r}")
    if isinstance(value, Decimal):
        return value
    try:
        return Decimal(value)
    except (InvalidOperation, TypeError, ValueError) as exc:
        raise ValueError(f"not a number: {value!r}") from exc


def cents_down(value: Decimal) -> Decimal:
    """Proceeds, payouts, refunds: round down to the cent."""
    return value.quantize(CENT, rounding=ROUND_FLOOR)


def cents_up(value: Decimal) -> Decimal:
    """Costs charged to a player: round up to the cent."""
    return value.quantize(CENT, rounding=ROUND_CEILING)


def shares_down(value: Decimal) -> Decimal:
    """Shares a player receives: round down to 6 dp."""
    return value.quantize(SHARE_STEP, rounding=ROUND_FLOOR)


def price(value: Decimal) -> Decimal:
    """Prices in cents to 4 dp (average prices round down: lower cost basis, lower refunds)."""
    return value.quantize(PRICE_STEP, rounding=ROUND_FLOOR)


def clamp_execution_price(value: Decimal) -> Decimal:
    return min(max(value, MIN_EXECUTION_PRICE), MAX_EXECUTION_PRICE)


def buy_price(mid: Decimal, spread: Decimal) -> Decimal:
    """Ask: mid + spread/2, clamped to [1, 99]; the house rounds the ask up."""
    return clamp_execution_price((mid + spread / 2).quantize(PRICE_STEP, rounding=ROUND_CEILING))


def sell_price(mid: Decimal, spread: Decimal) -> Decimal:
    """Bid: mid - spread/2, clamped to [1, 99]; the house rounds the bid down."""
    return clamp_execution_price((mid - spread / 2).quantize(PRICE_STEP, rounding=ROUND_FLOOR))


def shares_for_stake(stake: Decimal, execution_price: Decimal) -> Decimal:
    """Shares bought for a dollar stake at a price in cents."""
    return shares_down(stake * HUNDRED / execution_price)


def proceeds_for_shares(shares: Decimal, execution_price: Decimal) -> Decimal:
    """Dollars paid for shares sold at a price in cents."""
    return cents_down(shares * execution_price / HUNDRED)


def payout_for_shares(shares: Decimal) -> Decimal:
    """$1 a winning share, rounded down to the cent."""
    return cents_down(shares * ONE_DOLLAR)


def average_price(old_shares: Decimal, old_avg: Decimal, new_shares: Decimal, new_price: Decimal) -> Decimal:
    total = old_shares + new_shares
    if total <= 0:
        return ZERO
    return price((old_shares * old_avg + new_shares * new_price) / total)


def realized_pnl(shares: Decimal, execution_price: Decimal, avg_price: Decimal) -> Decimal:
    return cents_down(shares * (execution_price - avg_price) / HUNDRED)


def plain(value: Decimal) -> Decimal:
    """Strip trailing zeros without exponent notation (64.0000 -> 64, 39.062500 -> 39.0625)."""
    if value == value.to_integral_value():
        return value.quantize(Decimal(1))
    return value.normalize()


def money(value: Decimal) -> Decimal:
    """Render money with exactly two decimals (75 -> 75.00)."""
    return value.quantize(CENT)
