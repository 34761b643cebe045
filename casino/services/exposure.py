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

Near a cap every trade takes the locked path and trades serialize, which is exactly when
they must.

Deadlock freedom: market shards are always locked before global shards, each set in shard
order. A fast-path UPDATE that waited for a locked row and then failed its re-check still
holds that row (PostgreSQL locks the newest row version before it re-evaluates the WHERE
clause). So a failed fast path never goes on to lock other shards in the same transaction:
it raises ExposureNeedsLock, the caller rolls the whole unit of work back (dropping every
lock) and retries with ``locked=True``, which takes the shards in order while holding none.
"""

import random
from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal

from django.conf import settings
from django.db import connection
from django.db.models import F

from casino.models import GlobalExposure, MarketExposure
from core.errors import ConcurrentUpdate, HouseError, exposure_cap_reached

ZERO = Decimal("0")
CENT = Decimal("0.01")


class ExposureNeedsLock(ConcurrentUpdate):
    """The fast path could not take the trade; retry the transaction with locked=True."""


def global_cap_reached() -> HouseError:
    return HouseError("Trade rejected by risk engine", code="risk.exposure.global_cap", extra={"wall": "exposure", "limit": "global_cap"})


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
    refuse: bool = True,
) -> None:
    """Add a trade to the market's book (and the global bound) inside the caller's transaction, or refuse it.

    ``shares_delta``: shares the house owes on ``outcome`` (+ buy, - sell);
    ``cash_delta``: money the house received (+ stake, - proceeds).
    Raises HouseError "Market exposure cap reached" / the global-cap refusal, or
    ExposureNeedsLock when the caller must roll back and retry with ``locked=True``.
    ``refuse=False`` (a sell, SPEC §16: never refused by a cap): the exact path takes the trade even past a
    cap; the book then refuses the buys that would grow the worst case until it is back under.
    """
    dy, dn = (shares_delta, ZERO) if outcome == "yes" else (ZERO, shares_delta)
    if connection.vendor != "postgresql" or locked:
        # SQLite serializes writers anyway; there the exact locked path is all there is.
        growth = _market_locked(market_id, dy, dn, cash_delta, cap, refuse=refuse)
        if global_cap is not None:
            _global_locked(growth, global_cap, refuse=refuse)
        return
    growth = _market_fast(market_id, dy, dn, cash_delta, cap)
    if growth is None:
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
WITHIN_QUOTA = """cap = %(cap)s AND (
       GREATEST(yes_shares + %(dy)s, no_shares + %(dn)s) - (cash_in + %(dc)s) <= quota
    OR GREATEST(yes_shares + %(dy)s, no_shares + %(dn)s) - (cash_in + %(dc)s) <= GREATEST(yes_shares, no_shares) - cash_in)"""
# One global shard takes a change of the bound that fits its quota (or lowers it).
GLOBAL_SHARD_UPDATE_SQL = """UPDATE casino_global_exposure SET bound = bound + {growth}
 WHERE shard = {shard} AND cap = {cap} AND (bound + {growth} <= quota OR {growth} <= 0)"""


def _market_fast(market_id: str, dy: Decimal, dn: Decimal, dc: Decimal, cap: Decimal) -> Decimal | None:
    """The shard's change of worst case, or None if the trade does not fit the shard's quota."""
    params = {"dy": dy, "dn": dn, "dc": dc, "market": market_id, "shard": exposure_shard_pick(), "cap": cap}
    with connection.cursor() as cursor:
        cursor.execute(MARKET_SHARD_UPDATE_SQL.format(condition=WITHIN_QUOTA), params)
        row = cursor.fetchone()
    return row[0] if row else None


def _global_fast(growth: Decimal, global_cap: Decimal) -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            GLOBAL_SHARD_UPDATE_SQL.format(growth="%(g)s", shard="%(shard)s", cap="%(cap)s"),
            {"g": growth, "shard": exposure_shard_pick(), "cap": global_cap},
        )
        return cursor.rowcount == 1


def _market_locked(market_id: str, dy: Decimal, dn: Decimal, dc: Decimal, cap: Decimal, *, refuse: bool = True) -> Decimal:
    """Exact check and quota rebalance; returns the change of sum(worst_i) for the global bound."""
    shards = _lock_all(MarketExposure.objects.filter(market_id=market_id), lambda i: MarketExposure(market_id=market_id, shard=i))
    bound_before = sum((_worst(s) for s in shards), ZERO)
    before = _total(shards)
    after = Book(before.yes_shares + dy, before.no_shares + dn, before.cash_in + dc)
    if refuse and after.worst_case_loss > cap and after.worst_case_loss > before.worst_case_loss:
        raise exposure_cap_reached()
    headroom_each = ((cap - after.worst_case_loss) / len(shards)).quantize(CENT, rounding=ROUND_FLOOR)
    for shard in shards:
        shard.yes_shares = shard.no_shares = shard.cash_in = ZERO
        shard.quota, shard.cap = headroom_each, cap
    first = shards[0]
    first.yes_shares, first.no_shares, first.cash_in = after.yes_shares, after.no_shares, after.cash_in
    first.quota = after.worst_case_loss + headroom_each
    MarketExposure.objects.bulk_update(shards, ["yes_shares", "no_shares", "cash_in", "quota", "cap"])
    return after.worst_case_loss - bound_before


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
        shards = _lock_all(MarketExposure.objects.filter(market_id=market_id), lambda i: MarketExposure(market_id=market_id, shard=i))
        shard = shards[0]
        old = _worst(shard)
        shard.yes_shares, shard.no_shares, shard.cash_in = shard.yes_shares + dy, shard.no_shares + dn, shard.cash_in + cash_delta
        shard.save(update_fields=["yes_shares", "no_shares", "cash_in"])
        _global_add(_worst(shard) - old)
        return
    params = {"dy": dy, "dn": dn, "dc": cash_delta, "market": market_id}
    with connection.cursor() as cursor:
        for shard in (exposure_shard_pick(), 0):
            cursor.execute(MARKET_SHARD_UPDATE_SQL.format(condition="TRUE"), {**params, "shard": shard})
            row = cursor.fetchone()
            if row:
                _global_add(row[0])
                return
    raise ValueError(f"market {market_id} has no exposure book to reduce")


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
    """A settled market owes nothing more: its book goes to zero and leaves the global bound."""
    shards = _lock_all(MarketExposure.objects.filter(market_id=market_id), lambda i: MarketExposure(market_id=market_id, shard=i))
    contribution = sum((_worst(s) for s in shards), ZERO)
    for shard in shards:
        shard.yes_shares = shard.no_shares = shard.cash_in = shard.quota = ZERO
    MarketExposure.objects.bulk_update(shards, ["yes_shares", "no_shares", "cash_in", "quota"])
    if contribution:
        global_shards = _lock_all(GlobalExposure.objects.all(), lambda i: GlobalExposure(shard=i))
        global_shards[0].bound -= contribution
        # Freed room is handed out again by the next locked pass; a settled profit never adds quota.
        global_shards[0].quota -= max(contribution, ZERO)
        GlobalExposure.objects.bulk_update(global_shards[:1], ["bound", "quota"])


def exposure_restore_market(*, market_id: str, book: Book) -> None:
    """A settlement was reversed (SPEC §12): the market's book is what its open positions and its
    trades say again. Shard 0 takes the whole book with a quota of exactly its worst case and the
    other shards none, so the next trade takes the locked path and cuts fresh quotas; the global
    bound takes the book's worst case back. Never refused: it restores what the house holds."""
    shards = _lock_all(MarketExposure.objects.filter(market_id=market_id), lambda i: MarketExposure(market_id=market_id, shard=i))
    before = sum((_worst(s) for s in shards), ZERO)
    for shard in shards:
        shard.yes_shares = shard.no_shares = shard.cash_in = shard.quota = ZERO
    first = shards[0]
    first.yes_shares, first.no_shares, first.cash_in = book.yes_shares, book.no_shares, book.cash_in
    first.quota = max(book.worst_case_loss, ZERO)
    MarketExposure.objects.bulk_update(shards, ["yes_shares", "no_shares", "cash_in", "quota"])
    growth = _worst(first) - before
    if growth:
        global_shards = _lock_all(GlobalExposure.objects.all(), lambda i: GlobalExposure(shard=i))
        global_shards[0].bound += growth
        global_shards[0].quota += max(growth, ZERO)
        GlobalExposure.objects.bulk_update(global_shards[:1], ["bound", "quota"])
