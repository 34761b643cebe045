"""House-held balances: every change is one locked row update plus one ledger row, atomically.

These functions run inside the caller's transaction (the trade executor's, the transfer
services' own, a settlement chunk's); they take the players' wallet row locks and keep them to
commit. ``wallet_change`` moves one player's money; ``wallet_changes_bulk`` many players' at once.
"""

import uuid
from dataclasses import dataclass
from decimal import Decimal

from django.db import connection, transaction
from django.utils import timezone

from core.arrays import pg_array
from core.errors import insufficient_balance
from wallets.models import LedgerEntry, PlayerWallet
from wallets.services.ledger import LedgerRow, ledger_append_bulk


@dataclass(frozen=True)
class BalanceChange:
    entry_id: uuid.UUID
    balance_before: Decimal
    balance_after: Decimal


def wallet_ensure(*, player) -> None:
    PlayerWallet.objects.get_or_create(player=player)


def wallet_balance(*, player, for_update: bool = False) -> Decimal:
    """Current balance; with for_update, the row stays locked until the transaction ends."""
    qs = PlayerWallet.objects.filter(player_id=player.pk)
    if for_update:
        qs = qs.select_for_update()
    row = qs.values_list("balance", flat=True).first()
    if row is None:
        if for_update:
            PlayerWallet.objects.get_or_create(player_id=player.pk)
            return wallet_balance(player=player, for_update=True)
        return Decimal("0.00")
    return row


def wallet_change(
    *,
    player,
    amount: Decimal,
    type: str,
    description: str,
    entry_id: uuid.UUID | None = None,
    trade_id: uuid.UUID | None = None,
    round_id: str = "",
    reference_id: uuid.UUID | None = None,
    locked_balance: Decimal | None = None,
    max_balance: Decimal | None = None,
    actor: str = "player",
) -> BalanceChange:
    """Apply a signed amount to the player's balance and append its ledger row.

    ``locked_balance``: the balance the caller read with for_update in this transaction
    (saves a round trip). Refuses to go below zero or, with max_balance, above it.
    """
    assert transaction.get_connection().in_atomic_block, "wallet_change must run inside a transaction"
    before = locked_balance if locked_balance is not None else wallet_balance(player=player, for_update=True)
    after = before + amount
    if after < 0:
        raise insufficient_balance()
    if max_balance is not None and amount > 0 and after > max_balance:
        from core.errors import HouseError

        raise HouseError("Balance cap of $100,000 exceeded", code="balance_cap_exceeded")
    PlayerWallet.objects.filter(player_id=player.pk).update(balance=after)
    entry = LedgerEntry.objects.create(
        id=entry_id or uuid.uuid4(),
        player_id=player.pk,
        operator_id=player.operator_id,
        type=type,
        amount=amount,
        balance_after=after,
        currency=player.currency,
        description=description[:500],
        trade_id=trade_id,
        round_id=round_id,
        reference_id=reference_id,
        actor=actor,
    )
    return BalanceChange(entry_id=entry.id, balance_before=before, balance_after=after)


@dataclass(slots=True)  # built per row of a chunk: slots, not frozen (frozen pays a setattr call per field)
class BulkChange:
    """One player's balance change within a bulk move (e.g. one payout of a settlement chunk)."""

    player_id: uuid.UUID
    operator_id: uuid.UUID
    currency: str
    amount: Decimal  # signed
    type: str
    description: str
    entry_id: uuid.UUID  # the ledger row's id: the movement's idempotency id
    round_id: str = ""
    reference_id: uuid.UUID | None = None
    actor: str = "system"


def wallet_changes_bulk(*, changes: list[BulkChange]) -> list[BalanceChange]:
    """Apply many signed amounts to many house-held balances, with the rules of ``wallet_change``.

    The wallets are locked in player order (so two bulk moves cannot deadlock, and a trade locks
    one wallet only), then one ledger INSERT and one balance UPDATE, whatever the number of
    changes. A player's changes apply in the given order (balance_after follows). If any balance
    would go below zero the whole move is refused (insufficient balance) and nothing is written.
    """
    assert transaction.get_connection().in_atomic_block, "wallet_changes_bulk must run inside a transaction"
    if not changes:
        return []
    balances = _wallets_lock(sorted({c.player_id for c in changes}))
    results, rows = [], []
    for change in changes:
        before = balances[change.player_id]
        after = before + change.amount
        if after < 0:
            raise insufficient_balance()
        balances[change.player_id] = after
        rows.append(_ledger_row(change, change.amount, after))
        results.append(BalanceChange(entry_id=change.entry_id, balance_before=before, balance_after=after))
    ledger_append_bulk(rows=rows)
    _balances_write(balances)
    return results


def wallet_takes_bulk(*, changes: list[BulkChange]) -> list[Decimal]:
    """Take back up to ``-amount`` of each change from house-held balances, never below zero (a
    reversal, SPEC §12): what a balance does not hold is not taken. Same locking and statements as
    ``wallet_changes_bulk``; a change that takes nothing writes no ledger row. Returns what each
    change took (positive), in order."""
    assert transaction.get_connection().in_atomic_block, "wallet_takes_bulk must run inside a transaction"
    if not changes:
        return []
    balances = _wallets_lock(sorted({c.player_id for c in changes}))
    taken, rows, touched = [], [], {}
    for change in changes:
        take = min(balances[change.player_id], -change.amount)
        taken.append(max(take, Decimal("0")))
        if take <= 0:
            continue
        balances[change.player_id] = touched[change.player_id] = balances[change.player_id] - take
        rows.append(_ledger_row(change, -take, balances[change.player_id]))
    ledger_append_bulk(rows=rows)
    _balances_write(touched)
    return taken


def _ledger_row(change: BulkChange, amount: Decimal, balance_after: Decimal) -> LedgerRow:
    return LedgerRow(
        id=change.entry_id,
        player_id=change.player_id,
        operator_id=change.operator_id,
        type=change.type,
        amount=amount,
        balance_after=balance_after,
        currency=change.currency,
        description=change.description,
        round_id=change.round_id,
        reference_id=change.reference_id,
        actor=change.actor,
    )


def wallets_lock(*, player_ids: list) -> dict:
    """Lock these house wallets (in player order) for the caller's transaction; {player id: balance}."""
    return _wallets_lock(sorted(player_ids))


def _wallets_lock(player_ids: list) -> dict:
    """{player id: balance} with every row locked, in player order; missing wallets are created (balance 0)."""

    def lock(ids):
        if connection.vendor == "postgresql":  # one array parameter, not a thousand quoted ones
            with connection.cursor() as cursor:
                cursor.execute(_LOCK_SQL, [pg_array(ids)])
                return dict(cursor.fetchall())
        rows = PlayerWallet.objects.select_for_update().filter(player_id__in=ids).order_by("player_id")
        return dict(rows.values_list("player_id", "balance"))

    balances = lock(player_ids)
    missing = [p for p in player_ids if p not in balances]
    if missing:
        PlayerWallet.objects.bulk_create([PlayerWallet(player_id=p) for p in missing], ignore_conflicts=True)
        balances.update(lock(missing))
    return balances


_LOCK_SQL = "SELECT player_id, balance FROM wallet_balances WHERE player_id = ANY(%s::uuid[]) ORDER BY player_id FOR UPDATE"

# One statement whatever the number of wallets: UPDATE ... FROM a table of (player, new balance).
_BALANCES_SQL = """
UPDATE wallet_balances AS w SET balance = v.balance, updated_at = %(at)s
FROM unnest(%(player)s::uuid[], %(balance)s::numeric[]) AS v (player_id, balance)
WHERE w.player_id = v.player_id
"""


def _balances_write(balances: dict) -> None:
    if not balances:
        return
    if connection.vendor != "postgresql":
        for player_id, balance in balances.items():
            PlayerWallet.objects.filter(player_id=player_id).update(balance=balance)
        return
    players = sorted(balances)
    with connection.cursor() as cursor:
        params = {"at": timezone.now(), "player": pg_array(players), "balance": pg_array(balances[p] for p in players)}
        cursor.execute(_BALANCES_SQL, params)
