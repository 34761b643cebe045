"""What a decision pays: one payout per open position, the amount due by the money rules, the totals.

On PostgreSQL the decision's snapshot is one statement (INSERT … SELECT from the open positions,
the positions closed, the totals aggregated), so the market row the decision locks is held only
while it runs. The amounts are computed in SQL with the rules of core.money, exactly (NUMERIC
arithmetic, no division): a payout is $1 a winning share rounded down to the cent,
floor(shares × 100) / 100; a refund is the cost basis, shares × avg_price / 100 rounded down to
the cent, floor(shares × avg_price) / 100. Elsewhere (SQLite, whose decimals are not exact) the
same rules run in Python through core.money.
"""

from dataclasses import dataclass, field
from decimal import Decimal

from django.db import connection
from django.db.models import F
from django.utils import timezone

from casino.models import Position, PositionStatus
from core import money
from settlement.models import Payout, PayoutStatus, Settlement, SettlementAction

ZERO = Decimal("0")
CHUNK = 1000


@dataclass
class Totals:
    positions: int = 0
    winners: int = 0
    payout: Decimal = ZERO
    cost_basis: Decimal = ZERO
    # Operator name -> {"positions", "payout", "wallet"} (the preview only).
    by_operator: dict = field(default_factory=dict)


# The open positions of a market with what each is due (shared by the snapshot and the preview).
_DUE_SQL = """
due AS (
    SELECT d.*, CASE WHEN %(void)s THEN d.cost_basis WHEN d.wins THEN floor(d.shares * 100) * 0.01 ELSE 0 END AS amount
    FROM (
        SELECT p.id, p.player_id, p.operator_id, p.outcome, p.shares, floor(p.shares * p.avg_price) * 0.01 AS cost_basis,
               (%(void)s OR p.outcome = %(outcome)s) AS wins
        FROM casino_positions p
        WHERE p.market_id = %(market)s AND p.status = %(open)s AND p.shares > 0
    ) AS d
)
"""

_SNAPSHOT_SQL = f"""
WITH {_DUE_SQL}, payouts AS (
    INSERT INTO settlement_payouts (id, transaction_id, settlement_id, position_id, player_id, operator_id, outcome, shares, cost_basis,
                                    amount, status, attempts, last_error, updated_at)
    SELECT gen_random_uuid(), gen_random_uuid(), %(settlement)s, id, player_id, operator_id, outcome, shares, cost_basis, amount,
           CASE WHEN amount > 0 THEN %(pending)s ELSE %(nothing_due)s END, 0, '', %(now)s
    FROM due
), closed AS (
    UPDATE casino_positions SET status = %(closed)s, version = version + 1, updated_at = %(now)s
    WHERE market_id = %(market)s AND status = %(open)s
)
SELECT count(*), count(*) FILTER (WHERE wins), coalesce(sum(amount), 0), coalesce(sum(cost_basis), 0) FROM due
"""

_PREVIEW_SQL = f"""
WITH {_DUE_SQL}
SELECT o.name, o.wallet_mode, count(*), count(*) FILTER (WHERE due.wins), sum(due.amount), sum(due.cost_basis)
FROM due JOIN casino_operators o ON o.id = due.operator_id
GROUP BY o.name, o.wallet_mode
ORDER BY o.name
"""


def _params(market_id: str, action: str, outcome: str | None) -> dict:
    return {"void": action == SettlementAction.VOID, "outcome": outcome, "market": market_id, "open": PositionStatus.OPEN}


def payouts_snapshot(*, settlement: Settlement) -> Totals:
    """Inside the decision's transaction: one Payout per open position, the positions closed; the totals."""
    closed = PositionStatus.VOIDED if settlement.action == SettlementAction.VOID else PositionStatus.RESOLVED
    if connection.vendor != "postgresql":
        return _snapshot_orm(settlement, closed)
    params = {
        **_params(settlement.market_id, settlement.action, settlement.outcome),
        "settlement": settlement.pk,
        "pending": PayoutStatus.PENDING,
        "nothing_due": PayoutStatus.NOTHING_DUE,
        "closed": closed,
        "now": timezone.now(),
    }
    with connection.cursor() as cursor:
        cursor.execute(_SNAPSHOT_SQL, params)
        positions, winners, payout, cost_basis = cursor.fetchone()
    return Totals(positions, winners, money.money(payout), money.money(cost_basis))


def payouts_preview(*, market_id: str, action: str, outcome: str | None) -> Totals:
    """What the decision would pay now, per operator too (the admin's confirmation page); writes nothing."""
    if connection.vendor != "postgresql":
        return _preview_orm(market_id, action, outcome)
    with connection.cursor() as cursor:
        cursor.execute(_PREVIEW_SQL, _params(market_id, action, outcome))
        rows = cursor.fetchall()
    totals = Totals()
    for name, wallet, positions, winners, payout, cost_basis in rows:
        totals.positions += positions
        totals.winners += winners
        totals.payout += money.money(payout)
        totals.cost_basis += money.money(cost_basis)
        totals.by_operator[name] = {"positions": positions, "payout": money.money(payout), "wallet": wallet}
    return totals


# ----- the same rules in Python (SQLite) ------------------------------------------------------------


def _due(position: Position, action: str, outcome: str | None) -> tuple[Decimal, Decimal, bool]:
    """(amount due, cost basis, is a winner) for one open position."""
    cost_basis = money.cents_down(position.shares * position.avg_price / money.HUNDRED)
    if action == SettlementAction.VOID:
        return cost_basis, cost_basis, True
    if position.outcome == outcome:
        return money.payout_for_shares(position.shares), cost_basis, True
    return ZERO, cost_basis, False


def _open_positions(market_id: str):
    return Position.objects.filter(market_id=market_id, status=PositionStatus.OPEN, shares__gt=0).select_related("operator")


def _snapshot_orm(settlement: Settlement, closed: str) -> Totals:
    totals, batch = Totals(), []
    for position in _open_positions(settlement.market_id).iterator(chunk_size=CHUNK):
        amount, cost, wins = _due(position, settlement.action, settlement.outcome)
        batch.append(
            Payout(
                settlement=settlement,
                position=position,
                player_id=position.player_id,
                operator_id=position.operator_id,
                outcome=position.outcome,
                shares=position.shares,
                cost_basis=cost,
                amount=amount,
                status=PayoutStatus.PENDING if amount > 0 else PayoutStatus.NOTHING_DUE,
            )
        )
        totals.positions += 1
        totals.winners += int(wins)
        totals.payout += amount
        totals.cost_basis += cost
    Payout.objects.bulk_create(batch, batch_size=CHUNK)
    Position.objects.filter(market_id=settlement.market_id, status=PositionStatus.OPEN).update(
        status=closed, version=F("version") + 1, updated_at=timezone.now()
    )
    return totals


def _preview_orm(market_id: str, action: str, outcome: str | None) -> Totals:
    totals = Totals()
    for position in _open_positions(market_id).iterator(chunk_size=CHUNK):
        amount, cost, wins = _due(position, action, outcome)
        totals.positions += 1
        totals.winners += int(wins)
        totals.payout += amount
        totals.cost_basis += cost
        operator = position.operator
        row = totals.by_operator.setdefault(operator.name, {"positions": 0, "payout": ZERO, "wallet": operator.wallet_mode})
        row["positions"] += 1
        row["payout"] += amount
    return totals
