"""The operator's players (SPEC §13): reads scoped to one operator, and the controls it sets on
them (status, tier, responsible-gambling limits), which the walls apply on the next trade."""

import logging
from decimal import Decimal

from django.db import transaction
from django.db.models import DecimalField, ExpressionWrapper, F, OuterRef, QuerySet, Subquery, Sum
from django.db.models.functions import Coalesce

from casino.models import Player, PlayerStatus, Position, PositionStatus
from core.api.pagination import Page, PageParams, keyset_page
from core.db import PRIMARY, reads
from core.errors import HouseError
from risk.models import Tier, TierChangeSource, tier_change_record

log = logging.getLogger("house.players")

HUNDRED = Decimal("100")
ZERO = Decimal("0")
PLAYERS_ORDER = ("-created_at", "-id")
# The model fields an operator may change (PATCH players/{playerId}).
CONTROL_FIELDS = ("status", "tier", "max_stake_per_trade", "max_daily_stake", "max_daily_loss")
_WIDE = DecimalField(max_digits=24, decimal_places=8)


def player_blocked() -> HouseError:
    return HouseError("Player blocked", code="player_blocked")


def player_not_found() -> HouseError:
    return HouseError("Player not found", code="player_not_found", status=404)


def _with_figures(players: QuerySet) -> QuerySet:
    """Each player with ``open_exposure`` (what the house would pay on its open positions if all
    won, minus their cost basis: wall 5's definition, risk.selectors.operator_open_exposure),
    ``debt_amount`` and ``wallet_balance`` (internal wallets), in the one query of the page."""
    exposure = (
        Position.objects.filter(player_id=OuterRef("pk"), status=PositionStatus.OPEN)
        .values("player_id")
        .annotate(v=Sum(ExpressionWrapper(F("shares") - F("shares") * F("avg_price") / HUNDRED, output_field=_WIDE)))
        .values("v")
    )
    return players.annotate(
        open_exposure=Coalesce(Subquery(exposure, output_field=_WIDE), ZERO, output_field=_WIDE),
        debt_amount=F("debt__amount"),
        wallet_balance=F("wallet__balance"),
    )


def operator_players_page(*, operator, params: PageParams, status: str | None = None, tier: str | None = None) -> Page:
    """The operator's players, newest first (keyset pages)."""
    players = Player.objects.using(reads()).filter(operator_id=operator.pk)
    if status:
        players = players.filter(status=status)
    if tier:
        players = players.filter(tier=tier)
    return keyset_page(_with_figures(players), ordering=PLAYERS_ORDER, params=params, scope=f"operator.players.{operator.pk}")


def operator_player(*, operator, external_id: str, using: str | None = None) -> Player:
    """The operator's player by its own id; another operator's player is not found (404). Read from
    the replica when there is one, unless ``using`` says otherwise (after a write: the primary)."""
    players = Player.objects.using(using or reads()).filter(operator_id=operator.pk, external_id=external_id)
    player = _with_figures(players).first()
    if player is None:
        raise player_not_found()
    return player


def player_controls_set(*, operator, external_id: str, changes: dict) -> Player:
    """Apply the operator's changes (model field names of CONTROL_FIELDS; a limit set to None is
    removed) and return the player as operator_player reads it. The trade reads the controls
    with the player's session (casino.services.credentials), so they apply to the next trade."""
    unknown = set(changes) - set(CONTROL_FIELDS)
    if unknown:
        raise ValueError(f"not a player control: {sorted(unknown)}")
    if "status" in changes and changes["status"] not in PlayerStatus.values:
        raise HouseError("Invalid status", code="invalid_status")
    for name in ("max_stake_per_trade", "max_daily_stake", "max_daily_loss"):
        if changes.get(name) is not None and changes[name] < 0:
            raise HouseError(f"Invalid {name}", code=f"invalid_{name}")
    players = Player.objects.filter(operator_id=operator.pk, external_id=external_id)
    if not players.exists():
        raise player_not_found()
    if "tier" in changes and not Tier.objects.filter(name=changes["tier"]).exists():
        raise HouseError("Unknown tier", code="unknown_tier")
    if changes:
        with transaction.atomic():
            before = players.select_for_update().values_list("pk", "tier").first()
            players.update(**changes)
            if "tier" in changes and before is not None and before[1] != changes["tier"]:  # SPEC §16: every tier change recorded
                tier_change_record(
                    player_ids=[before[0]],
                    from_tier=before[1],
                    to_tier=changes["tier"],
                    source=TierChangeSource.OPERATOR,
                    actor=f"operator:{operator.pk}",
                )
        log.info("operator %s set controls of player %s: %s", operator.pk, external_id, {k: str(v) for k, v in changes.items()})
    return operator_player(operator=operator, external_id=external_id, using=PRIMARY)
