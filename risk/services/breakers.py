"""The automatic circuit breakers of SPEC §16, on top of the manual kill switches of §6.

The house's net loss (sale proceeds + payouts + refunds - stakes - what reversals and debt
recoveries took back: the opposite of the report's GGR) is kept per player and for the whole
platform in rolling 24 h windows of hourly buckets (risk.counters, Redis):
  - a trade books into them in the walls' one atomic reservation (a buy: its stake; a sell: its
    estimated proceeds at mid), given back with the other counters if the trade fails;
  - settlement books the payouts and refunds of a chunk when it commits (breaker_book);
  - breaker_windows_rebuild (beat) overwrites the windows with what the database says
    (reports.selectors.house_loss_buckets), so estimates and lost bookings never accumulate.

Per player: a buy is refused (400, risk.breaker.player_loss) while the player's window is above
playerLossHalt; the halt ends by itself as losses leave the window. Its first refusal writes a
RiskEvent (one per player per 24 h, not one per refused buy).
Platform: when the platform window goes above platformLossHalt (seen by a buy's reservation, by a
payout booking, or by the rebuild), RiskSettings.platform_halted is set by one conditional UPDATE
(so the critical RiskEvent is written once) and every buy gets 503 until staff reset it. A reset
starts a new platform window: only losses booked after it count, so the same losses do not trip
it again.
Sells are never refused by a breaker.
"""

import datetime
import logging
import uuid
from decimal import Decimal

from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

from reports.selectors import house_loss_buckets
from risk import counters
from risk.models import RiskEvent, RiskEventKind, RiskEventSeverity, RiskSettings
from risk.services.config import risk_config_changed, risk_settings

log = logging.getLogger("house.risk.breakers")

# Hourly: a loss leaves the window between 23 h and 24 h after it was booked. Each buy reads two windows in the
# walls' script; measured there, 96 quarter-hour buckets cost about 150 us a buy, 24 hourly ones about 60 us.
BUCKET_SECONDS = 3600
BUCKETS = 24
WINDOW_SECONDS = BUCKET_SECONDS * BUCKETS
PLATFORM_WINDOW_KEY = "b:platform"
PLAYER_LOSS = "player_loss"
PLATFORM_LOSS = "platform_loss"
HUNDRED = Decimal("100")


def player_window_key(player_id) -> str:
    return f"b:p:{player_id}"


def _cents(amount: Decimal) -> int:
    return int((amount * HUNDRED).to_integral_value())


def _window(key: str, *, add: int = 0, limit: int | None = None) -> counters.Counter:
    return counters.Counter(key, BUCKET_SECONDS, BUCKETS, add, -1 if limit is None else limit)


def breaker_counters(*, player_id, side: str, loss_cents: int, settings_row: RiskSettings) -> list[tuple[str, counters.Counter]]:
    """The breakers' part of the walls' reservation, as (limit name, counter); ``loss_cents``: what the
    trade adds to the house's net loss (a buy: minus its stake; a sell: its estimated proceeds).

    A buy first checks both windows as they are (a counter adding 0 with the halt as its limit:
    refused when the loss already *passes* the halt, i.e. is strictly above it), then books; a sell
    only books (never refused)."""
    player_key = player_window_key(player_id)
    checks = []
    if side == "buy":
        checks = [
            (PLATFORM_LOSS, _window(PLATFORM_WINDOW_KEY, limit=_cents(settings_row.platform_loss_halt))),
            (PLAYER_LOSS, _window(player_key, limit=_cents(settings_row.player_loss_halt))),
        ]
    return checks + [
        ("platform_book", _window(PLATFORM_WINDOW_KEY, add=loss_cents)),
        ("player_book", _window(player_key, add=loss_cents)),
    ]


def player_window_loss(*, player_id) -> Decimal:
    """The house's net loss to the player over the rolling 24 h, as the breaker sees it (dollars)."""
    return Decimal(counters.current_value(_window(player_window_key(player_id)))) / HUNDRED


def platform_window_loss() -> Decimal:
    """The house's net loss since the platform window started (the last reset, at most 24 h), dollars."""
    return Decimal(counters.current_value(_window(PLATFORM_WINDOW_KEY))) / HUNDRED


# --- trips ---------------------------------------------------------------------------------------


def breaker_player_tripped(*, player, loss_cents: int, limit_cents: int) -> None:
    """A buy of the player was refused by the player breaker: the first refusal in 24 h writes the event."""
    try:
        first = cache.add(f"breaker:player-halt:{player.pk}", 1, timeout=WINDOW_SECONDS)
    except Exception:  # noqa: BLE001 - no shared store: record it (duplicates are harmless, lost trips are not)
        first = True
    if not first:
        return
    try:
        RiskEvent.objects.create(
            kind=RiskEventKind.PLAYER_HALT,
            severity=RiskEventSeverity.WARNING,
            player_id=player.pk,
            message=f"Player loss halt: the house lost {_dollars(loss_cents)} to the player in 24 h (halt at {_dollars(limit_cents)})",
            values={"loss": str(_dollars(loss_cents)), "limit": str(_dollars(limit_cents)), "operator": str(player.operator_id)},
            actor="system",
        )
    except Exception:  # noqa: BLE001 - the refusal stands; the event is for the risk team
        log.exception("could not record the player halt of %s", player.pk)


def breaker_platform_trip(*, loss_cents: int, limit_cents: int, actor: str = "system") -> bool:
    """Halt the platform (buys: 503) unless it is halted already; True if this call halted it.

    One conditional UPDATE decides, so the critical event is written exactly once per halt however
    many workers see the loss at the same time. Every worker reloads its configuration (version bump)."""
    now = timezone.now()
    with transaction.atomic():
        risk_settings()  # the row exists
        halted = RiskSettings.objects.filter(pk=1, platform_halted=False).update(platform_halted=True, platform_halted_at=now)
        if not halted:
            return False
        manual = actor != "system"
        RiskEvent.objects.create(
            kind=RiskEventKind.PLATFORM_HALT,
            severity=RiskEventSeverity.CRITICAL,
            message=(
                f"Platform halted by {actor}"
                if manual
                else f"Platform loss halt: the house lost {_dollars(loss_cents)} in 24 h (halt at {_dollars(limit_cents)}); buys refused"
            ),
            values={"loss": str(_dollars(loss_cents)), "limit": str(_dollars(limit_cents)), "manual": manual},
            actor=actor,
        )
        risk_config_changed()  # this worker at once, every worker when it commits
    log.critical("platform halted (%s): net loss %s, halt at %s", actor, _dollars(loss_cents), _dollars(limit_cents))
    return True


def breaker_platform_halt(*, actor: str) -> bool:
    """Staff halt the platform by hand (PATCH breakers.platformHalted true, or the admin)."""
    s = risk_settings()
    return breaker_platform_trip(loss_cents=_cents(platform_window_loss()), limit_cents=_cents(s.platform_loss_halt), actor=actor)


def breaker_platform_reset(*, actor: str) -> bool:
    """Staff reset the platform halt; True if it was halted. The reset starts a new platform window:
    only losses booked after it count (the losses that tripped it do not trip it again)."""
    now = timezone.now()
    with transaction.atomic():
        risk_settings()
        row = RiskSettings.objects.select_for_update().get(pk=1)
        if not row.platform_halted:
            return False
        RiskSettings.objects.filter(pk=1).update(platform_halted=False, platform_halted_at=None, platform_window_start=now)
        RiskEvent.objects.create(
            kind=RiskEventKind.PLATFORM_RESET,
            severity=RiskEventSeverity.INFO,
            message=f"Platform halt reset by {actor}; the platform loss window starts again",
            values={"haltedAt": row.platform_halted_at.isoformat() if row.platform_halted_at else None},
            actor=actor,
        )
        transaction.on_commit(_platform_window_clear)
        risk_config_changed()
    log.warning("platform halt reset by %s", actor)
    return True


def _platform_window_clear() -> None:
    try:
        counters.set_windows([(_window(PLATFORM_WINDOW_KEY), {})])
    except Exception:  # noqa: BLE001 - the next rebuild starts the window at the reset anyway
        log.exception("could not clear the platform loss window")


# --- bookings outside the trade: settlement ------------------------------------------------------


def breaker_book(*, losses: dict) -> None:
    """Book money the house paid (or took back: negative) outside a trade, {player_id: dollars}, into
    the player and platform windows (one atomic Redis step), then trip the platform halt if the
    platform window passed it. Called when a settlement chunk commits; never raises."""
    items = {pid: _cents(amount) for pid, amount in losses.items() if amount}
    if not items:
        return
    try:
        total = sum(items.values())
        booked = [_window(player_window_key(pid), add=value) for pid, value in items.items()]
        counters.reserve([*booked, _window(PLATFORM_WINDOW_KEY, add=total)])
        if total > 0:
            breaker_platform_check()
    except Exception:  # noqa: BLE001 - the rebuild books it from the database
        log.exception("could not book settlement losses into the breaker windows")


def breaker_platform_check() -> bool:
    """Trip the platform halt if the platform window is above it (True if this call tripped it)."""
    s = risk_settings()
    if s.platform_halted:
        return False
    loss, limit = counters.current_value(_window(PLATFORM_WINDOW_KEY)), _cents(s.platform_loss_halt)
    return loss > limit and breaker_platform_trip(loss_cents=loss, limit_cents=limit)


# --- the rebuild from the database ---------------------------------------------------------------


def breaker_windows_rebuild() -> dict:
    """Overwrite the windows with the database's figures (every bucket of every player with activity
    in the last 24 h, and the platform's since the last reset), then check the platform halt.

    A player whose only figures are in Redis (a trade that died between reserving and committing
    whose reservation was never given back) is not visited; that drift leaves the window by itself."""
    now = int(timezone.now().timestamp())
    first_bucket = now // BUCKET_SECONDS - BUCKETS + 1
    since = datetime.datetime.fromtimestamp(first_bucket * BUCKET_SECONDS, tz=datetime.UTC)
    s = risk_settings()
    by_player: dict[str, dict[int, int]] = {}
    for player_id, bucket, loss in house_loss_buckets(since=since, bucket_seconds=BUCKET_SECONDS, per_player=True):
        by_player.setdefault(str(uuid.UUID(str(player_id))), {})[int(bucket)] = _cents(loss)
    platform_since = max(since, s.platform_window_start) if s.platform_window_start else since
    platform = {
        int(bucket): _cents(loss)
        for _pid, bucket, loss in house_loss_buckets(since=platform_since, bucket_seconds=BUCKET_SECONDS, per_player=False)
    }
    windows = [(_window(player_window_key(pid)), buckets) for pid, buckets in by_player.items()]
    counters.set_windows([*windows, (_window(PLATFORM_WINDOW_KEY), platform)], now=now)
    tripped = breaker_platform_check()
    return {"players": len(by_player), "platformLoss": _dollars(sum(platform.values())), "tripped": tripped}


def _dollars(value_cents: int) -> Decimal:
    return (Decimal(value_cents) / HUNDRED).quantize(Decimal("0.01"))
