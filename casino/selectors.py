"""Reads for the API and other apps: positions, trades, market configuration."""

from casino.models import Market, Position, Trade
from casino.services.markets import casino_settings


def positions_for_player(*, player, status: str) -> list[Position]:
    return list(Position.objects.filter(player_id=player.pk, status=status).order_by("-updated_at", "-id"))


def trades_for_player(*, player, limit: int, market_id: str | None = None) -> list[Trade]:
    qs = Trade.objects.select_related("operator").filter(player_id=player.pk)
    if market_id:
        qs = qs.filter(market_id=market_id)
    return list(qs.order_by("-created_at", "-id")[:limit])


def market_configuration() -> dict:
    casino = casino_settings()
    disabled = list(Market.objects.filter(disabled=True).order_by("id").values_list("id", flat=True))
    spreads = dict(Market.objects.filter(custom_spread__isnull=False).order_by("id").values_list("id", "custom_spread"))
    return {
        "blocked_categories": list(casino.blocked_categories),
        "disabled_market_ids": disabled,
        "criteria": {"min_liquidity": casino.min_liquidity, "min_price": casino.min_price, "max_price": casino.max_price},
        "custom_spreads": spreads,
        "default_spread": casino.default_spread,
    }
