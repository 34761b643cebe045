"""Celery beat entry points of the risk engine: wall 4's sharp scores and wall 5's running totals."""

import logging

from celery import shared_task

from casino.models import Operator
from risk import counters
from risk.selectors import operator_open_exposure
from risk.services.assessment import cents, operator_open_exposure_key
from risk.services.breakers import breaker_platform_check, breaker_windows_rebuild
from risk.services.promotion import tier_promotions_apply
from risk.services.sharp import sharp_scores_recompute

log = logging.getLogger("house.risk.tasks")


@shared_task(acks_late=True)
def sharp_scores_recompute_task(incremental: bool = False) -> int:
    """Recompute the sharp score and class of every player who traded recently (wall 4, SPEC §16);
    ``incremental``: only those whose score can have changed since it was computed."""
    return sharp_scores_recompute(incremental=incremental)


@shared_task(acks_late=True)
def operator_open_exposure_rebuild() -> int:
    """Reset each operator's open-exposure counter (wall 5) to the exact value from the positions,
    so drift from trades that died between reserving and committing does not accumulate."""
    count = 0
    for operator_id in Operator.objects.order_by("pk").values_list("pk", flat=True):
        try:
            counters.set_total(operator_open_exposure_key(operator_id), cents(operator_open_exposure(operator_id=operator_id)))
            count += 1
        except Exception:  # noqa: BLE001 - one operator's failure must not leave the others stale
            log.exception("rebuild of the open exposure of operator %s failed", operator_id)
    return count


@shared_task(acks_late=True)
def tier_promotions_apply_task() -> int:
    """Daily: promote the players every condition of a tier promotion rule holds for (SPEC §16);
    idempotent (a second run the same day changes nothing)."""
    return tier_promotions_apply()


# --- Issue 14: the circuit breakers' loss windows (SPEC §16) -----------------------------------------


@shared_task(acks_late=True)
def breaker_windows_rebuild_task() -> dict:
    """Rebuild the player and platform loss windows from the database, and trip the platform halt if
    the rebuilt window passes it (losses that appear as old stakes leave the window)."""
    result = breaker_windows_rebuild()
    return {**result, "platformLoss": str(result["platformLoss"])}


@shared_task(acks_late=True)
def breaker_platform_check_task() -> bool:
    """Every minute, from the platform window in Redis (no database scan): trip the platform halt when
    the window passes it as old stakes leave it. True if this run tripped it."""
    return breaker_platform_check()
