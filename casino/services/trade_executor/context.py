"""What every way of running the trade shares: the request and result, the context the steps
fill in, the one interface of steps 7-12, and the position rule of SPEC §4."""

import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol

from casino.models import Market, MarketStatus, Player, Position, PositionStatus, Side
from casino.services.markets import market_lock_for_trading
from casino.services.pricing import Quote
from core import errors, money
from core.idempotency import IdempotencySlot
from risk.services.assessment import RiskTicket
from wallets.adapters import WalletAdapter, WalletMove

MAX_OPTIMISTIC_RETRIES = 5
ZERO = Decimal("0")


@dataclass(frozen=True)
class TradeRequest:
    market_id: str
    side: str
    outcome: str
    amount: Decimal
    mid_price: Decimal | None  # the client's; None: priced at the house reference (SPEC §11)
    market_title: str = ""
    category: str = ""
    liquidity: Decimal | None = None


@dataclass(frozen=True)
class TradeResult:
    trade_id: uuid.UUID
    position_id: uuid.UUID
    side: str
    execution_price: Decimal
    shares: Decimal
    cost: Decimal
    new_balance: Decimal
    realized_pnl: Decimal | None
    wallet_pending: bool = False


@dataclass
class TradeContext:
    """What the steps learn about the trade as it goes through them."""

    player: Player
    request: TradeRequest
    session_token: str = ""  # the player's bearer token, sent on an operator wallet's debit
    casino: object = None
    config_version: str | None = None
    mid_price: Decimal | None = None  # the mid the trade is priced at: the client's, checked against the reference
    market: Market | None = None
    quote: Quote | None = None
    risk: RiskTicket | None = None
    adapter: WalletAdapter | None = None
    trade_id: uuid.UUID | None = None
    balance: Decimal | None = None
    position: Position | None = None
    move: WalletMove | None = None
    realized_pnl: Decimal | None = None
    exposure_locked: bool = False
    owes_debt: bool = False  # a sell by a player with a debt (a reversed settlement): the proceeds pay it first
    debt_recovered: Decimal = Decimal("0")
    book: object = None  # Issue 14: the market's exposure book as step 1 read it (the exposure skew)


class StepsSevenToTwelve(Protocol):
    """Steps 7-12, one way (house_wallet, house_wallet_sql, operator_wallet): move the money and
    record the trade, position, exposure and wagering, or refuse with a HouseError. A way that
    lost an optimistic race raises ConcurrentUpdate (ExposureNeedsLock: retry with the exposure
    shards locked) after undoing everything it wrote; steps.py retries from step 7."""

    def __call__(self, ctx: TradeContext, idempotency: IdempotencySlot | None) -> TradeResult: ...


@dataclass(frozen=True)
class PositionAfter:
    shares: Decimal
    avg_price: Decimal
    status: str
    realized_pnl: Decimal  # the position's total
    realized: Decimal | None  # this trade's (sells)


def position_after_trade(position, *, side: str, shares: Decimal, price: Decimal) -> PositionAfter:
    """The position after a trade (SPEC §4). A buy averages in; shares not held any more (a
    resolved or voided position) count as none. A sell realises shares x (exec - avg) / 100 and
    closes the position when nothing is left. ``position`` is None (a first buy) or anything
    with shares, avg_price, status and realized_pnl."""
    if side == Side.BUY:
        held = position.shares if position is not None and position.status in (PositionStatus.OPEN, PositionStatus.CLOSED) else ZERO
        avg_before = position.avg_price if position is not None else ZERO
        return PositionAfter(
            shares=held + shares,
            avg_price=money.average_price(held, avg_before, shares, price),
            status=PositionStatus.OPEN,
            realized_pnl=position.realized_pnl if position is not None else ZERO,
            realized=None,
        )
    realized = money.realized_pnl(shares, price, position.avg_price)
    remaining = position.shares - shares
    return PositionAfter(
        shares=remaining,
        avg_price=position.avg_price,
        status=PositionStatus.OPEN if remaining > 0 else PositionStatus.CLOSED,
        realized_pnl=position.realized_pnl + realized,
        realized=realized,
    )


def shares_held(position) -> Decimal:
    """What a sell can take: the shares of an open position."""
    return position.shares if position is not None and position.status == PositionStatus.OPEN else ZERO


def market_lock_open(ctx: TradeContext) -> None:
    """Inside the trade's transaction: the market row locked shared (settlement's status change
    waits for in-flight trades), and still open now that the lock is held."""
    refuse_unless_open(*market_lock_for_trading(market_id=ctx.market.pk))


def refuse_unless_open(status: str, disabled: bool, suspended_reason: str) -> None:
    """Re-checked under the market's lock: settled, disabled or suspended since step 2."""
    if status == MarketStatus.CLOSED:
        raise errors.market_suspended("market_reversed")
    if status != MarketStatus.OPEN:
        raise errors.market_not_tradeable(f"market_{status}")
    if disabled:
        raise errors.market_not_tradeable("market_disabled")
    if suspended_reason:
        raise errors.market_suspended(suspended_reason)


def describe(quote: Quote, outcome: str) -> str:
    """The ledger row's description of a trade."""
    verb = "Buy" if quote.side == Side.BUY else "Sell"
    return f"{verb} {money.plain(quote.shares)} shares {outcome.upper()} @ {money.plain(quote.execution_price)}c"


def too_many_races() -> errors.HouseError:
    return errors.HouseError("Trade could not be completed, please retry", code="concurrent_update", status=409)
