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
12. _update_wagering_stats total_wagered (best effort on the step-by-step path)

With a local (internal) wallet, steps 7-12 are one database transaction: the trade happens
completely or not at all, and no network call is made inside it. On PostgreSQL the same
steps are one transaction in two round trips of prepared statements (_steps_7_to_12_compact); the step functions remain
the path for SQLite and for retries that need the exposure shards locked. Locks are taken in the
order market (shared), player wallet, position, exposure shard. Exposure is the last
write so the hottest rows are held for the shortest time.

With an S2S wallet the money lives at the operator, so the same steps run as
intent -> call -> outcome (see "the S2S path" below): the reservations (exposure, shares
being sold, the idempotency key) and the wallet intent are committed before the call, no
transaction is open during it, and the outcome is recorded after. A debit whose outcome is
unknown, or whose trade cannot be recorded, is compensated by a rollback
(_trade_compensate); a refused movement releases the reservations (_trade_release); a
process that dies in between leaves a pending intent that recovery finishes
(trade_recover). Reservations only ever count the side that is adverse to the house, so
confirming or releasing them can only lower the exposure and is never refused.
"""

import logging
import random
import uuid
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.db.models import F
from django.utils import timezone

from casino.models import (
    Market,
    MarketStatus,
    Player,
    Position,
    PositionStatus,
    Side,
    Trade,
)
from casino.services.exposure import ExposureNeedsLock, exposure_reduce
from casino.services.markets import market_with_price
from casino.services.pricing import Quote, quote_build, spread_effective
from core import errors, money
from core.idempotency import idempotency_complete, idempotency_release
from core.metrics import TRADE_REJECTIONS, TRADES, WALLET_COMPENSATIONS
from core.models import IdempotencyRecord
from core.prepared import PreparedStatement
from risk.services.assessment import RiskTicket, risk_assess, risk_record_refusal
from risk.services.config import risk_config
from wallets.adapters import WalletAdapter, WalletMove, wallet_adapter_for
from wallets.adapters.s2s import player_error_for
from wallets.models import LedgerType, OperationKind, OperationStatus, WalletOperation
from wallets.services.operations import operation_create, operation_send, rollback_open

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
    wallet_pending: bool = False


@dataclass
class _Context:
    """What the steps learn about the trade as it goes through the pipeline."""

    player: Player
    request: TradeRequest
    casino: object = None
    config_version: str | None = None
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


def trade_execute(*, player: Player, request: TradeRequest, idempotency=None, session_token: str = "") -> TradeResult:
    """``session_token``: the player's bearer token, passed to an S2S operator's debit call."""
    ctx = _Context(player=player, request=request)
    try:
        _validate(ctx)
        _check_tradeability(ctx)
        _assess_risk(ctx)
        if ctx.risk.config_version != ctx.config_version:  # staff changed a setting since step 1: check again
            _validate(ctx)
            _check_tradeability(ctx)
        try:
            _price(ctx)
            operator = _resolve_operator(ctx)
            _wallet_adapter(ctx, operator)
            if ctx.adapter.local:
                result = _execute_locally(ctx, idempotency)
            else:
                result = _execute_remote(ctx, idempotency, session_token)
        except BaseException as exc:
            _risk_release(ctx, exc)
            raise
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
    config = risk_config(verify=False)  # verified against Redis by the walls' reservation in step 3
    ctx.config_version = config.version
    casino = config.casino
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
    """Step 3: the five walls (risk/services/assessment.py). The ticket carries the sharp
    spread, reserves exposure in step 11 and gives its counters back if the trade fails."""
    req = ctx.request
    ctx.risk = risk_assess(
        player=ctx.player, market_id=req.market_id, side=req.side, outcome=req.outcome, amount=req.amount, mid_price=req.mid_price
    )


def _risk_release(ctx: _Context, exc: BaseException) -> None:
    """The trade did not happen: the walls' counters are given back; a refusal by an exact
    in-transaction check (exposure caps, position limit) is recorded for the risk team."""
    if not _trade_happened(ctx):
        ctx.risk.release()
    if isinstance(exc, errors.HouseError) and exc.code.startswith("risk."):
        req = ctx.request
        risk_record_refusal(player=ctx.player, market_id=req.market_id, side=req.side, outcome=req.outcome, amount=req.amount, refusal=exc)


def _trade_happened(ctx: _Context) -> bool:
    # A sell whose credit is being retried, or a trade whose recording is delayed, has happened.
    return ctx.trade_id is not None and Trade.objects.filter(pk=ctx.trade_id).exists()


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
            if connection.vendor == "postgresql" and not ctx.exposure_locked:
                return _steps_7_to_12_compact(ctx, idempotency)  # its own transaction, two round trips
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


# -- steps 7-12 on PostgreSQL in two round trips -------------------------------------------------

# The market row shared and the player's wallet row exclusive, in that order, in one statement.
_LOCK_MARKET_AND_WALLET_SQL = """
SELECT m.status, m.disabled, w.balance
  FROM casino_markets m, wallet_balances w
 WHERE m.id = %(market)s AND w.player_id = %(player)s
   FOR SHARE OF m FOR UPDATE OF w
"""
# Read after the wallet lock is held (a new statement, so a new snapshot): a trade that waited
# for the lock sees the positions the trades before it wrote.
_POSITIONS_SQL = """
SELECT id, outcome, shares, avg_price, status, realized_pnl, version, market_title
  FROM casino_positions WHERE player_id = %(player)s AND market_id = %(market)s
"""
_POSITION_INSERT = """INSERT INTO casino_positions (id, player_id, operator_id, market_id, market_title, outcome, shares, avg_price,
                                   status, realized_pnl, version, created_at, updated_at)
    VALUES (%(position)s, %(player)s, %(operator)s, %(market)s, %(p_title)s, %(outcome)s, %(p_shares)s, %(p_avg)s,
            %(p_status)s, %(p_pnl)s, 0, %(now)s, %(now)s) RETURNING id"""
_POSITION_UPDATE = """UPDATE casino_positions SET shares = %(p_shares)s, avg_price = %(p_avg)s, status = %(p_status)s,
           realized_pnl = %(p_pnl)s, market_title = %(p_title)s, version = version + 1, updated_at = %(now)s
     WHERE id = %(position)s AND version = %(p_version)s RETURNING id"""
_WRITE_SQL = """
WITH wal AS (UPDATE wallet_balances SET balance = %(after)s, updated_at = %(now)s WHERE player_id = %(player)s RETURNING 1),
led AS (INSERT INTO s2s_transactions (id, player_id, operator_id, type, amount, balance_after, currency, description,
                                      trade_id, round_id, reference_id, actor, created_at)
        VALUES (%(ledger)s, %(player)s, %(operator)s, %(l_type)s, %(l_amount)s, %(after)s, %(currency)s, %(description)s,
                %(trade)s, %(round)s, NULL, 'player', %(now)s) RETURNING 1),
tra AS (INSERT INTO casino_trades (id, player_id, operator_id, market_id, market_title, side, outcome, shares, price_mid,
                                   price_executed, spread_applied, cost, balance_before, balance_after, realized_pnl,
                                   wallet_transaction_id, created_at)
        VALUES (%(trade)s, %(player)s, %(operator)s, %(market)s, %(title)s, %(side)s, %(outcome)s, %(shares)s, %(mid)s,
                %(price)s, %(half_spread)s, %(cost)s, %(before)s, %(after)s, %(pnl)s, %(ledger)s, %(now)s) RETURNING 1),
pos AS ({position}),
exp AS (UPDATE casino_exposure
           SET yes_shares = yes_shares + %(dy)s, no_shares = no_shares + %(dn)s, cash_in = cash_in + %(dc)s
         WHERE market_id = %(market)s AND shard = %(shard)s AND cap = %(cap)s AND (
                GREATEST(yes_shares + %(dy)s, no_shares + %(dn)s) - (cash_in + %(dc)s) <= quota
             OR GREATEST(yes_shares + %(dy)s, no_shares + %(dn)s) - (cash_in + %(dc)s) <= GREATEST(yes_shares, no_shares) - cash_in)
        RETURNING GREATEST(yes_shares, no_shares) - cash_in
                - (GREATEST(yes_shares - %(dy)s, no_shares - %(dn)s) - (cash_in - %(dc)s)) AS growth),
glo AS (UPDATE casino_global_exposure SET bound = bound + (SELECT growth FROM exp)
         WHERE shard = %(g_shard)s AND cap = %(g_cap)s AND EXISTS (SELECT 1 FROM exp)
           AND (bound + (SELECT growth FROM exp) <= quota OR (SELECT growth FROM exp) <= 0) RETURNING 1),
wag AS (UPDATE casino_players SET total_wagered = total_wagered + %(wager)s WHERE id = %(player)s AND %(wager)s > 0 RETURNING 1)
{idempotency}
SELECT CASE WHEN (SELECT count(*) FROM pos) <> 1 THEN house_refuse('position_changed')
            WHEN (SELECT count(*) FROM glo) <> 1 THEN house_refuse('exposure_needs_lock') END
"""
_IDEMPOTENCY_CTE = """, idem AS (INSERT INTO casino_idempotency (scope, key, request_hash, status_code, response_body, created_at)
        VALUES (%(i_scope)s, %(i_key)s, %(i_hash)s, %(i_status)s, %(i_body)s, %(now)s) RETURNING 1)"""
_TYPES = {
    **dict.fromkeys(("player", "operator", "ledger", "trade", "position"), "uuid"),
    **dict.fromkeys(("market", "title", "p_title", "round", "l_type", "currency", "description", "side", "outcome"), "varchar"),
    **dict.fromkeys(("p_status", "i_scope", "i_key", "i_hash", "i_body"), "varchar"),
    **dict.fromkeys(("after", "before", "l_amount", "shares", "mid", "price", "half_spread", "cost", "pnl"), "numeric"),
    **dict.fromkeys(("p_shares", "p_avg", "p_pnl", "dy", "dn", "dc", "cap", "g_cap", "wager"), "numeric"),
    **dict.fromkeys(("p_version", "shard", "g_shard", "i_status"), "integer"),
    "now": "timestamptz",
}


_LOCK = PreparedStatement.typed("trade_lock", _LOCK_MARKET_AND_WALLET_SQL, _TYPES)
_POSITIONS = PreparedStatement.typed("trade_positions", _POSITIONS_SQL, _TYPES)
# The write statement for (existing position?, idempotency key?).
_WRITES = {
    (update, keyed): PreparedStatement.typed(
        f"trade_write_{'update' if update else 'insert'}{'_keyed' if keyed else ''}",
        _WRITE_SQL.format(position=_POSITION_UPDATE if update else _POSITION_INSERT, idempotency=_IDEMPOTENCY_CTE if keyed else ""),
        _TYPES,
    )
    for update in (False, True)
    for keyed in (False, True)
}


@dataclass(frozen=True)
class _HeldPosition:
    id: uuid.UUID
    outcome: str
    shares: Decimal
    avg_price: Decimal
    status: str
    realized_pnl: Decimal
    version: int
    market_title: str


def _steps_7_to_12_compact(ctx: _Context, idempotency) -> TradeResult:
    """Steps 7-12 with the same rules as the step functions below, as one transaction in two
    round trips (several statements per round trip, client-side binding, simple protocol):

      1. BEGIN; lock the market (shared) and the wallet; read the player's positions in the market
      2. one data-modifying statement doing every write; COMMIT

    Inside a caller's transaction, a savepoint takes the place of BEGIN/COMMIT. Each statement
    has its own snapshot, so the positions read after a wait for the wallet lock include what
    the trade before wrote. A lost position race or an exposure shard out of quota makes the
    write statement raise (house_refuse), so COMMIT is never reached and nothing is written;
    the retry then takes the step-by-step path (exposure locked). Any other failure between
    the two round trips rolls back before the exception leaves this function."""
    if connection.in_atomic_block:
        begin, commit, rollback = "SAVEPOINT house_trade", "RELEASE SAVEPOINT house_trade", "ROLLBACK TO SAVEPOINT house_trade"
    else:
        begin, commit, rollback = "BEGIN", "COMMIT", "ROLLBACK"
    with connection.cursor() as cursor:
        try:
            return _compact_transaction(ctx, idempotency, cursor, begin, commit)
        except BaseException:
            _compact_rollback(cursor, rollback)
            raise


def _compact_rollback(cursor, rollback: str) -> None:
    try:
        cursor.execute(rollback)
    except DatabaseError:  # the connection is gone: the server has rolled back already
        log.warning("rollback of a compact trade transaction failed; discarding the connection")
        connection.close()


def _compact_refusal(exc: DatabaseError) -> str | None:
    cause = exc.__cause__
    if getattr(cause, "sqlstate", None) == "P0001":
        return getattr(cause.diag, "message_primary", None)
    return None


def _compact_transaction(ctx: _Context, idempotency, cursor, begin: str, commit: str) -> TradeResult:
    q, req, player = ctx.quote, ctx.request, ctx.player
    cursor.execute(f"{begin};{_LOCK.text()};{_POSITIONS.text()}", {"market": ctx.market.pk, "player": player.pk})
    cursor.nextset()
    row = cursor.fetchone()
    cursor.nextset()
    positions = [_HeldPosition(*r) for r in cursor.fetchall()]
    if row is None:  # no wallet row yet: the step-by-step path creates it
        ctx.exposure_locked = True
        raise errors.ConcurrentUpdate()
    status, disabled, balance = row
    if status != MarketStatus.OPEN or disabled:
        raise errors.market_not_tradeable(f"market_{status}" if status != MarketStatus.OPEN else "market_disabled")
    position = next((p for p in positions if p.outcome == req.outcome), None)
    # Step 7: funds or shares, and the tier's position limit.
    ctx.risk.check_in_transaction(positions=positions, stake=q.cost)
    if q.side == Side.BUY and balance < q.cost:
        raise errors.insufficient_balance()
    held = position.shares if position is not None and position.status == PositionStatus.OPEN else Decimal("0")
    if q.side == Side.SELL and held < q.shares:
        raise errors.insufficient_shares()
    # Steps 8-12, computed here, written below in one statement.
    buy = q.side == Side.BUY
    after = balance - q.cost if buy else balance + q.cost
    realized = None if buy else money.realized_pnl(q.shares, q.execution_price, position.avg_price)
    if buy:
        p_shares, p_avg = (
            held + q.shares,
            money.average_price(held, position.avg_price if position else Decimal("0"), q.shares, q.execution_price),
        )
        p_status, p_pnl = PositionStatus.OPEN, position.realized_pnl if position else Decimal("0")
    else:
        p_shares, p_avg = held - q.shares, position.avg_price
        p_status, p_pnl = (PositionStatus.OPEN if p_shares > 0 else PositionStatus.CLOSED), position.realized_pnl + realized
    position_id = position.id if position is not None else uuid.uuid4()
    title = (req.market_title or ctx.market.title)[:500]
    p_title = (position.market_title if position is not None and position.market_title else title)[:500]
    sign = Decimal("1") if buy else Decimal("-1")
    dy, dn = (sign * q.shares, Decimal("0")) if req.outcome == "yes" else (Decimal("0"), sign * q.shares)
    ledger_id, now = uuid.uuid4(), timezone.now()
    result = TradeResult(
        trade_id=ctx.trade_id,
        position_id=position_id,
        side=q.side,
        execution_price=q.execution_price,
        shares=q.shares,
        cost=q.cost,
        new_balance=after,
        realized_pnl=realized,
    )
    params = {
        "player": player.pk,
        "operator": player.operator_id,
        "market": ctx.market.pk,
        "title": title,
        "p_title": p_title,
        "now": now,
        "after": after,
        "before": balance,
        "ledger": ledger_id,
        "trade": ctx.trade_id,
        "round": str(ctx.trade_id),
        "l_type": LedgerType.TRADE_DEBIT if buy else LedgerType.TRADE_CREDIT,
        "l_amount": -q.cost if buy else q.cost,
        "currency": player.currency,
        "description": _describe(q, req.outcome),
        "side": q.side,
        "outcome": req.outcome,
        "shares": q.shares,
        "mid": q.mid_price,
        "price": q.execution_price,
        "half_spread": q.half_spread,
        "cost": q.cost,
        "pnl": realized or Decimal("0"),
        "position": position_id,
        "p_shares": p_shares,
        "p_avg": p_avg,
        "p_status": p_status,
        "p_pnl": p_pnl,
        "p_version": position.version if position else 0,
        "dy": dy,
        "dn": dn,
        "dc": sign * q.cost,
        "shard": random.randrange(max(1, settings.HOUSE_EXPOSURE_SHARDS)),
        "cap": ctx.risk.market_cap,
        "g_shard": random.randrange(max(1, settings.HOUSE_EXPOSURE_SHARDS)),
        "g_cap": ctx.risk.global_cap,
        "wager": q.cost if buy else Decimal("0"),
    }
    if idempotency is not None:
        status_code, body = idempotency.render(result)
        params.update(i_scope=idempotency.scope, i_key=idempotency.key, i_hash=idempotency.request_hash, i_status=status_code, i_body=body)
    write = _WRITES[(position is not None, idempotency is not None)]
    try:
        cursor.execute(f"{write.text()};{commit}", params)
    except DatabaseError as exc:
        refusal = _compact_refusal(exc)
        if refusal == "position_changed":
            raise errors.ConcurrentUpdate() from None
        if refusal == "exposure_needs_lock":
            raise ExposureNeedsLock() from None
        raise
    if idempotency is not None:
        idempotency.stored = IdempotencyRecord(
            scope=idempotency.scope, key=idempotency.key, request_hash=idempotency.request_hash, status_code=status_code, response_body=body
        )
    return result


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
    """Step 7. Buy: the balance covers the stake (wallet row locked) and the position stays
    within the tier's limit (exact now that the player's trades are serialized). Sell: the
    shares are held."""
    ctx.balance = ctx.adapter.balance(player=ctx.player, for_update=True)
    positions = list(Position.objects.filter(player_id=ctx.player.pk, market_id=ctx.market.pk))
    ctx.position = next((p for p in positions if p.outcome == ctx.request.outcome), None)
    ctx.risk.check_in_transaction(positions=positions, stake=ctx.quote.cost)
    if ctx.quote.side == Side.BUY:
        if ctx.balance < ctx.quote.cost:
            raise errors.insufficient_balance()
    else:
        held = ctx.position.shares if ctx.position is not None and ctx.position.status == PositionStatus.OPEN else Decimal("0")
        if held < ctx.quote.shares:
            raise errors.insufficient_shares()


def _move_money(ctx: _Context) -> None:
    """Step 8."""
    q = ctx.quote
    buy = q.side == Side.BUY
    move = ctx.adapter.debit if buy else ctx.adapter.credit
    ctx.move = move(
        player=ctx.player,
        amount=q.cost,
        transaction_id=uuid.uuid4(),
        kind=LedgerType.TRADE_DEBIT if buy else LedgerType.TRADE_CREDIT,
        round_id=str(ctx.trade_id),
        description=_describe(q, ctx.request.outcome),
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


# -- the S2S path: the same steps as intent -> wallet call -> outcome ---------------------------


def _execute_remote(ctx: _Context, idempotency, session_token: str) -> TradeResult:
    _check_balance_remote(ctx)
    operation = _reserve_and_record_intent(ctx, idempotency)
    reply = _move_money_remote(ctx, operation, session_token)
    if reply.ok or (reply.unknown and operation.kind == OperationKind.CREDIT):
        # A credit is never rolled back: the sell stands and the credit is retried until acknowledged.
        return _record_remote_trade(operation, idempotency=idempotency)
    if reply.refused:
        _trade_release(operation)
        raise player_error_for(reply.status, default=errors.HouseError("Operator wallet refused the trade", code="wallet_refused"))
    _trade_compensate(operation, reason=reply.status)
    raise errors.HouseError("Operator wallet did not answer; the trade was not executed", code="wallet_outcome_unknown", status=502)


def _check_balance_remote(ctx: _Context) -> None:
    """Step 7 for S2S: the operator's balance (a network call, no transaction), and the shares for a sell."""
    ctx.balance = ctx.adapter.balance(player=ctx.player)
    if ctx.quote.side == Side.BUY:
        if ctx.balance < ctx.quote.cost:
            raise errors.insufficient_balance()
        return
    position = Position.objects.filter(player_id=ctx.player.pk, market_id=ctx.market.pk, outcome=ctx.request.outcome).first()
    if position is None or position.status != PositionStatus.OPEN or position.shares < ctx.quote.shares:
        raise errors.insufficient_shares()


def _reserve_and_record_intent(ctx: _Context, idempotency) -> WalletOperation:
    """One short transaction: the market is open, the adverse side of the trade is reserved on
    the book, the shares being sold are taken off the position, the idempotency key is
    claimed, and the wallet intent is recorded. Committed before any wallet call."""
    q, req = ctx.quote, ctx.request
    for _attempt in range(MAX_OPTIMISTIC_RETRIES):
        ctx.trade_id = ctx.trade_id or uuid.uuid4()
        try:
            with transaction.atomic():
                _lock_market_for_trading(ctx)
                if q.side == Side.BUY:
                    ctx.risk.reserve_exposure(
                        outcome=req.outcome, shares_delta=q.shares, cash_delta=Decimal("0"), locked=ctx.exposure_locked
                    )
                else:
                    _reserve_shares(ctx)
                    ctx.risk.reserve_exposure(
                        outcome=req.outcome, shares_delta=Decimal("0"), cash_delta=-q.cost, locked=ctx.exposure_locked
                    )
                if idempotency is not None:
                    idempotency.claim()
                return operation_create(
                    player=ctx.player,
                    kind=OperationKind.DEBIT if q.side == Side.BUY else OperationKind.CREDIT,
                    type=LedgerType.TRADE_DEBIT if q.side == Side.BUY else LedgerType.TRADE_CREDIT,
                    amount=q.cost,
                    round_id=str(ctx.trade_id),
                    description=_describe(q, req.outcome),
                    payload=_trade_payload(ctx, idempotency),
                )
        except ExposureNeedsLock:
            ctx.exposure_locked = True
        except errors.ConcurrentUpdate:
            continue
    raise errors.HouseError("Trade could not be completed, please retry", code="concurrent_update", status=409)


def _reserve_shares(ctx: _Context) -> None:
    q, req = ctx.quote, ctx.request
    position = Position.objects.filter(player_id=ctx.player.pk, market_id=ctx.market.pk, outcome=req.outcome).first()
    if position is None or position.status != PositionStatus.OPEN or position.shares < q.shares:
        raise errors.insufficient_shares()
    updated = Position.objects.filter(pk=position.pk, version=position.version).update(
        shares=position.shares - q.shares, version=F("version") + 1, updated_at=timezone.now()
    )
    if updated != 1:
        raise errors.ConcurrentUpdate()
    ctx.position = position


def _trade_payload(ctx: _Context, idempotency) -> dict:
    """Everything needed to record, release or compensate the trade later, also from another process."""
    q, req = ctx.quote, ctx.request
    return {
        "handler": "trade",
        "trade_id": str(ctx.trade_id),
        "market_id": ctx.market.pk,
        "market_title": (req.market_title or ctx.market.title)[:500],
        "side": q.side,
        "outcome": req.outcome,
        "shares": str(q.shares),
        "cost": str(q.cost),
        "execution_price": str(q.execution_price),
        "mid_price": str(q.mid_price),
        "half_spread": str(q.half_spread),
        "balance_before": str(ctx.balance),
        "avg_price": str(ctx.position.avg_price) if ctx.position is not None else None,
        "idempotency_id": idempotency.stored.pk if idempotency is not None and idempotency.stored is not None else None,
    }


def _describe(q: Quote, outcome: str) -> str:
    verb = "Buy" if q.side == Side.BUY else "Sell"
    return f"{verb} {money.plain(q.shares)} shares {outcome.upper()} @ {money.plain(q.execution_price)}c"


def _move_money_remote(ctx: _Context, operation: WalletOperation, session_token: str):
    """Step 8 for S2S: the wallet call, with no database transaction open."""
    return operation_send(operation=operation, target=ctx.adapter.target, session_token=session_token)


class _MarketClosedDuringCall(Exception):
    pass


def _record_remote_trade(operation: WalletOperation, *, idempotency=None) -> TradeResult:
    """Steps 9-12 for S2S, in one transaction, from the operation's payload (also used by recovery)."""
    p = operation.payload
    buy = p["side"] == Side.BUY
    for _attempt in range(MAX_OPTIMISTIC_RETRIES):
        try:
            with transaction.atomic():
                op = WalletOperation.objects.select_for_update().select_related("player").get(pk=operation.pk)
                if op.settled_locally:
                    return _result_from_trade(op)
                if buy and _market_status_shared(p["market_id"]) != MarketStatus.OPEN:
                    raise _MarketClosedDuringCall()
                result = _write_remote_trade(op)
                op.settled_locally = True
                op.save(update_fields=["settled_locally", "updated_at"])
                _complete_idempotency(p, idempotency, result)
            if result.wallet_pending:
                _schedule_retry(operation.pk)
            return result
        except (errors.ConcurrentUpdate, IntegrityError):
            continue  # a concurrent trade of the same player moved the position: re-read and re-apply
        except _MarketClosedDuringCall:
            _trade_compensate(operation, reason="market stopped trading during the wallet call")
            raise errors.market_not_tradeable("market_closed_during_wallet_call") from None
    if buy:
        _trade_compensate(operation, reason="trade could not be recorded")
        raise errors.HouseError("Trade could not be completed; the stake is being returned", code="trade_compensated", status=503)
    raise errors.HouseError("Trade is being completed, please check your positions", code="trade_recording_delayed", status=503)


def _write_remote_trade(op: WalletOperation) -> TradeResult:
    p = op.payload
    buy = p["side"] == Side.BUY
    shares, cost, price = Decimal(p["shares"]), Decimal(p["cost"]), Decimal(p["execution_price"])
    confirmed = op.status == OperationStatus.OK and op.balance_after is not None
    before = Decimal(p["balance_before"])
    if confirmed:
        after = op.balance_after
        before = after + cost if buy else after - cost
    else:
        after = before - cost if buy else before + cost
    position = Position.objects.filter(player_id=op.player_id, market_id=p["market_id"], outcome=p["outcome"]).first()
    realized = None
    if buy:
        position = _position_add(op, position, shares, price)
        exposure_reduce(market_id=p["market_id"], outcome=p["outcome"], shares_delta=Decimal("0"), cash_delta=cost)
    else:
        realized = money.realized_pnl(shares, price, Decimal(p["avg_price"]))
        _position_finish_sell(position, realized)
        exposure_reduce(market_id=p["market_id"], outcome=p["outcome"], shares_delta=-shares, cash_delta=Decimal("0"))
    Trade.objects.create(
        id=uuid.UUID(p["trade_id"]),
        player_id=op.player_id,
        operator_id=op.operator_id,
        market_id=p["market_id"],
        market_title=p["market_title"],
        side=p["side"],
        outcome=p["outcome"],
        shares=shares,
        price_mid=Decimal(p["mid_price"]),
        price_executed=price,
        spread_applied=Decimal(p["half_spread"]),
        cost=cost,
        balance_before=before,
        balance_after=after,
        realized_pnl=realized or Decimal("0"),
        wallet_transaction_id=op.pk,
    )
    if buy:
        _wagering_add(op.player_id, cost)
    return TradeResult(
        trade_id=uuid.UUID(p["trade_id"]),
        position_id=position.pk,
        side=p["side"],
        execution_price=price,
        shares=shares,
        cost=cost,
        new_balance=after,
        realized_pnl=realized,
        wallet_pending=not confirmed,
    )


def _position_add(op: WalletOperation, position: Position | None, shares: Decimal, price: Decimal) -> Position:
    p = op.payload
    if position is None:
        return Position.objects.create(
            player_id=op.player_id,
            operator_id=op.operator_id,
            market_id=p["market_id"],
            market_title=p["market_title"],
            outcome=p["outcome"],
            shares=shares,
            avg_price=price,
        )
    held = position.shares if position.status in (PositionStatus.OPEN, PositionStatus.CLOSED) else Decimal("0")
    updated = Position.objects.filter(pk=position.pk, version=position.version).update(
        shares=held + shares,
        avg_price=money.average_price(held, position.avg_price, shares, price),
        status=PositionStatus.OPEN,
        version=F("version") + 1,
        updated_at=timezone.now(),
    )
    if updated != 1:
        raise errors.ConcurrentUpdate()
    return position


def _position_finish_sell(position: Position, realized: Decimal) -> None:
    """The shares left the position when the sell was reserved; book the P&L and close it if empty."""
    fields = {"realized_pnl": position.realized_pnl + realized}
    if position.status == PositionStatus.OPEN and position.shares == 0:
        fields["status"] = PositionStatus.CLOSED
    updated = Position.objects.filter(pk=position.pk, version=position.version).update(
        **fields, version=F("version") + 1, updated_at=timezone.now()
    )
    if updated != 1:
        raise errors.ConcurrentUpdate()


def _wagering_add(player_id, cost: Decimal) -> None:
    try:
        with transaction.atomic():
            Player.objects.filter(pk=player_id).update(total_wagered=F("total_wagered") + cost)
    except DatabaseError:
        log.warning("could not update wagering stats for player %s", player_id, exc_info=True)


def _market_status_shared(market_id: str) -> str:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT status FROM casino_markets WHERE id = %s FOR SHARE", [market_id])
            return cursor.fetchone()[0]
    return Market.objects.filter(pk=market_id).values_list("status", flat=True).get()


def _complete_idempotency(payload: dict, idempotency, result: TradeResult) -> None:
    if idempotency is not None:
        idempotency.record(result)
    elif payload.get("idempotency_id"):  # finished by recovery: complete the client's claim for its retry
        from casino.api.presenters import trade_result
        from core.api.rendering import dumps

        idempotency_complete(record_id=payload["idempotency_id"], status_code=200, body=dumps(trade_result(result)))


def _result_from_trade(op: WalletOperation) -> TradeResult:
    trade = Trade.objects.get(pk=op.payload["trade_id"])
    position = Position.objects.get(player_id=op.player_id, market_id=trade.market_id, outcome=trade.outcome)
    return TradeResult(
        trade_id=trade.pk,
        position_id=position.pk,
        side=trade.side,
        execution_price=trade.price_executed,
        shares=trade.shares,
        cost=trade.cost,
        new_balance=trade.balance_after,
        realized_pnl=trade.realized_pnl if trade.side == Side.SELL else None,
        wallet_pending=op.status != OperationStatus.OK,
    )


def _release_reservations(op: WalletOperation) -> None:
    p = op.payload
    shares, cost = Decimal(p["shares"]), Decimal(p["cost"])
    if p["side"] == Side.BUY:
        exposure_reduce(market_id=p["market_id"], outcome=p["outcome"], shares_delta=-shares, cash_delta=Decimal("0"))
    else:
        exposure_reduce(market_id=p["market_id"], outcome=p["outcome"], shares_delta=Decimal("0"), cash_delta=cost)
        Position.objects.filter(player_id=op.player_id, market_id=p["market_id"], outcome=p["outcome"]).update(
            shares=F("shares") + shares, version=F("version") + 1, updated_at=timezone.now()
        )
    if p.get("idempotency_id"):
        idempotency_release(record_id=p["idempotency_id"])


def _trade_release(operation: WalletOperation) -> None:
    """The operator refused the movement: nothing moved, give the reservations back."""
    with transaction.atomic():
        op = WalletOperation.objects.select_for_update().get(pk=operation.pk)
        if op.settled_locally:
            return
        _release_reservations(op)
        op.settled_locally = True
        op.save(update_fields=["settled_locally", "updated_at"])


def _trade_compensate(operation: WalletOperation, *, reason: str) -> None:
    """A debit whose outcome is unknown, or whose trade could not be recorded: give the
    reservations back and roll the debit back (a rollback row in the same transaction,
    then sent, then retried with backoff until the operator answers definitely)."""
    with transaction.atomic():
        op = WalletOperation.objects.select_for_update().select_related("player").get(pk=operation.pk)
        if op.settled_locally:
            return
        rollback = rollback_open(debit=op, reason=reason)
        WALLET_COMPENSATIONS.labels(reason=reason.split(":")[0][:40]).inc()
        _release_reservations(op)
        op.settled_locally = True
        op.save(update_fields=["settled_locally", "updated_at"])
    reply = operation_send(operation=rollback)
    if not reply.ok and rollback.status != OperationStatus.OK:
        _schedule_retry(rollback.pk)


def _schedule_retry(operation_id) -> None:
    from wallets.tasks import wallet_operation_retry

    wallet_operation_retry.apply_async(args=[str(operation_id)], countdown=settings.HOUSE_WALLET_RETRY_BASE_SECONDS)


def trade_recover(operation: WalletOperation) -> None:
    """Finish or compensate a trade whose process stopped between its steps (recovery task)."""
    operation.refresh_from_db()
    if operation.settled_locally:
        return
    if operation.kind == OperationKind.DEBIT:
        if operation.status == OperationStatus.REFUSED:
            _trade_release(operation)
        else:
            _trade_compensate(operation, reason="recovery: the trade was never recorded")
        return
    if operation.status in (OperationStatus.PENDING, OperationStatus.UNKNOWN):
        operation_send(operation=operation)  # the same transaction id: applied at most once
    if operation.status == OperationStatus.REFUSED:
        _trade_release(operation)
        return
    try:
        _record_remote_trade(operation)
    except errors.HouseError:
        log.warning("recovery could not record trade of operation %s yet", operation.pk, exc_info=True)
