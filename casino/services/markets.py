"""Markets, their house-wide configuration, and the house reference prices."""

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

from django.db import connection, transaction
from django.utils import timezone

from casino.models import CasinoSettings, Market, MarketStatus, Outcome, ReferencePrice
from casino.services.exposure import Book, exposure_book, exposure_categories_follow
from casino.services.market_state import ReferenceWrite, reference_prices_write
from casino.services.pricing import liquidity_known
from core import errors
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
            exposure_categories_follow(categories={market.pk: market.category})  # issue 14: its book follows
        # Prices, the tick the sharp-scoring task measures markout on, the catalogue's chart point.
        reference_prices_write(writes=[ReferenceWrite(market.pk, yes, tick=True)], at=now)
    return PriceSet(market=market, yes=yes, no=HUNDRED - yes)


_MARKET_PRICE_SQL = """
SELECT m.id, m.title, m.category, m.liquidity, m.status, m.outcome, m.disabled, m.custom_spread,
       m.end_date, m.listed, m.suspended_reason, m.suspended_until, m.created_at, m.updated_at,
       r.id, r.mid_price, r.updated_at, b.yes_shares, b.no_shares, b.cash_in
  FROM casino_markets m
  LEFT JOIN casino_reference_prices r ON r.market_id = m.id AND r.outcome = %(outcome)s
  CROSS JOIN LATERAL (SELECT coalesce(sum(e.yes_shares), 0) AS yes_shares, coalesce(sum(e.no_shares), 0) AS no_shares,
                             coalesce(sum(e.cash_in), 0) AS cash_in
                        FROM casino_exposure e WHERE e.market_id = m.id) b
 WHERE m.id = %(market)s
"""
_MARKET_PRICE = PreparedStatement("market_with_price", _MARKET_PRICE_SQL, outcome="varchar", market="varchar")
# In the model's field order: Model.from_db places values by the model's order, not by these names.
_MARKET_FIELDS = [
    "id", "title", "category", "liquidity", "status", "outcome", "disabled", "custom_spread",
    "end_date", "listed", "suspended_reason", "suspended_until", "created_at", "updated_at",
]  # fmt: skip


def market_with_price(*, market_id: str, outcome: str) -> tuple[Market | None, ReferencePrice | None]:
    """The market and the reference price of one outcome, in one narrow query (every trade runs it)."""
    market, ref, _book = market_price_book(market_id=market_id, outcome=outcome)
    return market, ref


def market_price_book(*, market_id: str, outcome: str) -> tuple[Market | None, ReferencePrice | None, Book | None]:
    """The market, the reference price of one outcome and the market's exposure book (the sum of its
    shards, for the exposure skew of SPEC §16), in the one narrow query every trade runs. The
    book is a snapshot read outside the trade's transaction: it tilts the price, the caps are
    still checked exactly in the transaction. A trade request has it read already, in the round
    trip of its session look-up (market_prefetch): it is taken from there, once."""
    fetched = _prefetched.get()
    if fetched is not None and fetched[0] == (market_id, outcome):
        _prefetched.set(None)
        return fetched[1]
    if connection.vendor != "postgresql":
        ref = ReferencePrice.objects.select_related("market").filter(market_id=market_id, outcome=outcome).first()
        market = ref.market if ref is not None else Market.objects.filter(pk=market_id).first()
        return market, ref, exposure_book(market_id=market_id) if market is not None else None
    with connection.cursor() as cursor:
        cursor.execute(_MARKET_PRICE.text(), {"outcome": outcome, "market": market_id})
        return _market_price_row(cursor.fetchone(), outcome)


def _market_price_row(row, outcome: str) -> tuple[Market | None, ReferencePrice | None, Book | None]:
    if row is None:
        return None, None, None
    width = len(_MARKET_FIELDS)
    market = Market.from_db("default", _MARKET_FIELDS, list(row[:width]))
    book = Book(*row[width + 3 : width + 6])
    if row[width] is None:
        return market, None, book
    ref = ReferencePrice.from_db(
        "default", ["id", "market_id", "outcome", "mid_price", "updated_at"], [row[width], market.pk, outcome, *row[width + 1 : width + 3]]
    )
    ref.market = market
    return market, ref, book


# -- a trade request's market read, in the round trip of its session look-up ----------------------
# The trade view names the market (market_prefetch) before DRF authenticates; the session look-up
# (casino.services.credentials) sends market_prefetch_statement() after its own and hands the row to
# market_prefetch_store(); step 1 of the executor takes it through market_price_book(). One round trip
# less per trade, the same read: both statements run microseconds before step 1 would have read.
_wanted: ContextVar[tuple[str, str] | None] = ContextVar("house_market_wanted", default=None)
_prefetched: ContextVar[tuple[tuple[str, str], tuple] | None] = ContextVar("house_market_prefetched", default=None)


@contextmanager
def market_prefetch(*, market_id: str, outcome: str) -> Iterator[None]:
    """For the request in progress (a thread or task of its own): read this market's price book with
    the session look-up; forgotten when the block ends."""
    wanted, fetched = _wanted.set((market_id, outcome)), _prefetched.set(None)
    try:
        yield
    finally:
        _wanted.reset(wanted)
        _prefetched.reset(fetched)


def market_prefetch_statement() -> tuple[str, dict] | None:
    """(SQL, parameters) to send in the same round trip as the session look-up, or None: no market
    wanted, or not on PostgreSQL (one statement per round trip there anyway)."""
    wanted = _wanted.get()
    if wanted is None or connection.vendor != "postgresql":
        return None
    return _MARKET_PRICE.text(), {"market": wanted[0], "outcome": wanted[1]}


def market_prefetch_store(row) -> None:
    """The row market_prefetch_statement() read, for market_price_book() to take."""
    wanted = _wanted.get()
    _wanted.set(None)
    _prefetched.set((wanted, _market_price_row(row, wanted[1])))


_MARKET_LOCK_SQL = "SELECT status, disabled, suspended_reason FROM casino_markets WHERE id = %s FOR SHARE"


def market_lock_for_trading(*, market_id: str) -> tuple[str, bool, str]:
    """(status, disabled, suspended_reason) of the market, read under a shared lock held until the caller's
    transaction ends: settlement's status change (FOR UPDATE) waits for the trades in flight,
    and a trade that waited sees the new status. Shared locks do not block each other; SQLite
    serializes writers anyway and takes no lock here."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(_MARKET_LOCK_SQL, [market_id])
            status, disabled, suspended = cursor.fetchone()
        return status, disabled, suspended
    return Market.objects.filter(pk=market_id).values_list("status", "disabled", "suspended_reason").get()


def reference_mid(market: Market | None, ref: ReferencePrice | None) -> Decimal:
    """The house reference mid to price at when the client sends none: refused like a trade
    when the market is unknown, or its reference is missing or stale."""
    if market is None:
        raise errors.market_not_tradeable("unknown_market")
    if ref is None:
        raise errors.price_moved("no_reference_price")
    if timezone.now() - ref.updated_at > timedelta(seconds=casino_settings().price_max_age_seconds):
        raise errors.price_moved("reference_price_stale")
    return ref.mid_price


# Refusals whose code is the reason itself (SPEC §11 the feed's, §12 a reversed settlement).
FEED_REFUSALS = frozenset({"market_closed_at_source", "source_spread_too_wide", "price_jump", "market_reversed"})


def market_refusal(
    *, market: Market, casino: CasinoSettings, mid_price: Decimal, side: str = "buy", category: str = "", liquidity: Decimal | None = None
) -> str | None:
    """Why ``market`` cannot trade now at ``mid_price``, or None: step 2 of the trade, and the
    catalogue's ``tradeable``/``reason``. ``category`` and ``liquidity`` are the client's, used
    only where the house has no value of its own."""
    if market.status == MarketStatus.CLOSED:
        return "market_reversed"
    if market.status != MarketStatus.OPEN:
        return f"market_{market.status}"
    if market.disabled:
        return "market_disabled"
    if market.suspended_reason:
        return market.suspended_reason
    if market.end_date is not None and market.end_date <= timezone.now():
        return "market_closed_at_source"
    if not market.listed and side == "buy":
        return "market_not_listed"
    blocked = {c.lower() for c in casino.blocked_categories}
    if blocked & {c.lower() for c in (market.category, category) if c}:
        return "category_blocked"
    known = liquidity_known(market, liquidity)
    if known < casino.min_liquidity:
        return "liquidity_below_minimum"
    if not (casino.min_price <= mid_price <= casino.max_price):
        return "price_outside_criteria"
    return None


def market_refusal_error(code: str) -> HouseError:
    return errors.market_suspended(code) if code in FEED_REFUSALS else errors.market_not_tradeable(code)
