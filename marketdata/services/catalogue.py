"""Which source markets the house lists and tracks (SPEC §11, listing rules), written to casino's
markets and to the feed's source records.

Listed: binary, open at the source, in an allowed and not blocked category, liquid enough
(the casino criteria), the ``max_listed_markets`` most traded in 24 h. Tracked (prices
followed): listed, or holding open positions, until the market is settled.
"""

from dataclasses import dataclass, field
from datetime import datetime

from django.db import transaction

from casino.models import Position, PositionStatus
from casino.services.market_state import CatalogueEntry, market_suspend, markets_catalogue_upsert, markets_unlist
from casino.services.markets import casino_settings
from marketdata.models import MarketSource
from marketdata.services import rules


@dataclass(frozen=True)
class Tracked:
    market_id: str
    yes_token: str
    no_token: str
    source_closed: bool
    end_date: datetime | None


@dataclass
class CatalogueResult:
    seen: int = 0
    listed: int = 0
    created: int = 0
    tracked: list[Tracked] = field(default_factory=list)
    untracked: list[str] = field(default_factory=list)


SOURCE_FIELDS = [
    "yes_token",
    "no_token",
    "active",
    "closed",
    "accepting_orders",
    "resolution_status",
    "outcome_prices",
    "tracked",
    "seen_at",
]


def listing_rank(sources: list, *, settings) -> list:
    """The source markets eligible for listing, most traded first, at most max_listed_markets."""
    allowed = {c.lower() for c in settings.allowed_categories or []}
    blocked = {c.lower() for c in settings.blocked_categories or []}
    eligible = [
        s
        for s in sources
        if not rules.closed_at_source(active=s.active, closed=s.closed, accepting_orders=s.accepting_orders)
        and (not allowed or s.category in allowed)
        and s.category not in blocked
        and (s.liquidity is None or s.liquidity >= settings.min_liquidity)
    ]
    eligible.sort(key=lambda s: (-(s.volume_24h or 0), s.condition_id))
    return eligible[: settings.max_listed_markets]


def open_position_markets() -> set[str]:
    return set(Position.objects.filter(status=PositionStatus.OPEN, shares__gt=0).values_list("market_id", flat=True).distinct())


def tracked_market_ids() -> set[str]:
    return set(MarketSource.objects.filter(tracked=True).values_list("market_id", flat=True))


def catalogue_apply(*, sources: list, extra: list, at: datetime) -> CatalogueResult:
    """``sources``: the source's open catalogue; ``extra``: tracked markets it no longer lists
    (closed, resolved), looked up by id. Writes markets and source records; returns what is
    tracked from now on."""
    settings = casino_settings()
    listed_ids = {s.condition_id for s in listing_rank(sources, settings=settings)}
    holding = open_position_markets()
    by_id = {s.condition_id: s for s in [*extra, *sources]}  # the open catalogue wins over a stale look-up
    keep = {m for m in by_id if m in listed_ids or m in holding}
    entries = [
        CatalogueEntry(
            market_id=s.condition_id,
            title=s.question,
            category=s.category,
            liquidity=s.liquidity,
            volume_24h=s.volume_24h,
            end_date=s.end_date,
            yes_label=s.yes_label or "Yes",
            no_label=s.no_label or "No",
            listed=s.condition_id in listed_ids,
        )
        for m, s in by_id.items()
        if m in keep
    ]
    result = CatalogueResult(seen=len(sources), listed=len(listed_ids))
    with transaction.atomic():
        counts = markets_catalogue_upsert(entries=entries, at=at)
        MarketSource.objects.bulk_create(
            [
                MarketSource(
                    market_id=s.condition_id,
                    yes_token=s.yes_token,
                    no_token=s.no_token,
                    active=s.active,
                    closed=s.closed,
                    accepting_orders=s.accepting_orders,
                    resolution_status=s.resolution_status or "",
                    outcome_prices=[str(p) for p in s.outcome_prices] if s.outcome_prices else None,
                    tracked=True,
                    seen_at=at,
                )
                for m, s in by_id.items()
                if m in keep
            ],
            update_conflicts=True,
            unique_fields=["market"],
            update_fields=SOURCE_FIELDS,
        )
        dropped = list(MarketSource.objects.filter(tracked=True).exclude(market_id__in=keep).values_list("market_id", flat=True))
        MarketSource.objects.filter(market_id__in=dropped).update(tracked=False)
        markets_unlist(market_ids=dropped, at=at)
        # A market no longer followed is marked closed here (the board does it for tracked ones).
        for market_id in dropped:
            gone = by_id.get(market_id)
            if gone is not None and rules.closed_at_source(active=gone.active, closed=gone.closed, accepting_orders=gone.accepting_orders):
                market_suspend(market_id=market_id, code=rules.CLOSED_AT_SOURCE, at=at)
    result.created = counts["created"]
    result.tracked = [
        Tracked(
            market_id=m,
            yes_token=s.yes_token,
            no_token=s.no_token,
            source_closed=rules.closed_at_source(active=s.active, closed=s.closed, accepting_orders=s.accepting_orders),
            end_date=s.end_date,
        )
        for m, s in by_id.items()
        if m in keep
    ]
    result.untracked = dropped
    return result
