"""Steps 7-12 when the house holds the player's money: one database transaction, step by step
with the ORM. The trade happens completely or not at all, and no network call is made inside.

This is the reference for the rules, the path on SQLite, and the retry on PostgreSQL when the
market's exposure shards must be locked (house_wallet_sql.py is the fast path there). Locks
are taken in the order market (shared), player wallet, position, exposure shard; exposure is
the last write so the hottest rows are held for the shortest time.
"""

import logging
import uuid
from decimal import Decimal

from django.db import DatabaseError, transaction
from django.db.models import F
from django.utils import timezone

from casino.models import Player, Position, PositionStatus, Side, Trade, WalletMode
from casino.presenters import trade_event
from casino.services.trade_executor.context import (
    TradeContext,
    TradeResult,
    describe,
    market_lock_open,
    position_after_trade,
    shares_held,
)
from core import errors
from core.events import event_record
from core.idempotency import IdempotencySlot
from wallets.models import LedgerType
from wallets.services.balances import wallet_change
from wallets.services.debts import debt_recover, recovery_entry_id

log = logging.getLogger("house.trade")


def steps_7_to_12(ctx: TradeContext, idempotency: IdempotencySlot | None) -> TradeResult:
    with transaction.atomic():
        market_lock_open(ctx)
        _check_balance(ctx)
        _move_money(ctx)
        trade = _record_trade(ctx)
        _upsert_position(ctx)
        _update_exposure(ctx)
        _update_wagering_stats(ctx)
        _record_event(ctx, trade)
        result = _result(ctx)
        if idempotency is not None:
            idempotency.record(result)
    return result


def _check_balance(ctx: TradeContext) -> None:
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
    elif shares_held(ctx.position) < ctx.quote.shares:
        raise errors.insufficient_shares()


def _move_money(ctx: TradeContext) -> None:
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
        description=describe(q, ctx.request.outcome),
        trade_id=ctx.trade_id,
        locked_balance=ctx.balance,
    )
    if ctx.owes_debt and not buy:  # the sale's proceeds pay the player's debt first (wallet row locked, then the debt's)
        _recover_debt(ctx)


def _recover_debt(ctx: TradeContext) -> None:
    credit_id = ctx.move.transaction_id
    recovered = debt_recover(player_id=ctx.player.pk, credit=ctx.quote.cost, reference_id=credit_id, description=f"Sale {ctx.trade_id}")
    if recovered > 0:
        wallet_change(
            player=ctx.player,
            amount=-recovered,
            type=LedgerType.DEBT_RECOVERY,
            description=f"Debt recovered from trade_credit {credit_id}",
            entry_id=recovery_entry_id(credit_id),
            round_id=str(ctx.trade_id),
            reference_id=credit_id,
            locked_balance=ctx.move.balance_after,
            actor="system",
        )
        ctx.debt_recovered = recovered


def _record_trade(ctx: TradeContext) -> Trade:
    """Step 9."""
    q, req = ctx.quote, ctx.request
    after = position_after_trade(ctx.position, side=q.side, shares=q.shares, price=q.execution_price)
    ctx.realized_pnl = after.realized
    return Trade.objects.create(
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


def _upsert_position(ctx: TradeContext) -> None:
    """Step 10. Optimistic: write only if the version read in step 7 is still current."""
    q, req, pos = ctx.quote, ctx.request, ctx.position
    after = position_after_trade(pos, side=q.side, shares=q.shares, price=q.execution_price)
    if pos is None:  # only a buy gets here without a position (step 7 refuses a sell)
        ctx.position = Position.objects.create(
            player_id=ctx.player.pk,
            operator_id=ctx.player.operator_id,
            market_id=ctx.market.pk,
            market_title=(req.market_title or ctx.market.title)[:500],
            outcome=req.outcome,
            shares=after.shares,
            avg_price=after.avg_price,
            status=PositionStatus.OPEN,
        )
        return
    fields = {"shares": after.shares, "avg_price": after.avg_price, "status": after.status, "realized_pnl": after.realized_pnl}
    if req.market_title and not pos.market_title:
        fields["market_title"] = req.market_title[:500]
    updated = Position.objects.filter(pk=pos.pk, version=pos.version).update(**fields, version=F("version") + 1, updated_at=timezone.now())
    if updated != 1:
        raise errors.ConcurrentUpdate()


def _update_exposure(ctx: TradeContext) -> None:
    """Step 11. Buy: the house owes the shares and holds the stake. Sell: the reverse."""
    q = ctx.quote
    sign = Decimal("1") if q.side == Side.BUY else Decimal("-1")
    ctx.risk.reserve_exposure(
        outcome=ctx.request.outcome, shares_delta=sign * q.shares, cash_delta=sign * q.cost, locked=ctx.exposure_locked
    )


def _update_wagering_stats(ctx: TradeContext) -> None:
    """Step 12. Inside the trade's transaction (no second commit per trade), under a savepoint
    so that a failure here is logged and rolled back alone: the trade stands."""
    if ctx.quote.side != Side.BUY:
        return
    try:
        with transaction.atomic():
            Player.objects.filter(pk=ctx.player.pk).update(total_wagered=F("total_wagered") + ctx.quote.cost)
    except DatabaseError:
        log.warning("could not update wagering stats for player %s", ctx.player.pk, exc_info=True)


def _record_event(ctx: TradeContext, trade: Trade) -> None:
    """``trade.executed`` for the operator, in the trade's transaction (the outbox, SPEC §14)."""
    event_record(
        operator_id=ctx.player.operator_id,
        type="trade.executed",
        data=trade_event(trade, player_id=ctx.player.external_id, wallet_mode=WalletMode.INTERNAL),
    )


def _result(ctx: TradeContext) -> TradeResult:
    q = ctx.quote
    return TradeResult(
        trade_id=ctx.trade_id,
        position_id=ctx.position.pk,
        side=q.side,
        execution_price=q.execution_price,
        shares=q.shares,
        cost=q.cost,
        new_balance=ctx.move.balance_after - ctx.debt_recovered,
        realized_pnl=ctx.realized_pnl,
    )
