"""What the open positions of a settled market are due, by the money rules: the decision's totals in
one aggregate, and the payouts, created a chunk of positions at a time by the workers that pay them.

    payouts_totals    the decision: one aggregate SELECT over the open positions, no row written
    payouts_preview   the same per operator (the admin's confirmation page)
    payouts_create    a worker's chunk, one statement: open positions locked (SKIP LOCKED, id order), their
                      payouts inserted with what each is due, the positions closed, the payouts to pay returned

On PostgreSQL the amounts are computed in SQL with the rules of core.money, exactly (NUMERIC
arithmetic, no division): a payout is $1 a winning share rounded down to the cent,
floor(shares × 100) / 100; a refund is the cost basis, shares × avg_price / 100 rounded down to
the cent, floor(shares × avg_price) / 100. Elsewhere (SQLite, whose decimals are not exact) the
same rules run in Python through core.money.
"""

import uuid
from dataclasses import dataclass, field
from decimal import Decimal

from django.db import connection
from django.db.models import F
from django.utils import timezone

from casino.models import Operator, Position, PositionStatus, WalletMode
from core import money
from core.arrays import pg_array
from settlement.models import LossNotice, LossNoticeStatus, Payout, PayoutStatus, Settlement, SettlementAction

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


@dataclass(slots=True)  # built per row of a chunk: slots, not frozen (frozen pays a setattr call per field)
class DuePosition:
    """An open position locked by a worker's chunk, with what it is due and what paying it needs."""

    position_id: uuid.UUID
    player_id: uuid.UUID
    operator_id: uuid.UUID
    outcome: str
    shares: Decimal
    cost_basis: Decimal
    amount: Decimal
    wallet_mode: str
    user_id: str  # the operator's own player id
    currency: str


@dataclass(frozen=True)
class NewPayout:
    """A payout row to insert for a claimed position, in the state the chunk leaves it in."""

    id: uuid.UUID
    transaction_id: uuid.UUID
    position: DuePosition
    status: str
    attempts: int


# What one position is due (shared by the totals, the preview and the claim).
_DUE_COLUMNS = """
    floor(p.shares * p.avg_price) * 0.01 AS cost_basis,
    CASE WHEN %(void)s THEN floor(p.shares * p.avg_price) * 0.01
         WHEN p.outcome = %(outcome)s THEN floor(p.shares * 100) * 0.01
         ELSE 0 END AS amount,
    (%(void)s OR p.outcome = %(outcome)s) AS wins
"""

_DUE_SQL = f"""
due AS (
    SELECT p.id, p.operator_id, {_DUE_COLUMNS}
    FROM casino_positions p
    WHERE p.market_id = %(market)s AND p.status = %(open)s AND p.shares > 0
)
"""

_TOTALS_SQL = f"""
WITH {_DUE_SQL}
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


def payouts_totals(*, market_id: str, action: str, outcome: str | None) -> Totals:
    """What the open positions are due now, in total: one aggregate, nothing written (the decision)."""
    if connection.vendor != "postgresql":
        return _preview_orm(market_id, action, outcome, by_operator=False)
    with connection.cursor() as cursor:
        cursor.execute(_TOTALS_SQL, _params(market_id, action, outcome))
        positions, winners, payout, cost_basis = cursor.fetchone()
    return Totals(positions, winners, money.money(payout), money.money(cost_basis))


def payouts_preview(*, market_id: str, action: str, outcome: str | None) -> Totals:
    """What the decision would pay now, per operator too (the admin's confirmation page); writes nothing."""
    if connection.vendor != "postgresql":
        return _preview_orm(market_id, action, outcome, by_operator=True)
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


@dataclass(frozen=True)
class Created:
    """What a chunk made of the open positions it claimed: the payouts to pay now (house wallet ones
    created paid, S2S ones created sending; none for losers), how many positions it claimed, the last one."""

    payouts: list  # of (payout id, transaction id, DuePosition)
    claimed: int
    last_position_id: uuid.UUID | None
    duplicates: int = 0  # open positions that already had a payout of this settlement (left alone)
    notices: int = 0  # loss notices recorded for losing positions at S2S operators (SPEC §16), to send after the commit


# The whole of it in one statement on PostgreSQL: the market's open positions claimed in id order, a payout
# inserted for each one due something (ids made by the database; paid for a house wallet, sending for an
# operator's; a losing position gets no payout row: it is closed with nothing due), every claimed position
# closed, and back only the payouts to pay with what paying them needs, plus one summary row (claimed,
# last claimed, due but already paid). Nothing travels to Python and back per position. The
# CTEs' row counts are unknown to the planner (it guesses one): every join here is by primary key, so
# its nested loops stay index lookups.
_CREATE_SQL = f"""
WITH claimed AS MATERIALIZED (
    SELECT p.id, p.player_id, p.operator_id, p.outcome, p.shares, {_DUE_COLUMNS}
    FROM casino_positions p
    WHERE p.market_id = %(market)s AND p.status = %(open)s{{bounds}}
    ORDER BY p.id
    LIMIT %(chunk)s
    FOR UPDATE SKIP LOCKED
), due AS MATERIALIZED (
    SELECT c.id, c.player_id, c.operator_id, c.outcome, c.shares, c.cost_basis, c.amount,
           CASE WHEN c.operator_id = ANY(%(s2s)s::uuid[]) THEN %(sending)s ELSE %(paid)s END AS status
    FROM claimed c
    WHERE c.amount > 0
), inserted AS (
    INSERT INTO settlement_payouts (id, transaction_id, settlement_id, position_id, player_id, operator_id, outcome, shares, cost_basis,
                                    amount, status, attempts, last_error, updated_at)
    SELECT gen_random_uuid(), gen_random_uuid(), %(settlement)s, d.id, d.player_id, d.operator_id, d.outcome, d.shares, d.cost_basis,
           d.amount, d.status, 1, '', %(at)s
    FROM due d
    ON CONFLICT (position_id, settlement_id) DO NOTHING
    RETURNING id, transaction_id, position_id, player_id, operator_id, outcome, shares, cost_basis, amount, status
), closed AS (
    UPDATE casino_positions SET status = %(closed)s, version = version + 1, updated_at = %(at)s
    WHERE id = ANY(ARRAY(SELECT id FROM claimed))
), notices AS (
    INSERT INTO settlement_loss_notices (id, transaction_id, settlement_id, position_id, player_id, operator_id, outcome, shares, status,
                                         attempts, next_attempt_at, operator_status, last_error, created_at, updated_at)
    SELECT gen_random_uuid(), gen_random_uuid(), %(settlement)s, c.id, c.player_id, c.operator_id, c.outcome, c.shares, %(notice)s,
           0, NULL, '', '', %(at)s, %(at)s
    FROM claimed c
    WHERE NOT %(void)s AND c.outcome <> %(outcome)s AND c.shares > 0 AND c.operator_id = ANY(%(notify)s::uuid[])
    ON CONFLICT (position_id, settlement_id) DO NOTHING
    RETURNING 1
)
SELECT i.id, i.transaction_id, i.position_id, i.player_id, i.operator_id, i.outcome, i.shares, i.cost_basis, i.amount, NULL,
       pl.external_id, pl.currency, NULL::bigint, NULL::bigint, NULL::bigint
FROM inserted i JOIN casino_players pl ON pl.id = i.player_id
UNION ALL
SELECT NULL, NULL, (SELECT id FROM claimed ORDER BY id DESC LIMIT 1), NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
       (SELECT count(*) FROM claimed), (SELECT count(*) FROM due) - (SELECT count(*) FROM inserted), (SELECT count(*) FROM notices)
"""


def payouts_create(*, settlement: Settlement, chunk: int, after=None, up_to=None) -> Created:
    """Inside the chunk's transaction: up to ``chunk`` of the market's open positions locked (none another
    worker holds; ids above ``after`` and up to ``up_to`` when given), their payouts created in the state
    paying leaves them in, the positions closed."""
    closed = PositionStatus.VOIDED if settlement.action == SettlementAction.VOID else PositionStatus.RESOLVED
    if connection.vendor != "postgresql":
        return _create_orm(settlement, chunk, after, up_to, closed)
    s2s = operators_s2s()
    notify = operators_notified(settlement, s2s)
    params = {
        **_params(settlement.market_id, settlement.action, settlement.outcome),
        "chunk": chunk,
        "after": after,
        "up_to": up_to,
        "settlement": settlement.pk,
        "at": timezone.now(),
        "closed": closed,
        "paid": PayoutStatus.PAID,
        "sending": PayoutStatus.SENDING,
        "s2s": pg_array(s2s),
        "notify": pg_array(notify),
        "notice": LossNoticeStatus.PENDING,
    }
    bounds = (" AND p.id > %(after)s" if after is not None else "") + (" AND p.id <= %(up_to)s" if up_to is not None else "")
    with connection.cursor() as cursor:
        cursor.execute(_CREATE_SQL.format(bounds=bounds), params)
        rows = cursor.fetchall()
    *paid, (_, _, last, *_, claimed, duplicates, notices) = rows
    payouts = [
        (
            payout_id,
            transaction_id,
            DuePosition(
                pid,
                player,
                operator,
                outcome,
                shares,
                money.money(cost),
                money.money(amount),
                WalletMode.S2S if operator in s2s else WalletMode.INTERNAL,
                user,
                cur,
            ),
        )  # fmt: skip
        for payout_id, transaction_id, pid, player, operator, outcome, shares, cost, amount, _, user, cur, _, _, _ in paid
    ]
    return Created(payouts, claimed, last, duplicates, notices)


def operators_s2s() -> set:
    """The operators paid through their own wallet server (a handful of rows: read per chunk, so a change
    of wallet mode counts from the next chunk)."""
    return set(Operator.objects.filter(wallet_mode=WalletMode.S2S).values_list("pk", flat=True))


def _create_orm(settlement: Settlement, chunk: int, after, up_to, closed: str) -> Created:
    claimed = _claim_orm(settlement, chunk, after, up_to)
    rows = []
    for position in claimed:
        if position.amount <= 0:
            continue  # a losing position (or one with no shares left) is closed with nothing to pay, and no payout row
        status, attempts = (PayoutStatus.SENDING if position.wallet_mode == WalletMode.S2S else PayoutStatus.PAID), 1
        rows.append(NewPayout(uuid.uuid4(), uuid.uuid4(), position, status, attempts))
    inserted = _insert_orm(settlement, claimed, rows, closed) if claimed else set()
    notices = _notices_orm(settlement, claimed) if claimed else 0
    payouts = [(row.id, row.transaction_id, row.position) for row in rows if row.position.position_id in inserted]
    return Created(payouts, len(claimed), claimed[-1].position_id if claimed else None, len(rows) - len(inserted), notices)


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


def _claim_orm(settlement: Settlement, chunk: int, after, up_to) -> list[DuePosition]:
    rows = Position.objects.select_for_update().filter(market_id=settlement.market_id, status=PositionStatus.OPEN)
    if after is not None:
        rows = rows.filter(pk__gt=after)
    if up_to is not None:
        rows = rows.filter(pk__lte=up_to)
    rows = rows.select_related("operator", "player").order_by("pk")[:chunk]
    claimed = []
    for position in rows:
        amount, cost, _ = _due(position, settlement.action, settlement.outcome)
        player = position.player
        claimed.append(
            DuePosition(
                position.pk,
                position.player_id,
                position.operator_id,
                position.outcome,
                position.shares,
                cost,
                amount,
                position.operator.wallet_mode,
                player.external_id,
                player.currency,
            )
        )
    return claimed


def _insert_orm(settlement: Settlement, claimed: list[DuePosition], payouts: list[NewPayout], closed: str) -> set:
    mine = Payout.objects.filter(settlement=settlement, position_id__in=[p.position.position_id for p in payouts])
    taken = set(mine.values_list("position_id", flat=True))
    rows = [p for p in payouts if p.position.position_id not in taken]
    Payout.objects.bulk_create(
        [
            Payout(
                id=p.id,
                transaction_id=p.transaction_id,
                settlement=settlement,
                position_id=p.position.position_id,
                player_id=p.position.player_id,
                operator_id=p.position.operator_id,
                outcome=p.position.outcome,
                shares=p.position.shares,
                cost_basis=p.position.cost_basis,
                amount=p.position.amount,
                status=p.status,
                attempts=p.attempts,
            )
            for p in rows
        ],
        batch_size=CHUNK,
    )
    Position.objects.filter(pk__in=[c.position_id for c in claimed], status=PositionStatus.OPEN).update(
        status=closed, version=F("version") + 1, updated_at=timezone.now()
    )
    return {p.position.position_id for p in rows}


def _preview_orm(market_id: str, action: str, outcome: str | None, *, by_operator: bool) -> Totals:
    totals = Totals()
    for position in _open_positions(market_id).iterator(chunk_size=CHUNK):
        amount, cost, wins = _due(position, action, outcome)
        totals.positions += 1
        totals.winners += int(wins)
        totals.payout += amount
        totals.cost_basis += cost
        if by_operator:
            operator = position.operator
            row = totals.by_operator.setdefault(operator.name, {"positions": 0, "payout": ZERO, "wallet": operator.wallet_mode})
            row["positions"] += 1
            row["payout"] += amount
    return totals


# ----- issue 14 (SPEC §16): loss notices, recorded with the positions they close -------------------


def operators_notified(settlement: Settlement, s2s: set) -> set:
    """The S2S operators whose losing positions are reported (``notify_losses``); none for a void (no
    losing side). Read per chunk with the S2S set, so a change of the switch counts from the next chunk."""
    if settlement.action == SettlementAction.VOID or not s2s:
        return set()
    return set(Operator.objects.filter(pk__in=s2s, notify_losses=True).values_list("pk", flat=True))


def _notices_orm(settlement: Settlement, claimed: list[DuePosition]) -> int:
    """The same as the statement's ``notices`` part: one notice per losing position with shares at a notified operator."""
    notify = operators_notified(settlement, {p.operator_id for p in claimed if p.wallet_mode == WalletMode.S2S})
    losers = [p for p in claimed if p.operator_id in notify and p.outcome != settlement.outcome and p.shares > 0]
    if not losers:
        return 0
    taken = set(
        LossNotice.objects.filter(settlement=settlement, position_id__in=[p.position_id for p in losers]).values_list(
            "position_id", flat=True
        )
    )
    fresh = [p for p in losers if p.position_id not in taken]
    LossNotice.objects.bulk_create(
        [
            LossNotice(
                settlement=settlement,
                position_id=p.position_id,
                player_id=p.player_id,
                operator_id=p.operator_id,
                outcome=p.outcome,
                shares=p.shares,
            )
            for p in fresh
        ]
    )
    return len(fresh)
