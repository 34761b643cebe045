"""The trade executor: the reference document's 12 steps, in order.

 1. _validate              inputs, and the client's midPrice against the house reference price
 2. _check_tradeability    market status, disabled markets, blocked categories, price/liquidity criteria
 3. _assess_risk           the five walls (risk/services/assessment.py); the ticket reserves exposure in step 11
 4. _price                 execution price: the dynamic spread and the exposure skew (casino/services/pricing.py)
 5. _resolve_operator      the player's operator (multi-tenancy)
 6. _wallet_adapter        the operator's wallet adapter
 7-12. _steps_7_to_12      balance check, money movement, trade, position, exposure, wagering:
       one interface (context.StepsSevenToTwelve), three ways, by where the money is:
         house_wallet_sql.py   the house holds it, on PostgreSQL: one transaction in two round trips
         house_wallet.py       the house holds it: one transaction, step by step (SQLite; the retry
                               that locks the market's exposure shards)
         operator_wallet.py    the operator holds it (S2S): intent -> wallet call -> outcome

Steps 1-6 read and check outside any transaction. No database lock is ever held while a
wallet call is in flight. If the trade does not happen, the walls' counters are given back.
"""

import logging
import uuid
from datetime import timedelta
from decimal import Decimal

from django.db import IntegrityError, connection
from django.utils import timezone

from casino.models import Side, Trade
from casino.services.exposure import ExposureNeedsLock
from casino.services.markets import market_price_book, market_refusal, market_refusal_error
from casino.services.pricing import quote_price
from casino.services.trade_executor import house_wallet, house_wallet_sql, operator_wallet
from casino.services.trade_executor.context import MAX_OPTIMISTIC_RETRIES, TradeContext, TradeRequest, TradeResult, too_many_races
from core import errors
from core.idempotency import IdempotencySlot
from core.metrics import TRADE_REJECTIONS, TRADES
from risk.services.assessment import risk_assess, risk_record_refusal
from risk.services.config import risk_config
from wallets.adapters import wallet_adapter_for
from wallets.services.debts import debt_of

log = logging.getLogger("house.trade")


def trade_execute(*, player, request: TradeRequest, idempotency: IdempotencySlot | None = None, session_token: str = "") -> TradeResult:
    """``session_token``: the player's bearer token, passed to an S2S operator's debit call."""
    ctx = TradeContext(player=player, request=request, session_token=session_token)
    try:
        _validate(ctx)
        _check_tradeability(ctx)
        _assess_risk(ctx)
        if ctx.risk.config_version != ctx.config_version:  # staff changed a setting since step 1: check again
            _validate(ctx)
            _check_tradeability(ctx)
        try:
            _price(ctx)
            _wallet_adapter(ctx, _resolve_operator(ctx))
            result = _steps_7_to_12(ctx, idempotency)
        except BaseException as exc:
            _risk_release(ctx, exc)
            raise
    except errors.HouseError as exc:
        TRADE_REJECTIONS.labels(code=exc.code).inc()
        raise
    TRADES.labels(side=request.side).inc()
    return result


def _validate(ctx: TradeContext) -> None:
    """Step 1. Field shapes are checked by the API layer; here, the business rules. Without a
    client midPrice the trade is priced at the house reference; with one, it must be within
    the tolerance of the reference (a slippage guard)."""
    req = ctx.request
    if req.side not in (Side.BUY, Side.SELL):
        raise errors.invalid("side")
    if req.outcome not in ("yes", "no"):
        raise errors.invalid("outcome")
    if req.amount <= 0:
        raise errors.HouseError("Amount must be positive", code="amount_not_positive")
    if req.mid_price is not None and not (0 < req.mid_price < 100):
        raise errors.invalid("midPrice")
    config = risk_config(verify=False)  # verified against Redis by the walls' reservation in step 3
    ctx.config_version = config.version
    casino = config.casino
    market, ref, ctx.book = market_price_book(market_id=req.market_id, outcome=req.outcome)
    if market is None:
        raise errors.market_not_tradeable("unknown_market")
    ctx.market = market
    if ref is None:
        raise errors.price_moved("no_reference_price")
    if timezone.now() - ref.updated_at > timedelta(seconds=casino.price_max_age_seconds):
        raise errors.price_moved("reference_price_stale")
    if req.mid_price is not None and abs(req.mid_price - ref.mid_price) > casino.price_tolerance:
        raise errors.price_moved("outside_tolerance")
    ctx.mid_price = req.mid_price if req.mid_price is not None else ref.mid_price
    ctx.casino = casino


def _check_tradeability(ctx: TradeContext) -> None:
    """Step 2: the house's criteria and what the market-data feed decided (a suspended market
    does not trade; a market that left the listing takes no new buys, sells go on)."""
    req = ctx.request
    code = market_refusal(
        market=ctx.market, casino=ctx.casino, mid_price=ctx.mid_price, side=req.side, category=req.category, liquidity=req.liquidity
    )
    if code is not None:
        raise market_refusal_error(code)


def _assess_risk(ctx: TradeContext) -> None:
    """Step 3: the five walls. The ticket carries the sharp spread, reserves exposure in step 11
    and gives its counters back if the trade fails."""
    req = ctx.request
    ctx.risk = risk_assess(
        player=ctx.player, market_id=req.market_id, side=req.side, outcome=req.outcome, amount=req.amount, mid_price=ctx.mid_price
    )
    ctx.risk.category_bind(ctx.market.category)  # issue 14: the category cap of wall 3


def _price(ctx: TradeContext) -> None:
    """Step 4: the dynamic spread and the exposure skew (SPEC §16), from what steps 1-3 read: the
    market and its book (step 1's query), the tier and sharp widening and the cap (the ticket)."""
    req, ticket = ctx.request, ctx.risk
    quote = quote_price(
        side=req.side,
        outcome=req.outcome,
        amount=req.amount,
        mid_price=ctx.mid_price,
        casino=ctx.casino,
        rules=risk_config(verify=False).settings,
        market=ctx.market,
        liquidity=req.liquidity,
        tier_extra=ticket.tier.extra_spread if ticket.tier is not None else Decimal("0"),
        sharp_extra=ticket.spread_extra,
        book=ctx.book,
        cap=ticket.market_cap,
    )
    if quote.side == Side.BUY and quote.shares <= 0:
        raise errors.HouseError("Amount too small", code="amount_too_small")
    if quote.side == Side.SELL and quote.cost <= 0:
        raise errors.HouseError("Amount too small", code="amount_too_small")
    ctx.quote = quote


def _resolve_operator(ctx: TradeContext):
    """Step 5."""
    operator = ctx.player.operator
    if not operator.is_active:
        raise errors.HouseError("Operator disabled", code="operator_disabled", status=403)
    return operator


def _wallet_adapter(ctx: TradeContext, operator) -> None:
    """Step 6."""
    ctx.adapter = wallet_adapter_for(operator)


def _steps_7_to_12(ctx: TradeContext, idempotency: IdempotencySlot | None) -> TradeResult:
    """Steps 7-12, the way the operator's wallet needs. On the house wallet an optimistic write
    that lost a race is tried again from step 7, with the exposure shards locked when a shard
    ran out of quota (the fast path cannot take such a trade)."""
    ctx.owes_debt = ctx.quote.side == Side.SELL and debt_of(player_id=ctx.player.pk) > 0  # sells only: buys pay no debt
    if not ctx.adapter.local:
        return operator_wallet.steps_7_to_12(ctx, idempotency)
    for attempt in range(MAX_OPTIMISTIC_RETRIES):
        ctx.trade_id = uuid.uuid4()
        fast = connection.vendor == "postgresql" and not ctx.exposure_locked and not ctx.owes_debt
        way = house_wallet_sql if fast else house_wallet
        try:
            return way.steps_7_to_12(ctx, idempotency)
        except ExposureNeedsLock:
            ctx.exposure_locked = True
        except errors.ConcurrentUpdate:
            log.info("position changed under trade %s, retrying (attempt %d)", ctx.trade_id, attempt + 1)
        except IntegrityError:
            if idempotency is not None:
                raise  # the API layer answers with the concurrent request's stored response
            log.info("concurrent position insert for trade %s, retrying", ctx.trade_id)
    raise too_many_races()


def _risk_release(ctx: TradeContext, exc: BaseException) -> None:
    """The trade did not happen: the walls' counters are given back; a refusal by an exact
    in-transaction check (exposure caps, position limit) is recorded for the risk team."""
    if not _trade_happened(ctx):
        ctx.risk.release()
    if isinstance(exc, errors.HouseError) and exc.code.startswith("risk."):
        req = ctx.request
        risk_record_refusal(player=ctx.player, market_id=req.market_id, side=req.side, outcome=req.outcome, amount=req.amount, refusal=exc)


def _trade_happened(ctx: TradeContext) -> bool:
    # A sell whose credit is being retried, or a trade whose recording is delayed, has happened.
    return ctx.trade_id is not None and Trade.objects.filter(pk=ctx.trade_id).exists()
