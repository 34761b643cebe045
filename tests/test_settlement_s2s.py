"""Settlement payouts at an S2S operator: retried until acknowledged, refusals visible and retryable,
queued while the operator's wallet is failing; never paid twice."""

from decimal import Decimal

import pytest

from settlement.models import Payout, PayoutStatus, Settlement
from settlement.services.decide import market_settle
from settlement.services.payouts import payout_retry, settlement_advance
from tests.conftest import MARKET, buy_body
from tests.test_s2s_wallet import S2SWorld
from wallets.models import LedgerEntry, OperatorWallet, WalletOperation

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
