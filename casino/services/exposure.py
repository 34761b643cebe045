"""The house's book per market, sharded so one hot market does not serialize every trade.

A market's book is ``HOUSE_EXPOSURE_SHARDS`` rows. Each trade adds its deltas (shares owed
on its outcome, cash collected) to one shard picked at random. Worst-case loss of the
market is ``max(sum yes, sum no) - sum cash``, and because max is sub-additive,
``sum over shards of (max(yes_i, no_i) - cash_i)`` is an upper bound of it.

Cap invariant: each shard holds a ``quota`` and the quotas add up to at most the cap.

* Fast path (one conditional UPDATE, no read): apply the deltas to a shard only if that
  shard's own worst case stays within its quota (or does not grow). Then
  true worst <= sum(worst_i) <= sum(quota_i) <= cap, with no cross-shard lock.
* Locked path (the shard is out of quota, the cap changed, or the rows are missing): lock
  every shard of the market in shard order, compute the exact total, refuse if the trade
  would take the house past the cap (unless it reduces the worst case), otherwise
  consolidate the book into shard 0 and cut fresh quotas from the remaining headroom.

The global cap (all markets) works the same way one level up: GlobalExposure shards hold
``bound`` = the sum over every market shard of its worst case (an upper bound of the
house's total worst case), with quotas cut from the global cap. Every change to a market
shard adds its exact change of worst case to one global shard in the same transaction.

Category caps (SPEC §16) sit between the two: CategoryExposure shards hold ``bound`` = the
sum over the market shards counted under the category of their worst case, with quotas cut
from the category's cap, kept exactly like the global bound (fast path: one conditional
UPDATE of one category shard; locked path: every shard of the category, exact total, fresh
quotas). Each market shard records the category its book is counted under (``category``,
the same on all shards of a market); when the feed, a price set or staff change a market's
category, exposure_categories_follow moves its whole bound from the old category's shards to
the new one's in the same transaction, and as a safety net the fast path only takes a trade
whose market is still in the category its book is counted under, so a category written any
other way is moved by the next trade's locked pass. Settlement, void and reversal release
and restore the bound of the category the book is recorded under. A sell is never refused by the category cap (it may
only be sent through the locked path), so near the cap a category's bound can stay above it
until books shrink; buys that grow it are refused meanwhile.

Near a cap every trade takes the locked path and trades serialize, which is exactly when
they must.

Deadlock freedom: a transaction locks market shards (of one market), then category shards,
then global shards, each set in shard order; when a market moves between two categories the
two categories' shards are locked in the order of their keys. The fast path's UPDATEs go in
the same order (market shard, category shard, global shard). A fast-path UPDATE that waited
for a locked row and then failed its re-check still holds that row (PostgreSQL locks the
newest row version before it re-evaluates the WHERE clause). So a failed fast path never goes
on to lock other shards in the same transaction: it raises ExposureNeedsLock, the caller rolls
the whole unit of work back (dropping every lock) and retries with ``locked=True``, which
takes the shards in order while holding none. The unconditional reductions (exposure_reduce)
keep the same order. exposure_categories_follow moves several markets in one transaction
(category shards of one held while the next market's shards are locked), which is safe because
its callers have just written those markets' rows: every other transaction that locks a
market's shards holds its market row first (the trade shared, settlement for update), so
none can hold the next market's shards meanwhile.
"""

import random
from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal

from django.conf import settings
from django.db import connection
from django.db.models import F

from casino.models import CategoryExposure, GlobalExposure, MarketExposure
from core.errors import ConcurrentUpdate, HouseError, exposure_cap_reached

ZERO = Decimal("0")
CENT = Decimal("0.01")
# A category cap nobody set (a caller that passes none): the largest money amount the column holds.
CATEGORY_UNCAPPED = Decimal("999999999999.99")


class ExposureNeedsLock(ConcurrentUpdate):
    """The fast path could not take the trade; retry the transaction with locked=True."""


def global_cap_reached() -> HouseError:
    return HouseError("Trade rejected by risk engine", code="risk.exposure.global_cap", extra={"wall": "exposure", "limit": "global_cap"})


def category_cap_reached(*, category: str, bound: Decimal, cap: Decimal) -> HouseError:
    refusal = HouseError(
        "Trade rejected by risk engine", code="risk.exposure.category_cap", extra={"wall": "exposure", "limit": "category_cap"}
    )
    refusal.values = {"category": category, "bound": bound, "limit": cap}  # recorded with the RiskDecision
    return refusal


def category_key(category: str | None) -> str:
    """The key a market's category is counted and capped under: trimmed, lowercased, at most 64."""
    return (category or "").strip().lower()[:64]


@dataclass(frozen=True)
class Book:
    yes_shares: Decimal
    no_shares: Decimal
    cash_in: Decimal

    @property
    def worst_case_loss(self) -> Decimal:
        return max(self.yes_shares, self.no_shares) - self.cash_in

    @property
    def net_exposure(self) -> Decimal:
        return self.yes_shares - self.no_shares


def _shard_count() -> int:
    return max(1, settings.HOUSE_EXPOSURE_SHARDS)


def exposure_shard_pick() -> int:
    """A shard for the next change: at random, so concurrent trades spread over the rows."""
    return random.randrange(_shard_count())


def _worst(shard) -> Decimal:
    return max(shard.yes_shares, shard.no_shares) - shard.cash_in


def exposure_apply(
    *,
    market_id: str,
    outcome: str,
    shares_delta: Decimal,
    cash_delta: Decimal,
    cap: Decimal,
    global_cap: Decimal | None = None,
    locked: bool = False,
    category: str = "",
    category_cap: Decimal | None = None,
    category_refuses: bool = True,
    refuse: bool = True,
) -> None:
    """Add a trade to the market's book (and the category and global bounds) inside the caller's transaction, or refuse it.

    ``shares_delta``: shares the house owes on ``outcome`` (+ buy, - sell);
    ``cash_delta``: money the house received (+ stake, - proceeds).
    ``category``: the market's category now (its book moves there if it was counted elsewhere);
    ``category_cap``: that category's cap (None: no cap); ``category_refuses=False`` (sells):
    the category cap never refuses.
    Raises HouseError "Market exposure cap reached" / the category- or global-cap refusal, or
    ExposureNeedsLock when the caller must roll back and retry with ``locked=True``.
    ``refuse=False`` (a sell, SPEC §16: never refused by a cap): the exact path takes the trade even past a
    cap; the book then refuses the buys that would grow the worst case until it is back under.
    """
    dy, dn = (shares_delta, ZERO) if outcome == "yes" else (ZERO, shares_delta)
    key, c_cap = category_key(category), (CATEGORY_UNCAPPED if category_cap is None else category_cap)
    if connection.vendor != "postgresql" or locked:
        # SQLite serializes writers anyway; there the exact locked path is all there is.
        growth, was, bound_before = _market_locked(market_id, dy, dn, cash_delta, cap, key, refuse=refuse)
        _category_locked(key, growth, c_cap, refuses=category_refuses, moved_from=was, moved_bound=bound_before)
        if global_cap is not None:
            _global_locked(growth, global_cap, refuse=refuse)
        return
    growth = _market_fast(market_id, dy, dn, cash_delta, cap, key)
    if growth is None:
        raise ExposureNeedsLock()
    if not _category_fast(key, growth, c_cap):
        raise ExposureNeedsLock()
    if global_cap is not None and not _global_fast(growth, global_cap):
        raise ExposureNeedsLock()


# One market shard takes the trade's deltas, answering with the change of its worst case. The
# trade's two-round-trip write (casino/services/trade_executor/house_wallet_sql.py) sends the
# same statements as CTEs; this module is their one definition.
MARKET_SHARD_UPDATE_SQL = """
UPDATE casino_exposure
   SET yes_shares = yes_shares + %(dy)s, no_shares = no_shares + %(dn)s, cash_in = cash_in + %(dc)s
 WHERE market_id = %(market)s AND shard = %(shard)s AND {condition}
RETURNING GREATEST(yes_shares, no_shares) - cash_in
        - (GREATEST(yes_shares - %(dy)s, no_shares - %(dn)s) - (cash_in - %(dc)s)) AS growth
"""
WITHIN_QUOTA = """cap = %(cap)s AND category = %(category)s AND (
       GREATEST(yes_shares + %(dy)s, no_shares + %(dn)s) - (cash_in + %(dc)s) <= quota
    OR GREATEST(yes_shares + %(dy)s, no_shares + %(dn)s) - (cash_in + %(dc)s) <= GREATEST(yes_shares, no_shares) - cash_in)"""
# One category shard takes the market shard's change of worst case if it fits its quota (or lowers it).
CATEGORY_SHARD_UPDATE_SQL = """UPDATE casino_category_exposure SET bound = bound + {growth}
 WHERE category = {category} AND shard = {shard} AND cap = {cap} AND (bound + {growth} <= quota OR {growth} <= 0)"""
# One global shard takes a change of the bound that fits its quota (or lowers it).
GLOBAL_SHARD_UPDATE_SQL = """UPDATE casino_global_exposure SET bound = bound + {growth}
 WHERE shard = {shard} AND cap = {cap} AND (bound + {growth} <= quota OR {growth} <= 0)"""


def _market_fast(market_id: str, dy: Decimal, dn: Decimal, dc: Decimal, cap: Decimal, category: str) -> Decimal | None:
    """The shard's change of worst case, or None if the trade does not fit the shard's quota
    (or the book is counted under another category than the market's)."""
    params = {"dy": dy, "dn": dn, "dc": dc, "market": market_id, "shard": exposure_shard_pick(), "cap": cap, "category": category}
    with connection.cursor() as cursor:
        cursor.execute(MARKET_SHARD_UPDATE_SQL.format(condition=WITHIN_QUOTA), params)
        row = cursor.fetchone()
    return row[0] if row else None


def _category_fast(category: str, growth: Decimal, cap: Decimal) -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            CATEGORY_SHARD_UPDATE_SQL.format(growth="%(g)s", category="%(category)s", shard="%(shard)s", cap="%(cap)s"),
            {"g": growth, "category": category, "shard": exposure_shard_pick(), "cap": cap},
        )
        return cursor.rowcount == 1


def _global_fast(growth: Decimal, global_cap: Decimal) -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            GLOBAL_SHARD_UPDATE_SQL.format(growth="%(g)s", shard="%(shard)s", cap="%(cap)s"),
            {"g": growth, "shard": exposure_shard_pick(), "cap": global_cap},
        )
        return cursor.rowcount == 1


def _market_locked(
    market_id: str, dy: Decimal, dn: Decimal, dc: Decimal, cap: Decimal, category: str, *, refuse: bool = True
) -> tuple[Decimal, str, Decimal]:
    """Exact check and quota rebalance, the book now counted under ``category``. Returns the change
    of sum(worst_i) for the category and global bounds, the category the book was counted under
    and its sum(worst_i) before (what moves if the category changed)."""
    shards = _market_shards_locked(market_id)
    was = shards[0].category
    bound_before = sum((_worst(s) for s in shards), ZERO)
    before = _total(shards)
    after = Book(before.yes_shares + dy, before.no_shares + dn, before.cash_in + dc)
    if refuse and after.worst_case_loss > cap and after.worst_case_loss > before.worst_case_loss:
        raise exposure_cap_reached()
    headroom_each = ((cap - after.worst_case_loss) / len(shards)).quantize(CENT, rounding=ROUND_FLOOR)
    for shard in shards:
        shard.yes_shares = shard.no_shares = shard.cash_in = ZERO
        shard.quota, shard.cap, shard.category = headroom_each, cap, category
    first = shards[0]
    first.yes_shares, first.no_shares, first.cash_in = after.yes_shares, after.no_shares, after.cash_in
    first.quota = after.worst_case_loss + headroom_each
    MarketExposure.objects.bulk_update(shards, ["yes_shares", "no_shares", "cash_in", "quota", "cap", "category"])
    return after.worst_case_loss - bound_before, was, bound_before


def _market_shards_locked(market_id: str) -> list:
    return _lock_all(MarketExposure.objects.filter(market_id=market_id), lambda i: MarketExposure(market_id=market_id, shard=i))


def _category_shards_locked(*categories: str) -> dict[str, list]:
    """Every shard of the categories, locked in the order of their keys (then shards)."""
    return {
        c: _lock_all(CategoryExposure.objects.filter(category=c), lambda i, c=c: CategoryExposure(category=c, shard=i))
        for c in sorted(set(categories))
    }


def _category_locked(category: str, growth: Decimal, cap: Decimal, *, refuses: bool, moved_from: str, moved_bound: Decimal) -> None:
    """The category's exact total, the trade's ``growth`` refused past the cap (if ``refuses``) and
    fresh quotas cut from the headroom. A book counted under ``moved_from`` comes along: its
    ``moved_bound`` leaves that category (never refused) and enters this one (refused only as
    far as the trade grows it)."""
    moving = moved_from != category and moved_bound != 0  # a book worth nothing just changes its label
    locked = _category_shards_locked(category, moved_from) if moving else _category_shards_locked(category)
    shards = locked[category]
    arriving = moved_bound if moving else ZERO
    before = sum((s.bound for s in shards), ZERO)
    after = before + arriving + growth
    if refuses and growth > 0 and after > cap:
        raise category_cap_reached(category=category, bound=before + arriving, cap=cap)
    headroom_each = ((cap - after) / len(shards)).quantize(CENT, rounding=ROUND_FLOOR)
    for shard in shards:
        shard.bound, shard.quota, shard.cap = ZERO, headroom_each, cap
    shards[0].bound, shards[0].quota = after, after + headroom_each
    CategoryExposure.objects.bulk_update(shards, ["bound", "quota", "cap"])
    if moving:
        _category_release(locked[moved_from], moved_bound)


def _category_release(shards: list, contribution: Decimal) -> None:
    """A book leaves the category (settled, voided, moved): shard 0 gives up its bound; freed room is
    handed out by the next locked pass (a book in profit leaving never adds quota)."""
    if not contribution:
        return
    shards[0].bound -= contribution
    shards[0].quota -= max(contribution, ZERO)
    CategoryExposure.objects.bulk_update(shards[:1], ["bound", "quota"])


def _category_restore(shards: list, growth: Decimal) -> None:
    """A book comes (back) into the category (reversal, a move): never refused. Every shard's quota
    becomes its bound, so the next trade that grows the category takes the locked path and cuts
    quotas from the exact total (no shard keeps headroom the arrival may have used up)."""
    if not growth:
        return
    shards[0].bound += growth
    for shard in shards:
        shard.quota = shard.bound
    CategoryExposure.objects.bulk_update(shards, ["bound", "quota"])


def _global_locked(growth: Decimal, global_cap: Decimal, *, refuse: bool = True) -> None:
    shards = _lock_all(GlobalExposure.objects.all(), lambda i: GlobalExposure(shard=i))
    before = sum((s.bound for s in shards), ZERO)
    after = before + growth
    if refuse and growth > 0 and after > global_cap:
        raise global_cap_reached()
    headroom_each = ((global_cap - after) / len(shards)).quantize(CENT, rounding=ROUND_FLOOR)
    for shard in shards:
        shard.bound, shard.quota, shard.cap = ZERO, headroom_each, global_cap
    shards[0].bound, shards[0].quota = after, after + headroom_each
    GlobalExposure.objects.bulk_update(shards, ["bound", "quota", "cap"])


def _lock_all(queryset, make):
    count = _shard_count()
    shards = list(queryset.select_for_update().order_by("shard"))
    if len(shards) < count:
        queryset.model.objects.bulk_create([make(i) for i in range(count)], ignore_conflicts=True)
        shards = list(queryset.select_for_update().order_by("shard"))
    return shards


def exposure_reduce(*, market_id: str, outcome: str, shares_delta: Decimal, cash_delta: Decimal) -> None:
    """Apply deltas that can only lower the worst case (confirm or release a reservation).

    Never refused: removing shares owed or adding cash lowers the chosen shard's own worst
    case (and the global bound), so every quota still holds.
    """
    if shares_delta > 0 or cash_delta < 0:
        raise ValueError("exposure_reduce only takes deltas that lower the worst case")
    dy, dn = (shares_delta, ZERO) if outcome == "yes" else (ZERO, shares_delta)
    if connection.vendor != "postgresql":
        shards = _market_shards_locked(market_id)
        shard = shards[0]
        old = _worst(shard)
        shard.yes_shares, shard.no_shares, shard.cash_in = shard.yes_shares + dy, shard.no_shares + dn, shard.cash_in + cash_delta
        shard.save(update_fields=["yes_shares", "no_shares", "cash_in"])
        _category_add(shard.category, _worst(shard) - old)
        _global_add(_worst(shard) - old)
        return
    params = {"dy": dy, "dn": dn, "dc": cash_delta, "market": market_id}
    with connection.cursor() as cursor:
        for shard in (exposure_shard_pick(), 0):
            cursor.execute(_MARKET_SHARD_REDUCE_SQL, {**params, "shard": shard})
            row = cursor.fetchone()
            if row:
                _category_add(row[1], row[0])
                _global_add(row[0])
                return
    raise ValueError(f"market {market_id} has no exposure book to reduce")


# The reduction also answers with the category the book is counted under (whose bound it lowers).
_MARKET_SHARD_REDUCE_SQL = MARKET_SHARD_UPDATE_SQL.format(condition="TRUE").rstrip() + ", category\n"


def _category_add(category: str, growth: Decimal) -> None:
    """An unconditional change of the category's bound (only ever a decrease, from reductions)."""
    if growth == 0:
        return
    updated = CategoryExposure.objects.filter(category=category, shard=exposure_shard_pick()).update(bound=F("bound") + growth)
    if not updated:  # that shard was never made: make them all (market shards, then category shards: the lock order)
        first = _category_shards_locked(category)[category][0]
        first.bound += growth
        first.save(update_fields=["bound"])


def _global_add(growth: Decimal) -> None:
    """An unconditional change of the global bound (only ever a decrease, from reductions)."""
    if growth == 0:
        return
    updated = GlobalExposure.objects.filter(shard=exposure_shard_pick()).update(bound=F("bound") + growth)
    if not updated:
        GlobalExposure.objects.filter(shard=0).update(bound=F("bound") + growth)


def _total(shards) -> Book:
    return Book(
        sum((s.yes_shares for s in shards), ZERO),
        sum((s.no_shares for s in shards), ZERO),
        sum((s.cash_in for s in shards), ZERO),
    )


def exposure_book(*, market_id: str) -> Book:
    """The market's current book (sum of its shards), without locks."""
    return _total(list(MarketExposure.objects.filter(market_id=market_id)))


def global_exposure_bound() -> Decimal:
    """The global bound on the house's worst-case loss (sum of the global shards)."""
    return sum(GlobalExposure.objects.values_list("bound", flat=True), ZERO)


def exposure_clear_market(*, market_id: str) -> None:
    """A settled market owes nothing more: its book goes to zero and leaves its category's and the global bound."""
    shards = _market_shards_locked(market_id)
    contribution = sum((_worst(s) for s in shards), ZERO)
    for shard in shards:
        shard.yes_shares = shard.no_shares = shard.cash_in = shard.quota = ZERO
    MarketExposure.objects.bulk_update(shards, ["yes_shares", "no_shares", "cash_in", "quota"])
    if contribution:
        category = shards[0].category
        _category_release(_category_shards_locked(category)[category], contribution)
        global_shards = _lock_all(GlobalExposure.objects.all(), lambda i: GlobalExposure(shard=i))
        global_shards[0].bound -= contribution
        # Freed room is handed out again by the next locked pass; a settled profit never adds quota.
        global_shards[0].quota -= max(contribution, ZERO)
        GlobalExposure.objects.bulk_update(global_shards[:1], ["bound", "quota"])


def exposure_restore_market(*, market_id: str, book: Book) -> None:
    """A settlement was reversed (SPEC §12): the market's book is what its open positions and its
    trades say again. Shard 0 takes the whole book with a quota of exactly its worst case and the
    other shards none, so the next trade takes the locked path and cuts fresh quotas; the bounds of
    the category the book is counted under and the global bound take the book's worst case back.
    Never refused: it restores what the house holds."""
    shards = _market_shards_locked(market_id)
    before = sum((_worst(s) for s in shards), ZERO)
    for shard in shards:
        shard.yes_shares = shard.no_shares = shard.cash_in = shard.quota = ZERO
    first = shards[0]
    first.yes_shares, first.no_shares, first.cash_in = book.yes_shares, book.no_shares, book.cash_in
    first.quota = max(book.worst_case_loss, ZERO)
    MarketExposure.objects.bulk_update(shards, ["yes_shares", "no_shares", "cash_in", "quota"])
    growth = _worst(first) - before
    if growth:
        category = first.category
        _category_restore(_category_shards_locked(category)[category], growth)
        global_shards = _lock_all(GlobalExposure.objects.all(), lambda i: GlobalExposure(shard=i))
        global_shards[0].bound += growth
        global_shards[0].quota += max(growth, ZERO)
        GlobalExposure.objects.bulk_update(global_shards[:1], ["bound", "quota"])


def exposure_books(*, market_ids) -> dict[str, Book]:
    """Issue 14: the books of several markets (sums of their shards) in one query, without locks
    (the catalogue's exposure skew). A market with no shard is absent."""
    from django.db.models import Sum

    rows = (
        MarketExposure.objects.filter(market_id__in=list(market_ids))
        .values("market_id")
        .annotate(y=Sum("yes_shares"), n=Sum("no_shares"), c=Sum("cash_in"))
        .values_list("market_id", "y", "n", "c")
    )
    return {market_id: Book(y, n, c) for market_id, y, n, c in rows}


# --- Issue 14: category caps (SPEC §16) -----------------------------------------------------------


def category_exposure_bound(*, category: str) -> Decimal:
    """The bound on the worst-case loss summed over the category's markets (sum of its shards)."""
    return sum(CategoryExposure.objects.filter(category=category_key(category)).values_list("bound", flat=True), ZERO)


def category_exposure_bounds() -> dict[str, Decimal]:
    """Every category's bound, by key (staff views)."""
    bounds: dict[str, Decimal] = {}
    for category, bound in CategoryExposure.objects.values_list("category", "bound"):
        bounds[category] = bounds.get(category, ZERO) + bound
    return bounds


def category_bounds_from_books() -> dict[str, Decimal]:
    """What every category's bound must be: the sum of the worst cases of the market shards counted
    under it (the invariant the soak and the tests check against category_exposure_bounds)."""
    bounds: dict[str, Decimal] = {}
    for shard in MarketExposure.objects.all():
        bounds[shard.category] = bounds.get(shard.category, ZERO) + _worst(shard)
    return bounds


def exposure_category_move(*, market_id: str, category: str) -> None:
    """Count the market's book under ``category`` now (staff or the feed changed the market's
    category): its bound leaves the old category and enters the new one, never refused. Without
    it the next trade on the market moves it (the fast path only takes a market still in the
    category its book is counted under). Locks: the market's shards, then both categories'."""
    key = category_key(category)
    shards = _market_shards_locked(market_id)
    was = shards[0].category
    if was == key and all(s.category == key for s in shards):
        return
    bound = sum((_worst(s) for s in shards), ZERO)
    for shard in shards:
        shard.category = key
    MarketExposure.objects.bulk_update(shards, ["category"])
    if bound:
        locked = _category_shards_locked(key, was)
        _category_restore(locked[key], bound)
        _category_release(locked[was], bound)


def exposure_categories_follow(*, categories: dict[str, str]) -> int:
    """Markets whose category was just written (``{market id: category}``, inside the writer's
    transaction): each book counted under another category moves there now (one read of the
    books' shard 0, then exposure_category_move for the few that changed). Returns how many moved."""
    keys = {market_id: category_key(category) for market_id, category in categories.items()}
    recorded = MarketExposure.objects.filter(market_id__in=list(keys), shard=0).values_list("market_id", "category")
    moving = sorted(market_id for market_id, category in recorded if category != keys[market_id])
    for market_id in moving:  # one market at a time: its shards, then its two categories (the lock order)
        exposure_category_move(market_id=market_id, category=keys[market_id])
    return len(moving)
