"""Player debts (SPEC §12): what a reversed settlement could not take back, recovered from the
player's later credits (sell proceeds, payouts, refunds; never deposits).

Every change is a DebtEntry (append-only, one per reference: a re-run cannot count twice) and
the PlayerDebt row holds their sum. These run inside the caller's transaction and lock the
player's debt row; callers that also lock the player's house wallet lock the wallet row first
(a sale holds it already when its proceeds pay a debt).
"""

import uuid
from decimal import Decimal

from django.db import connection, transaction
from django.db.models.expressions import RawSQL

from core.arrays import pg_array
from core.events import event_record
from core.money import money
from wallets.models import DebtEntry, DebtEntryKind, PlayerDebt

ZERO = Decimal("0")


def debt_of(*, player_id) -> Decimal:
    """The player's debt now (no lock): the cheap check before a credit."""
    return PlayerDebt.objects.filter(player_id=player_id).values_list("amount", flat=True).first() or ZERO


def debts_of(*, player_ids) -> dict:
    """{player id: debt} of those of ``player_ids`` who owe something (no lock): one query per chunk."""
    player_ids = list(player_ids)
    if not player_ids:
        return {}
    if connection.vendor == "postgresql":  # one array parameter, not a thousand quoted ones
        rows = PlayerDebt.objects.filter(player_id__in=RawSQL("SELECT unnest(%s::uuid[])", [pg_array(player_ids)]))
    else:
        rows = PlayerDebt.objects.filter(player_id__in=player_ids)
    return dict(rows.filter(amount__gt=0).values_list("player_id", "amount"))


def debt_incur(*, player_id, currency: str, amount: Decimal, reference_id: uuid.UUID, description: str) -> bool:
    """Add ``amount`` to the player's debt; False if this reference was already counted."""
    return _change(
        player_id=player_id,
        currency=currency,
        kind=DebtEntryKind.INCURRED,
        amount=amount,
        reference_id=reference_id,
        description=description,
    )


def debt_recover(*, player_id, credit: Decimal, reference_id: uuid.UUID, description: str) -> Decimal:
    """Take what the player owes out of a credit of ``credit``: returns the amount recovered
    (0 without a debt), already taken off the debt. The caller books it (a debt_recovery ledger
    row, or a smaller S2S credit) in the same transaction."""
    assert transaction.get_connection().in_atomic_block, "debt_recover must run inside a transaction"
    if credit <= 0:
        return ZERO
    row = PlayerDebt.objects.select_for_update().filter(player_id=player_id).first()
    previous = DebtEntry.objects.filter(kind=DebtEntryKind.RECOVERED, reference_id=reference_id).values_list("amount", flat=True).first()
    if previous is not None:
        return -previous
    if row is None or row.amount <= 0:
        return ZERO
    recovered = min(row.amount, credit)
    _change(
        player_id=player_id, currency=row.currency, kind=DebtEntryKind.RECOVERED, amount=-recovered, reference_id=reference_id,
        description=description, row=row,
    )  # fmt: skip
    return recovered


def debt_restore(*, player_id, currency: str, amount: Decimal, reference_id: uuid.UUID, description: str) -> bool:
    """Give back a recovery whose credit the operator refused (nothing was credited)."""
    return _change(
        player_id=player_id,
        currency=currency,
        kind=DebtEntryKind.RESTORED,
        amount=amount,
        reference_id=reference_id,
        description=description,
    )


def _change(
    *, player_id, currency: str, kind: str, amount: Decimal, reference_id: uuid.UUID, description: str, row: PlayerDebt | None = None
) -> bool:
    assert transaction.get_connection().in_atomic_block, "debt changes run inside a transaction"
    if amount == 0:
        return False
    if kind != DebtEntryKind.RECOVERED and DebtEntry.objects.filter(kind=kind, reference_id=reference_id).exists():
        return False
    if row is None:
        PlayerDebt.objects.get_or_create(player_id=player_id, defaults={"currency": currency})
        row = PlayerDebt.objects.select_for_update().get(player_id=player_id)
    DebtEntry.objects.create(player_id=player_id, kind=kind, amount=amount, reference_id=reference_id, description=description[:500])
    row.amount += amount
    row.save(update_fields=["amount", "updated_at"])
    _debt_event(row, kind=kind, change=amount, reference_id=reference_id, description=description)
    return True


def _debt_event(row: PlayerDebt, *, kind: str, change: Decimal, reference_id: uuid.UUID, description: str) -> None:
    """``player.debt_changed`` (SPEC §14) in the transaction of the change."""
    operator_id, external_id = PlayerDebt.objects.filter(pk=row.pk).values_list("player__operator_id", "player__external_id").get()
    event_record(
        operator_id=operator_id,
        type="player.debt_changed",
        data={
            "playerId": external_id,
            "userId": str(row.player_id),
            "debt": money(row.amount),
            "change": money(change),
            "kind": kind,
            "currency": row.currency,
            "referenceId": str(reference_id),
            "description": description[:500],
        },
    )


RECOVERY_NAMESPACE = uuid.UUID("5f0c8a52-64a4-4b8e-9d36-3f1c2b7a9e10")


def recovery_entry_id(credit_id: uuid.UUID) -> uuid.UUID:
    """The ledger id of the debt_recovery row that goes with the credit ``credit_id`` (derived, so a
    re-run writes the same row once)."""
    return uuid.uuid5(RECOVERY_NAMESPACE, str(credit_id))


def debts_recover_bulk(*, credits: list[tuple], description: str) -> dict:
    """For credits [(credit id, player id, amount)] inside the caller's transaction, before it locks
    any wallet: what each player's debt takes out of each (debt rows locked in player order).
    Returns {credit id: recovered} for those that recovered something. One query when nobody owes."""
    owing = debts_of(player_ids={player_id for _, player_id, _ in credits})
    recovered = {}
    for credit_id, player_id, amount in sorted((c for c in credits if c[1] in owing), key=lambda c: (str(c[1]), str(c[0]))):
        taken = debt_recover(player_id=player_id, credit=amount, reference_id=credit_id, description=description)
        if taken > 0:
            recovered[credit_id] = taken
    return recovered


def recovered_from(payload: dict | None) -> Decimal:
    """What a credit's operation gave back of a debt (recorded in its payload when it was created):
    the operator was sent the credit less that amount, and the ledger books the full credit and a
    debt_recovery row."""
    return Decimal((payload or {}).get("debt_recovered") or "0")


def recovery_undo(*, player_id, currency: str, credit_id: uuid.UUID, payload: dict | None) -> None:
    """The operator refused a credit that carried a recovery: nothing was credited, so the debt it
    recovered is owed again (once)."""
    recovered = recovered_from(payload)
    if recovered > 0:
        debt_restore(
            player_id=player_id, currency=currency, amount=recovered, reference_id=credit_id, description="Credit refused: debt restored"
        )
