"""Celery entry points for S2S money movements: fetch by id, call a service, retry here."""

import logging
from collections.abc import Callable
from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from wallets.models import FINAL_STATUSES, OperationKind, OperationStatus, WalletOperation
from wallets.services.operations import _backoff, operation_settle, operations_due

log = logging.getLogger("house.wallet.tasks")

# Who finishes the local side of an operation left half-done, by payload["handler"]: the app that
# started the operation registers it at start-up (casino/apps.py: "trade"). Wallets knows no caller.
LOCAL_HANDLERS: dict[str, Callable[[WalletOperation], None]] = {}


def register_recovery_handler(name: str, handler: Callable[[WalletOperation], None]) -> None:
    LOCAL_HANDLERS[name] = handler


@shared_task(bind=True, acks_late=True, max_retries=None)
def wallet_operation_retry(self, operation_id: str) -> str:
    """Drive one operation (a rollback, a credit) to a definite answer, backing off exponentially."""
    operation = WalletOperation.objects.filter(pk=operation_id).first()
    if operation is None:
        return "missing"
    operation = operation_settle(operation=operation)
    if operation.status in FINAL_STATUSES or operation.status == OperationStatus.MANUAL:
        return operation.status
    if self.request.is_eager:  # no broker: the beat reconciliation or an admin retry takes over
        return operation.status
    raise self.retry(countdown=_backoff(operation.attempts).total_seconds())


def recover_stalled(*, older_than_seconds: int | None = None) -> int:
    """Finish or compensate trades (and payouts) whose process stopped between their steps."""
    cutoff = timezone.now() - timedelta(seconds=settings.HOUSE_WALLET_STALL_SECONDS if older_than_seconds is None else older_than_seconds)
    stalled = WalletOperation.objects.filter(
        settled_locally=False, created_at__lte=cutoff, kind__in=[OperationKind.DEBIT, OperationKind.CREDIT]
    ).order_by("created_at")[:500]
    count = 0
    for operation in stalled:
        handler = LOCAL_HANDLERS.get((operation.payload or {}).get("handler"))
        if handler is None:
            continue
        try:
            handler(operation)
            count += 1
        except Exception:  # noqa: BLE001 - one bad operation must not stop recovery of the others
            log.exception("recovery of wallet operation %s failed", operation.pk)
    return count


def reconcile(*, limit: int = 200) -> int:
    """Ask the operator about every operation not in a final state whose next attempt is due."""
    count = 0
    for operation in operations_due(limit=limit):
        try:
            operation_settle(operation=operation)
            count += 1
        except Exception:  # noqa: BLE001
            log.exception("reconciliation of wallet operation %s failed", operation.pk)
    return count


@shared_task(acks_late=True)
def wallet_recover_stalled() -> int:
    return recover_stalled()


@shared_task(acks_late=True)
def wallet_reconcile() -> int:
    return reconcile()
