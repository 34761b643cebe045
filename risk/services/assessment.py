"""The five-wall risk engine, run on every trade before money moves (SPEC §6).

Order: the kill switches (global, operator: 503), then
  1 velocity    trades and stake per player in a rolling minute; trades per market in a burst window
  2 tier        max stake per trade, max position per market, max daily loss (scaled down for sharp players);
                and the limits the operator set on the player (SPEC §13: max stake per trade, max daily
                stake, max daily loss), on top of the tier's, with the same definitions
  3 exposure    the market's cap, its category's cap and the global cap on the house's worst-case loss
  4 sharp       refusal above the refuse threshold (the spread widening and lower limits come from the same score)
  5 operator    the operator's caps on open exposure, daily turnover and daily net loss
A player the operator blocked buys nothing (400 Player blocked, before the walls).
The automatic circuit breakers (SPEC §16, risk/services/breakers.py) come right after the kill
switches: the platform halt (503) and the per-player loss halt (400), checked in the same
reservation as the walls' counters.
Sells are never refused by a breaker or a wall (SPEC §16): every limit below applies to buys;
a sell is still counted (velocity, turnover, net loss) and books into the windows. Only the manual
kill switches stop sells too (docs/decisions.md).
The first wall that refuses decides. A refusal is 400 (the reference message, or "Trade
rejected by risk engine") with a code naming wall and limit, and is recorded as a
RiskDecision. Counters live in Redis and are reserved atomically; a ticket releases its
reservations if the trade fails later. Exposure and position limits are checked exactly
inside the trade's own transaction (check_in_transaction, reserve_exposure).
"""

import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

from casino.services.exposure import CATEGORY_UNCAPPED, category_key, exposure_apply
from core.errors import HouseError
from risk import counters
from risk.models import RiskDecision, Wall
from risk.services.breakers import PLATFORM_LOSS, PLAYER_LOSS, breaker_counters, breaker_platform_trip, breaker_player_tripped
from risk.services.config import risk_config, risk_config_reload

log = logging.getLogger("house.risk")

HUNDRED = Decimal("100")
ZERO = Decimal("0")
REJECTED = "Trade rejected by risk engine"


class RiskRefusal(HouseError):
    def __init__(self, message: str, *, wall: str, limit: str, values: dict, status: int = 400, code: str | None = None):
        """``code``: a refusal with a code of its own (not "risk.<wall>.<limit>") says only that."""
        extra = {} if code else {"wall": wall, "limit": limit}
        super().__init__(message, code=code or f"risk.{wall}.{limit}", status=status, extra=extra)
        self.wall, self.limit, self.values = wall, limit, values
        self.recorded = False


def cents(amount: Decimal) -> int:
    return int((amount * HUNDRED).to_integral_value())


@dataclass
class RiskTicket:
    """What the walls decided for one trade, and the reservations to give back if it fails."""

    player: object
    market_id: str
    side: str
    outcome: str
    market_cap: Decimal
    global_cap: Decimal
    spread_extra: Decimal = ZERO
    limit_factor: Decimal = Decimal("1")
    tier: object = None
    reservations: list = field(default_factory=list)
    enabled: bool = True
    config_version: str | None = None
    # Issue 14, category caps: the market's category (key) and its cap, set by category_bind.
    category: str = ""
    category_cap: Decimal | None = None

    def check_in_transaction(self, *, positions: list, stake: Decimal) -> None:
        """Wall 2, max position per market, exact: call with the player's positions in this market
        read inside the trade's transaction (after the player's wallet row is locked)."""
        if not self.enabled or self.tier is None or self.side != "buy":
            return
        held = sum((p.shares * p.avg_price / HUNDRED for p in positions if p.status == "open"), ZERO)
        limit = self.tier.max_position_per_market * self.limit_factor
        if held + stake > limit:
            raise self._refuse(Wall.TIER, "max_position_per_market", {"held": held, "stake": stake, "limit": limit})

    def reserve_exposure(self, *, outcome: str, shares_delta: Decimal, cash_delta: Decimal, locked: bool = False) -> None:
        """Wall 3, exact: take the trade's exposure on the market and global books, or refuse.

        May raise ExposureNeedsLock (a ConcurrentUpdate): roll back, retry with locked=True."""
        exposure_apply(
            market_id=self.market_id,
            outcome=outcome,
            shares_delta=shares_delta,
            cash_delta=cash_delta,
            cap=self.market_cap,
            global_cap=self.global_cap,
            locked=locked,
            category=self.category,
            category_cap=self.category_cap,
            category_refuses=self.side == "buy",  # SPEC §16: a sell is never refused by a wall
            refuse=self.side == "buy",
        )

    # --- Issue 14: category caps ---------------------------------------------------------------

    def category_bind(self, category: str) -> None:
        """The market's category as read by this trade, and its cap from the configuration the walls used."""
        self.category = category_key(category)
        self.category_cap = risk_config(verify=False).category_cap(self.category)

    def category_params(self) -> dict:
        """The category parameters of the trade's one-statement write (house_wallet_sql.py)."""
        return {"category": self.category, "c_cap": CATEGORY_UNCAPPED if self.category_cap is None else self.category_cap}

    def release(self) -> None:
        for reservation in self.reservations:
            reservation.release()
        self.reservations = []

    def _refuse(self, wall: str, limit: str, values: dict) -> RiskRefusal:
        return RiskRefusal(REJECTED, wall=wall, limit=limit, values=values)


WALL_ORDER = {Wall.BREAKER: 0, Wall.KILL_SWITCH: 0, Wall.VELOCITY: 1, Wall.TIER: 2, Wall.EXPOSURE: 3, Wall.SHARP: 4, Wall.OPERATOR: 5}


def risk_assess(*, player, market_id: str, side: str, outcome: str, amount: Decimal, mid_price: Decimal) -> RiskTicket:
    """Run the walls for a trade; raises RiskRefusal (recorded) or returns the ticket.

    One Redis round trip: every counter of walls 1, 2 and 5 is checked and reserved by one
    atomic script, which also verifies that this process's copy of the risk configuration
    is current (else it reloads and goes again). The checks that need no counter (kill
    switches, max stake, sharp refusal) are evaluated first; when several walls refuse, the
    lowest wall decides. Wall 3 is exact inside the trade's transaction (reserve_exposure).
    """
    config = risk_config(verify=False)
    for _attempt in range(3):
        try:
            return _run_walls(config, player, market_id, side, outcome, amount, mid_price)
        except _ConfigChanged:
            config = risk_config_reload()
        except RiskRefusal as refusal:
            risk_record_refusal(player=player, market_id=market_id, side=side, outcome=outcome, amount=amount, refusal=refusal)
            raise
    return _run_walls(risk_config_reload(), player, market_id, side, outcome, amount, mid_price, verify=False)


class _ConfigChanged(Exception):
    pass


def _run_walls(config, player, market_id, side, outcome, amount, mid_price, *, verify: bool = True) -> RiskTicket:
    s = config.settings
    stake = amount if side == "buy" else (amount * mid_price / HUNDRED)  # sells: estimated proceeds
    score = player.risk_profile.sharp_score if _has_profile(player) else ZERO
    ticket = RiskTicket(
        player=player,
        market_id=market_id,
        side=side,
        outcome=outcome,
        market_cap=config.market_cap(market_id),
        global_cap=s.global_exposure_cap,
        tier=config.tier(player.tier),
        config_version=config.version,
    )
    if score >= s.sharp_spread_widen_at:
        ticket.spread_extra = s.sharp_extra_spread
    if score >= s.sharp_limit_at:
        ticket.limit_factor = s.sharp_limit_factor
    _kill_switches(player, s)
    _platform_halted(s, side)
    _player_blocked(player, side)
    early = _first_refusal([_wall_tier_stake(ticket, stake), _wall_player_stake(ticket, stake), _wall_sharp(s, score, side)])
    wanted = (
        _breaker_counters(ticket, s, stake)  # first: a breaker decides before the walls' counters
        + _velocity_counters(ticket, s, stake, market_id)
        + _daily_loss_counter(ticket, stake)
        + _daily_stake_counter(ticket, stake)
        + _operator_counters(player, side, stake, amount, mid_price)
    )
    result = counters.reserve([c for _, _, c in wanted], expected_version=(config.version or "") if verify else "")
    if isinstance(result, counters.VersionChanged):
        raise _ConfigChanged()
    if isinstance(result, counters.Exceeded):
        wall, limit, counter = wanted[result.index]
        bound = counter.limit
        if limit == DAILY_LOSS:
            limit, bound = _daily_loss_refusing(ticket, result.current + counter.add)
        late = RiskRefusal(REJECTED, wall=wall, limit=limit, values={"current": result.current, "adding": counter.add, "limit": bound})
        if wall == Wall.BREAKER:
            late = _breaker_tripped(player, limit, result.current, bound)
        raise _first_refusal([early, late])
    if early is not None:
        result.release()
        raise early
    ticket.reservations.append(result)
    return ticket


def _first_refusal(refusals: list) -> RiskRefusal | None:
    present = [r for r in refusals if r is not None]
    return min(present, key=lambda r: WALL_ORDER[r.wall]) if present else None


def _has_profile(player) -> bool:
    try:
        return player.risk_profile is not None
    except Exception:  # noqa: BLE001 - RelatedObjectDoesNotExist: no score yet
        return False


def _kill_switches(player, settings_row) -> None:
    if not settings_row.trading_enabled:
        raise RiskRefusal("Trading is disabled", wall=Wall.KILL_SWITCH, limit="global", values={}, status=503)
    limit = _operator_limit(player)
    if limit is not None and not limit.trading_enabled:
        raise RiskRefusal(
            "Trading is disabled", wall=Wall.KILL_SWITCH, limit="operator", values={"operator": str(player.operator_id)}, status=503
        )


def _player_blocked(player, side: str) -> None:
    """The operator blocked the player (SPEC §13): no buys; sells go on."""
    if side == "buy" and getattr(player, "status", "active") == "blocked":
        raise RiskRefusal("Player blocked", wall=Wall.KILL_SWITCH, limit="player_blocked", values={}, code="player_blocked")


def _operator_limit(player):
    try:
        return player.operator.risk_limit
    except Exception:  # noqa: BLE001 - no limits configured for this operator
        return None


_day_named: tuple[int, str] = (-1, "")  # (UTC day number, its name): strftime on every trade cost more than the rest of the key


def _today() -> str:
    global _day_named
    day = int(time.time() // 86400)
    if _day_named[0] != day:
        _day_named = (day, datetime.fromtimestamp(day * 86400, UTC).strftime("%Y%m%d"))
    return _day_named[1]


def _velocity_counters(ticket: RiskTicket, s, stake: Decimal, market_id: str) -> list:
    """Wall 1: trades and stake per player in a rolling minute, trades per market in the burst window
    (sells are counted, never refused)."""
    pid = ticket.player.pk
    buy = ticket.side == "buy"
    return [
        (
            Wall.VELOCITY,
            "max_trades_per_minute",
            counters.Counter.rolling(f"v:t:{pid}", window_seconds=60, add=1, limit=s.max_trades_per_minute if buy else None),
        ),
        (
            Wall.VELOCITY,
            "max_stake_per_minute",
            counters.Counter.rolling(
                f"v:s:{pid}", window_seconds=60, add=cents(stake) if buy else 0, limit=cents(s.max_stake_per_minute) if buy else None
            ),
        ),
        (
            Wall.VELOCITY,
            "market_burst",
            counters.Counter.rolling(
                f"v:m:{market_id}", window_seconds=s.market_burst_window_seconds, add=1, limit=s.market_burst_trades if buy else None
            ),
        ),
    ]


DAILY_LOSS = "max_daily_loss"


def _daily_loss_counter(ticket: RiskTicket, stake: Decimal) -> list:
    """Wall 2: what the player put at risk today, net of what came back (stakes - proceeds).

    One counter holds both the tier's limit and the one the operator set on the player: the
    tighter of the two is checked (_daily_loss_refusing names the one that refused)."""
    net_spend = cents(stake) if ticket.side == "buy" else -cents(stake)
    bounds = [b for b in _daily_loss_bounds(ticket) if b is not None]
    limit = min(bounds) if bounds and net_spend > 0 else None
    return [(Wall.TIER, DAILY_LOSS, counters.Counter.daily(f"d:loss:{ticket.player.pk}:{_today()}", add=net_spend, limit=limit))]


def _daily_loss_bounds(ticket: RiskTicket) -> tuple[int | None, int | None]:
    """The daily loss limits in cents: the tier's (scaled for sharp players), the player's own."""
    tier = cents(ticket.tier.max_daily_loss * ticket.limit_factor) if ticket.tier is not None else None
    own = getattr(ticket.player, "max_daily_loss", None)
    return tier, (cents(own) if own is not None else None)


def _daily_loss_refusing(ticket: RiskTicket, total: int) -> tuple[str, int]:
    """Which daily loss limit ``total`` (cents) went past: the house's tier first, then the player's."""
    tier, own = _daily_loss_bounds(ticket)
    if tier is not None and total > tier:
        return DAILY_LOSS, tier
    return "player_limit_daily_loss", own


def _daily_stake_counter(ticket: RiskTicket, stake: Decimal) -> list:
    """Wall 2, the operator's limit on the player: the sum of buy stakes in the UTC day. Every buy is
    counted, limit or not, so a limit set during the day sees the day's stakes."""
    own = getattr(ticket.player, "max_daily_stake", None)
    buy = ticket.side == "buy"
    counter = counters.Counter.daily(
        f"d:stake:{ticket.player.pk}:{_today()}", add=cents(stake) if buy else 0, limit=cents(own) if buy and own is not None else None
    )
    return [(Wall.TIER, "player_limit_daily_stake", counter)]


def _wall_player_stake(ticket: RiskTicket, stake: Decimal) -> RiskRefusal | None:
    """Wall 2, the operator's limit on the player's stake of one buy (not scaled: the operator's figure)."""
    own = getattr(ticket.player, "max_stake_per_trade", None)
    if own is None or ticket.side != "buy" or stake <= own:
        return None
    return RiskRefusal(REJECTED, wall=Wall.TIER, limit="player_limit_stake_per_trade", values={"stake": stake, "limit": own})


def _wall_tier_stake(ticket: RiskTicket, stake: Decimal) -> RiskRefusal | None:
    if ticket.tier is None or ticket.side != "buy":
        return None
    limit = ticket.tier.max_stake * ticket.limit_factor
    if stake > limit:
        return RiskRefusal(REJECTED, wall=Wall.TIER, limit="max_stake", values={"stake": stake, "limit": limit, "tier": ticket.tier.name})
    return None


def _wall_sharp(s, score: Decimal, side: str) -> RiskRefusal | None:
    if side == "buy" and score >= s.sharp_refuse_at:
        return RiskRefusal(REJECTED, wall=Wall.SHARP, limit="refuse_at", values={"score": score, "refuse_at": s.sharp_refuse_at})
    return None


def _operator_counters(player, side: str, stake: Decimal, amount: Decimal, mid: Decimal) -> list:
    """Wall 5. Open exposure = what the house would owe the operator's players if every open
    position won, minus what they paid (a running total, rebuilt exactly by a beat task).

    Sells are counted but never refused (SPEC §16). The daily net loss therefore refuses the buys
    made once the day's net loss already passes the limit (a counter adding 0 checks it), as the
    breakers do; a sale that takes the day past it goes through."""
    limit = _operator_limit(player)
    oid = player.operator_id
    day = _today()
    paid = cents(stake) if side == "sell" else -cents(stake)  # the house pays proceeds on sells, takes stakes on buys
    shares = amount * HUNDRED / mid if side == "buy" else amount
    open_delta = cents(shares - stake) if side == "buy" else -cents(shares - stake)
    return [
        (
            Wall.OPERATOR,
            "max_open_exposure",
            counters.Counter.total(
                operator_open_exposure_key(oid), add=open_delta, limit=_limit_cents(limit, "max_open_exposure") if open_delta > 0 else None
            ),
        ),
        (
            Wall.OPERATOR,
            "max_daily_turnover",
            counters.Counter.daily(
                f"o:turnover:{oid}:{day}", add=cents(stake), limit=_limit_cents(limit, "max_daily_turnover") if side == "buy" else None
            ),
        ),
        (
            Wall.OPERATOR,
            "max_daily_net_loss",
            counters.Counter.daily(
                f"o:netloss:{oid}:{day}", add=0, limit=_limit_cents(limit, "max_daily_net_loss") if side == "buy" else None
            ),
        ),
        (Wall.OPERATOR, "net_loss_book", counters.Counter.daily(f"o:netloss:{oid}:{day}", add=paid, limit=None)),
    ]


def operator_open_exposure_key(operator_id) -> str:
    return f"o:open:{operator_id}"


def _limit_cents(limit, name: str) -> int | None:
    value = getattr(limit, name, None) if limit is not None else None
    return cents(value) if value is not None else None


def risk_record_refusal(*, player, market_id: str, side: str, outcome: str, amount, refusal: HouseError) -> None:
    """Keep the refusal for the risk team (its own short transaction; never fails the response).

    Takes a RiskRefusal, or any HouseError whose code is "risk.<wall>.<limit>" (the exact
    exposure checks raised inside the trade's transaction)."""
    if getattr(refusal, "recorded", False):
        return
    _, wall, limit = (refusal.code.split(".", 2) + ["", ""])[:3]
    wall, limit = getattr(refusal, "wall", wall), getattr(refusal, "limit", limit)
    try:
        RiskDecision.objects.create(
            player_id=getattr(player, "pk", None),
            operator_id=getattr(player, "operator_id", None),
            market_id=market_id[:128],
            side=side,
            outcome=outcome,
            amount=amount,
            wall=wall,
            limit=limit,
            code=refusal.code,
            message=refusal.message,
            values={k: str(v) for k, v in getattr(refusal, "values", {}).items()},
        )
        refusal.recorded = True
    except Exception:  # noqa: BLE001
        log.exception("could not record risk decision %s", refusal.code)


def player_spread_extra(*, player) -> Decimal:
    """Extra spread for this player from the sharp score (wall 4): used by quotes and trades."""
    if not _has_profile(player):
        return ZERO
    s = risk_config().settings
    return s.sharp_extra_spread if player.risk_profile.sharp_score >= s.sharp_spread_widen_at else ZERO


def market_exposure_cap(*, market_id: str) -> Decimal:
    """The market's own cap if it has one, else the house default."""
    return risk_config().market_cap(market_id)


# --- Issue 14, pricing (SPEC §16): what quotes and the catalogue need of the risk configuration ---


@dataclass(frozen=True)
class PricingView:
    """What a quote or the catalogue needs of the risk configuration, read once (one check of the
    config version): the pricing parameters, the caller's tierExtra and sharpExtra, the market caps."""

    rules: object
    tier_extra: Decimal
    sharp_extra: Decimal
    market_cap: object  # market_id -> Decimal


def pricing_view(*, player) -> PricingView:
    """``player`` None (an anonymous caller): no tier and no sharp extra. The trade takes the same
    figures from its ticket (tier.extra_spread, spread_extra, market_cap)."""
    config = risk_config()
    s = config.settings
    tier_extra = sharp_extra = ZERO
    if player is not None:
        tier = config.tier(player.tier)
        tier_extra = tier.extra_spread if tier is not None else ZERO
        if _has_profile(player) and player.risk_profile.sharp_score >= s.sharp_spread_widen_at:
            sharp_extra = s.sharp_extra_spread
    return PricingView(rules=s, tier_extra=tier_extra, sharp_extra=sharp_extra, market_cap=config.market_cap)


# --- Issue 14: the automatic circuit breakers (SPEC §16; risk/services/breakers.py) ---------------


def _platform_halted(settings_row, side: str) -> None:
    """The platform breaker tripped: buys get 503 until staff reset it; sells go on."""
    if side == "buy" and settings_row.platform_halted:
        raise RiskRefusal("Trading is disabled", wall=Wall.BREAKER, limit=PLATFORM_LOSS, values={}, status=503)


def _breaker_counters(ticket: RiskTicket, s, stake: Decimal) -> list:
    """The player and platform loss windows: a buy takes its stake off the house's loss (after
    checking both halts), a sell adds its estimated proceeds."""
    loss = -cents(stake) if ticket.side == "buy" else cents(stake)
    return [
        (Wall.BREAKER, limit, counter)
        for limit, counter in breaker_counters(player_id=ticket.player.pk, side=ticket.side, loss_cents=loss, settings_row=s)
    ]


def _breaker_tripped(player, limit: str, current: int, bound: int) -> RiskRefusal:
    """A buy found a loss window past its halt: trip the breaker (recorded once), refuse the buy."""
    values = {"current": current, "limit": bound}
    if limit == PLATFORM_LOSS:
        breaker_platform_trip(loss_cents=current, limit_cents=bound)
        return RiskRefusal("Trading is disabled", wall=Wall.BREAKER, limit=PLATFORM_LOSS, values=values, status=503)
    breaker_player_tripped(player=player, loss_cents=current, limit_cents=bound)
    return RiskRefusal(REJECTED, wall=Wall.BREAKER, limit=PLAYER_LOSS, values=values)
