"""Steps 7-12 when the operator holds the money (S2S seamless wallet): intent -> call -> outcome.

  7  _check_balance               the operator's balance (a call, no transaction); the shares for a sell
     _reserve_and_record_intent   one short transaction: the market still open, the adverse side of
                                  the trade reserved on the exposure book, the shares being sold
                                  taken off the position, the idempotency key claimed, the wallet
                                  intent (a WalletOperation) recorded; committed before the call
  8  _move_money                  the signed wallet call, with no transaction open
  9-12 _record_remote_trade       the trade, position, exposure and wagering in one transaction

What can go wrong, each a named path: a refused movement releases the reservations
(_trade_release); a debit whose outcome is unknown, or whose trade cannot be recorded, is
rolled back (_trade_compensate: a rollback row in the same transaction, then sent, then
retried with backoff); a credit is never rolled back: the sell stands and the credit is
retried under the same id. A process that dies in between leaves a pending intent that
recovery finishes or compensates (trade_recover, registered with wallets in casino/apps.py).
Reservations only ever count the side that is adverse to the house, so confirming or
releasing them can only lower the exposure and is never refused.
"""

import logging
import uuid
from decimal import Decimal

from django.conf import settings
from django.db import DatabaseError, IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from casino.models import MarketStatus, Player, Position, PositionStatus, Side, Trade, WalletMode
from casino.presenters import trade_event, trade_result
from casino.services.exposure import ExposureNeedsLock, exposure_reduce
from casino.services.markets import market_lock_for_trading
from casino.services.trade_executor.context import (
    MAX_OPTIMISTIC_RETRIES,
    TradeContext,
    TradeResult,
    describe,
    market_lock_open,
    position_after_trade,
    shares_held,
    too_many_races,
)
from core import errors, money
from core.api.rendering import dumps
from core.events import event_record
from core.idempotency import IdempotencySlot, idempotency_complete, idempotency_release
from core.metrics import WALLET_COMPENSATIONS
from core.money import CENT, ZERO
from wallets.adapters.s2s import player_error_for
from wallets.models import LedgerType, OperationKind, OperationStatus, WalletOperation
from wallets.services.debts import debt_recover
from wallets.services.operations import operation_create, operation_send, rollback_open

log = logging.getLogger("house.trade")


def steps_7_to_12(ctx: TradeContext, idempotency: IdempotencySlot | None) -> TradeResult:
    """Intent, call, outcome (module docstring)."""
    _check_balance(ctx)
    operation = _reserve_and_record_intent(ctx, idempotency)
    reply = _move_money(ctx, operation)
    if reply.ok or (reply.unknown and operation.kind == OperationKind.CREDIT):
        # A credit is never rolled back: the sell stands and the credit is retried until acknowledged.
        return _record_remote_trade(operation, idempotency=idempotency)
    if reply.refused:
        _trade_release(operation)
        raise player_error_for(reply.status, default=errors.HouseError("Operator wallet refused the trade", code="wallet_refused"))
    _trade_compensate(operation, reason=reply.status)
    raise errors.HouseError("Operator wallet did not answer; the trade was not executed", code="wallet_outcome_unknown", status=502)


def _check_balance(ctx: TradeContext) -> None:
    """Step 7 for S2S: the operator's balance (a network call, no transaction), and the shares for a sell."""
    ctx.balance = ctx.adapter.balance(player=ctx.player)
    if ctx.quote.side == Side.BUY:
        if ctx.balance < ctx.quote.cost:
            raise errors.insufficient_balance()
        return
    position = Position.objects.filter(player_id=ctx.player.pk, market_id=ctx.market.pk, outcome=ctx.request.outcome).first()
    if shares_held(position) < ctx.quote.shares:
        raise errors.insufficient_shares()


def _reserve_and_record_intent(ctx: TradeContext, idempotency) -> WalletOperation:
    """One short transaction: the market is open, the adverse side of the trade is reserved on
    the book, the shares being sold are taken off the position, the idempotency key is
    claimed, and the wallet intent is recorded. Committed before any wallet call."""
    q, req = ctx.quote, ctx.request
    for _attempt in range(MAX_OPTIMISTIC_RETRIES):
        ctx.trade_id = ctx.trade_id or uuid.uuid4()
        try:
            with transaction.atomic():
                market_lock_open(ctx)
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
                operation_id, payload = uuid.uuid4(), _trade_payload(ctx, idempotency)
                recovered = _recover_debt(ctx, operation_id) if ctx.owes_debt and q.side == Side.SELL else ZERO
                if recovered:
                    payload["debt_recovered"] = str(recovered)
                return operation_create(
                    id=operation_id,
                    player=ctx.player,
                    kind=OperationKind.DEBIT if q.side == Side.BUY else OperationKind.CREDIT,
                    type=LedgerType.TRADE_DEBIT if q.side == Side.BUY else LedgerType.TRADE_CREDIT,
                    amount=q.cost - recovered,  # a debt is taken out of the credit sent
                    round_id=str(ctx.trade_id),
                    description=describe(q, req.outcome),
                    payload=payload,
                )
        except ExposureNeedsLock:
            ctx.exposure_locked = True
        except errors.ConcurrentUpdate:
            continue
    raise too_many_races()


def _recover_debt(ctx: TradeContext, operation_id) -> Decimal:
    """A sale's proceeds pay the player's debt first; at least a cent is still sent, because the trade
    is confirmed by the operator's answer to its credit (the rest of the debt waits for the next credit)."""
    return debt_recover(
        player_id=ctx.player.pk, credit=ctx.quote.cost - CENT, reference_id=operation_id, description=f"Sale {ctx.trade_id}"
    )


def _reserve_shares(ctx: TradeContext) -> None:
    q, req = ctx.quote, ctx.request
    position = Position.objects.filter(player_id=ctx.player.pk, market_id=ctx.market.pk, outcome=req.outcome).first()
    if shares_held(position) < q.shares:
        raise errors.insufficient_shares()
    updated = Position.objects.filter(pk=position.pk, version=position.version).update(
        shares=position.shares - q.shares, version=F("version") + 1, updated_at=timezone.now()
    )
    if updated != 1:
        raise errors.ConcurrentUpdate()
    ctx.position = position


def _trade_payload(ctx: TradeContext, idempotency) -> dict:
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


def _move_money(ctx: TradeContext, operation: WalletOperation):
    """Step 8 for S2S: the wallet call, with no database transaction open."""
    return operation_send(operation=operation, target=ctx.adapter.target, session_token=ctx.session_token, first_call=True)


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
                if buy and market_lock_for_trading(market_id=p["market_id"])[0] != MarketStatus.OPEN:
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
        before = after + cost if buy else after - cost + Decimal(p.get("debt_recovered") or "0")
    else:
        after = before - cost if buy else before + cost
    position = Position.objects.filter(player_id=op.player_id, market_id=p["market_id"], outcome=p["outcome"]).first()
    realized = None
    if buy:
        position = _position_add(op, position, shares, price)
        _book_reduce(market_id=p["market_id"], outcome=p["outcome"], shares_delta=Decimal("0"), cash_delta=cost)
    else:
        realized = money.realized_pnl(shares, price, Decimal(p["avg_price"]))
        _position_finish_sell(position, realized)
        _book_reduce(market_id=p["market_id"], outcome=p["outcome"], shares_delta=-shares, cash_delta=Decimal("0"))
    trade = Trade.objects.create(
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
    # The outbox (SPEC §14): in the transaction that records the trade (also when recovery records it).
    event_record(
        operator_id=op.operator_id,
        type="trade.executed",
        data=trade_event(trade, player_id=op.player.external_id, wallet_mode=WalletMode.S2S),
    )
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
    after = position_after_trade(position, side=Side.BUY, shares=shares, price=price)
    updated = Position.objects.filter(pk=position.pk, version=position.version).update(
        shares=after.shares,
        avg_price=after.avg_price,
        status=after.status,
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


def _complete_idempotency(payload: dict, idempotency, result: TradeResult) -> None:
    if idempotency is not None:
        idempotency.record(result)
    elif payload.get("idempotency_id"):  # finished by recovery: complete the client's claim for its retry
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


# The book of a settled market was cleared by its settlement (exposure_clear_market): a reservation made
# before it is no longer in it, so what finishes that reservation later (recording or releasing it) leaves
# the book alone. Found by the soak: a buy killed during its wallet call and compensated after its market
# settled left the settled market's book at minus its shares. The market row is read FOR SHARE, so a
# settlement's status change (with its clear, in one transaction) either waits for this change or is
# seen by it. A reversed settlement's book (market CLOSED) is rebuilt with the reservations of the trades
# still in flight (settlement.services.reversal._book_to_restore), so finishing them there moves the book as usual.
_BOOK_REBUILT = (MarketStatus.RESOLVED, MarketStatus.VOIDED)


def _book_reduce(*, market_id: str, outcome: str, shares_delta: Decimal, cash_delta: Decimal) -> None:
    if market_lock_for_trading(market_id=market_id)[0] in _BOOK_REBUILT:
        return
    exposure_reduce(market_id=market_id, outcome=outcome, shares_delta=shares_delta, cash_delta=cash_delta)


def _release_reservations(op: WalletOperation) -> None:
    p = op.payload
    shares, cost = Decimal(p["shares"]), Decimal(p["cost"])
    if p["side"] == Side.BUY:
        _book_reduce(market_id=p["market_id"], outcome=p["outcome"], shares_delta=-shares, cash_delta=Decimal("0"))
    else:
        _book_reduce(market_id=p["market_id"], outcome=p["outcome"], shares_delta=Decimal("0"), cash_delta=cost)
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
