"""The trade executor: the reference document's 12 steps, each a named function, in order.

 1. _validate              inputs, and the client's midPrice against the house reference price
 2. _check_tradeability    market status, disabled markets, blocked categories, price/liquidity criteria
 3. _assess_risk           the risk service (walls); its ticket reserves exposure in step 11
 4. _price                 spread-adjusted execution price (custom spread + sharp adjustment)
 5. _resolve_operator      the player's operator (multi-tenancy)
 6. _wallet_adapter        the operator's wallet adapter
 7. _check_balance         funds (buy) or shares (sell), under lock
 8. _move_money            debit the stake / credit the proceeds through the adapter
 9. _record_trade          the trade row with full audit fields
10. _upsert_position       average in / reduce, with optimistic concurrency (version column)
11. _update_exposure       the market book; refuses past the cap (wall 3)
12. _update_wagering_stats total_wagered, best effort (a savepoint: its failure never undoes the trade)

With a local (internal) wallet, steps 7-11 are one database transaction: the trade happens
completely or not at all, and no network call is made inside it. Locks are taken in the
order market (shared), player wallet, position, exposure shard. Exposure is the last
write so the hottest rows are held for the shortest time.
"""

import logging
import uuid
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

from django.db import DatabaseError, IntegrityError, connection, transaction
from django.db.models import F
from django.utils import timezone

from casino import errors, money
from casino.metrics import TRADE_REJECTIONS, TRADES
from casino.models import (
    Market,
    MarketStatus,
    Player,
    Position,
    PositionStatus,
    Side,
    Trade,
)
from casino.services.exposure import ExposureNeedsLock
from casino.services.markets import casino_settings, market_with_price
from casino.services.pricing import Quote, quote_build, spread_effective
from risk.services.assessment import RiskTicket, player_spread_extra, risk_assess
from wallets.adapters import WalletAdapter, WalletMove, wallet_adapter_for
from wallets.models import LedgerType

log = logging.getLogger("house.trade")

MAX_OPTIMISTIC_RETRIES = 5
DEFAULT_LIQUIDITY = Decimal("100000")


@dataclass(frozen=True)
class TradeRequest:
    market_id: str
    side: str
    outcome: str
    amount: Decimal
    mid_price: Decimal
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


@dataclass
class _Context:
    """What the steps learn about the trade as it goes through the pipeline."""

    player: Player
    request: TradeRequest
    casino: object = None
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


def trade_execute(*, player: Player, request: TradeRequest, idempotency=None) -> TradeResult:
    ctx = _Context(player=player, request=request)
    try:
        _validate(ctx)
        _check_tradeability(ctx)
        _assess_risk(ctx)
        _price(ctx)
        operator = _resolve_operator(ctx)
        _wallet_adapter(ctx, operator)
        result = _execute_locally(ctx, idempotency)
    except errors.HouseError as exc:
        TRADE_REJECTIONS.labels(code=exc.code).inc()
        raise
    TRADES.labels(side=request.side).inc()
    return result


# -- steps 1-6: checks outside any transaction -------------------------------------------


def _validate(ctx: _Context) -> None:
    """Step 1. Field shapes are checked by the API layer; here, the business rules."""
    req = ctx.request
    if req.side not in (Side.BUY, Side.SELL):
        raise errors.invalid("side")
    if req.outcome not in ("yes", "no"):
        raise errors.invalid("outcome")
    if req.amount <= 0:
        raise errors.HouseError("Amount must be positive", code="amount_not_positive")
    if not (Decimal("0") < req.mid_price < Decimal("100")):
        raise errors.invalid("midPrice")
    casino = casino_settings()
    market, ref = market_with_price(market_id=req.market_id, outcome=req.outcome)
    if market is None:
        raise errors.market_not_tradeable("unknown_market")
    ctx.market = market
    if ref is None:
        raise errors.price_moved("no_reference_price")
    if timezone.now() - ref.updated_at > timedelta(seconds=casino.price_max_age_seconds):
        raise errors.price_moved("reference_price_stale")
    if abs(req.mid_price - ref.mid_price) > casino.price_tolerance:
        raise errors.price_moved("outside_tolerance")
    ctx.casino = casino


def _check_tradeability(ctx: _Context) -> None:
    """Step 2."""
    market, casino, req = ctx.market, ctx.casino, ctx.request
    if market.status != MarketStatus.OPEN:
        raise errors.market_not_tradeable(f"market_{market.status}")
    if market.disabled:
        raise errors.market_not_tradeable("market_disabled")
    blocked = {c.lower() for c in casino.blocked_categories}
    categories = {c.lower() for c in (market.category, req.category) if c}
    if blocked & categories:
        raise errors.market_not_tradeable("category_blocked")
    liquidity = market.liquidity if market.liquidity is not None else (req.liquidity if req.liquidity is not None else DEFAULT_LIQUIDITY)
    if liquidity < casino.min_liquidity:
        raise errors.market_not_tradeable("liquidity_below_minimum")
    if not (casino.min_price <= req.mid_price <= casino.max_price):
        raise errors.market_not_tradeable("price_outside_criteria")


def _assess_risk(ctx: _Context) -> None:
    """Step 3."""
    req = ctx.request
    ticket = risk_assess(player=ctx.player, market_id=req.market_id, side=req.side, outcome=req.outcome, amount=req.amount)
    ctx.risk = RiskTicket(market_id=ticket.market_id, market_cap=ticket.market_cap, spread_extra=player_spread_extra(player=ctx.player))


def _price(ctx: _Context) -> None:
    """Step 4."""
    spread = spread_effective(casino=ctx.casino, market=ctx.market, sharp_extra=ctx.risk.spread_extra)
    quote = quote_build(side=ctx.request.side, amount=ctx.request.amount, mid_price=ctx.request.mid_price, spread=spread)
    if quote.side == Side.BUY and quote.shares <= 0:
        raise errors.HouseError("Amount too small", code="amount_too_small")
    if quote.side == Side.SELL and quote.cost <= 0:
        raise errors.HouseError("Amount too small", code="amount_too_small")
    ctx.quote = quote


def _resolve_operator(ctx: _Context):
    """Step 5."""
    operator = ctx.player.operator
    if not operator.is_active:
        raise errors.HouseError("Operator disabled", code="operator_disabled", status=403)
    return operator


def _wallet_adapter(ctx: _Context, operator) -> None:
    """Step 6."""
    ctx.adapter = wallet_adapter_for(operator)


# -- steps 7-11: one transaction ----------------------------------------------------------


def _execute_locally(ctx: _Context, idempotency) -> TradeResult:
    for attempt in range(MAX_OPTIMISTIC_RETRIES):
        ctx.trade_id = uuid.uuid4()
        try:
            with transaction.atomic():
                _lock_market_for_trading(ctx)
                _check_balance(ctx)
                _move_money(ctx)
                _record_trade(ctx)
                _upsert_position(ctx)
                _update_exposure(ctx)
                _update_wagering_stats(ctx)
                result = _result(ctx)
                if idempotency is not None:
                    idempotency.record(result)
            return result
        except ExposureNeedsLock:
            ctx.exposure_locked = True  # the retry takes the market's exposure shards in order
        except errors.ConcurrentUpdate:
            log.info("position changed under trade %s, retrying (attempt %d)", ctx.trade_id, attempt + 1)
        except IntegrityError:
            if idempotency is not None:
                raise  # the API layer answers with the concurrent request's stored response
            log.info("concurrent position insert for trade %s, retrying", ctx.trade_id)
    raise errors.HouseError("Trade could not be completed, please retry", code="concurrent_update", status=409)


def _lock_market_for_trading(ctx: _Context) -> None:
    """A shared lock on the market row: settlement's status change waits for in-flight trades,
    and trades that waited see the new status. Shared locks do not block each other."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT status, disabled FROM casino_markets WHERE id = %s FOR SHARE", [ctx.market.pk])
            status, disabled = cursor.fetchone()
    else:
        status, disabled = Market.objects.filter(pk=ctx.market.pk).values_list("status", "disabled").get()
    if status != MarketStatus.OPEN or disabled:
        raise errors.market_not_tradeable(f"market_{status}" if status != MarketStatus.OPEN else "market_disabled")


def _check_balance(ctx: _Context) -> None:
    """Step 7. Buy: the balance covers the stake (wallet row locked). Sell: the shares are held."""
    ctx.balance = ctx.adapter.balance(player=ctx.player, for_update=True)
    ctx.position = Position.objects.filter(player_id=ctx.player.pk, market_id=ctx.market.pk, outcome=ctx.request.outcome).first()
    if ctx.quote.side == Side.BUY:
        if ctx.balance < ctx.quote.cost:
            raise errors.insufficient_balance()
    else:
        held = ctx.position.shares if ctx.position is not None and ctx.position.status == PositionStatus.OPEN else Decimal("0")
        if held < ctx.quote.shares:
            raise errors.insufficient_shares()


def _move_money(ctx: _Context) -> None:
    """Step 8."""
    q, req = ctx.quote, ctx.request
    if q.side == Side.BUY:
        description = f"Buy {money.plain(q.shares)} shares {req.outcome.upper()} @ {money.plain(q.execution_price)}c"
        ctx.move = ctx.adapter.debit(
            player=ctx.player,
            amount=q.cost,
            transaction_id=uuid.uuid4(),
            kind=LedgerType.TRADE_DEBIT,
            round_id=str(ctx.trade_id),
            description=description,
            trade_id=ctx.trade_id,
            locked_balance=ctx.balance,
        )
    else:
        description = f"Sell {money.plain(q.shares)} shares {req.outcome.upper()} @ {money.plain(q.execution_price)}c"
        ctx.move = ctx.adapter.credit(
            player=ctx.player,
            amount=q.cost,
            transaction_id=uuid.uuid4(),
            kind=LedgerType.TRADE_CREDIT,
            round_id=str(ctx.trade_id),
            description=description,
            trade_id=ctx.trade_id,
            locked_balance=ctx.balance,
        )


def _record_trade(ctx: _Context) -> None:
    """Step 9."""
    q, req = ctx.quote, ctx.request
    if q.side == Side.SELL:
        ctx.realized_pnl = money.realized_pnl(q.shares, q.execution_price, ctx.position.avg_price)
    Trade.objects.create(
        id=ctx.trade_id,
        player_id=ctx.player.pk,
        operator_id=ctx.player.operator_id,
        market_id=ctx.market.pk,
        market_title=(req.market_title or ctx.market.title)[:500],
        side=q.side,
        outcome=req.outcome,
        shares=q.shares,
        price_mid=q.mid_price,
        price_executed=q.execution_price,
        spread_applied=q.half_spread,
        cost=q.cost,
        balance_before=ctx.move.balance_before,
        balance_after=ctx.move.balance_after,
        realized_pnl=ctx.realized_pnl or Decimal("0"),
        wallet_transaction_id=ctx.move.transaction_id,
    )


def _upsert_position(ctx: _Context) -> None:
    """Step 10. Optimistic: write only if the version read in step 7 is still current."""
    q, req, pos = ctx.quote, ctx.request, ctx.position
    if pos is None:  # only a buy gets here without a position (step 7 refuses a sell)
        ctx.position = Position.objects.create(
            player_id=ctx.player.pk,
            operator_id=ctx.player.operator_id,
            market_id=ctx.market.pk,
            market_title=(req.market_title or ctx.market.title)[:500],
            outcome=req.outcome,
            shares=q.shares,
            avg_price=q.execution_price,
            status=PositionStatus.OPEN,
        )
        return
    if q.side == Side.BUY:
        held = pos.shares if pos.status == PositionStatus.OPEN else Decimal("0")
        fields = {
            "shares": held + q.shares,
            "avg_price": money.average_price(held, pos.avg_price, q.shares, q.execution_price),
            "status": PositionStatus.OPEN,
        }
    else:
        remaining = pos.shares - q.shares
        fields = {
            "shares": remaining,
            "realized_pnl": pos.realized_pnl + ctx.realized_pnl,
            "status": PositionStatus.OPEN if remaining > 0 else PositionStatus.CLOSED,
        }
    if req.market_title and not pos.market_title:
        fields["market_title"] = req.market_title[:500]
    updated = Position.objects.filter(pk=pos.pk, version=pos.version).update(**fields, version=F("version") + 1, updated_at=timezone.now())
    if updated != 1:
        raise errors.ConcurrentUpdate()


def _update_exposure(ctx: _Context) -> None:
    """Step 11. Buy: the house owes the shares and holds the stake. Sell: the reverse."""
    q = ctx.quote
    sign = Decimal("1") if q.side == Side.BUY else Decimal("-1")
    ctx.risk.reserve_exposure(
        outcome=ctx.request.outcome, shares_delta=sign * q.shares, cash_delta=sign * q.cost, locked=ctx.exposure_locked
    )


def _result(ctx: _Context) -> TradeResult:
    q = ctx.quote
    return TradeResult(
        trade_id=ctx.trade_id,
        position_id=ctx.position.pk,
        side=q.side,
        execution_price=q.execution_price,
        shares=q.shares,
        cost=q.cost,
        new_balance=ctx.move.balance_after,
        realized_pnl=ctx.realized_pnl,
    )


# -- step 12: best effort -------------------------------------------------------------------


def _update_wagering_stats(ctx: _Context) -> None:
    """Step 12. Inside the trade's transaction (no second commit per trade), under a savepoint
    so that a failure here is logged and rolled back alone: the trade stands."""
    if ctx.quote.side != Side.BUY:
        return
    try:
        with transaction.atomic():
            Player.objects.filter(pk=ctx.player.pk).update(total_wagered=F("total_wagered") + ctx.quote.cost)
    except DatabaseError:
        log.warning("could not update wagering stats for player %s", ctx.player.pk, exc_info=True)
