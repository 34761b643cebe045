"""Wall 4 inputs and the player classes (SPEC §6, §16): each player's composite score of five
components, its class, and the sharp score the walls read. Recomputed by beat tasks (risk/tasks.py:
incremental every few minutes, in full daily); the walls read the stored PlayerRiskProfile
(risk/services/assessment.py).

Every number below is Decimal (no floats anywhere), over the player's trades of the last 30 days
("the window").

The measurements:

  stake(t)        = t.cost: dollars staked on a buy, proceeds of a sell
  mid(t, h)       = the reference mid of the traded outcome at t.created_at + h (h one of the
                    markout horizons, default 60, 300, 3600 s): the latest tick at or before that
                    time. A pair (t, h) is measured only when t.created_at + h <= now and such a
                    tick exists.
  markout(t, h)   = buy:  t.shares x (mid(t, h) - t.price_executed) / 100
                    sell: t.shares x (t.price_executed - mid(t, h)) / 100
  markout edge    = sum of markout(t, h) / sum of stake(t), both over every measured pair (a trade
                    counts once per horizon it was measured at); None when no pair is measured.
  result(t)       = on a resolved market only (voided, open and resolving markets are ignored):
                    buy of the winning outcome  shares - cost
                    buy of the losing outcome   -cost
                    sell                        proceeds - shares x (1 if that outcome won else 0)
  results edge    = sum of result(t) / sum of stake(t) over those trades (kept for the risk team;
                    the composite uses the win rate instead)

The five components, each in [0, 1] and rounded to 4 places (half up); 1 is the sharpest:

  win rate   (0.30) resolved trades = the trades on resolved markets; a buy wins when its outcome
                    won, a sell wins when its outcome lost. win rate = wins / resolved trades, or
                    0.5 (neutral) while there are fewer than 5 resolved trades.
  edge       (0.25) clamp(markout edge / sharp_full_edge, 0, 1); 0 when no pair is measured.
  timing     (0.15) "trading just before large moves": favourable move(t, h) = mid(t, h) - t.price_mid
                    for a buy, t.price_mid - mid(t, h) for a sell (price_mid: the mid when the trade
                    was made). A trade is timed when its largest favourable move over its measured
                    horizons is >= timing_move_points (default 5 points).
                    timing = timed trades / trades with at least one measured pair; 0 when none.
  sizing     (0.15) "stake relative to the player's usual": usual = the median stake of the
                    player's trades in the window (the mean of the two middle stakes for an even
                    count). A large trade has stake >= sizing_multiple (default 2) x usual.
                    sizing = large trades whose markout summed over their measured pairs is > 0 /
                    large trades with at least one measured pair; 0 when there is none. (Staking
                    big exactly when right.)
  diversity  (0.15) 1 - sum over markets of (the market's share of the player's stake)^2 (one minus
                    the Herfindahl index): 0 for a single market, 0.5 for two equal ones, towards 1
                    for many; 0 when nothing was staked.

  composite  = 100 x (0.30 win rate + 0.25 edge + 0.15 timing + 0.15 sizing + 0.15 diversity),
               from the rounded components, to 2 places (half up): 0-100.
  class      = professional from class_professional_at (default 80), sharp from class_sharp_at
               (60), moderate from class_moderate_at (40), else recreational.
  sharp score (what wall 4's thresholds spreadWidenAt / limitAt / refuseAt compare, 0-1)
             = composite / 100.
  While fewer than sharp_min_trades trades were scored (a trade is scored when it has a measured
  pair or a result), the components are stored but the composite and the sharp score are 0 and
  the class is recreational: no verdict on too little data.
"""

import logging
from bisect import bisect_right
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

from django.db.models import F, Max, Q
from django.utils import timezone

from casino.models import Market, MarketStatus, ReferencePriceTick, Side, Trade
from risk.models import PlayerClass, PlayerRiskProfile, RiskSettings
from risk.services.config import risk_config

log = logging.getLogger("house.risk.sharp")

ZERO = Decimal("0")
ONE = Decimal("1")
HUNDRED = Decimal("100")
SCORE_STEP = Decimal("0.0001")
EDGE_LIMIT = Decimal("99.9999")  # what PlayerRiskProfile's edge columns can hold
BATCH_PLAYERS = 500  # players scored per round of queries
BATCH_MARKETS = 500  # markets per IN (...) list
PROFILE_CLASS_FIELDS = ("win_rate", "edge", "timing", "sizing", "diversity", "composite_score", "player_class")

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
    components: "Components | None" = None


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


@dataclass(frozen=True)
class Components:
    """The five components (0-1, 4 places), the composite (0-100, 2 places) and the class."""

    win_rate: Decimal
    edge: Decimal
    timing: Decimal
    sizing: Decimal
    diversity: Decimal
    composite: Decimal
    player_class: str


WEIGHTS = {
    "win_rate": Decimal("0.30"),
    "edge": Decimal("0.25"),
    "timing": Decimal("0.15"),
    "sizing": Decimal("0.15"),
    "diversity": Decimal("0.15"),
}
WIN_RATE_MIN_TRADES = 5
NEUTRAL_WIN_RATE = Decimal("0.5")
COMPOSITE_STEP = Decimal("0.01")


def _unit(value: Decimal) -> Decimal:
    return min(max(value, ZERO), ONE).quantize(SCORE_STEP, rounding=ROUND_HALF_UP)


def win_rate_component(trades: Iterable[Trade], resolved_outcomes: Mapping[str, str]) -> Decimal:
    wins = resolved = 0
    for trade in trades:
        winner = resolved_outcomes.get(trade.market_id)
        if winner is None:
            continue
        resolved += 1
        won = trade.outcome == winner
        wins += won if trade.side == Side.BUY else not won
    if resolved < WIN_RATE_MIN_TRADES:
        return NEUTRAL_WIN_RATE
    return _unit(Decimal(wins) / Decimal(resolved))


def _median(values: list[Decimal]) -> Decimal:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def diversity_component(trades: Iterable[Trade]) -> Decimal:
    by_market: dict[str, Decimal] = defaultdict(lambda: ZERO)
    for trade in trades:
        by_market[trade.market_id] += trade.cost
    total = sum(by_market.values(), ZERO)
    if total <= 0:
        return ZERO
    return _unit(ONE - sum(((stake / total) ** 2 for stake in by_market.values()), ZERO))


def player_class(composite: Decimal, settings: RiskSettings) -> str:
    if composite >= settings.class_professional_at:
        return PlayerClass.PROFESSIONAL
    if composite >= settings.class_sharp_at:
        return PlayerClass.SHARP
    if composite >= settings.class_moderate_at:
        return PlayerClass.MODERATE
    return PlayerClass.RECREATIONAL


def player_components(
    *, trades: Sequence[Trade], price_at: PriceAt, resolved_outcomes: Mapping[str, str], settings: RiskSettings, now: datetime
) -> Components:
    """The five components of one player's trades, the composite and the class (module docstring)."""
    total_markout = total_stake = ZERO
    measured = timed = large_measured = large_right = 0
    stakes = [trade.cost for trade in trades]
    usual = _median(stakes) if stakes else ZERO
    for trade in trades:
        trade_markout = ZERO
        pairs = 0
        best_move = None
        for horizon in settings.horizons:
            at = trade.created_at + timedelta(seconds=int(horizon))
            if at > now:
                continue
            mid = price_at(trade.market_id, trade.outcome, at)
            if mid is None:
                continue
            buy = trade.side == Side.BUY
            trade_markout += trade.shares * ((mid - trade.price_executed) if buy else (trade.price_executed - mid)) / HUNDRED
            total_stake += trade.cost
            pairs += 1
            if trade.price_mid is not None:
                move = (mid - trade.price_mid) if buy else (trade.price_mid - mid)
                best_move = move if best_move is None else max(best_move, move)
        if not pairs:
            continue
        total_markout += trade_markout
        measured += 1
        timed += best_move is not None and best_move >= settings.timing_move_points
        if trade.cost >= settings.sizing_multiple * usual:
            large_measured += 1
            large_right += trade_markout > 0
    edge = _unit(total_markout / total_stake / settings.sharp_full_edge) if total_stake > 0 and settings.sharp_full_edge > 0 else ZERO
    if total_stake > 0 and settings.sharp_full_edge <= 0:  # misconfigured: any positive edge is fully sharp
        edge = ONE if total_markout > 0 else ZERO
    values = {
        "win_rate": win_rate_component(trades, resolved_outcomes),
        "edge": edge,
        "timing": _unit(Decimal(timed) / Decimal(measured)) if measured else ZERO,
        "sizing": _unit(Decimal(large_right) / Decimal(large_measured)) if large_measured else ZERO,
        "diversity": diversity_component(trades),
    }
    composite = (HUNDRED * sum((WEIGHTS[name] * value for name, value in values.items()), ZERO)).quantize(
        COMPOSITE_STEP, rounding=ROUND_HALF_UP
    )
    return Components(**values, composite=composite, player_class=player_class(composite, settings))


def player_sharp_score(
    *, trades: Sequence[Trade], price_at: PriceAt, resolved_outcomes: Mapping[str, str], settings: RiskSettings, now: datetime
) -> SharpScore:
    """One player's sharp score and class from their trades (module docstring for the formula)."""
    markout = markout_edge(trades, price_at, settings.horizons, now)
    results = results_edge(trades, resolved_outcomes)
    scored = len(markout.trade_ids | results.trade_ids)
    components = player_components(trades=trades, price_at=price_at, resolved_outcomes=resolved_outcomes, settings=settings, now=now)
    if scored < settings.sharp_min_trades:
        components = replace(components, composite=ZERO, player_class=PlayerClass.RECREATIONAL)
    return SharpScore(
        score=(components.composite / HUNDRED).quantize(SCORE_STEP),
        markout_edge=markout.value,
        results_edge=results.value,
        trades_scored=scored,
        components=components,
    )


def _stored_edge(value: Decimal | None) -> Decimal:
    if value is None:
        return ZERO
    return min(max(value, -EDGE_LIMIT), EDGE_LIMIT).quantize(SCORE_STEP, rounding=ROUND_HALF_UP)


def sharp_scores_recompute(*, since_days: int = 30, now: datetime | None = None, incremental: bool = False) -> int:
    """Score every player who traded in the last ``since_days`` days, on those trades; upsert
    their profiles. Returns the number of profiles written.

    ``incremental``: only the players whose score can have changed since their profile was
    computed: no profile yet, a trade whose markout horizons were still running at the last
    computation (created after computed_at minus the longest horizon), or a trade on a market
    resolved since (a resolved market whose row changed after computed_at). Trades leaving the
    window are taken into account by the full run (daily beat entry).

    Players who did not trade in the window keep their last profile (a refused player stays
    refused until the risk team lowers the score or the thresholds)."""
    now = now or timezone.now()
    since = now - timedelta(days=since_days)
    settings = risk_config().settings
    recent = Trade.objects.filter(created_at__gte=since, created_at__lte=now)
    if incremental:
        longest = timedelta(seconds=max((int(h) for h in settings.horizons), default=0))
        computed = F("player__risk_profile__computed_at")
        recent = recent.filter(
            Q(player__risk_profile__isnull=True)
            | Q(player__risk_profile__computed_at__isnull=True)
            | Q(created_at__gt=computed - longest)
            | Q(market__status=MarketStatus.RESOLVED, market__updated_at__gt=computed)
        )
    player_ids = list(recent.order_by("player_id").values_list("player_id", flat=True).distinct())
    written = 0
    for start in range(0, len(player_ids), BATCH_PLAYERS):
        written += _profiles_write(player_ids=player_ids[start : start + BATCH_PLAYERS], since=since, now=now, settings=settings)
    log.info("sharp scores recomputed for %d players%s", written, " (incremental)" if incremental else "")
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
        .only("id", "player_id", "market_id", "side", "outcome", "shares", "price_mid", "price_executed", "cost", "created_at")
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
                win_rate=result.components.win_rate,
                edge=result.components.edge,
                timing=result.components.timing,
                sizing=result.components.sizing,
                diversity=result.components.diversity,
                composite_score=result.components.composite,
                player_class=result.components.player_class,
            )
        )
    PlayerRiskProfile.objects.bulk_create(
        profiles,
        update_conflicts=True,
        unique_fields=["player"],
        update_fields=[
            "sharp_score",
            "markout_edge",
            "results_edge",
            "trades_scored",
            "computed_at",
            *PROFILE_CLASS_FIELDS,
        ],
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
