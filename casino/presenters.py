"""Domain objects to the reference document's wire shapes (field names, number formats)."""

from datetime import datetime, timedelta
from decimal import Decimal

from casino.services.markets import market_refusal
from casino.services.pricing import ZERO, side_prices, skew_for, spread_full
from core.api.rendering import iso
from core.money import HUNDRED, money, plain


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
        "spreadPct": plain(q.spread_applied),
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


def catalog_market(
    m, *, casino, sharp_extra: Decimal, now: datetime, rules=None, tier_extra: Decimal = ZERO, book=None, cap: Decimal | None = None
) -> dict:
    """A listed market as the lobby shows it (SPEC §11). ``m`` carries ``yes_mid`` and
    ``price_at`` (casino.selectors.catalogue_page): ask/bid are the house's buy/sell execution
    prices at the caller's spread (SPEC §16: the dynamic spread, and the exposure skew on the ask
    of the adverse outcome, from ``book`` and ``cap``); ``reason`` is why it cannot trade now.
    ``spreadPct``: the widest spread a buy pays here (twice the ask's distance from mid)."""
    fresh = m.price_at is not None and now - m.price_at <= timedelta(seconds=casino.price_max_age_seconds)
    if m.yes_mid is None:
        reason = "no_reference_price"
    elif not fresh:
        reason = "reference_price_stale"
    else:
        reason = market_refusal(market=m, casino=casino, mid_price=m.yes_mid)
    spread = spread_full(casino=casino, rules=rules, market=m, mid_price=m.yes_mid, tier_extra=tier_extra, sharp_extra=sharp_extra)
    sides = {}
    if m.yes_mid is not None:
        for outcome, mid in (("yes", m.yes_mid), ("no", HUNDRED - m.yes_mid)):
            skew = skew_for(rules=rules, book=book, cap=cap, side="buy", outcome=outcome)
            sides[outcome] = side_prices(mid_price=mid, spread=spread, skew=skew)
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
        "yes": _sides(sides.get("yes")),
        "no": _sides(sides.get("no")),
        "spreadPct": plain(max(p.buy_spread for p in sides.values())) if sides else plain(spread),
        "liquidity": plain(m.liquidity) if m.liquidity is not None else None,
        "priceUpdatedAt": iso(m.price_at) if m.price_at else None,
    }


def _sides(prices) -> dict | None:
    if prices is None:
        return None
    return {"mid": plain(prices.mid), "bid": plain(prices.bid), "ask": plain(prices.ask)}
