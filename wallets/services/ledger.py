"""Many ledger rows in one statement: what a bulk money movement (a chunk of settlement payouts) appends.

The ledger is append-only and a row's id is its movement's idempotency id. House wallets append
under the lock that makes the movement happen once, so a row already there is an error (the
transaction fails); S2S outcomes may be recorded again after a crash, so there a row already
there is skipped (``skip_existing``), as the one-row path does.
"""

import uuid
from dataclasses import dataclass
from decimal import Decimal

from django.db import connection
from django.utils import timezone

from core.arrays import pg_array
from wallets.models import LedgerEntry, LedgerType, OperationKind
from wallets.services.debts import recovered_from, recovery_entry_id


@dataclass(slots=True)  # built per row of a chunk: slots, not frozen (frozen pays a setattr call per field)
class LedgerRow:
    id: uuid.UUID
    player_id: uuid.UUID
    operator_id: uuid.UUID
    type: str
    amount: Decimal  # signed: debits negative
    balance_after: Decimal
    currency: str
    description: str
    round_id: str = ""
    trade_id: uuid.UUID | None = None
    reference_id: uuid.UUID | None = None
    actor: str = "system"


# One statement whatever the number of rows (arrays, each one literal: core.arrays; not a VALUES list growing with the chunk).
_INSERT_SQL = """
INSERT INTO s2s_transactions (id, player_id, operator_id, type, amount, balance_after, currency, description, trade_id, round_id,
                              reference_id, actor, created_at)
SELECT r.*, %(at)s
FROM unnest(%(id)s::uuid[], %(player)s::uuid[], %(operator)s::uuid[], %(type)s::varchar[], %(amount)s::numeric[],
            %(balance_after)s::numeric[], %(currency)s::varchar[], %(description)s::varchar[], %(trade)s::uuid[], %(round)s::varchar[],
            %(reference)s::uuid[], %(actor)s::varchar[]) AS r
"""


def ledger_append_bulk(*, rows: list[LedgerRow], skip_existing: bool = False) -> None:
    """Append ``rows`` (inside the caller's transaction)."""
    if not rows:
        return
    if connection.vendor != "postgresql":
        LedgerEntry.objects.bulk_create([_entry(row) for row in rows], ignore_conflicts=skip_existing)
        return
    params = {
        "at": timezone.now(),
        "id": pg_array(r.id for r in rows),
        "player": pg_array(r.player_id for r in rows),
        "operator": pg_array(r.operator_id for r in rows),
        "type": pg_array(r.type for r in rows),
        "amount": pg_array(r.amount for r in rows),
        "balance_after": pg_array(r.balance_after for r in rows),
        "currency": pg_array(r.currency for r in rows),
        "description": pg_array(r.description[:500] for r in rows),
        "trade": pg_array(r.trade_id for r in rows),
        "round": pg_array(r.round_id for r in rows),
        "reference": pg_array(r.reference_id for r in rows),
        "actor": pg_array(r.actor for r in rows),
    }
    with connection.cursor() as cursor:
        cursor.execute(_INSERT_SQL + (" ON CONFLICT (id) DO NOTHING" if skip_existing else ""), params)


def _entry(row: LedgerRow) -> LedgerEntry:
    return LedgerEntry(
        id=row.id,
        player_id=row.player_id,
        operator_id=row.operator_id,
        type=row.type,
        amount=row.amount,
        balance_after=row.balance_after,
        currency=row.currency,
        description=row.description[:500],
        trade_id=row.trade_id,
        round_id=row.round_id,
        reference_id=row.reference_id,
        actor=row.actor,
    )


def operation_ledger_rows(op, *, balance_after: Decimal | None, actor: str) -> list[LedgerRow]:
    """The ledger rows of an S2S movement the operator applied (a WalletOperation): its own row, signed
    (debits negative), and, for a credit that gave back a debt, the full credit then the debt_recovery
    row (the operator moved the difference, and ``balance_after`` is its balance after that)."""
    balance = balance_after if balance_after is not None else Decimal("0")
    recovered = recovered_from(op.payload) if op.kind == OperationKind.CREDIT else Decimal("0")
    is_trade = op.type in (LedgerType.TRADE_DEBIT, LedgerType.TRADE_CREDIT)
    common = {"player_id": op.player_id, "operator_id": op.operator_id, "currency": op.currency, "round_id": op.round_id}
    rows = [
        LedgerRow(
            id=op.pk,
            type=op.type,
            amount=-op.amount if op.kind == OperationKind.DEBIT else op.amount + recovered,
            balance_after=balance + recovered,
            description=op.description,
            trade_id=uuid_or_none(op.round_id) if is_trade else None,
            reference_id=op.reference_id,
            actor=actor,
            **common,
        )
    ]
    if recovered > 0:
        rows.append(
            LedgerRow(
                id=recovery_entry_id(op.pk),
                type=LedgerType.DEBT_RECOVERY,
                amount=-recovered,
                balance_after=balance,
                description=f"Debt recovered from {op.type} {op.pk}",
                reference_id=op.pk,
                **common,
            )
        )
    return rows


def uuid_or_none(value: str):
    try:
        return uuid.UUID(value)
    except (ValueError, TypeError):
        return None
