"""Markets, their house-wide configuration, and the house reference prices."""

from dataclasses import dataclass
from decimal import Decimal

from django.db import connection, transaction
from django.utils import timezone

from casino.models import CasinoSettings, Market, Outcome, ReferencePrice, ReferencePriceTick
from core.errors import HouseError
from core.prepared import PreparedStatement

HUNDRED = Decimal("100")


def casino_settings() -> CasinoSettings:
    row = CasinoSettings.objects.filter(pk=1).first()
    if row is None:
        row, _ = CasinoSettings.objects.get_or_create(pk=1)
    return row


@dataclass(frozen=True)
class PriceSet:
    market: Market
    yes: Decimal
    no: Decimal


def reference_price_set(*, market_id: str, outcome: str, mid_price: Decimal, title: str = "", category: str = "") -> PriceSet:
    """Set the house mid for an outcome (and the complement for the other); creates the market if new."""
    if not (Decimal("0") < mid_price < HUNDRED):
        raise HouseError("Invalid midPrice", code="invalid_midprice")
    yes = mid_price if outcome == Outcome.YES else HUNDRED - mid_price
    now = timezone.now()
    with transaction.atomic():
        market, created = Market.objects.get_or_create(id=market_id, defaults={"title": title, "category": category})
        if not created and ((title and title != market.title) or (category and category != market.category)):
            market.title = title or market.title
            market.category = category or market.category
            market.save(update_fields=["title", "category", "updated_at"])
        for side, value in ((Outcome.YES, yes), (Outcome.NO, HUNDRED - yes)):
            ReferencePrice.objects.update_or_create(market=market, outcome=side, defaults={"mid_price": value, "updated_at": now})
        # The history the sharp-scoring task measures players' markout on.
        ReferencePriceTick.objects.bulk_create(
            [
                ReferencePriceTick(market=market, outcome=o, mid_price=v, at=now)
                for o, v in ((Outcome.YES, yes), (Outcome.NO, HUNDRED - yes))
            ]
        )
    return PriceSet(market=market, yes=yes, no=HUNDRED - yes)


_MARKET_PRICE_SQL = """
SELECT m.id, m.title, m.category, m.liquidity, m.status, m.outcome, m.disabled, m.custom_spread, m.created_at, m.updated_at,
       r.id, r.mid_price, r.updated_at
  FROM casino_markets m
  LEFT JOIN casino_reference_prices r ON r.market_id = m.id AND r.outcome = %(outcome)s
 WHERE m.id = %(market)s
"""
_MARKET_PRICE = PreparedStatement("market_with_price", _MARKET_PRICE_SQL, outcome="varchar", market="varchar")
_MARKET_FIELDS = ["id", "title", "category", "liquidity", "status", "outcome", "disabled", "custom_spread", "created_at", "updated_at"]


def market_with_price(*, market_id: str, outcome: str) -> tuple[Market | None, ReferencePrice | None]:
    """The market and the reference price of one outcome, in one narrow query (every trade runs it)."""
    if connection.vendor != "postgresql":
        ref = ReferencePrice.objects.select_related("market").filter(market_id=market_id, outcome=outcome).first()
        if ref is not None:
            return ref.market, ref
        return Market.objects.filter(pk=market_id).first(), None
    with connection.cursor() as cursor:
        cursor.execute(_MARKET_PRICE.text(), {"outcome": outcome, "market": market_id})
        row = cursor.fetchone()
    if row is None:
        return None, None
    market = Market.from_db("default", _MARKET_FIELDS, list(row[:10]))
    if row[10] is None:
        return market, None
    ref = ReferencePrice.from_db(
        "default", ["id", "market_id", "outcome", "mid_price", "updated_at"], [row[10], market.pk, outcome, row[11], row[12]]
    )
    ref.market = market
    return market, ref


_MARKET_LOCK_SQL = "SELECT status, disabled FROM casino_markets WHERE id = %s FOR SHARE"


def market_lock_for_trading(*, market_id: str) -> tuple[str, bool]:
    """(status, disabled) of the market, read under a shared lock held until the caller's
    transaction ends: settlement's status change (FOR UPDATE) waits for the trades in flight,
    and a trade that waited sees the new status. Shared locks do not block each other; SQLite
    serializes writers anyway and takes no lock here."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(_MARKET_LOCK_SQL, [market_id])
            status, disabled = cursor.fetchone()
        return status, disabled
    return Market.objects.filter(pk=market_id).values_list("status", "disabled").get()
