"""The decision writes nothing per position; each position's payout is created, and paid, by the chunk
that closes it: once, whatever the workers do, and only while the settlement is settling."""

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest
from django.db import connection, connections, transaction
from django.db.models import Count, Sum
from django.test.utils import CaptureQueriesContext

from casino.models import Market, Player, Position
from core import money
from settlement.models import Payout, Settlement
from settlement.services.decide import market_settle
from settlement.services.payouts import settlement_advance
from tests.conftest import MARKET, buy_body, decimal_json, requires_postgres
from wallets.models import LedgerEntry, PlayerWallet

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("no_rate_limits", "no_velocity_limits")]


@pytest.fixture(autouse=True)
def no_task(monkeypatch):
    from settlement.services import decide

    monkeypatch.setattr(decide, "_start", lambda settlement_id: None)  # the tests drive the payouts


def _seed(market, operator, n: int) -> dict:
    """n open positions, one player each (even: YES, odd: NO), shares and prices that need rounding;
    returns position id -> what a YES resolution pays it."""
    players = Player.objects.bulk_create([Player(operator=operator.operator, external_id=f"bulk-{i:04d}") for i in range(n)])
    positions = [
        Position(
            player=player,
            operator=operator.operator,
            market=market,
            outcome="yes" if i % 2 == 0 else "no",
            shares=Decimal(3 + i % 11) + Decimal("0.123457"),
            avg_price=Decimal(20 + i % 50) + Decimal("0.3333"),
        )
        for i, player in enumerate(players)
    ]
    Position.objects.bulk_create(positions)
    return {p.pk: money.payout_for_shares(p.shares) if p.outcome == "yes" else Decimal("0") for p in positions}


def test_the_decision_writes_no_row_per_position(make_player, market, staff_api):
    for outcome in ("yes", "no", "yes"):
        _, api = make_player(Decimal("100"))
        assert api.post("trade", buy_body(amount="20", outcome=outcome, mid=62 if outcome == "yes" else 38)).status_code == 200
    with CaptureQueriesContext(connection) as queries:
        response = staff_api.post("resolve", {"marketId": MARKET, "outcome": "yes"})
    assert response.status_code == 200 and decimal_json(response)["totalPositions"] == 3
    written = [q["sql"] for q in queries if q["sql"].lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE"))]
    assert not [sql for sql in written if "settlement_payouts" in sql or "casino_positions" in sql], written
    assert not Payout.objects.exists()
    assert set(Position.objects.filter(market_id=MARKET).values_list("status", flat=True)) == {"open"}
    settlement = Settlement.objects.get()
    assert (settlement.status, settlement.market.status) == ("settling", "resolving")


def test_positions_read_open_until_their_chunk_pays_them(make_player, market, staff_api):
    """While the market is resolving a position is listed open (its payout is not made yet); the chunk
    that pays it closes it."""
    player, api = make_player(Decimal("100"))
    assert api.post("trade", buy_body(amount="25")).status_code == 200
    staff_api.post("resolve", {"marketId": MARKET, "outcome": "yes"})
    listed = decimal_json(api.get("positions"))["positions"]
    assert [p["status"] for p in listed] == ["open"]
    assert Market.objects.get(pk=MARKET).status == "resolving"
    assert settlement_advance(settlement_id=Settlement.objects.get().pk)
    assert decimal_json(api.get("positions"))["positions"] == []
    resolved = decimal_json(api.get("positions", {"status": "resolved"}))["positions"]
    assert [p["status"] for p in resolved] == ["resolved"]
    assert PlayerWallet.objects.get(player=player).balance == Decimal("75.00") + Decimal("39.06")


def test_a_chunk_does_nothing_unless_its_settlement_is_settling(market, operator):
    due = _seed(market, operator, 10)
    settlement = market_settle(market_id=MARKET, action="resolve", outcome="yes")
    Settlement.objects.filter(pk=settlement.pk).update(status="reversing")  # what a reversal sets, under its lock
    assert settlement_advance(settlement_id=settlement.pk) is True  # nothing left for the payouts to do
    assert not Payout.objects.exists() and not LedgerEntry.objects.exists()
    assert Position.objects.filter(market_id=MARKET, status="open").count() == len(due)
    Settlement.objects.filter(pk=settlement.pk).update(status="settling")
    assert settlement_advance(settlement_id=settlement.pk) is True
    assert LedgerEntry.objects.aggregate(s=Sum("amount"))["s"] == sum(due.values())


class SimulatedCrash(BaseException):
    pass


def test_a_worker_killed_after_creating_its_payouts_leaves_the_positions_open(market, operator, monkeypatch):
    from settlement.services import payout_chunks

    due = _seed(market, operator, 12)
    settlement = market_settle(market_id=MARKET, action="void")
    real = payout_chunks.payouts_create

    def inserts_then_dies(**kwargs):
        real(**kwargs)
        raise SimulatedCrash()

    monkeypatch.setattr(payout_chunks, "payouts_create", inserts_then_dies)
    with pytest.raises(SimulatedCrash):
        settlement_advance(settlement_id=settlement.pk, chunk=5)
    monkeypatch.setattr(payout_chunks, "payouts_create", real)
    assert not Payout.objects.exists()
    assert Position.objects.filter(market_id=MARKET, status="open").count() == len(due)
    while not settlement_advance(settlement_id=settlement.pk, chunk=5):
        pass
    refunds = LedgerEntry.objects.filter(type="refund")
    assert refunds.count() == len(due) and refunds.aggregate(s=Sum("amount"))["s"] == Settlement.objects.get().total_payout


@requires_postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("action", ["resolve", "void"])
def test_workers_create_and_pay_each_positions_payout_once(market, operator, action):
    due = _seed(market, operator, 240)
    settlement = market_settle(market_id=MARKET, action=action, outcome="yes" if action == "resolve" else None)
    barrier = threading.Barrier(4)

    def worker(_):
        try:
            barrier.wait(timeout=30)
            while not settlement_advance(settlement_id=settlement.pk, chunk=9):
                pass
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(worker, range(4)))
    settlement.refresh_from_db()
    assert settlement.status == "completed"
    per_position = Payout.objects.values("position_id").annotate(n=Count("pk"))
    due_something = len(due) if action == "void" else len([v for v in due.values() if v])  # no payout row for a loser
    assert len(per_position) == due_something and {row["n"] for row in per_position} == {1}
    paid = Payout.objects.filter(status="paid")
    ledger = LedgerEntry.objects.filter(round_id=str(settlement.pk))
    assert set(ledger.values_list("id", flat=True)) == set(paid.values_list("transaction_id", flat=True))
    assert ledger.aggregate(s=Sum("amount"))["s"] == paid.aggregate(s=Sum("amount"))["s"] == settlement.total_payout
    if action == "resolve":
        assert settlement.total_payout == sum(due.values()) and paid.count() == len([v for v in due.values() if v])
    assert set(Position.objects.filter(market=market).values_list("status", flat=True)) == {"resolved" if action == "resolve" else "voided"}


@requires_postgres
@pytest.mark.django_db(transaction=True)
def test_a_chunk_waits_for_a_lock_on_its_settlement_and_then_does_nothing(market, operator):
    """The contract with a reversal: it locks the settlement FOR UPDATE before touching payouts or
    positions; a chunk takes the row FOR SHARE first, so it waits, then sees the new status."""
    _seed(market, operator, 6)
    settlement = market_settle(market_id=MARKET, action="resolve", outcome="yes")
    outcome = {}
    locked, release = threading.Event(), threading.Event()

    def reversal():
        try:
            with transaction.atomic():
                Settlement.objects.select_for_update().get(pk=settlement.pk)
                locked.set()
                release.wait(timeout=30)
                Settlement.objects.filter(pk=settlement.pk).update(status="reversing")
        finally:
            connections.close_all()

    def worker():
        try:
            outcome["done"] = settlement_advance(settlement_id=settlement.pk)
            outcome["at"] = time.monotonic()
        finally:
            connections.close_all()

    holder = threading.Thread(target=reversal)
    holder.start()
    assert locked.wait(timeout=30)
    chunk = threading.Thread(target=worker)
    chunk.start()
    time.sleep(0.5)
    assert chunk.is_alive()  # waiting for the lock
    released_at = time.monotonic()
    release.set()
    holder.join(timeout=30)
    chunk.join(timeout=30)
    assert outcome == {"done": True, "at": outcome["at"]} and outcome["at"] >= released_at
    assert not Payout.objects.exists()
    assert Position.objects.filter(market_id=MARKET, status="open").count() == 6
