"""Wall 4 inputs: each player's sharp score, from how the house reference price moved after their
trades (markout) and from their results on resolved markets. Recomputed by a beat task (risk/tasks.py);
the walls read the stored PlayerRiskProfile (risk/services/assessment.py).

The numbers, all Decimal (no floats anywhere):

  stake(t)        = t.cost: dollars staked on a buy, proceeds of a sell
  markout(t, h)   = buy:  t.shares x (mid_h - t.price_executed) / 100
                    sell: t.shares x (t.price_executed - mid_h) / 100
                    mid_h = the reference mid of the traded outcome at t.created_at + h: the latest
                    tick at or before that time. A pair (t, h) counts only when t.created_at + h <= now
                    and such a tick exists.
  markout edge    = sum of markout(t, h) / sum of stake(t), both over every (trade, horizon) pair
                    counted. A trade counts once per horizon it was measured at, so this is the
                    stake-weighted mean over horizons of each horizon's own edge (the plain mean when
                    every trade was measured at every horizon).
  result(t)       = on a resolved market only (voided, open and resolving markets are ignored):
                    buy of the winning outcome  shares - cost
                    buy of the losing outcome   -cost
                    sell                        proceeds - shares x (1 if that outcome won else 0)
  results edge    = sum of result(t) / sum of stake(t), over those trades
  edge            = 0.7 x markout edge + 0.3 x results edge; only one of them when the other has
                    nothing to measure; 0 when neither has
  score           = clamp(edge / sharp_full_edge, 0, 1), to 4 places (half up); 0 while fewer than
                    sharp_min_trades trades were scored (a trade is scored when it has a markout
                    pair or a result)
"""

import logging
from bisect import bisect_right
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

from django.db.models import Max
from django.utils import timezone

from casino.models import Market, MarketStatus, ReferencePriceTick, Side, Trade
from risk.models import PlayerRiskProfile, RiskSettings
from risk.services.config import risk_config

log = logging.getLogger("house.risk.sharp")

ZERO = Decimal("0")
ONE = Decimal("1")
HUNDRED = Decimal("100")
SCORE_STEP = Decimal("0.0001")
EDGE_LIMIT = Decimal("99.9999")  # what PlayerRiskProfile's edge columns can hold
MARKOUT_WEIGHT = Decimal("0.7")
RESULTS_WEIGHT = Decimal("0.3")
BATCH_PLAYERS = 500  # players scored per round of queries
BATCH_MARKETS = 500  # markets per IN (...) list

# (market id, outcome, time) -> the reference mid then, or None when there was no tick yet.
PriceAt = Callable[[str, str, datetime], Decimal | None]


@dataclass(frozen=True)
class Edge:
    """Money made per dollar staked (None: nothing to measure), and which trades it measured."""

    value: Decimal | None
    trade_ids: frozenset


@dataclass(frozen=True)
class SharpScore:
    score: Decimal
    markout_edge: Decimal | None
    results_edge: Decimal | None
    trades_scored: int


class PriceHistory:
    """The house reference mids per market and outcome, in time order, looked up by bisection."""

    def __init__(self, ticks: Iterable[tuple[str, str, datetime, Decimal]] = ()):
        series: dict[tuple[str, str], list[tuple[datetime, Decimal]]] = defaultdict(list)
        for market_id, outcome, at, mid in ticks:
            series[(market_id, outcome)].append((at, mid))
        self._times: dict[tuple[str, str], list[datetime]] = {}
        self._mids: dict[tuple[str, str], list[Decimal]] = {}
        for key, points in series.items():
            points.sort(key=lambda p: p[0])  # stable: of ticks with the same time, the last given wins
            self._times[key] = [at for at, _ in points]
            self._mids[key] = [mid for _, mid in points]

    def __call__(self, market_id: str, outcome: str, at: datetime) -> Decimal | None:
        """The latest mid at or before ``at``."""
        times = self._times.get((market_id, outcome))
        if not times:
            return None
        i = bisect_right(times, at)
        return self._mids[(market_id, outcome)][i - 1] if i else None


def markout_edge(trades: Iterable[Trade], ticks_lookup: PriceAt, horizons: Sequence[int], now: datetime) -> Edge:
    """Markout per dollar staked over every (trade, horizon) pair that can be measured (module docstring)."""
    total_markout = ZERO
    total_stake = ZERO
    measured = set()
    for trade in trades:
        for horizon in horizons:
            at = trade.created_at + timedelta(seconds=int(horizon))
            if at > now:
                continue
            mid = ticks_lookup(trade.market_id, trade.outcome, at)
            if mid is None:
                continue
            move = mid - trade.price_executed if trade.side == Side.BUY else trade.price_executed - mid
            total_markout += trade.shares * move / HUNDRED
            total_stake += trade.cost
            measured.add(trade.pk)
    return Edge(total_markout / total_stake if total_stake > 0 else None, frozenset(measured))


def results_edge(trades: Iterable[Trade], resolved_outcomes: Mapping[str, str]) -> Edge:
    """Profit per dollar staked on resolved markets; ``resolved_outcomes`` maps a resolved market's
    id to its winning outcome (voided and unresolved markets are simply not in it)."""
    total_profit = ZERO
    total_stake = ZERO
    measured = set()
    for trade in trades:
        winner = resolved_outcomes.get(trade.market_id)
        if winner is None:
            continue
        won = trade.outcome == winner
        if trade.side == Side.BUY:
            total_profit += (trade.shares if won else ZERO) - trade.cost
        else:
            total_profit += trade.cost - (trade.shares if won else ZERO)
        total_stake += trade.cost
        measured.add(trade.pk)
    return Edge(total_profit / total_stake if total_stake > 0 else None, frozenset(measured))


def player_sharp_score(
    *, trades: Sequence[Trade], price_at: PriceAt, resolved_outcomes: Mapping[str, str], settings: RiskSettings, now: datetime
) -> SharpScore:
    """One player's score from their trades (module docstring for the formula)."""
    markout = markout_edge(trades, price_at, settings.horizons, now)
    results = results_edge(trades, resolved_outcomes)
    if markout.value is not None and results.value is not None:
        edge = MARKOUT_WEIGHT * markout.value + RESULTS_WEIGHT * results.value
    elif markout.value is not None:
        edge = markout.value
    elif results.value is not None:
        edge = results.value
    else:
        edge = ZERO
    scored = len(markout.trade_ids | results.trade_ids)
    score = _score(edge, settings.sharp_full_edge) if scored >= settings.sharp_min_trades else ZERO
    return SharpScore(score=score, markout_edge=markout.value, results_edge=results.value, trades_scored=scored)


def _score(edge: Decimal, full_edge: Decimal) -> Decimal:
    if full_edge <= 0:  # misconfigured: any positive edge is fully sharp
        return ONE if edge > 0 else ZERO
    return min(max(edge / full_edge, ZERO), ONE).quantize(SCORE_STEP, rounding=ROUND_HALF_UP)


def _stored_edge(value: Decimal | None) -> Decimal:
    if value is None:
        return ZERO
    return min(max(value, -EDGE_LIMIT), EDGE_LIMIT).quantize(SCORE_STEP, rounding=ROUND_HALF_UP)


def sharp_scores_recompute(*, since_days: int = 30, now: datetime | None = None) -> int:
    """Score every player who traded in the last ``since_days`` days, on those trades; upsert
    their profiles. Returns the number of profiles written.

    Players who did not trade in the window keep their last profile (a refused player stays
    refused until the risk team lowers the score or the thresholds)."""
    now = now or timezone.now()
    since = now - timedelta(days=since_days)
    settings = risk_config().settings
    recent = Trade.objects.filter(created_at__gte=since, created_at__lte=now)
    player_ids = list(recent.order_by("player_id").values_list("player_id", flat=True).distinct())
    written = 0
    for start in range(0, len(player_ids), BATCH_PLAYERS):
        written += _profiles_write(player_ids=player_ids[start : start + BATCH_PLAYERS], since=since, now=now, settings=settings)
    log.info("sharp scores recomputed for %d players", written)
    return written


def player_sharp_score_refresh(*, player, since_days: int = 30, now: datetime | None = None) -> PlayerRiskProfile:
    """Recompute one player's profile now (same window and formula as the beat task)."""
    now = now or timezone.now()
    _profiles_write(player_ids=[player.pk], since=now - timedelta(days=since_days), now=now, settings=risk_config().settings)
    return PlayerRiskProfile.objects.get(player_id=player.pk)


def _profiles_write(*, player_ids: list, since: datetime, now: datetime, settings: RiskSettings) -> int:
    """A constant number of queries for a batch of players: their trades, the resolved markets,
    the price ticks those trades are measured on, and one upsert."""
    trades = list(
        Trade.objects.filter(player_id__in=player_ids, created_at__gte=since, created_at__lte=now)
        .only("id", "player_id", "market_id", "side", "outcome", "shares", "price_executed", "cost", "created_at")
        .order_by("player_id", "created_at")
    )
    by_player: dict = defaultdict(list)
    for trade in trades:
        by_player[trade.player_id].append(trade)
    market_ids = sorted({t.market_id for t in trades})
    resolved: dict[str, str] = {}
    for chunk in _chunks(market_ids, BATCH_MARKETS):
        resolved.update(Market.objects.filter(pk__in=chunk, status=MarketStatus.RESOLVED).values_list("id", "outcome"))
    price_at = price_history_load(trades=trades, horizons=settings.horizons, now=now)
    profiles = []
    for player_id in player_ids:
        result = player_sharp_score(
            trades=by_player.get(player_id, []), price_at=price_at, resolved_outcomes=resolved, settings=settings, now=now
        )
        profiles.append(
            PlayerRiskProfile(
                player_id=player_id,
                sharp_score=result.score,
                markout_edge=_stored_edge(result.markout_edge),
                results_edge=_stored_edge(result.results_edge),
                trades_scored=result.trades_scored,
                computed_at=now,
            )
        )
    PlayerRiskProfile.objects.bulk_create(
        profiles,
        update_conflicts=True,
        unique_fields=["player"],
        update_fields=["sharp_score", "markout_edge", "results_edge", "trades_scored", "computed_at"],
    )
    return len(profiles)


def price_history_load(*, trades: Sequence[Trade], horizons: Sequence[int], now: datetime) -> PriceHistory:
    """The ticks needed to mark out ``trades``: every tick of their markets between the first and
    the last time looked up, plus, per market and outcome, the last tick before that range (the
    price in force at its start)."""
    if not trades or not horizons:
        return PriceHistory()
    first = min(t.created_at for t in trades) + timedelta(seconds=min(int(h) for h in horizons))
    last = min(now, max(t.created_at for t in trades) + timedelta(seconds=max(int(h) for h in horizons)))
    if first > last:
        return PriceHistory()
    wanted = {(t.market_id, t.outcome) for t in trades}
    ticks: list[tuple[str, str, datetime, Decimal]] = []
    for chunk in _chunks(sorted({m for m, _ in wanted}), BATCH_MARKETS):
        in_force = (
            ReferencePriceTick.objects.filter(market_id__in=chunk, at__lt=first)
            .values("market_id", "outcome")
            .annotate(last_at=Max("at"))
            .values_list("market_id", "outcome", "last_at")
        )
        in_force = {(m, o): at for m, o, at in in_force if (m, o) in wanted}
        if in_force:
            rows = (
                ReferencePriceTick.objects.filter(market_id__in=chunk, at__in=set(in_force.values()))
                .order_by("at", "id")
                .values_list("market_id", "outcome", "at", "mid_price")
            )
            ticks += [row for row in rows if in_force.get((row[0], row[1])) == row[2]]
        rows = (
            ReferencePriceTick.objects.filter(market_id__in=chunk, at__gte=first, at__lte=last)
            .order_by("at", "id")
            .values_list("market_id", "outcome", "at", "mid_price")
        )
        ticks += [row for row in rows if (row[0], row[1]) in wanted]
    return PriceHistory(ticks)


def _chunks(items: list, size: int):
    for start in range(0, len(items), size):
        yield items[start : start + size]
