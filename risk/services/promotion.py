"""Tier promotion (SPEC §16): rules as data (risk.models.TierPromotionRule), applied by a daily beat
task (risk.tasks.tier_promotions_apply_task), every change recorded (risk.models.TierChange).

A player of a rule's ``from_tier`` moves to its ``to_tier`` when every condition holds at ``now``:
  - account age: player.created_at <= now - min_account_age_days days;
  - completed trades: the player's trades (buys and sells, every Trade row is a completed trade)
    number at least min_completed_trades;
  - no risk flags: the player is not blocked, and no risk decision names the player from the sharp
    wall (wall 4 refused them) or from the per-player loss breaker (code ``risk.breaker.player*``);
    neither tier is ``restricted`` (the restricted tier is never left or entered automatically);
  - a class below sharp: the player's profile class is recreational or moderate (no profile yet:
    never scored, counts as recreational).

Set-based: one query per rule finds the eligible players; they are moved and recorded in batches,
each batch in one transaction that re-checks the tier under a row lock (a staff or operator change
in between wins). Several rules chain (standard -> silver -> gold in one run when both hold), so a
second run finds nothing to do; a player never re-enters a tier it left in the same run, so rules
forming a cycle cannot loop.
"""

import logging
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Count, Exists, IntegerField, OuterRef, Q, Subquery, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from casino.models import Player, PlayerStatus, Trade
from risk.models import (
    PROMOTABLE_CLASSES,
    RESTRICTED_TIER,
    RiskDecision,
    TierChangeSource,
    TierPromotionRule,
    Wall,
    tier_change_record,
)

log = logging.getLogger("house.risk.promotion")

BATCH = 1000
ACTOR = "tier-promotion"
PLAYER_BREAKER_CODE_PREFIX = "risk.breaker.player"


def risk_flagged(player_ref) -> Exists:
    """A risk decision of the sharp wall or the per-player loss breaker names the player."""
    return Exists(
        RiskDecision.objects.filter(player_id=player_ref).filter(Q(wall=Wall.SHARP) | Q(code__startswith=PLAYER_BREAKER_CODE_PREFIX))
    )


def promotion_candidates(rule: TierPromotionRule, *, now: datetime):
    """The players ``rule`` promotes at ``now`` (a queryset of ids)."""
    if RESTRICTED_TIER in (rule.from_tier_id, rule.to_tier_id) or rule.from_tier_id == rule.to_tier_id:
        return Player.objects.none().values_list("pk", flat=True)
    players = Player.objects.filter(
        tier=rule.from_tier_id,
        status=PlayerStatus.ACTIVE,
        created_at__lte=now - timedelta(days=rule.min_account_age_days),
    ).filter(Q(risk_profile__isnull=True) | Q(risk_profile__player_class__in=PROMOTABLE_CLASSES))
    players = players.exclude(risk_flagged(OuterRef("pk")))
    if rule.min_completed_trades > 0:
        trades = Trade.objects.filter(player_id=OuterRef("pk")).order_by().values("player_id").annotate(n=Count("*")).values("n")
        players = players.annotate(
            completed_trades=Coalesce(Subquery(trades, output_field=IntegerField()), Value(0), output_field=IntegerField())
        ).filter(completed_trades__gte=rule.min_completed_trades)
    return players.order_by("pk").values_list("pk", flat=True)


def tier_promotions_apply(*, now: datetime | None = None) -> int:
    """Apply every enabled rule until nothing changes; returns the number of tier changes made."""
    now = now or timezone.now()
    rules = list(TierPromotionRule.objects.filter(enabled=True).order_by("from_tier_id"))
    left: dict = {}  # player id -> tiers it held during this run
    changes = 0
    for _ in range(len(rules) + 1):
        moved_this_pass = 0
        for rule in rules:
            ids = [pk for pk in promotion_candidates(rule, now=now) if rule.to_tier_id not in left.get(pk, ())]
            for start in range(0, len(ids), BATCH):
                moved = _promote(rule, ids[start : start + BATCH], now=now)
                for pk in moved:
                    left.setdefault(pk, set()).update((rule.from_tier_id, rule.to_tier_id))
                moved_this_pass += len(moved)
        changes += moved_this_pass
        if not moved_this_pass:
            break
    log.info("tier promotions: %d players promoted", changes)
    return changes


def _promote(rule: TierPromotionRule, ids: list, *, now: datetime) -> list:
    with transaction.atomic():
        locked = list(Player.objects.select_for_update().filter(pk__in=ids, tier=rule.from_tier_id).values_list("pk", flat=True))
        if locked:
            Player.objects.filter(pk__in=locked).update(tier=rule.to_tier_id)
            tier_change_record(
                player_ids=locked,
                from_tier=rule.from_tier_id,
                to_tier=rule.to_tier_id,
                source=TierChangeSource.RULE,
                actor=ACTOR,
                rule=rule,
                at=now,
            )
    return locked
