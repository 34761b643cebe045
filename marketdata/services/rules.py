"""The feed's rules (SPEC §11), as pure functions of what the source says: the reference mid from
a book, when a book is unusable, when a market is closed at its source, when a move is a
jump, and what a resolved market's outcome prices mean."""

from collections import deque
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from core import money

HUNDRED = Decimal("100")
ONE = Decimal("1")
HALF = Decimal("0.5")

SPREAD_TOO_WIDE = "source_spread_too_wide"
CLOSED_AT_SOURCE = "market_closed_at_source"
PRICE_JUMP = "price_jump"


def yes_mid(best_bid: Decimal | None, best_ask: Decimal | None) -> Decimal | None:
    """YES mid in cents, 4 dp: 100 x (best bid + best ask) / 2 of the YES book; None when a side
    is empty or the book is not a price (0 < bid <= ask < 1)."""
    if best_bid is None or best_ask is None or not (0 < best_bid <= best_ask < 1):
        return None
    return money.price(HUNDRED * (best_bid + best_ask) / 2)


def book_problem(best_bid: Decimal | None, best_ask: Decimal | None, *, max_spread_points: Decimal) -> str | None:
    """Why the source book cannot price the market: a side empty, crossed, or wider than allowed."""
    if yes_mid(best_bid, best_ask) is None:
        return SPREAD_TOO_WIDE
    if (best_ask - best_bid) * HUNDRED > max_spread_points:
        return SPREAD_TOO_WIDE
    return None


def closed_at_source(*, active: bool, closed: bool, accepting_orders: bool) -> bool:
    """The source stopped the market: closed, inactive, or not accepting orders."""
    return closed or not active or not accepting_orders


def ended(end_date: datetime | None, now: datetime) -> bool:
    return end_date is not None and end_date <= now


@dataclass(frozen=True)
class Resolution:
    action: str  # resolve | void
    outcome: str | None


def resolution_from_source(*, closed: bool, resolution_status: str | None, outcome_prices) -> Resolution | None:
    """Final only when the source is closed and its UMA status is ``resolved``: then
    ["1","0"] is YES, ["0","1"] NO, ["0.5","0.5"] void. Never on proposed or disputed."""
    if not closed or resolution_status != "resolved" or not outcome_prices or len(outcome_prices) != 2:
        return None
    try:
        yes, no = (Decimal(str(p)) for p in outcome_prices)
    except ArithmeticError:
        return None
    if (yes, no) == (ONE, 0):
        return Resolution("resolve", "yes")
    if (yes, no) == (0, ONE):
        return Resolution("resolve", "no")
    if (yes, no) == (HALF, HALF):
        return Resolution("void", None)
    return None


class JumpWatch:
    """The YES mids of one market over the jump window. A move of more than ``points`` between
    any mid in the window and the new one is a jump; after a jump the window starts afresh
    from the price at that moment, so a move already suspended for is not counted again.

    A move beyond ``points`` from some mid of the window is one beyond it from the window's
    lowest or highest mid, so only those are kept: two monotonic queues (every book of every
    market passes here, and a busy market has a mid a second over a 60 s window)."""

    def __init__(self):
        self._low: deque[tuple[float, Decimal]] = deque()  # mids rising: the front is the window's lowest
        self._high: deque[tuple[float, Decimal]] = deque()  # mids falling: the front is the window's highest

    def observe(self, t: float, mid: Decimal, *, window_seconds: float, points: Decimal) -> bool:
        low, high, start = self._low, self._high, t - window_seconds
        while low and low[0][0] < start:
            low.popleft()
        while high and high[0][0] < start:
            high.popleft()
        if (low and mid - low[0][1] > points) or (high and high[0][1] - mid > points):
            low.clear()
            high.clear()
            low.append((t, mid))
            high.append((t, mid))
            return True
        while low and low[-1][1] >= mid:  # an older mid at or above this one is never the lowest again
            low.pop()
        low.append((t, mid))
        while high and high[-1][1] <= mid:
            high.pop()
        high.append((t, mid))
        return False
