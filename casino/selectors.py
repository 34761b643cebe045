"""Reads for the API and other apps: positions, trades, market configuration."""

from datetime import datetime
from decimal import Decimal

from django.db.models import OuterRef, Q, Subquery, Sum

from casino.models import Market, MarketPricePoint, MarketStatus, Outcome, Position, PositionStatus, ReferencePrice, Side, Trade
from casino.services.exposure import Book
from casino.services.markets import casino_settings
from core.api.pagination import Page, PageParams, keyset_page

CATALOGUE_ORDER = ("title", "id")


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


def _with_yes_price(queryset):
    yes = ReferencePrice.objects.filter(market=OuterRef("pk"), outcome=Outcome.YES)
    return queryset.annotate(yes_mid=Subquery(yes.values("mid_price")[:1]), price_at=Subquery(yes.values("updated_at")[:1]))


def catalogue_page(*, category: str | None, query: str | None, params: PageParams) -> Page:
    """Listed open markets, by title, with their YES reference (keyset pages)."""
    markets = Market.objects.filter(listed=True, status=MarketStatus.OPEN)
    if category:
        markets = markets.filter(category=category)
    if query:
        for word in query.split()[:5]:
            markets = markets.filter(Q(title__icontains=word))
    return keyset_page(_with_yes_price(markets), ordering=CATALOGUE_ORDER, params=params, scope="catalog")


def catalogue_market(*, market_id: str) -> Market | None:
    return _with_yes_price(Market.objects.filter(pk=market_id)).first()


def price_points(*, market_id: str, since: datetime) -> list[MarketPricePoint]:
    return list(MarketPricePoint.objects.filter(market_id=market_id, at__gte=since).order_by("at"))


def market_book_from_records(*, market_id: str):
    """The market's exposure book as its records imply it: the shares of its open positions on each
    outcome, and the cash of all its trades (stakes in, sale proceeds out)."""
    zero = Decimal("0")
    shares = dict(
        Position.objects.filter(market_id=market_id, status=PositionStatus.OPEN)
        .values("outcome")
        .annotate(s=Sum("shares"))
        .values_list("outcome", "s")
    )
    cash = dict(Trade.objects.filter(market_id=market_id).values("side").annotate(c=Sum("cost")).values_list("side", "c"))
    return Book(shares.get("yes") or zero, shares.get("no") or zero, (cash.get(Side.BUY) or zero) - (cash.get(Side.SELL) or zero))
