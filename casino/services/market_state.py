"""What the market-data feed writes about markets (SPEC §11), in bulk and in short transactions:
the catalogue (titles, categories, liquidity, listing), the reference prices with their ticks
and 5-minute chart points, and suspensions and resumptions with their market events.

The feed decides (marketdata.services); this module is the one place that writes casino's
market records for it, so the executor's tradeability checks read what was written here.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from casino.models import (
    Market,
    MarketEvent,
    MarketEventKind,
    MarketPricePoint,
    Outcome,
    Position,
    PositionStatus,
    ReferencePrice,
    ReferencePriceTick,
)
from casino.services.exposure import exposure_categories_follow
from core.api.rendering import iso
from core.events import events_record_bulk

HUNDRED = Decimal("100")
POINT_SECONDS = 300


@dataclass(frozen=True)
class CatalogueEntry:
    market_id: str
    title: str
    category: str
    liquidity: Decimal | None
    volume_24h: Decimal | None
    end_date: datetime | None
    yes_label: str
    no_label: str
    listed: bool


def markets_catalogue_upsert(*, entries: list[CatalogueEntry], at: datetime) -> dict:
    """Create or update the markets the feed tracks; a change of listing is a market event."""
    if not entries:
        return {"created": 0, "listed": 0, "unlisted": 0}
    ids = [e.market_id for e in entries]
    with transaction.atomic():
        before = dict(Market.objects.filter(pk__in=ids).values_list("pk", "listed"))
        Market.objects.bulk_create(
            [
                Market(
                    id=e.market_id,
                    title=e.title[:500],
                    category=e.category[:64],
                    liquidity=e.liquidity,
                    volume_24h=e.volume_24h,
                    end_date=e.end_date,
                    yes_label=e.yes_label[:64],
                    no_label=e.no_label[:64],
                    listed=e.listed,
                    updated_at=at,
                )
                for e in entries
            ],
            update_conflicts=True,
            unique_fields=["id"],
            update_fields=["title", "category", "liquidity", "volume_24h", "end_date", "yes_label", "no_label", "listed", "updated_at"],
        )
        events = []
        for e in entries:
            was = before.get(e.market_id)
            if was is None or was != e.listed:
                kind = MarketEventKind.LISTED if e.listed else MarketEventKind.UNLISTED
                if was is not None or e.listed:
                    events.append(MarketEvent(market_id=e.market_id, kind=kind, at=at))
        MarketEvent.objects.bulk_create(events)
        # Issue 14: a book whose market changed category is counted under the new one's cap at once.
        exposure_categories_follow(categories={e.market_id: e.category[:64] for e in entries if e.market_id in before})
    return {
        "created": sum(1 for e in entries if e.market_id not in before),
        "listed": sum(1 for ev in events if ev.kind == MarketEventKind.LISTED),
        "unlisted": sum(1 for ev in events if ev.kind == MarketEventKind.UNLISTED),
    }


def markets_unlist(*, market_ids: list[str], at: datetime) -> int:
    """Markets that left the listing (and are not in the source's open catalogue any more)."""
    with transaction.atomic():
        changed = list(Market.objects.filter(pk__in=market_ids, listed=True).values_list("pk", flat=True))
        Market.objects.filter(pk__in=changed).update(listed=False, updated_at=at)
        MarketEvent.objects.bulk_create([MarketEvent(market_id=m, kind=MarketEventKind.UNLISTED, at=at) for m in changed])
    return len(changed)


@dataclass(frozen=True)
class ReferenceWrite:
    market_id: str
    yes_mid: Decimal  # cents, (0, 100), 4 dp
    tick: bool  # also append a tick (the mid changed since the last tick)


# The three writes of reference_prices_write as one statement on PostgreSQL: one round trip, and
# no model instances (the running feed writes a few hundred markets several times a second).
_REFERENCE_WRITE_SQL = """
WITH w AS (
    SELECT * FROM unnest(%(markets)s::varchar[], %(mids)s::numeric[], %(ticks)s::boolean[]) AS w (market_id, yes_mid, tick)
), both_outcomes AS (
    SELECT w.market_id, o.outcome, CASE o.outcome WHEN 'yes' THEN w.yes_mid ELSE 100 - w.yes_mid END AS mid_price, w.tick
    FROM w CROSS JOIN (VALUES ('yes'), ('no')) AS o (outcome)
), prices AS (
    INSERT INTO casino_reference_prices (market_id, outcome, mid_price, updated_at)
    SELECT market_id, outcome, mid_price, %(at)s FROM both_outcomes ORDER BY market_id, outcome
    ON CONFLICT (market_id, outcome) DO UPDATE SET mid_price = EXCLUDED.mid_price, updated_at = EXCLUDED.updated_at
), ticks AS (
    INSERT INTO casino_reference_price_ticks (market_id, outcome, mid_price, at)
    SELECT market_id, outcome, mid_price, %(at)s FROM both_outcomes WHERE tick
)
INSERT INTO casino_market_price_points (market_id, at, yes_mid)
SELECT market_id, %(bucket)s, yes_mid FROM w ORDER BY market_id
ON CONFLICT (market_id, at) DO UPDATE SET yes_mid = EXCLUDED.yes_mid
"""


def reference_prices_write(*, writes: list[ReferenceWrite], at: datetime) -> None:
    """Stamp the reference of every market in ``writes`` at ``at`` (changed or not: a fresh stamp
    means the feed saw the market), both outcomes (NO = 100 - YES), in one transaction: the
    prices, the ticks, the 5-minute chart points. Rows are written in market order, so two
    writers (the running feed and a one-pass sync) lock them in the same order."""
    if not writes:
        return
    writes = sorted(writes, key=lambda w: w.market_id)
    bucket = point_bucket(at)
    if connection.vendor == "postgresql":
        params = {
            "markets": [w.market_id for w in writes],
            "mids": [w.yes_mid for w in writes],
            "ticks": [w.tick for w in writes],
            "at": at,
            "bucket": bucket,
        }
        with connection.cursor() as cursor:
            cursor.execute(_REFERENCE_WRITE_SQL, params)
        return
    with transaction.atomic():
        ReferencePrice.objects.bulk_create(
            [
                ReferencePrice(market_id=w.market_id, outcome=outcome, mid_price=mid, updated_at=at)
                for w in writes
                for outcome, mid in ((Outcome.YES, w.yes_mid), (Outcome.NO, HUNDRED - w.yes_mid))
            ],
            update_conflicts=True,
            unique_fields=["market", "outcome"],
            update_fields=["mid_price", "updated_at"],
        )
        ReferencePriceTick.objects.bulk_create(
            [
                ReferencePriceTick(market_id=w.market_id, outcome=outcome, mid_price=mid, at=at)
                for w in writes
                if w.tick
                for outcome, mid in ((Outcome.YES, w.yes_mid), (Outcome.NO, HUNDRED - w.yes_mid))
            ]
        )
        MarketPricePoint.objects.bulk_create(
            [MarketPricePoint(market_id=w.market_id, at=bucket, yes_mid=w.yes_mid) for w in writes],
            update_conflicts=True,
            unique_fields=["market", "at"],
            update_fields=["yes_mid"],
        )


def point_bucket(at: datetime) -> datetime:
    """Start of the 5-minute bucket ``at`` falls in (the catalogue's chart points)."""
    return at - timedelta(seconds=at.timestamp() % POINT_SECONDS)


def market_suspend(*, market_id: str, code: str, at: datetime, until: datetime | None = None, detail: dict | None = None) -> bool:
    """Stop trading (the executor refuses with ``code``); False when it already was, for that reason."""
    with transaction.atomic():
        updated = (
            Market.objects.filter(pk=market_id)
            .exclude(Q(suspended_reason=code) & (Q(suspended_until=until) if until else Q(suspended_until__isnull=True)))
            .update(suspended_reason=code, suspended_until=until, updated_at=at)
        )
        if updated:
            detail = {**(detail or {}), **({"until": until.isoformat()} if until else {})}
            MarketEvent.objects.create(market_id=market_id, kind=MarketEventKind.SUSPENDED, code=code, detail=detail, at=at)
            market_event_record(market_id=market_id, type="market.suspended", at=at, reason=code, until=until)
    return bool(updated)


def market_resume(*, market_id: str, at: datetime, detail: dict | None = None) -> bool:
    with transaction.atomic():
        previous = Market.objects.filter(pk=market_id).exclude(suspended_reason="").values_list("suspended_reason", flat=True).first()
        if previous is None:
            return False
        Market.objects.filter(pk=market_id).update(suspended_reason="", suspended_until=None, updated_at=at)
        MarketEvent.objects.create(market_id=market_id, kind=MarketEventKind.RESUMED, code=previous, detail=detail or {}, at=at)
        market_event_record(market_id=market_id, type="market.resumed", at=at, reason=previous)
    return True


def market_disabled_set(*, market: Market, disabled: bool, actor: str) -> None:
    """Staff turn trading of a market off or on (the admin): told to operators as a suspension or resumption."""
    with transaction.atomic():
        updated = Market.objects.filter(pk=market.pk).exclude(disabled=disabled).update(disabled=disabled, updated_at=timezone.now())
        if updated:
            kind = "market.suspended" if disabled else "market.resumed"
            market_event_record(market_id=market.pk, type=kind, at=timezone.now(), reason=f"disabled_by_staff:{actor}"[:64])
    market.disabled = disabled


def market_event_record(*, market_id: str, type: str, at: datetime, reason: str = "", until: datetime | None = None) -> int:
    """``market.suspended`` / ``market.resumed`` / ``market.closed`` (SPEC §14) in the caller's transaction:
    one event per operator whose players hold an open position in the market (the operators the
    change concerns; docs/decisions.md)."""
    operators = list(
        Position.objects.filter(market_id=market_id, status=PositionStatus.OPEN).order_by().values_list("operator_id", flat=True).distinct()
    )
    if not operators:
        return 0
    market = Market.objects.filter(pk=market_id).values("title", "status").first() or {"title": "", "status": ""}
    data = {
        "marketId": market_id,
        "title": market["title"],
        "status": market["status"],
        "reason": reason,
        "at": iso(at),
        **({"until": iso(until)} if until else {}),
    }
    return events_record_bulk((operator_id, type, data) for operator_id in operators)


def price_history_prune(*, before: datetime, batch: int = 10_000) -> int:
    """Delete ticks and chart points older than ``before``, a batch per statement (no long lock)."""
    removed = 0
    for model, field in ((ReferencePriceTick, "at"), (MarketPricePoint, "at")):
        while True:
            ids = list(model.objects.filter(**{f"{field}__lt": before}).values_list("pk", flat=True)[:batch])
            if not ids:
                break
            removed += model.objects.filter(pk__in=ids).delete()[0]
    return removed
