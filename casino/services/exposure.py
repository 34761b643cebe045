"""The house's book per market, sharded so one hot market does not serialize every trade.

A market's book is ``HOUSE_EXPOSURE_SHARDS`` rows. Each trade adds its deltas (shares owed
on its outcome, cash collected) to one shard picked at random. Worst-case loss of the
market is ``max(sum yes, sum no) - sum cash``, and because max is sub-additive,
``sum over shards of (max(yes_i, no_i) - cash_i)`` is an upper bound of it.

Cap invariant: each shard holds a ``quota`` and the quotas add up to at most the cap.

* Fast path (one conditional UPDATE, no read): apply the deltas to a shard only if that
  shard's own worst case stays within its quota (or does not grow). Then
  true worst <= sum(worst_i) <= sum(quota_i) <= cap, with no cross-shard lock.
* Slow path (the shard is out of quota, the cap changed, or the rows are missing): lock
  every shard of the market in shard order, compute the exact total, refuse if the trade
  would take the house past the cap (unless it reduces the worst case), otherwise
  consolidate the book into shard 0 and cut fresh quotas from the remaining headroom.

Near the cap every trade takes the slow path and trades serialize, which is exactly when
they must.

Deadlock freedom: a fast-path UPDATE that waited for a locked shard and then failed its
re-check still holds that row (PostgreSQL locks the newest row version before it
re-evaluates the WHERE clause). So a failed fast path never goes on to lock the other
shards in the same transaction: it raises ExposureNeedsLock, the caller rolls the whole
unit of work back (dropping every lock) and retries with ``locked=True``, which takes the
shards in shard order while holding none of them.
"""

import random
from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal

from django.conf import settings
from django.db import connection
from django.db.models import F, Q
from django.db.models.functions import Greatest
from django.db.models.lookups import LessThanOrEqual

from casino.errors import ConcurrentUpdate, exposure_cap_reached
from casino.models import MarketExposure

ZERO = Decimal("0")
CENT = Decimal("0.01")


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


class ExposureNeedsLock(ConcurrentUpdate):
    """The fast path could not take the trade; retry the transaction with locked=True."""


def _shard_count() -> int:
    return max(1, settings.HOUSE_EXPOSURE_SHARDS)


def exposure_apply(*, market_id: str, outcome: str, shares_delta: Decimal, cash_delta: Decimal, cap: Decimal, locked: bool = False) -> None:
    """Add a trade to the market's book inside the caller's transaction, or refuse it.

    ``shares_delta``: shares the house owes on ``outcome`` (+ buy, - sell);
    ``cash_delta``: money the house received (+ stake, - proceeds).
    Raises HouseError "Market exposure cap reached", or ExposureNeedsLock when the
    caller must roll back and retry with ``locked=True``.
    """
    dy, dn = (shares_delta, ZERO) if outcome == "yes" else (ZERO, shares_delta)
    if connection.vendor != "postgresql" or locked:
        # SQLite serializes writers anyway; there the exact locked path is all there is.
        _apply_locked(market_id, dy, dn, cash_delta, cap)
    elif not _apply_fast(market_id, dy, dn, cash_delta, cap):
        raise ExposureNeedsLock()


def exposure_reduce(*, market_id: str, outcome: str, shares_delta: Decimal, cash_delta: Decimal) -> None:
    """Apply deltas that can only lower the worst case (confirm or release a reservation).

    Never refused: removing shares owed or adding cash lowers the chosen shard's own worst
    case, so every shard stays within its quota and the cap invariant holds.
    """
    if shares_delta > 0 or cash_delta < 0:
        raise ValueError("exposure_reduce only takes deltas that lower the worst case")
    dy, dn = (shares_delta, ZERO) if outcome == "yes" else (ZERO, shares_delta)
    shard = random.randrange(_shard_count())
    for candidate in (shard, 0):
        updated = MarketExposure.objects.filter(market_id=market_id, shard=candidate).update(
            yes_shares=F("yes_shares") + dy, no_shares=F("no_shares") + dn, cash_in=F("cash_in") + cash_delta
        )
        if updated:
            return
    _lock_all_shards(market_id)
    MarketExposure.objects.filter(market_id=market_id, shard=0).update(
        yes_shares=F("yes_shares") + dy, no_shares=F("no_shares") + dn, cash_in=F("cash_in") + cash_delta
    )


def _apply_fast(market_id: str, dy: Decimal, dn: Decimal, dc: Decimal, cap: Decimal) -> bool:
    old_worst = Greatest(F("yes_shares"), F("no_shares")) - F("cash_in")
    new_worst = Greatest(F("yes_shares") + dy, F("no_shares") + dn) - (F("cash_in") + dc)
    updated = (
        MarketExposure.objects.filter(market_id=market_id, shard=random.randrange(_shard_count()), cap=cap)
        .filter(Q(LessThanOrEqual(new_worst, F("quota"))) | Q(LessThanOrEqual(new_worst, old_worst)))
        .update(yes_shares=F("yes_shares") + dy, no_shares=F("no_shares") + dn, cash_in=F("cash_in") + dc)
    )
    return updated == 1


def _apply_locked(market_id: str, dy: Decimal, dn: Decimal, dc: Decimal, cap: Decimal) -> None:
    shards = _lock_all_shards(market_id)
    before = _total(shards)
    after = Book(before.yes_shares + dy, before.no_shares + dn, before.cash_in + dc)
    if after.worst_case_loss > cap and after.worst_case_loss > before.worst_case_loss:
        raise exposure_cap_reached()
    headroom_each = ((cap - after.worst_case_loss) / len(shards)).quantize(CENT, rounding=ROUND_FLOOR)
    for shard in shards:
        shard.yes_shares = shard.no_shares = shard.cash_in = ZERO
        shard.quota, shard.cap = headroom_each, cap
    first = shards[0]
    first.yes_shares, first.no_shares, first.cash_in = after.yes_shares, after.no_shares, after.cash_in
    first.quota = after.worst_case_loss + headroom_each
    MarketExposure.objects.bulk_update(shards, ["yes_shares", "no_shares", "cash_in", "quota", "cap"])


def _lock_all_shards(market_id: str) -> list[MarketExposure]:
    count = _shard_count()
    shards = list(MarketExposure.objects.select_for_update().filter(market_id=market_id).order_by("shard"))
    if len(shards) < count:
        MarketExposure.objects.bulk_create([MarketExposure(market_id=market_id, shard=i) for i in range(count)], ignore_conflicts=True)
        shards = list(MarketExposure.objects.select_for_update().filter(market_id=market_id).order_by("shard"))
    return shards


def _total(shards) -> Book:
    return Book(
        sum((s.yes_shares for s in shards), ZERO),
        sum((s.no_shares for s in shards), ZERO),
        sum((s.cash_in for s in shards), ZERO),
    )


def exposure_book(*, market_id: str) -> Book:
    """The market's current book (sum of its shards), without locks."""
    return _total(list(MarketExposure.objects.filter(market_id=market_id)))
