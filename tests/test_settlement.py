"""Settlement: resolve and void, paid exactly once, with the reference document's response."""

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from decimal import ROUND_FLOOR, Decimal

import pytest
from django.db import connections
from django.db.models import Count, Q, Sum

from casino.models import Market, MarketExposure, Position, Trade
from casino.services.exposure import exposure_book, global_exposure_bound
from casino.services.markets import reference_price_set
from settlement.models import Payout, Settlement
from settlement.services.payouts import settlement_advance
from tests.conftest import MARKET, buy_body, decimal_json, requires_postgres
from wallets.models import LedgerEntry, PlayerWallet

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("no_rate_limits", "no_velocity_limits")]
CENT = Decimal("0.01")


def _book(make_player, market):
    """Twelve players on both sides, some partly sold; one buy per player and outcome, so the
    expected numbers follow from the trades alone."""
    players = []
    for i in range(12):
        player, api = make_player(Decimal("500"))
        outcome, mid = ("yes", 62) if i % 3 else ("no", 38)
        assert api.post("trade", buy_body(amount=str(10 + i), outcome=outcome, mid=mid)).status_code == 200
        if i % 4 == 0:  # partly sold
            shares = Trade.objects.get(player=player).shares
            sell = {
                "marketId": MARKET,
                "side": "sell",
                "outcome": outcome,
                "amount": str((shares / 3).quantize(Decimal("0.000001"))),
                "midPrice": mid,
            }
            assert api.post("trade", sell).status_code == 200
        if i == 5:  # both sides
            assert api.post("trade", buy_body(amount="7", outcome="no", mid=38)).status_code == 200
        players.append((player, api))
    return players


def _settle_all():
    """What the settle_market task does, run here to the end (tests do not run a Celery worker)."""
    for settlement in Settlement.objects.filter(status="settling"):
        for _ in range(1000):
            if settlement_advance(settlement_id=settlement.pk):
                break


def _expected(outcome: str | None):
    """Independent computation from the trades: shares held, cost basis, payout per position."""
    held: dict[tuple, Decimal] = {}
    price: dict[tuple, Decimal] = {}
    for t in Trade.objects.filter(market_id=MARKET):
        key = (t.player_id, t.outcome)
        held[key] = held.get(key, Decimal("0")) + (t.shares if t.side == "buy" else -t.shares)
        if t.side == "buy":
            price[key] = t.price_executed
    positions = {k: v for k, v in held.items() if v > 0}
    cost = {k: (v * price[k] / 100).quantize(CENT, rounding=ROUND_FLOOR) for k, v in positions.items()}
    if outcome is None:
        payout = cost
    else:
        payout = {k: (v if k[1] == outcome else Decimal("0")).quantize(CENT, rounding=ROUND_FLOOR) for k, v in positions.items()}
    return positions, cost, payout


def test_resolve_response_matches_an_independent_computation(make_player, market, staff_api):
    players = _book(make_player, market)
    balances_before = {p.pk: PlayerWallet.objects.get(player=p).balance for p, _ in players}
    positions, cost, payout = _expected("yes")
    response = staff_api.post("resolve", {"marketId": MARKET, "outcome": "yes", "action": "resolve"})
    assert response.status_code == 200, response.content
    body = decimal_json(response)
    winners = [k for k in positions if k[1] == "yes"]
    assert body == {
        "success": True,
        "marketId": MARKET,
        "outcome": "yes",
        "totalPositions": len(positions),
        "totalWinners": len(winners),
        "totalPayout": sum(payout.values()),
        "casinoProfit": sum(cost.values()) - sum(payout.values()),
    }
    _settle_all()
    # Each winner got exactly floor(shares), once.
    for player, _ in players:
        due = sum((payout[k] for k in payout if k[0] == player.pk), Decimal("0"))
        assert PlayerWallet.objects.get(player=player).balance == balances_before[player.pk] + due
        assert (LedgerEntry.objects.filter(player=player, type="payout").aggregate(s=Sum("amount"))["s"] or 0) == due
    _assert_settled(MARKET, "resolved")


def test_void_refunds_cost_basis(make_player, market, staff_api):
    _book(make_player, market)
    positions, cost, _ = _expected(None)
    body = decimal_json(staff_api.post("resolve", {"marketId": MARKET, "action": "void", "reason": "Resolution criteria became ambiguous"}))
    assert body == {
        "success": True,
        "marketId": MARKET,
        "totalPositions": len(positions),
        "totalPayout": sum(cost.values()),
        "casinoProfit": 0,
    }
    assert Settlement.objects.get().reason == "Resolution criteria became ambiguous"
    _settle_all()
    assert LedgerEntry.objects.filter(type="refund").aggregate(s=Sum("amount"))["s"] == sum(cost.values())
    _assert_settled(MARKET, "voided")


def _assert_settled(market_id: str, status: str):
    market = Market.objects.get(pk=market_id)
    assert market.status == status
    assert not Position.objects.filter(market_id=market_id, status="open").exists()
    assert set(Position.objects.filter(market_id=market_id, shares__gt=0).values_list("status", flat=True)) <= {"resolved", "voided"}
    assert exposure_book(market_id=market_id).worst_case_loss == 0
    assert not MarketExposure.objects.filter(market_id=market_id).exclude(yes_shares=0, no_shares=0, cash_in=0).exists()
    settlement = Settlement.objects.get(market_id=market_id)
    assert settlement.status == "completed"
    assert not Payout.objects.exclude(status="paid").exists()
    # The decision's totals are what the chunks paid: one payout per position due something.
    payouts = Payout.objects.filter(settlement=settlement)
    made = payouts.aggregate(n=Count("pk"), s=Sum("amount"), paid=Sum("amount", filter=Q(status="paid")))
    due = Position.objects.filter(market_id=market_id, shares__gt=0, status="voided" if settlement.action == "void" else "resolved")
    if settlement.action == "resolve":
        due = due.filter(outcome=settlement.outcome, shares__gte=Decimal("0.01"))
    assert (made["n"], made["s"], made["paid"] or 0) == (due.count(), settlement.total_payout, settlement.total_payout)
    assert (settlement.paid_amount, settlement.failed_count) == (settlement.total_payout, 0)


def test_trading_stops_the_moment_a_market_is_resolved(make_player, market, staff_api, monkeypatch):
    from settlement.services import decide

    monkeypatch.setattr(decide, "_start", lambda settlement_id: None)  # the payouts have not run yet
    _, api = make_player(Decimal("100"))
    api.post("trade", buy_body())
    staff_api.post("resolve", {"marketId": MARKET, "outcome": "no"})
    response = api.post("trade", buy_body())
    assert decimal_json(response)["error"] == "Market not tradeable"
    assert Market.objects.get(pk=MARKET).status == "resolving"


def test_resolving_twice_is_idempotent_and_a_different_decision_is_400(make_player, market, staff_api):
    _book(make_player, market)
    first = staff_api.post("resolve", {"marketId": MARKET, "outcome": "yes"})
    _settle_all()
    again = staff_api.post("resolve", {"marketId": MARKET, "outcome": "yes"})
    assert first.content == again.content
    other = staff_api.post("resolve", {"marketId": MARKET, "outcome": "no"})
    assert other.status_code == 400 and decimal_json(other)["error"] == "Market already settled"
    assert staff_api.post("resolve", {"marketId": MARKET, "action": "void"}).status_code == 400
    assert Settlement.objects.count() == 1
    assert LedgerEntry.objects.filter(type="payout").count() == Payout.objects.filter(status="paid").count()


def test_bad_resolve_requests(staff_api, make_player, market):
    assert staff_api.post("resolve", {"outcome": "yes"}).status_code == 400
    assert decimal_json(staff_api.post("resolve", {"marketId": MARKET}))["error"] == "Missing required fields"
    assert decimal_json(staff_api.post("resolve", {"marketId": MARKET, "outcome": "maybe"}))["error"] == "Invalid outcome"
    assert decimal_json(staff_api.post("resolve", {"marketId": MARKET, "outcome": "yes", "action": "cancel"}))["error"] == "Invalid action"
    assert staff_api.post("resolve", {"marketId": "0xunknown", "outcome": "yes"}).status_code == 404
    _, player_api = make_player()
    assert player_api.post("resolve", {"marketId": MARKET, "outcome": "yes"}).status_code == 403


class SimulatedCrash(BaseException):
    pass


def test_a_worker_killed_mid_chunk_and_rerun_pays_every_winner_exactly_once(make_player, market, staff_api, monkeypatch):
    from settlement.services import decide, payouts_house

    monkeypatch.setattr(decide, "_start", lambda settlement_id: None)
    players = _book(make_player, market)
    before = {p.pk: PlayerWallet.objects.get(player=p).balance for p, _ in players}
    _, _, payout = _expected("yes")
    staff_api.post("resolve", {"marketId": MARKET, "outcome": "yes"})
    settlement = Settlement.objects.get()
    real = payouts_house.wallet_changes_bulk
    calls = {"n": 0}

    def dies_in_the_second_chunk(**kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise SimulatedCrash()
        return real(**kwargs)

    monkeypatch.setattr(payouts_house, "wallet_changes_bulk", dies_in_the_second_chunk)
    # Chunks of 4 positions in id order (random): a chunk of losers only moves no money, so the worker
    # dies in the second chunk that pays someone, whichever it is.
    state = []
    with pytest.raises(SimulatedCrash):
        for _ in range(len(payout)):
            state = (
                {p.position_id: p.status for p in Payout.objects.all()},
                Position.objects.filter(market_id=MARKET, status="open").count(),
                LedgerEntry.objects.filter(type="payout").count(),
            )
            settlement_advance(settlement_id=settlement.pk, chunk=4)
    paid_before, open_before, ledger_before = state
    assert calls["n"] == 2 and paid_before and set(paid_before.values()) == {"paid"}  # losers: closed, no row
    # The dying chunk left nothing: no payout, its positions open, no ledger row.
    assert {p.position_id: p.status for p in Payout.objects.all()} == paid_before
    assert Position.objects.filter(market_id=MARKET, status="open").count() == open_before
    assert LedgerEntry.objects.filter(type="payout").count() == ledger_before == len(paid_before)
    monkeypatch.setattr(payouts_house, "wallet_changes_bulk", real)
    for _ in range(3):  # the task re-run, more than once
        settlement_advance(settlement_id=settlement.pk, chunk=2)
    while not settlement_advance(settlement_id=settlement.pk, chunk=2):
        pass
    for player, _ in players:
        due = sum((payout[k] for k in payout if k[0] == player.pk), Decimal("0"))
        assert PlayerWallet.objects.get(player=player).balance == before[player.pk] + due
    assert LedgerEntry.objects.filter(type="payout").count() == len([v for v in payout.values() if v > 0])
    _assert_settled(MARKET, "resolved")


@requires_postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_resolve_requests_settle_once(make_player, market, staff_api):
    _book(make_player, market)
    barrier = threading.Barrier(8)

    def resolve():
        try:
            barrier.wait(timeout=30)
            return staff_api.post("resolve", {"marketId": MARKET, "outcome": "yes"})
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=8) as pool:
        responses = list(pool.map(lambda _: resolve(), range(8)))
    assert {r.status_code for r in responses} == {200}
    assert len({r.content for r in responses}) == 1
    settlement = Settlement.objects.get()
    while not settlement_advance(settlement_id=settlement.pk):
        pass
    assert (
        LedgerEntry.objects.filter(type="payout").count()
        == Payout.objects.filter(status="paid").count()
        == settlement.total_winners - Payout.objects.filter(outcome="yes").exclude(amount__gt=0).count()
    )


@requires_postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_workers_on_one_settlement_pay_once(make_player, market, staff_api, monkeypatch):
    from settlement.services import decide

    monkeypatch.setattr(decide, "_start", lambda settlement_id: None)
    _book(make_player, market)
    staff_api.post("resolve", {"marketId": MARKET, "outcome": "no"})
    settlement = Settlement.objects.get()

    def worker(_):
        try:
            while not settlement_advance(settlement_id=settlement.pk, chunk=1):
                pass
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(worker, range(4)))
    _, _, payout = _expected("no")
    assert LedgerEntry.objects.filter(type="payout").aggregate(s=Sum("amount"))["s"] == sum(payout.values())
    assert LedgerEntry.objects.filter(type="payout").count() == len([v for v in payout.values() if v > 0])
    _assert_settled(MARKET, "resolved")


def test_global_bound_drops_when_a_market_settles(make_player, market, staff_api):
    reference_price_set(market_id="0xother-market", outcome="yes", mid_price=Decimal("50"))
    _, api = make_player(Decimal("500"))
    api.post("trade", buy_body(amount="32"))
    api.post("trade", buy_body(amount="10", market_id="0xother-market", mid=50))
    before = global_exposure_bound()
    staff_api.post("resolve", {"marketId": MARKET, "outcome": "no"})
    _settle_all()
    assert global_exposure_bound() == before - Decimal("18")
    assert exposure_book(market_id="0xother-market").worst_case_loss == global_exposure_bound()


def test_the_settle_market_task_pays_to_completion(make_player, market, staff_api):
    from settlement.tasks import settle_market

    _book(make_player, market)
    staff_api.post("resolve", {"marketId": MARKET, "outcome": "yes"})
    settlement = Settlement.objects.get()
    assert settle_market.apply(args=[str(settlement.pk)]).get() == "completed"
    _assert_settled(MARKET, "resolved")
    assert str(uuid.UUID(str(settlement.pk))) == str(settlement.pk)


def test_a_worker_killed_between_the_ledger_write_and_marking_paid_leaves_its_chunk_pending(make_player, market, staff_api, monkeypatch):
    """Killed mid-chunk after the wallets moved: the whole chunk rolls back (one transaction), and the
    re-run pays every winner exactly once."""
    from settlement.services import decide, payouts_house

    monkeypatch.setattr(decide, "_start", lambda settlement_id: None)
    players = _book(make_player, market)
    before = {p.pk: PlayerWallet.objects.get(player=p).balance for p, _ in players}
    _, _, payout = _expected("yes")
    staff_api.post("resolve", {"marketId": MARKET, "outcome": "yes"})
    settlement = Settlement.objects.get()
    real = payouts_house.wallet_changes_bulk

    def moves_the_money_then_dies(**kwargs):
        real(**kwargs)
        raise SimulatedCrash()

    monkeypatch.setattr(payouts_house, "wallet_changes_bulk", moves_the_money_then_dies)
    with pytest.raises(SimulatedCrash):
        settlement_advance(settlement_id=settlement.pk, chunk=50)
    monkeypatch.setattr(payouts_house, "wallet_changes_bulk", real)
    assert not LedgerEntry.objects.filter(type="payout").exists()
    assert not Payout.objects.filter(status="paid").exists()
    assert {p.pk: PlayerWallet.objects.get(player=p).balance for p, _ in players} == before
    while not settlement_advance(settlement_id=settlement.pk, chunk=50):
        pass
    for player, _ in players:
        due = sum((payout[k] for k in payout if k[0] == player.pk), Decimal("0"))
        assert PlayerWallet.objects.get(player=player).balance == before[player.pk] + due
        winning = [k for k in payout if k[0] == player.pk and payout[k]]
        assert LedgerEntry.objects.filter(player=player, type="payout").count() == len(winning)
    assert set(LedgerEntry.objects.filter(type="payout").values_list("id", flat=True)) == set(
        Payout.objects.filter(status="paid").values_list("transaction_id", flat=True)
    )
    _assert_settled(MARKET, "resolved")


def test_a_void_refunds_a_player_with_both_sides_twice_in_one_chunk(make_player, market, staff_api):
    """Two refunds of one player in one bulk movement: each its own ledger row, balance_after in order."""
    _, api = make_player(Decimal("100"))
    assert api.post("trade", buy_body(amount="10", outcome="yes", mid=62)).status_code == 200
    assert api.post("trade", buy_body(amount="7", outcome="no", mid=38)).status_code == 200
    staff_api.post("resolve", {"marketId": MARKET, "action": "void"})
    _settle_all()
    rows = list(LedgerEntry.objects.filter(type="refund").order_by("balance_after"))
    assert len(rows) == 2
    assert rows[1].balance_after == rows[0].balance_after + rows[1].amount
    assert rows[1].balance_after == PlayerWallet.objects.get().balance
    _assert_settled(MARKET, "voided")


@requires_postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_workers_taking_chunks_pay_once(make_player, market, staff_api, monkeypatch):
    from settlement.services import decide

    monkeypatch.setattr(decide, "_start", lambda settlement_id: None)
    _book(make_player, market)
    staff_api.post("resolve", {"marketId": MARKET, "action": "void"})
    settlement = Settlement.objects.get()
    barrier = threading.Barrier(3)

    def worker(_):
        try:
            barrier.wait(timeout=30)
            while not settlement_advance(settlement_id=settlement.pk, chunk=3):
                pass
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=3) as pool:
        list(pool.map(worker, range(3)))
    _, cost, _ = _expected(None)
    assert LedgerEntry.objects.filter(type="refund").aggregate(s=Sum("amount"))["s"] == sum(cost.values())
    assert LedgerEntry.objects.filter(type="refund").count() == Payout.objects.filter(status="paid").count() == len(cost)
    _assert_settled(MARKET, "voided")


@requires_postgres
def test_the_decision_computes_amounts_in_sql_by_the_money_rules(make_player, market):
    """Positions seeded with awkward shares and prices: the decision's totals, and every payout's amount
    and cost basis made by the chunks, are what core.money gives (the SQL against the Python rules)."""
    from casino.models import PositionStatus
    from core import money
    from settlement.services.decide import market_settle, settlement_plan

    player, _ = make_player()
    positions = []
    for i in range(40):
        shares = Decimal(i) + Decimal("0.999999") - Decimal(i % 7) / Decimal("1000000")
        price = Decimal("0.0001") + Decimal(i) * Decimal("2.4999")
        outcome = "yes" if i % 3 else "no"
        owner = player if i == 0 else make_player()[0]
        positions.append(Position(player=owner, operator=owner.operator, market=market, outcome=outcome, shares=shares, avg_price=price))
    Position.objects.bulk_create(positions)
    plan = settlement_plan(market_id=MARKET, action="resolve", outcome="yes")
    settlement = market_settle(market_id=MARKET, action="resolve", outcome="yes")
    expected_payout = expected_cost = Decimal("0")
    for position in positions:
        expected_payout += money.payout_for_shares(position.shares) if position.outcome == "yes" else Decimal("0")
        expected_cost += money.cents_down(position.shares * position.avg_price / money.HUNDRED)
    totals = (expected_payout, expected_cost)
    assert (settlement.total_payout, settlement.total_cost_basis) == (plan.total_payout, plan.total_cost_basis) == totals
    assert settlement.total_winners == plan.total_winners == len([p for p in positions if p.outcome == "yes"])
    while not settlement_advance(settlement_id=settlement.pk, chunk=7):
        pass
    for position in positions:
        cost = money.cents_down(position.shares * position.avg_price / money.HUNDRED)
        due = money.payout_for_shares(position.shares) if position.outcome == "yes" else Decimal("0")
        if due == 0:  # a losing position is closed with no payout row
            assert not Payout.objects.filter(position=position).exists()
            continue
        paid = Payout.objects.get(position=position)
        assert (paid.cost_basis, paid.amount, paid.status) == (cost, due, "paid"), (position.shares, position.avg_price)
    assert Payout.objects.aggregate(s=Sum("amount"))["s"] == settlement.total_payout
    assert set(Position.objects.filter(market=market).values_list("status", flat=True)) == {PositionStatus.RESOLVED}
