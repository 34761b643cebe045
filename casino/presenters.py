"""Domain objects to the reference document's wire shapes (field names, number formats)."""

from datetime import datetime, timedelta
from decimal import Decimal

from casino.services.markets import market_refusal
from casino.services.pricing import spread_effective
from core.api.rendering import iso
from core.money import HUNDRED, buy_price, money, plain, sell_price


def trade_result(result) -> dict:
    body = {
        "success": True,
        "tradeId": str(result.trade_id),
        "positionId": str(result.position_id),
        "executionPrice": plain(result.execution_price),
        "shares": plain(result.shares),
        "cost": money(result.cost),
        "newBalance": money(result.new_balance),
    }
    if result.realized_pnl is not None:
        body["realizedPnl"] = money(result.realized_pnl)
    if result.wallet_pending:  # S2S credit not yet acknowledged: newBalance is the expected balance
        body["walletPending"] = True
    return body


def quote(q) -> dict:
    return {
        "executionPrice": plain(q.execution_price),
        "shares": plain(q.shares),
        "cost": money(q.cost),
        "spreadPct": plain(q.spread),
        "payout": money(q.payout),
        "midPrice": plain(q.mid_price),
    }


def ledger_entry(e) -> dict:
    return {
        "id": str(e.id),
        "user_id": str(e.player_id),
        "amount": money(e.amount),
        "type": e.type,
        "description": e.description,
        "balance_after": money(e.balance_after),
        "trade_id": str(e.trade_id) if e.trade_id else None,
        "created_at": iso(e.created_at),
    }


def position(p) -> dict:
    return {
        "id": str(p.id),
        "user_id": str(p.player_id),
        "market_id": p.market_id,
        "market_title": p.market_title,
        "outcome": p.outcome,
        "shares": plain(p.shares),
        "avg_price": plain(p.avg_price),
        "status": p.status,
        "realized_pnl": money(p.realized_pnl),
        "operator_id": str(p.operator_id),
        "created_at": iso(p.created_at),
        "updated_at": iso(p.updated_at),
    }


def trade(t, *, wallet_mode: str | None = None) -> dict:
    """A trade record; ``wallet_mode`` when the caller knows it (a list of one operator's trades), else the trade's operator's."""
    wallet_mode = wallet_mode or t.operator.wallet_mode
    return {
        "id": str(t.id),
        "user_id": str(t.player_id),
        "market_id": t.market_id,
        "market_title": t.market_title,
        "side": t.side,
        "outcome": t.outcome,
        "shares": plain(t.shares),
        "price_mid": plain(t.price_mid),
        "price_executed": plain(t.price_executed),
        "spread_applied": plain(t.spread_applied),
        "cost": money(t.cost),
        "balance_before": money(t.balance_before),
        "balance_after": money(t.balance_after),
        "realized_pnl": money(t.realized_pnl),
        "operator_id": str(t.operator_id),
        "s2s_transaction_id": str(t.wallet_transaction_id) if t.wallet_transaction_id and wallet_mode == "s2s" else None,
        "created_at": iso(t.created_at),
    }


def trade_event(t, *, player_id: str, wallet_mode: str) -> dict:
    """``trade.executed`` (SPEC §14): the trade as the player API renders it, plus the operator's
    player id (``playerId``) and the house's (``userId``)."""
    return {**trade(t, wallet_mode=wallet_mode), "playerId": player_id, "userId": str(t.player_id)}


def catalog_market(m, *, casino, sharp_extra: Decimal, now: datetime) -> dict:
    """A listed market as the lobby shows it (SPEC §11). ``m`` carries ``yes_mid`` and
    ``price_at`` (casino.selectors.catalogue_page): ask/bid are the house's buy/sell execution
    prices at the caller's spread; ``reason`` is why it cannot trade now."""
    fresh = m.price_at is not None and now - m.price_at <= timedelta(seconds=casino.price_max_age_seconds)
    if m.yes_mid is None:
        reason = "no_reference_price"
    elif not fresh:
        reason = "reference_price_stale"
    else:
        reason = market_refusal(market=m, casino=casino, mid_price=m.yes_mid)
    spread = spread_effective(casino=casino, market=m, sharp_extra=sharp_extra)
    return {
        "marketId": m.pk,
        "title": m.title,
        "category": m.category,
        "yesLabel": m.yes_label,
        "noLabel": m.no_label,
        "endDate": iso(m.end_date) if m.end_date else None,
        "status": m.status,
        "tradeable": reason is None,
        "reason": reason,
        "yes": _sides(m.yes_mid, spread),
        "no": _sides(HUNDRED - m.yes_mid, spread) if m.yes_mid is not None else None,
        "spreadPct": plain(spread),
        "liquidity": plain(m.liquidity) if m.liquidity is not None else None,
        "priceUpdatedAt": iso(m.price_at) if m.price_at else None,
    }


def _sides(mid: Decimal | None, spread: Decimal) -> dict | None:
    if mid is None:
        return None
    return {"mid": plain(mid), "bid": plain(sell_price(mid, spread)), "ask": plain(buy_price(mid, spread))}
