"""Reads for the API and other apps: positions, trades, market configuration."""

from datetime import datetime
from decimal import Decimal

from django.db.models import DecimalField, F, OuterRef, Q, Subquery, Sum

from casino.models import Market, MarketPricePoint, MarketStatus, Outcome, Player, Position, PositionStatus, ReferencePrice, Side, Trade
from casino.services.exposure import Book
from casino.services.markets import casino_settings
from core.api.pagination import Page, PageParams, keyset_page
from core.db import filter_given, reads
from core.db_rows import uuids_as_text
from core.money import HUNDRED, cents_down

CATALOGUE_ORDER = ("title", "id")


def positions_for_player(*, player, status: str) -> list[Position]:
    return list(Position.objects.filter(player_id=player.pk, status=status).order_by("-updated_at", "-id"))


def trades_for_player(*, player, limit: int, market_id: str | None = None) -> list[Trade]:
    qs = Trade.objects.select_related("operator").filter(player_id=player.pk)
    if market_id:
        qs = qs.filter(market_id=market_id)
    return list(qs.order_by("-created_at", "-id")[:limit])


# The operator's lists (SPEC §13): newest first, keyset pages. Every query starts from the calling
# operator's id; its indexes (operator, -created_at, -id) hand a page over without sorting the operator.
# Rows are named tuples with the model's field names and ``player_external_id`` (the operator's own
# player id, joined in the same query): a page of 1,000 builds no model instance. Their uuids are
# text (core.db_rows) on PostgreSQL, UUIDs elsewhere: the presenters print either.
NEWEST_FIRST = ("-created_at", "-id")


def _rows(queryset):
    fields = [f.attname for f in queryset.model._meta.concrete_fields]
    return queryset.annotate(player_external_id=F("player__external_id")).values_list(*fields, "player_external_id", named=True)


def operator_player_pk(*, operator, external_id: str):
    """The house id of the operator's own player ``external_id``; None for an unknown one (or another operator's)."""
    return Player.objects.using(reads()).filter(operator_id=operator.pk, external_id=external_id).values_list("pk", flat=True).first()


def operator_trades_page(*, operator, params: PageParams, player_pk=None, market_id: str | None = None, since=None, until=None) -> Page:
    """The operator's trades, newest first; ``since`` inclusive, ``until`` exclusive."""
    trades = filter_given(
        Trade.objects.using(reads()).filter(operator_id=operator.pk),
        player_id=player_pk,
        market_id=market_id,
        created_at__gte=since,
        created_at__lt=until,
    )
    with uuids_as_text(using=trades.db):
        return keyset_page(_rows(trades), ordering=NEWEST_FIRST, params=params, scope="operator.trades")


def operator_positions_page(
    *, operator, params: PageParams, player_pk=None, market_id: str | None = None, status: str | None = None
) -> Page:
    """The operator's positions, newest first (by when they were opened: a position's place in the list never moves)."""
    positions = filter_given(
        Position.objects.using(reads()).filter(operator_id=operator.pk), player_id=player_pk, market_id=market_id, status=status
    )
    with uuids_as_text(using=positions.db):
        return keyset_page(_rows(positions), ordering=NEWEST_FIRST, params=params, scope="operator.positions")


def operator_exposure(*, operator) -> list[dict]:
    """Per market where the operator's players hold open positions: the shares on each outcome and the cash
    they paid for them (cost basis, shares x average price), in one grouped query, the largest worst case first."""
    rows = (
        Position.objects.using(reads())
        .filter(operator_id=operator.pk, status=PositionStatus.OPEN, shares__gt=0)
        .values("market_id", "market__title")
        .annotate(
            yes=Sum("shares", filter=Q(outcome=Outcome.YES)),
            no=Sum("shares", filter=Q(outcome=Outcome.NO)),
            paid=Sum(F("shares") * F("avg_price"), output_field=DecimalField(max_digits=40, decimal_places=10)),
        )
        .order_by()
    )
    zero = Decimal("0")
    book = []
    for row in rows:
        yes, no = row["yes"] or zero, row["no"] or zero
        cash = cents_down((row["paid"] or zero) / HUNDRED)
        book.append(
            {"market_id": row["market_id"], "title": row["market__title"], "yes": yes, "no": no, "cash": cash, "worst": max(yes, no) - cash}
        )
    book.sort(key=lambda r: (-r["worst"], r["market_id"]))
    return book


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
