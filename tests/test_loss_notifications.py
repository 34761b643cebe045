"""Loss notifications (SPEC §16): at settlement, each losing position at an S2S operator is reported to
its wallet server (the real reference server over HTTP) as a credit of 0.00, type loss, round id = the
settlement; exactly once under re-runs and killed workers, retried on timeouts, none for internal
operators, none when the operator's switch is off, none for a void; not a money movement."""

import time
import uuid
from decimal import Decimal

import pytest

from casino.models import Operator
from settlement.models import LossNotice, LossNoticeStatus, Payout, PayoutStatus
from settlement.services.decide import market_settle
from settlement.services.loss_notices import loss_notices_send
from settlement.services.payouts import settlement_advance
from tests.conftest import MARKET, buy_body, requires_postgres
from tests.test_settlement_s2s import SimulatedCrash, _advance_until_done, _winners
from tests.test_settlement_s2s import world as world  # noqa: F401 - the fixture
from wallets.models import LedgerEntry, WalletOperation

# PostgreSQL (scripts/test, with a broker): without one (SQLite, make run) Celery runs eagerly and the chunk's
# on-commit kick sends the notices at once, where these tests drive the sender themselves.
pytestmark = [
    requires_postgres,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("no_rate_limits", "no_velocity_limits"),
]


def _losers(world, n=3):
    """Players holding NO (the side that loses when the market resolves YES): $25 at mid 38 each."""
    players = []
    for _ in range(n):
        player, api = world.player()
        assert api.post("trade", buy_body(outcome="no", mid=38)).status_code == 200
        players.append(player)
    return players


def _loss_requests(world) -> dict:
    """Loss notice transaction id -> how many credit requests the wallet server received for it."""
    ids = {str(t) for t in LossNotice.objects.values_list("transaction_id", flat=True)}
    counts: dict = {}
    for entry in world.server.request_log:
        if entry.endpoint == "credit" and entry.transaction_id in ids:
            counts[entry.transaction_id] = counts.get(entry.transaction_id, 0) + 1
    return counts


def _send_until_quiet(passes=10) -> None:
    for _ in range(passes):
        if not loss_notices_send():
            return


def _assert_one_notice_per_loser(world, losers, settlement):
    received = world.server.loss_notifications
    assert sorted(n["user_id"] for n in received) == sorted(p.external_id for p in losers)
    assert {n["amount"] for n in received} == {"0.00"}
    assert {n["round_id"] for n in received} == {str(settlement.pk)}
    assert {n["currency"] for n in received} == {"USD"}
    notices = LossNotice.objects.filter(settlement=settlement)
    assert {str(t) for t in notices.values_list("transaction_id", flat=True)} == {n["transaction_id"] for n in received}
    assert set(notices.values_list("status", flat=True)) == {LossNoticeStatus.SENT}
    assert set(notices.values_list("player_id", flat=True)) == {p.pk for p in losers}
    # The wire: a credit of "0.00" of type loss (what the server recorded from the request itself).
    for tx in world.server.transactions.values():
        if tx["type"] == "loss":
            assert tx["operation"] == "credit" and tx["request"]["amount"] == "0.00" and tx["request"]["round_id"] == str(settlement.pk)
            assert tx["description"].startswith("Loss: ") and MARKET in tx["description"]


def test_one_notification_per_losing_position_and_the_winners_paid(world):
    winners = _winners(world, 2)
    losers = _losers(world, 3)
    settlement = market_settle(market_id=MARKET, action="resolve", outcome="yes")
    assert _advance_until_done(settlement)
    assert LossNotice.objects.filter(status=LossNoticeStatus.PENDING).count() == 3  # recorded with the positions, not yet sent
    assert world.server.loss_notifications == []
    _send_until_quiet()
    _assert_one_notice_per_loser(world, losers, settlement)
    assert set(_loss_requests(world).values()) == {1}
    for player in winners:
        assert world.server.balance(player.external_id) == Decimal("114.06")
    for player in losers:
        assert world.server.balance(player.external_id) == Decimal("75.00")  # a 0.00 credit moves nothing
    # Not a money movement: no ledger row, no wallet operation of type loss.
    assert not LedgerEntry.objects.filter(type="loss").exists()
    assert not WalletOperation.objects.filter(type="loss").exists()
    world.assert_books_balance()


def test_rerunning_the_settlement_and_the_sender_sends_nothing_twice(world):
    losers = _losers(world, 2)
    settlement = market_settle(market_id=MARKET, action="resolve", outcome="yes")
    assert _advance_until_done(settlement)
    _send_until_quiet()
    for _ in range(3):  # the settlement task and the sender run again (a redelivered message, the beat)
        assert settlement_advance(settlement_id=settlement.pk) is True
        assert loss_notices_send() == 0
    assert LossNotice.objects.count() == 2
    assert set(_loss_requests(world).values()) == {1}
    _assert_one_notice_per_loser(world, losers, settlement)


def test_a_sender_killed_after_its_calls_is_followed_by_the_same_ids_answered_by_replay(world, settings, monkeypatch):
    from settlement.services import loss_notices

    settings.HOUSE_WALLET_HOLD_MARGIN_SECONDS = 0
    losers = _losers(world, 3)
    settlement = market_settle(market_id=MARKET, action="resolve", outcome="yes")
    assert _advance_until_done(settlement)
    real = loss_notices._record
    monkeypatch.setattr(loss_notices, "_record", lambda *args: (_ for _ in ()).throw(SimulatedCrash()))
    with pytest.raises(SimulatedCrash):  # the calls went out, the answers are lost with the worker
        loss_notices_send()
    monkeypatch.setattr(loss_notices, "_record", real)
    assert len(world.server.loss_notifications) == 3
    assert set(LossNotice.objects.values_list("status", flat=True)) == {LossNoticeStatus.PENDING}
    assert loss_notices_send() == 0  # still held by the dead worker: nothing sent
    time.sleep(1.5)  # the hold lapses (0.4 s timeout x 3: the probe, one round, a margin)
    _send_until_quiet()
    assert set(_loss_requests(world).values()) == {2}  # the same ids again, answered by a replay
    _assert_one_notice_per_loser(world, losers, settlement)


def test_a_sender_killed_before_its_calls_holds_them_then_another_sends_each_once(world, settings, monkeypatch):
    from settlement.services import loss_notices

    settings.HOUSE_WALLET_HOLD_MARGIN_SECONDS = 0
    losers = _losers(world, 2)
    settlement = market_settle(market_id=MARKET, action="resolve", outcome="yes")
    assert _advance_until_done(settlement)
    real = loss_notices.operations_call
    monkeypatch.setattr(loss_notices, "operations_call", lambda **kwargs: (_ for _ in ()).throw(SimulatedCrash()))
    with pytest.raises(SimulatedCrash):
        loss_notices_send()
    monkeypatch.setattr(loss_notices, "operations_call", real)
    assert loss_notices_send() == 0 and _loss_requests(world) == {}
    time.sleep(1.5)
    _send_until_quiet()
    assert set(_loss_requests(world).values()) == {1}
    _assert_one_notice_per_loser(world, losers, settlement)


def test_a_worker_killed_in_the_chunk_records_the_notices_once(world, monkeypatch):
    """The notices are written by the chunk's own transaction: a worker killed after it is re-run
    finds the positions closed and writes none again; killed inside it, nothing was written."""
    from settlement.services import payouts

    losers = _losers(world, 2)
    settlement = market_settle(market_id=MARKET, action="resolve", outcome="yes")
    real = payouts.house_payouts_pay
    monkeypatch.setattr(payouts, "house_payouts_pay", lambda **kwargs: (_ for _ in ()).throw(SimulatedCrash()))
    with pytest.raises(SimulatedCrash):
        settlement_advance(settlement_id=settlement.pk)
    monkeypatch.setattr(payouts, "house_payouts_pay", real)
    assert not LossNotice.objects.exists()  # rolled back with the chunk
    assert _advance_until_done(settlement)
    assert _advance_until_done(settlement)
    assert LossNotice.objects.count() == 2
    _send_until_quiet()
    _assert_one_notice_per_loser(world, losers, settlement)


@pytest.mark.parametrize(
    "fault",
    [
        {"kind": "timeout", "seconds": 0.8, "apply": "before"},  # handled, the answer too late: the client times out
        {"kind": "http_error", "http_status": 503, "apply": "never"},
        {"kind": "refuse", "status": "TEMPORARY_ERROR"},
    ],
    ids=["timeout", "http-503", "temporary-error"],
)
def test_a_notification_without_a_definite_answer_is_retried_under_the_same_id(world, fault):
    losers = _losers(world, 1)
    settlement = market_settle(market_id=MARKET, action="resolve", outcome="yes")
    assert _advance_until_done(settlement)
    kind, options = fault["kind"], {k: v for k, v in fault.items() if k != "kind"}
    world.server.add_fault(kind, endpoint="credit", times=1, **options)
    assert loss_notices_send() == 1
    notice = LossNotice.objects.get()
    assert notice.status == LossNoticeStatus.PENDING and notice.attempts == 1 and notice.last_error
    _send_until_quiet()
    notice.refresh_from_db()
    assert (notice.status, notice.attempts, notice.last_error) == (LossNoticeStatus.SENT, 2, "")
    assert list(_loss_requests(world).values()) == [2]
    _assert_one_notice_per_loser(world, losers, settlement)


def test_a_refused_notification_is_final(world):
    _losers(world, 1)
    settlement = market_settle(market_id=MARKET, action="resolve", outcome="yes")
    assert _advance_until_done(settlement)
    world.server.add_fault("refuse", endpoint="credit", status="USER_DISABLED", times=1)
    _send_until_quiet()
    notice = LossNotice.objects.get()
    assert (notice.status, notice.last_error, notice.attempts) == (LossNoticeStatus.REFUSED, "USER_DISABLED", 1)
    assert loss_notices_send() == 0


def test_none_for_internal_operators(world, make_player):
    s2s_losers = _losers(world, 1)
    house_player, house_api = make_player(Decimal("100"))
    assert house_api.post("trade", buy_body(outcome="no", mid=38)).status_code == 200
    settlement = market_settle(market_id=MARKET, action="resolve", outcome="yes")
    assert _advance_until_done(settlement)
    assert list(LossNotice.objects.values_list("player_id", flat=True)) == [s2s_losers[0].pk]
    _send_until_quiet()
    _assert_one_notice_per_loser(world, s2s_losers, settlement)


def test_none_when_the_operator_turned_them_off(world):
    Operator.objects.filter(pk=world.operator.pk).update(notify_losses=False)
    winners = _winners(world, 1)
    _losers(world, 2)
    settlement = market_settle(market_id=MARKET, action="resolve", outcome="yes")
    assert _advance_until_done(settlement)
    _send_until_quiet()
    assert not LossNotice.objects.exists()
    assert world.server.loss_notifications == []
    assert world.server.balance(winners[0].external_id) == Decimal("114.06")


def test_none_for_a_void(world):
    _winners(world, 1)
    _losers(world, 1)
    settlement = market_settle(market_id=MARKET, action="void", reason="cancelled event")
    assert _advance_until_done(settlement)
    _send_until_quiet()
    assert not LossNotice.objects.exists() and world.server.loss_notifications == []


def test_notifications_do_not_hold_up_the_winners_payouts(world):
    """A wallet server failing every loss notice: the winners are paid and the settlement completes all
    the same; the notices wait for their retries."""
    winners = _winners(world, 2)
    losers = _losers(world, 2)
    for player in losers:
        world.server.add_fault("http_error", endpoint="credit", http_status=503, apply="never", user_id=player.external_id)
    settlement = market_settle(market_id=MARKET, action="resolve", outcome="yes")
    assert _advance_until_done(settlement)
    assert loss_notices_send() == 2
    assert set(Payout.objects.values_list("status", flat=True)) == {PayoutStatus.PAID}
    settlement.refresh_from_db()
    assert settlement.status == "completed"
    for player in winners:
        assert world.server.balance(player.external_id) == Decimal("114.06")
    assert set(LossNotice.objects.values_list("status", "last_error")) == {(LossNoticeStatus.PENDING, "HTTP_503")}
    assert world.server.loss_notifications == []


def test_reversed_then_resettled_the_other_way(world, monkeypatch):
    """Notices already sent stay (0.00 took nothing); the new settlement notifies its own losers under
    its own round id; notices of a reversed settlement not yet sent are cancelled."""
    from settlement.services import reversal
    from settlement.services.reversal import reversal_advance, settlement_reverse

    monkeypatch.setattr(reversal, "_start", lambda reversal_id: None)
    yes_holders = _winners(world, 1)
    no_holders = _losers(world, 2)
    first = market_settle(market_id=MARKET, action="resolve", outcome="yes")
    assert _advance_until_done(first)
    assert loss_notices_send(limit=1) == 1  # one of the two notices goes out before the reversal
    assert LossNotice.objects.filter(player__in=no_holders, status=LossNoticeStatus.SENT).count() == 1
    rev = settlement_reverse(market_id=MARKET, reason="wrong outcome")
    for _ in range(30):
        if reversal_advance(reversal_id=rev.pk):
            break
    _send_until_quiet()
    assert sorted(LossNotice.objects.filter(settlement=first).values_list("status", flat=True)) == ["cancelled", "sent"]
    second = market_settle(market_id=MARKET, action="resolve", outcome="no")
    assert _advance_until_done(second)
    _send_until_quiet()
    again = LossNotice.objects.get(settlement=second)
    assert (again.player_id, again.status) == (yes_holders[0].pk, LossNoticeStatus.SENT)
    rounds = sorted((n["user_id"], n["round_id"]) for n in world.server.loss_notifications)
    assert len(rounds) == 2 and (yes_holders[0].external_id, str(second.pk)) in rounds
    world.assert_books_balance()


def test_a_notice_whose_answer_was_lost_is_not_cancelled_by_a_reversal_but_answered(world, monkeypatch):
    """Found by the soak: a notice the operator had (its answer lost to a timeout) was cancelled when the
    settlement was reversed, so the house said "cancelled" for a round the operator had closed. A notice
    ever handed to a sender is driven to a definite answer under its id; only never-sent ones are cancelled."""
    from settlement.services import reversal
    from settlement.services.reversal import reversal_advance, settlement_reverse

    monkeypatch.setattr(reversal, "_start", lambda reversal_id: None)
    _winners(world, 1)
    _losers(world, 2)
    first = market_settle(market_id=MARKET, action="resolve", outcome="yes")
    assert _advance_until_done(first)
    world.server.add_fault("timeout", endpoint="credit", seconds=0.8, apply="before", times=1)  # applied, answer lost
    assert loss_notices_send(limit=1) == 1
    lost = LossNotice.objects.get(attempts=1)
    assert lost.status == LossNoticeStatus.PENDING and str(lost.transaction_id) in {
        n["transaction_id"] for n in world.server.loss_notifications
    }
    rev = settlement_reverse(market_id=MARKET, reason="wrong outcome")
    for _ in range(30):
        if reversal_advance(reversal_id=rev.pk):
            break
    LossNotice.objects.filter(pk=lost.pk).update(next_attempt_at=None)  # its backoff over
    _send_until_quiet()
    statuses = dict(LossNotice.objects.values_list("transaction_id", "status"))
    assert statuses[lost.transaction_id] == LossNoticeStatus.SENT  # answered by replay: the operator has it
    assert sorted(statuses.values()) == [LossNoticeStatus.CANCELLED, LossNoticeStatus.SENT]  # the other never left
    assert [n["transaction_id"] for n in world.server.loss_notifications] == [str(lost.transaction_id)]


def test_the_reference_wallet_server_takes_a_loss_only_as_a_zero_credit(world):
    from wallets.services.operations import WalletTarget

    player, _ = world.player()
    client = WalletTarget.for_operator(world.operator.pk).client()

    def credit(endpoint="credit", **fields):
        body = {"transaction_id": str(uuid.uuid4()), "user_id": player.external_id, "currency": "USD", "round_id": "r-1", **fields}
        return client.call(endpoint, body)

    assert credit(amount="1.00", type="loss").status == "UNKNOWN_ERROR"  # a loss moves nothing
    assert credit(amount="0.00", type="payout").status == "UNKNOWN_ERROR"  # nothing else may be zero
    assert credit("debit", amount="0.00", type="loss", session_token="t").status == "UNKNOWN_ERROR"
    ok = credit(amount="0.00", type="loss", description="Loss: 10 shares NO in m")
    assert ok.ok and ok.balance == Decimal("100.00")
    assert world.server.loss_notifications == [
        {
            "transaction_id": world.server.loss_notifications[0]["transaction_id"],
            "user_id": player.external_id,
            "round_id": "r-1",
            "amount": "0.00",
            "currency": "USD",
            "description": "Loss: 10 shares NO in m",
        }
    ]
    assert world.server.state()["loss_notifications"] == world.server.loss_notifications
    assert world.server.balance(player.external_id) == Decimal("100.00")
