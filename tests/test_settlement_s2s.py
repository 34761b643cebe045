"""Settlement payouts at an S2S operator: retried until acknowledged, refusals visible and retryable,
queued while the operator's wallet is failing; never paid twice, never sent twice at once by two
workers, at most the operator's bound of calls in flight; a worker killed mid-chunk is taken over."""

import threading
import time
from decimal import Decimal

import pytest
from django.db import connections

from settlement.models import Payout, PayoutStatus, Settlement
from settlement.services.decide import market_settle
from settlement.services.payouts import payout_retry, settlement_advance
from tests.conftest import MARKET, buy_body, requires_postgres
from tests.test_s2s_wallet import S2SWorld
from wallets.models import LedgerEntry, OperatorWallet, WalletOperation
from wallets.services.breaker import breaker_record
from wallets.services.operations import WalletTarget

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("no_rate_limits", "no_velocity_limits")]


@pytest.fixture
def world(market, settings, monkeypatch):
    from settlement.services import decide

    settings.HOUSE_WALLET_RETRY_BASE_SECONDS = 0
    monkeypatch.setattr(decide, "_start", lambda settlement_id: None)  # the test drives the payouts
    w = S2SWorld()
    yield w
    w.stop()


def _winners(world, n=3):
    players = []
    for _ in range(n):
        player, api = world.player()
        assert api.post("trade", buy_body()).status_code == 200  # 39.0625 YES shares: pays 39.06
        players.append(player)
    return players


def _advance_until_done(settlement, passes=20) -> bool:
    for _ in range(passes):
        if settlement_advance(settlement_id=settlement.pk):
            return True
    return False


def test_payout_failing_twice_then_succeeding_is_paid_once(world):
    players = _winners(world)
    world.server.add_fault("http_error", endpoint="credit", http_status=500, apply="before", times=2)
    settlement = market_settle(market_id=MARKET, action="resolve", outcome="yes")
    assert _advance_until_done(settlement)
    for player in players:
        assert world.server.balance(player.external_id) == Decimal("75.00") + Decimal("39.06")
        assert LedgerEntry.objects.filter(player=player, type="payout").count() == 1
    world.assert_books_balance()
    assert Settlement.objects.get().status == "completed"


def test_refused_payout_is_visible_and_paid_after_a_retry(world):
    players = _winners(world, 2)
    world.server.add_fault("refuse", endpoint="credit", status="LIMIT_REACHED", user_id=players[0].external_id, times=1)
    settlement = market_settle(market_id=MARKET, action="resolve", outcome="yes")
    assert not _advance_until_done(settlement, passes=3)
    failed = Payout.objects.get(status=PayoutStatus.FAILED)
    assert failed.player_id == players[0].pk and failed.last_error == "LIMIT_REACHED"
    assert Settlement.objects.get().failed_count == 1
    payout_retry(payout_id=failed.pk)
    assert _advance_until_done(settlement)
    assert world.server.balance(players[0].external_id) == Decimal("114.06")
    assert LedgerEntry.objects.filter(player=players[0], type="payout").count() == 1
    assert WalletOperation.objects.filter(player=players[0], kind="credit", type="payout").count() == 2  # refused + paid
    world.assert_books_balance()


@pytest.mark.parametrize("action, kind", [("resolve", "payout"), ("void", "refund")])
def test_a_payout_answered_temporary_error_is_retried_not_parked_for_staff(world, action, kind):
    """SPEC §9: TEMPORARY_ERROR is retryable. Found by the soak: a payout so answered was marked failed
    and its settlement waited for staff; it is retried under the same id and paid once."""
    players = _winners(world, 2)
    world.server.add_fault("refuse", endpoint="credit", status="TEMPORARY_ERROR", user_id=players[0].external_id, times=2)
    settlement = market_settle(market_id=MARKET, action=action, outcome="yes" if action == "resolve" else None)
    assert _advance_until_done(settlement)
    assert not Payout.objects.filter(status=PayoutStatus.FAILED).exists()
    assert Settlement.objects.get().status == "completed" and Settlement.objects.get().failed_count == 0
    paid = Decimal("114.06") if kind == "payout" else Decimal("100.00")
    assert world.server.balance(players[0].external_id) == paid
    credits = WalletOperation.objects.filter(player=players[0], kind="credit", type=kind)
    assert [(op.status, op.attempts) for op in credits] == [("ok", 3)]  # one id: two TEMPORARY_ERROR, then OK
    assert LedgerEntry.objects.filter(player=players[0], type=kind).count() == 1
    world.assert_books_balance()


def test_payouts_queue_while_the_breaker_is_open_and_drain_after(world):
    players = _winners(world, 2)
    OperatorWallet.objects.filter(operator=world.operator).update(breaker_failures=1, breaker_cooldown_seconds=1)
    world.server.add_fault("http_error", endpoint="credit", http_status=503, apply="never", times=1)
    settlement = market_settle(market_id=MARKET, action="resolve", outcome="yes")
    settlement_advance(settlement_id=settlement.pk)  # the first credit fails: the breaker opens, the other payout waits
    assert Payout.objects.filter(status=PayoutStatus.PENDING).count() + Payout.objects.filter(status=PayoutStatus.SENDING).count() == 2
    import time

    time.sleep(1.1)
    assert _advance_until_done(settlement)
    for player in players:
        assert world.server.balance(player.external_id) == Decimal("114.06")
    world.assert_books_balance()


def test_void_refunds_at_an_s2s_operator(world):
    players = _winners(world, 2)
    settlement = market_settle(market_id=MARKET, action="void", reason="test")
    assert _advance_until_done(settlement)
    for player in players:
        assert world.server.balance(player.external_id) == Decimal("75.00") + Decimal("25.00")
        assert LedgerEntry.objects.get(player=player, type="refund").amount == Decimal("25.00")
    world.assert_books_balance()


class SimulatedCrash(BaseException):
    """The worker dies: nothing after this point runs, no handler catches it."""


def _credit_requests(world) -> dict:
    """transaction id -> how many credit requests the operator received for it."""
    counts: dict = {}
    for entry in world.server.request_log:
        if entry.endpoint == "credit":
            counts[entry.transaction_id] = counts.get(entry.transaction_id, 0) + 1
    return counts


def _assert_each_winner_paid_once(world, players, amount=Decimal("39.06")):
    for player in players:
        assert world.server.balance(player.external_id) == Decimal("75.00") + amount
        assert LedgerEntry.objects.filter(player=player, type="payout").count() == 1
    paid = Payout.objects.filter(status=PayoutStatus.PAID, player__in=players)
    assert paid.count() == len(players)
    assert {str(t) for t in paid.values_list("transaction_id", flat=True)} == {
        tid for tid, tx in world.server.transactions.items() if tx["operation"] == "credit" and tx["applied"]
    }
    world.assert_books_balance()


def test_a_worker_killed_before_its_calls_holds_them_then_another_sends_each_once(world, settings, monkeypatch):
    from settlement.services import payouts_operator

    settings.HOUSE_WALLET_HOLD_MARGIN_SECONDS = 0
    players = _winners(world)
    settlement = market_settle(market_id=MARKET, action="resolve", outcome="yes")
    real = payouts_operator.operations_call
    monkeypatch.setattr(payouts_operator, "operations_call", lambda **kwargs: (_ for _ in ()).throw(SimulatedCrash()))
    with pytest.raises(SimulatedCrash):
        settlement_advance(settlement_id=settlement.pk)
    monkeypatch.setattr(payouts_operator, "operations_call", real)
    assert Payout.objects.filter(status=PayoutStatus.SENDING).count() == 3  # the intents were committed
    assert WalletOperation.objects.filter(kind="credit", status="pending").count() == 3
    assert settlement_advance(settlement_id=settlement.pk) is False  # still held by the dead worker: not sent
    assert _credit_requests(world) == {}
    time.sleep(1.3)  # the hold lapses (0.4 s timeout x 3 rounds)
    assert _advance_until_done(settlement)
    assert set(_credit_requests(world).values()) == {1}
    _assert_each_winner_paid_once(world, players)


def test_a_worker_killed_after_its_calls_is_followed_by_the_same_ids_and_nothing_paid_twice(world, settings, monkeypatch):
    from settlement.services import payouts_operator

    settings.HOUSE_WALLET_HOLD_MARGIN_SECONDS = 0
    players = _winners(world)
    settlement = market_settle(market_id=MARKET, action="resolve", outcome="yes")
    real = payouts_operator.operations_record_bulk
    monkeypatch.setattr(payouts_operator, "operations_record_bulk", lambda **kwargs: (_ for _ in ()).throw(SimulatedCrash()))
    with pytest.raises(SimulatedCrash):
        settlement_advance(settlement_id=settlement.pk)
    monkeypatch.setattr(payouts_operator, "operations_record_bulk", real)
    for player in players:  # the operator paid; the house has not recorded it yet
        assert world.server.balance(player.external_id) == Decimal("114.06")
    assert not LedgerEntry.objects.filter(type="payout").exists()
    time.sleep(1.3)
    assert _advance_until_done(settlement)
    assert set(_credit_requests(world).values()) == {2}  # sent again under the same id, answered by a replay
    _assert_each_winner_paid_once(world, players)


@pytest.mark.parametrize("bound", [1, 3])
def test_calls_in_flight_stay_within_the_operators_bound(world, bound):
    players = _winners(world, 12)
    OperatorWallet.objects.filter(operator=world.operator).update(max_concurrent_calls=bound)
    world.server.latency_seconds = 0.05
    world.server.reset_peak_in_flight()
    settlement = market_settle(market_id=MARKET, action="resolve", outcome="yes")
    started = time.monotonic()
    assert settlement_advance(settlement_id=settlement.pk) is True  # one chunk: 12 credits
    elapsed = time.monotonic() - started
    assert world.server.peak_in_flight == bound
    if bound > 1:
        assert elapsed < 12 * 0.05  # concurrent, not one after another
    _assert_each_winner_paid_once(world, players)


@requires_postgres
def test_two_workers_on_one_settlement_never_send_the_same_credit(world):
    players = _winners(world, 24)
    world.server.latency_seconds = 0.01
    settlement = market_settle(market_id=MARKET, action="resolve", outcome="yes")
    barrier = threading.Barrier(3)

    def worker():
        try:
            barrier.wait(timeout=30)
            for _ in range(200):
                if settlement_advance(settlement_id=settlement.pk, chunk=4):
                    return
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert Settlement.objects.get().status == "completed"
    requests = _credit_requests(world)
    assert len(requests) == 24 and set(requests.values()) == {1}  # every credit sent exactly once
    _assert_each_winner_paid_once(world, players)


def test_an_open_breaker_queues_its_operators_payouts_while_others_are_paid(world, make_player):
    s2s_players = _winners(world, 2)
    house_player, house_api = make_player(Decimal("100"))
    assert house_api.post("trade", buy_body()).status_code == 200
    OperatorWallet.objects.filter(operator=world.operator).update(breaker_failures=1, breaker_cooldown_seconds=1)
    assert breaker_record(config=WalletTarget.for_operator(world.operator.pk), success=False)  # the operator's wallet is failing
    settlement = market_settle(market_id=MARKET, action="resolve", outcome="yes")
    assert settlement_advance(settlement_id=settlement.pk) is False
    assert LedgerEntry.objects.get(player=house_player, type="payout").amount == Decimal("39.06")
    assert set(Payout.objects.filter(player__in=s2s_players).values_list("status", flat=True)) == {PayoutStatus.PENDING}
    assert _credit_requests(world) == {}
    time.sleep(1.1)  # the cool-down ends: the queue drains
    assert _advance_until_done(settlement)
    _assert_each_winner_paid_once(world, s2s_players)


def test_the_bound_on_calls_in_flight_is_edited_in_the_admin(world, admin_client):
    from django.urls import reverse

    url = reverse("admin:wallets_operatorwallet_change", args=[world.operator.pk])
    page = admin_client.get(url)
    assert page.status_code == 200 and 'name="max_concurrent_calls"' in page.content.decode()
    form = {"base_url": world.url, "timeout_seconds": "0.4", "enabled": "on"}
    for refused in ("0", "51"):
        response = admin_client.post(url, {**form, "max_concurrent_calls": refused})
        assert response.status_code == 200 and "Between 1 and 50." in response.content.decode()
    assert admin_client.post(url, {**form, "max_concurrent_calls": "12"}).status_code == 302
    assert OperatorWallet.objects.get(operator=world.operator).max_concurrent_calls == 12
    assert WalletTarget.for_operator(world.operator.pk).max_concurrent_calls == 12
