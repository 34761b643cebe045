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
from wallets.models import LedgerEntry


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
