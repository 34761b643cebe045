"""Steps 7-12 when the house holds the money, on PostgreSQL: one transaction in two round trips.

The same rules as house_wallet.py (which stays the reference, the path on SQLite and the
retry with the exposure shards locked), sent as a few prepared statements (core/prepared.py):

  1. BEGIN; lock the market (shared) and the player's wallet row; read the player's positions
  2. one data-modifying statement writing the balance, ledger row, trade, position (version
     checked), exposure shard, category bound and global bound (within quota), wagering stats, the
     idempotency record and the trade.executed event (the outbox); COMMIT

A failed condition in the write calls house_refuse() (casino migration 0003), so the message
stops before COMMIT and nothing is written; steps.py retries. The statement writes wallets'
and the kernel's tables directly for speed (docs/decisions.md); the exposure parts are
casino/services/exposure.py's own statements.
"""

import logging
import uuid
from dataclasses import dataclass
from decimal import Decimal
from types import SimpleNamespace

from django.db import DatabaseError, connection
from django.utils import timezone

from casino.models import Side, WalletMode
from casino.presenters import trade_event
from casino.services.exposure import (
    CATEGORY_SHARD_UPDATE_SQL,
    GLOBAL_SHARD_UPDATE_SQL,
    MARKET_SHARD_UPDATE_SQL,
    WITHIN_QUOTA,
    ExposureNeedsLock,
    exposure_shard_pick,
)
from casino.services.trade_executor.context import (
    TradeContext,
    TradeResult,
    describe,
    position_after_trade,
    refuse_unless_open,
    shares_held,
)
from core import errors
from core.api.rendering import dumps
from core.events import EVENT_INSERT_CTE, events_enabled, events_kick, events_kick_on_commit
from core.idempotency import IdempotencySlot
from core.middleware import request_id_current
from core.models import IdempotencyRecord
from core.prepared import PreparedStatement, statement_cursor
from wallets.models import LedgerType

log = logging.getLogger("house.trade")

# The market row shared and the player's wallet row exclusive, in that order, in one statement.
_LOCK_MARKET_AND_WALLET_SQL = """
SELECT m.status, m.disabled, m.suspended_reason, w.balance
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
exp AS ({market_shard}),
cat AS ({category_shard} AND EXISTS (SELECT 1 FROM exp) RETURNING 1),
glo AS ({global_shard} AND EXISTS (SELECT 1 FROM cat) RETURNING 1),
wag AS (UPDATE casino_players SET total_wagered = total_wagered + %(wager)s WHERE id = %(player)s AND %(wager)s > 0 RETURNING 1)
{idempotency}{event}
SELECT CASE WHEN (SELECT count(*) FROM pos) <> 1 THEN house_refuse('position_changed')
            WHEN (SELECT count(*) FROM glo) <> 1 THEN house_refuse('exposure_needs_lock') END
"""
_IDEMPOTENCY_CTE = """, idem AS (INSERT INTO casino_idempotency (scope, key, request_hash, status_code, response_body, created_at)
        VALUES (%(i_scope)s, %(i_key)s, %(i_hash)s, %(i_status)s, %(i_body)s, %(now)s) RETURNING 1)"""
# trade.executed in the outbox (SPEC §14): one more CTE of the same statement, no round trip more.
_EVENT_CTE = f""", evt AS ({EVENT_INSERT_CTE})"""
_TYPES = {
    **dict.fromkeys(("player", "operator", "ledger", "trade", "position"), "uuid"),
    **dict.fromkeys(("market", "title", "p_title", "round", "l_type", "currency", "description", "side", "outcome"), "varchar"),
    "category": "varchar",
    "c_cap": "numeric",
    "c_shard": "integer",
    **dict.fromkeys(("p_status", "i_scope", "i_key", "i_hash", "i_body", "e_type", "e_request"), "varchar"),
    "e_operator": "uuid",
    "e_data": "jsonb",
    **dict.fromkeys(("after", "before", "l_amount", "shares", "mid", "price", "half_spread", "cost", "pnl"), "numeric"),
    **dict.fromkeys(("p_shares", "p_avg", "p_pnl", "dy", "dn", "dc", "cap", "g_cap", "wager"), "numeric"),
    **dict.fromkeys(("p_version", "shard", "g_shard", "i_status"), "integer"),
    "now": "timestamptz",
}


_LOCK = PreparedStatement.typed("trade_lock", _LOCK_MARKET_AND_WALLET_SQL, _TYPES)
_POSITIONS = PreparedStatement.typed("trade_positions", _POSITIONS_SQL, _TYPES)


def _write_statement(*, update: bool, keyed: bool, event: bool) -> PreparedStatement:
    return PreparedStatement.typed(
        f"trade_write_{'update' if update else 'insert'}{'_keyed' if keyed else ''}{'' if event else '_noevent'}",
        _WRITE_SQL.format(
            position=_POSITION_UPDATE if update else _POSITION_INSERT,
            idempotency=_IDEMPOTENCY_CTE if keyed else "",
            event=_EVENT_CTE if event else "",
            market_shard=MARKET_SHARD_UPDATE_SQL.format(condition=WITHIN_QUOTA).strip(),
            category_shard=CATEGORY_SHARD_UPDATE_SQL.format(
                growth="(SELECT growth FROM exp)", category="%(category)s", shard="%(c_shard)s", cap="%(c_cap)s"
            ),
            global_shard=GLOBAL_SHARD_UPDATE_SQL.format(growth="(SELECT growth FROM exp)", shard="%(g_shard)s", cap="%(g_cap)s"),
        ),
        _TYPES,
    )


# The write statement for (existing position?, idempotency key?); without the event only for
# bench/webhooks.py's A/B (HOUSE_EVENTS_ENABLED=0).
_WRITES = {(update, keyed): _write_statement(update=update, keyed=keyed, event=True) for update in (False, True) for keyed in (False, True)}
_WRITES_NO_EVENT = {
    (update, keyed): _write_statement(update=update, keyed=keyed, event=False) for update in (False, True) for keyed in (False, True)
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


def steps_7_to_12(ctx: TradeContext, idempotency: IdempotencySlot | None) -> TradeResult:
    """Steps 7-12 with the same rules as house_wallet.py, as one transaction in two
    round trips (several statements per round trip, client-side binding, simple protocol):

      1. BEGIN; lock the market (shared) and the wallet; read the player's positions in the market
      2. one data-modifying statement doing every write; COMMIT

    Inside a caller's transaction, a savepoint takes the place of BEGIN/COMMIT. Each statement
    has its own snapshot, so the positions read after a wait for the wallet lock include what
    the trade before wrote. A lost position race or an exposure shard out of quota makes the
    write statement raise (house_refuse), so COMMIT is never reached and nothing is written;
    the retry then takes house_wallet.py (exposure locked). Any other failure between
    the two round trips rolls back before the exception leaves this function."""
    if connection.in_atomic_block:
        begin, commit, rollback = "SAVEPOINT house_trade", "RELEASE SAVEPOINT house_trade", "ROLLBACK TO SAVEPOINT house_trade"
    else:
        begin, commit, rollback = "BEGIN", "COMMIT", "ROLLBACK"
    with statement_cursor() as cursor:
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


def _compact_transaction(ctx: TradeContext, idempotency, cursor, begin: str, commit: str) -> TradeResult:
    q, req, player = ctx.quote, ctx.request, ctx.player
    cursor.execute(f"{begin};{_LOCK.text()};{_POSITIONS.text()}", {"market": ctx.market.pk, "player": player.pk})
    cursor.nextset()
    row = cursor.fetchone()
    cursor.nextset()
    positions = [_HeldPosition(*r) for r in cursor.fetchall()]
    if row is None:  # no wallet row yet: the step-by-step path creates it
        ctx.exposure_locked = True
        raise errors.ConcurrentUpdate()
    status, disabled, suspended, balance = row
    refuse_unless_open(status, disabled, suspended)
    position = next((p for p in positions if p.outcome == req.outcome), None)
    # Step 7: funds or shares, and the tier's position limit.
    ctx.risk.check_in_transaction(positions=positions, stake=q.cost)
    if q.side == Side.BUY and balance < q.cost:
        raise errors.insufficient_balance()
    if q.side == Side.SELL and shares_held(position) < q.shares:
        raise errors.insufficient_shares()
    # Steps 8-12, computed here, written below in one statement.
    buy = q.side == Side.BUY
    after = balance - q.cost if buy else balance + q.cost
    changed = position_after_trade(position, side=q.side, shares=q.shares, price=q.execution_price)
    realized = changed.realized
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
        "description": describe(q, req.outcome),
        "side": q.side,
        "outcome": req.outcome,
        "shares": q.shares,
        "mid": q.mid_price,
        "price": q.execution_price,
        "half_spread": q.half_spread,
        "cost": q.cost,
        "pnl": realized or Decimal("0"),
        "position": position_id,
        "p_shares": changed.shares,
        "p_avg": changed.avg_price,
        "p_status": changed.status,
        "p_pnl": changed.realized_pnl,
        "p_version": position.version if position else 0,
        "dy": dy,
        "dn": dn,
        "dc": sign * q.cost,
        "shard": exposure_shard_pick(),
        "cap": ctx.risk.market_cap,
        "g_shard": exposure_shard_pick(),
        "g_cap": ctx.risk.global_cap,
        **ctx.risk.category_params(),  # category, c_cap (the market's category and its cap)
        "c_shard": exposure_shard_pick(),
        "wager": q.cost if buy else Decimal("0"),
    }
    if idempotency is not None:
        status_code, body = idempotency.render(result)
        params.update(i_scope=idempotency.scope, i_key=idempotency.key, i_hash=idempotency.request_hash, i_status=status_code, i_body=body)
    event = events_enabled()
    if event:
        params.update(_event_params(ctx, params, title))
    write = (_WRITES if event else _WRITES_NO_EVENT)[(position is not None, idempotency is not None)]
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
    if event:
        if commit.startswith("COMMIT"):
            events_kick()  # committed by this statement, outside Django's transaction management
        else:
            events_kick_on_commit()
    return result


def _event_params(ctx: TradeContext, params: dict, title: str) -> dict:
    """``trade.executed``, rendered from the values the statement writes (as the player API renders the trade)."""
    trade = SimpleNamespace(  # the fields the presenter reads (a model instance costs more to build)
        id=params["trade"],
        player_id=params["player"],
        operator_id=params["operator"],
        market_id=params["market"],
        market_title=title,
        side=params["side"],
        outcome=params["outcome"],
        shares=params["shares"],
        price_mid=params["mid"],
        price_executed=params["price"],
        spread_applied=params["half_spread"],
        cost=params["cost"],
        balance_before=params["before"],
        balance_after=params["after"],
        realized_pnl=params["pnl"],
        wallet_transaction_id=params["ledger"],
        created_at=params["now"],
    )
    data = trade_event(trade, player_id=ctx.player.external_id, wallet_mode=WalletMode.INTERNAL)
    return {
        "e_operator": params["operator"],
        "e_type": "trade.executed",
        "e_data": dumps(data),
        "e_request": (request_id_current() or "")[:64],
    }
