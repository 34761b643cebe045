"""Reversing a settlement at an S2S operator (SPEC §12), against the reference wallet server over
real HTTP: each payout taken back by a debit of type payout_reversal/refund_reversal naming it, with
no session token; INSUFFICIENT_FUNDS leaves a debt, recovered from the next payout's credit; a
debit that times out is retried under the same id and taken once; a worker killed mid-chunk and two
workers at once never send a debit twice."""

import threading
import time
from decimal import Decimal

import pytest
from django.db import connections

from casino.models import Market, Position
from casino.services.exposure import exposure_book
from settlement.models import Payout, Reversal, ReversalItem, Settlement
from settlement.services.decide import market_settle
from settlement.services.reversal import reversal_advance, settlement_reverse
from tests.conftest import MARKET, buy_body, requires_postgres
from tests.test_settlement_s2s import SimulatedCrash, _advance_until_done, _winners
from tests.test_settlement_s2s import world as world  # noqa: F401 - the fixture
from wallets.models import LedgerEntry, PlayerDebt, WalletOperation

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("no_rate_limits", "no_velocity_limits", "no_reversal_start")]


@pytest.fixture
def no_reversal_start(monkeypatch):
    from settlement.services import reversal

    monkeypatch.setattr(reversal, "_start", lambda reversal_id: None)


def _reverse_until_done(rev, passes=30, chunk=1000) -> bool:
    for _ in range(passes):
        if reversal_advance(reversal_id=rev.pk, chunk=chunk):
            return True
    return False


def _debit_requests(world) -> dict:
    """Reversal debit id -> how many debit requests the operator received for it."""
    ids = {str(t) for t in ReversalItem.objects.values_list("transaction_id", flat=True)}
    counts: dict = {}
    for entry in world.server.request_log:
        if entry.endpoint == "debit" and entry.transaction_id in ids:
            counts[entry.transaction_id] = counts.get(entry.transaction_id, 0) + 1
    return counts


def _reversal_debits(world) -> dict:
    return {
        tid: tx
        for tid, tx in world.server.transactions.items()
        if tx["operation"] == "debit" and tx["type"] in ("payout_reversal", "refund_reversal")
    }


def test_resolve_reverse_resolve_the_other_way_at_the_operator(world):
    players = _winners(world, 3)  # each: 39.0625 YES shares for $25
    loser, api = world.player()
    assert api.post("trade", buy_body(outcome="no", mid=38)).status_code == 200
    positions_before = {(p.player_id, p.outcome): (p.shares, p.avg_price) for p in Position.objects.filter(market_id=MARKET)}
    book_before = exposure_book(market_id=MARKET)
    settlement = market_settle(market_id=MARKET, action="resolve", outcome="yes")
    assert _advance_until_done(settlement)
    for player in players:
        assert world.server.balance(player.external_id) == Decimal("114.06")

    rev = settlement_reverse(market_id=MARKET, reason="wrong outcome")
    assert rev.total_positions == 4 and rev.total_items == 3 and rev.total_due == Decimal("117.18")
    assert _reverse_until_done(rev)
    rev.refresh_from_db()
    assert (rev.total_reversed, rev.total_uncollected, rev.status) == (Decimal("117.18"), Decimal("0"), "completed")
    for player in players:
        assert world.server.balance(player.external_id) == Decimal("75.00")
    debits = _reversal_debits(world)
    paid = {str(t): str(p) for p, t in Payout.objects.filter(amount__gt=0).values_list("transaction_id", "transaction_id")}
    assert len(debits) == 3
    for tid, tx in debits.items():
        assert tx["type"] == "payout_reversal" and tx["applied"] and tx["amount"] == Decimal("39.06")
        assert tx["reference_transaction_id"] in paid
        assert "session_token" not in tx["request"]
        assert LedgerEntry.objects.get(pk=tid).amount == Decimal("-39.06")
    assert {
        (p.player_id, p.outcome): (p.shares, p.avg_price) for p in Position.objects.filter(market_id=MARKET, status="open")
    } == positions_before
    assert exposure_book(market_id=MARKET) == book_before
    assert Market.objects.get(pk=MARKET).status == "closed"
    world.assert_books_balance()

    again = market_settle(market_id=MARKET, action="resolve", outcome="no")
    assert _advance_until_done(again)
    no_shares = Position.objects.get(player=loser).shares
    assert world.server.balance(loser.external_id) == Decimal("75.00") + no_shares.quantize(Decimal("0.01"), rounding="ROUND_FLOOR")
    for player in players:
        assert world.server.balance(player.external_id) == Decimal("75.00")
    world.assert_books_balance()
    assert Settlement.objects.filter(market_id=MARKET, status="completed").count() == 1


def test_insufficient_funds_leaves_a_debt_recovered_from_the_next_payout_credits(world):
    rich = _winners(world, 1)[0]
    poor, api = world.player()
    assert api.post("trade", buy_body()).status_code == 200  # YES: pays 39.06
    assert api.post("trade", buy_body(outcome="no", mid=38)).status_code == 200  # NO as well
    settlement = market_settle(market_id=MARKET, action="resolve", outcome="yes")
    assert _advance_until_done(settlement)
    assert world.server.balance(poor.external_id) == Decimal("89.06")
    world.server.add_fault("refuse", endpoint="debit", status="INSUFFICIENT_FUNDS", user_id=poor.external_id)
    rev = settlement_reverse(market_id=MARKET, reason="wrong outcome")
    assert _reverse_until_done(rev)
    rev.refresh_from_db()
    assert (rev.total_reversed, rev.total_uncollected) == (Decimal("39.06"), Decimal("39.06"))
    assert world.server.balance(poor.external_id) == Decimal("89.06")  # the operator took nothing
    assert world.server.balance(rich.external_id) == Decimal("75.00")
    assert PlayerDebt.objects.get(player=poor).amount == Decimal("39.06")
    assert not PlayerDebt.objects.filter(player=rich).exists()
    assert not LedgerEntry.objects.filter(player=poor, type="payout_reversal").exists()
    item = ReversalItem.objects.get(player=poor)
    assert (item.amount_taken, item.amount_uncollected) == (Decimal("0"), Decimal("39.06"))
    world.assert_books_balance()

    # Voided after all: two refunds of 25.00; the debt takes the first whole (nothing is sent) and
    # 14.06 of the second (10.94 is sent); each recovery is a debt_recovery row after its refund.
    world.server.clear_faults()
    again = market_settle(market_id=MARKET, action="void", reason="event cancelled")
    assert _advance_until_done(again)
    refunds = {p.transaction_id: p for p in Payout.objects.filter(settlement=again, player=poor)}
    sent = {tid: tx for tid, tx in world.server.transactions.items() if tx["operation"] == "credit" and tx["type"] == "refund"}
    poor_sent = [tx for tid, tx in sent.items() if tx["user_id"] == poor.external_id]
    assert [tx["amount"] for tx in poor_sent] == [Decimal("10.94")]
    recoveries = LedgerEntry.objects.filter(player=poor, type="debt_recovery")
    assert sorted(r.amount for r in recoveries) == [Decimal("-25.00"), Decimal("-14.06")]
    assert {r.reference_id for r in recoveries} == set(refunds)
    assert sorted(LedgerEntry.objects.filter(player=poor, type="refund").values_list("amount", flat=True)) == [Decimal("25.00")] * 2
    assert world.server.balance(poor.external_id) == Decimal("100.00")
    assert PlayerDebt.objects.get(player=poor).amount == 0
    assert set(Payout.objects.filter(settlement=again).values_list("status", flat=True)) == {"paid"}
    world.assert_books_balance()


def test_a_reversal_debit_that_times_out_is_retried_under_the_same_id_and_taken_once(world):
    players = _winners(world, 2)
    settlement = market_settle(market_id=MARKET, action="resolve", outcome="yes")
    assert _advance_until_done(settlement)
    # The operator applies the first debit, but its answer is lost (HTTP 504 after handling).
    world.server.add_fault("http_error", endpoint="debit", http_status=504, apply="before", times=1)
    rev = settlement_reverse(market_id=MARKET, reason="wrong outcome")
    assert _reverse_until_done(rev, passes=40)
    requests = _debit_requests(world)
    assert sorted(requests.values()) == [1, 2]  # the lost one sent again under its own id
    for player in players:
        assert world.server.balance(player.external_id) == Decimal("75.00")
        assert LedgerEntry.objects.filter(player=player, type="payout_reversal").count() == 1
    assert WalletOperation.objects.filter(type="payout_reversal", status="ok").count() == 2
    world.assert_books_balance()


def test_a_reversal_worker_killed_before_its_calls_holds_them_then_another_sends_each_once(world, settings, monkeypatch):
    from settlement.services import reversal

    settings.HOUSE_WALLET_HOLD_MARGIN_SECONDS = 0
    players = _winners(world, 3)
    settlement = market_settle(market_id=MARKET, action="resolve", outcome="yes")
    assert _advance_until_done(settlement)
    rev = settlement_reverse(market_id=MARKET, reason="wrong outcome")
    real = reversal.operations_call
    monkeypatch.setattr(reversal, "operations_call", lambda **kwargs: (_ for _ in ()).throw(SimulatedCrash()))
    with pytest.raises(SimulatedCrash):
        reversal_advance(reversal_id=rev.pk)
    monkeypatch.setattr(reversal, "operations_call", real)
    assert ReversalItem.objects.filter(status="sending").count() == 3
    assert reversal_advance(reversal_id=rev.pk) is False  # held by the dead worker: not sent
    assert _debit_requests(world) == {}
    time.sleep(1.3)
    assert _reverse_until_done(rev)
    assert set(_debit_requests(world).values()) == {1}
    for player in players:
        assert world.server.balance(player.external_id) == Decimal("75.00")
    world.assert_books_balance()


def test_a_reversal_worker_killed_after_its_calls_is_followed_by_the_same_ids(world, settings, monkeypatch):
    from settlement.services import reversal

    settings.HOUSE_WALLET_HOLD_MARGIN_SECONDS = 0
    players = _winners(world, 3)
    settlement = market_settle(market_id=MARKET, action="resolve", outcome="yes")
    assert _advance_until_done(settlement)
    rev = settlement_reverse(market_id=MARKET, reason="wrong outcome")
    real = reversal.operations_record_bulk
    monkeypatch.setattr(reversal, "operations_record_bulk", lambda **kwargs: (_ for _ in ()).throw(SimulatedCrash()))
    with pytest.raises(SimulatedCrash):
        reversal_advance(reversal_id=rev.pk)
    monkeypatch.setattr(reversal, "operations_record_bulk", real)
    for player in players:  # the operator took it; the house has not recorded it yet
        assert world.server.balance(player.external_id) == Decimal("75.00")
    time.sleep(1.3)
    assert _reverse_until_done(rev)
    assert set(_debit_requests(world).values()) == {2}  # sent again, answered by a replay
    for player in players:
        assert world.server.balance(player.external_id) == Decimal("75.00")
        assert LedgerEntry.objects.filter(player=player, type="payout_reversal").count() == 1
    world.assert_books_balance()


def test_a_payout_in_flight_when_the_reversal_is_decided_is_answered_first_then_taken_back(world, settings, monkeypatch):
    from settlement.services import payouts_operator

    settings.HOUSE_WALLET_HOLD_MARGIN_SECONDS = 0
    players = _winners(world, 2)
    settlement = market_settle(market_id=MARKET, action="resolve", outcome="yes")
    real = payouts_operator.operations_record_bulk
    monkeypatch.setattr(payouts_operator, "operations_record_bulk", lambda **kwargs: (_ for _ in ()).throw(SimulatedCrash()))
    with pytest.raises(SimulatedCrash):
        from settlement.services.payouts import settlement_advance

        settlement_advance(settlement_id=settlement.pk)  # credits applied at the operator, answers lost
    monkeypatch.setattr(payouts_operator, "operations_record_bulk", real)
    rev = settlement_reverse(market_id=MARKET, reason="wrong outcome")
    assert ReversalItem.objects.filter(status="waiting").count() == 2
    time.sleep(1.3)
    assert _reverse_until_done(rev)
    for player in players:
        assert world.server.balance(player.external_id) == Decimal("75.00")
    assert set(Payout.objects.values_list("status", flat=True)) == {"reversed"}
    world.assert_books_balance()


@requires_postgres
def test_two_reversal_workers_never_send_the_same_debit(world):
    players = _winners(world, 24)
    settlement = market_settle(market_id=MARKET, action="resolve", outcome="yes")
    assert _advance_until_done(settlement)
    world.server.latency_seconds = 0.01
    rev = settlement_reverse(market_id=MARKET, reason="wrong outcome")
    barrier = threading.Barrier(3)

    def worker():
        try:
            barrier.wait(timeout=30)
            for _ in range(200):
                if reversal_advance(reversal_id=rev.pk, chunk=4):
                    return
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert Reversal.objects.get().status == "completed"
    assert set(_debit_requests(world).values()) == {1} and len(_debit_requests(world)) == 24
    for player in players:
        assert world.server.balance(player.external_id) == Decimal("75.00")
    world.assert_books_balance()


def test_a_debt_is_recovered_from_the_players_next_sale_at_the_operator(world):
    from casino.services.markets import reference_price_set
    from wallets.models import PlayerDebt

    other = "0x1234abcd00000000000000000000000000000000000000000000000000000002"
    reference_price_set(market_id=other, outcome="yes", mid_price=Decimal("62"), title="Another market")
    player, api = world.player()
    assert api.post("trade", buy_body(amount="10", market_id=other)).status_code == 200
    assert api.post("trade", buy_body()).status_code == 200
    settlement = market_settle(market_id=MARKET, action="resolve", outcome="yes")
    assert _advance_until_done(settlement)
    world.server.add_fault("refuse", endpoint="debit", status="INSUFFICIENT_FUNDS", user_id=player.external_id, times=1)
    rev = settlement_reverse(market_id=MARKET, reason="wrong outcome")
    assert _reverse_until_done(rev)
    assert PlayerDebt.objects.get(player=player).amount == Decimal("39.06")
    before = world.server.balance(player.external_id)

    shares = Position.objects.get(player=player, market_id=other).shares
    sold = api.post("trade", {"marketId": other, "side": "sell", "outcome": "yes", "amount": shares, "midPrice": 62})
    assert sold.status_code == 200, sold.content
    body = sold.json()
    proceeds = Decimal(str(body["cost"]))
    recovered = proceeds - Decimal("0.01")  # the debt is larger: all but a cent, which is sent
    assert world.server.balance(player.external_id) == before + Decimal("0.01")
    assert Decimal(str(body["newBalance"])) == before + Decimal("0.01")
    credit = LedgerEntry.objects.get(player=player, type="trade_credit")
    recovery = LedgerEntry.objects.get(player=player, type="debt_recovery")
    assert credit.amount == proceeds and recovery.amount == -recovered and recovery.reference_id == credit.pk
    assert PlayerDebt.objects.get(player=player).amount == Decimal("39.06") - recovered
    world.assert_books_balance()


def test_a_payout_refused_by_the_operator_is_cancelled_not_taken_back(world):
    paid, refused = _winners(world, 2)
    world.server.add_fault("refuse", endpoint="credit", status="LIMIT_REACHED", user_id=refused.external_id, times=1)
    settlement = market_settle(market_id=MARKET, action="resolve", outcome="yes")
    assert not _advance_until_done(settlement, passes=3)
    assert Payout.objects.get(player=refused).status == "failed"
    rev = settlement_reverse(market_id=MARKET, reason="wrong outcome")
    assert Payout.objects.get(player=refused).status == "cancelled" and rev.total_cancelled == 1 and rev.total_items == 1
    assert _reverse_until_done(rev)
    assert world.server.balance(refused.external_id) == Decimal("75.00")  # never credited, nothing debited
    assert world.server.balance(paid.external_id) == Decimal("75.00")
    assert list(_debit_requests(world).values()) == [1]
    world.assert_books_balance()
