"""The S2S seamless wallet against the reference operator wallet server, over real HTTP on loopback.

In every case the operator-side balance of each player ends where the house's ledger says:
start + sum of the player's ledger rows. Nothing is lost or paid twice.
"""

import threading
import time
import uuid
from decimal import Decimal

import pytest
from django.db import connection, transaction
from django.db.models import Sum

from casino.models import Position, Trade
from casino.services.credentials import operator_create, session_open
from casino.services.exposure import exposure_book
from tests.conftest import MARKET, Api, buy_body, decimal_json, requires_postgres
from wallets.adapters.s2s import WalletCallInsideTransaction
from wallets.models import LedgerEntry, OperationStatus, OperatorWallet, WalletOperation
from wallets.reference_server import FaultRule, ReferenceWalletServer, serve_in_thread
from wallets.services.operations import operation_settle
from wallets.tasks import reconcile, recover_stalled

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("no_rate_limits", "no_velocity_limits")]

CLIENT_TIMEOUT = Decimal("0.4")
START = Decimal("100.00")


class S2SWorld:
    def __init__(self):
        issued = operator_create(name=f"s2s-{uuid.uuid4().hex[:8]}", wallet_mode="s2s", wallet_url="http://placeholder")
        self.operator = issued.operator
        self.server = ReferenceWalletServer(issued.wallet_secret, seed=7)
        self.url, self.stop = serve_in_thread(self.server)
        OperatorWallet.objects.filter(operator=self.operator).update(base_url=self.url, timeout_seconds=CLIENT_TIMEOUT)
        self.players = {}

    def player(self, balance: Decimal = START, name: str | None = None):
        session = session_open(operator=self.operator, external_player_id=name or f"u-{uuid.uuid4().hex[:8]}")
        self.server.set_player(session.player.external_id, balance=balance)
        self.players[session.player.pk] = (session.player, balance)
        return session.player, Api({"Authorization": f"Bearer {session.token}"})

    def assert_books_balance(self):
        """Operator balance == start + sum(ledger) for every player: nothing lost, nothing paid twice."""
        for player, start in self.players.values():
            ledger = LedgerEntry.objects.filter(player=player).aggregate(s=Sum("amount"))["s"] or Decimal("0")
            operator_side = self.server.balance(player.external_id)
            assert operator_side == start + ledger, (player.external_id, operator_side, start, ledger)

    def settle_everything(self, rounds: int = 20):
        for _ in range(rounds):
            recover_stalled(older_than_seconds=0)
            reconcile()
            for op in WalletOperation.objects.filter(status__in=[OperationStatus.PENDING, OperationStatus.UNKNOWN]):
                operation_settle(operation=op)
            open_ops = WalletOperation.objects.filter(status__in=[OperationStatus.PENDING, OperationStatus.UNKNOWN]).count()
            unsettled = WalletOperation.objects.filter(settled_locally=False, kind__in=["debit", "credit"]).count()
            if open_ops == 0 and unsettled == 0:
                return
            time.sleep(0.2)
        raise AssertionError("wallet operations did not settle")


@pytest.fixture
def world(market, settings):
    settings.HOUSE_WALLET_RETRY_BASE_SECONDS = 0
    w = S2SWorld()
    yield w
    w.stop()


def _sell(shares, mid=62):
    return {"marketId": MARKET, "side": "sell", "outcome": "yes", "amount": shares, "midPrice": mid}


def test_happy_path_buy_and_sell_move_the_operator_balance(world):
    player, api = world.player()
    bought = api.post("trade", buy_body())
    assert bought.status_code == 200, bought.content
    assert decimal_json(bought)["newBalance"] == Decimal("75.00")
    assert world.server.balance(player.external_id) == Decimal("75.00")
    sold = decimal_json(api.post("trade", _sell(20)))
    assert sold["newBalance"] == Decimal("87.00") and sold["cost"] == Decimal("12.00")
    assert decimal_json(api.get("balance"))["balance"] == Decimal("87.00")
    trade = Trade.objects.get(side="buy")
    assert str(trade.wallet_transaction_id) in world.server.transactions
    assert decimal_json(api.get("trades"))["trades"][0]["s2s_transaction_id"] is not None
    book = exposure_book(market_id=MARKET)
    assert book.yes_shares == Decimal("19.0625") and book.cash_in == Decimal("13.00")
    world.assert_books_balance()


def test_refused_debit_needs_no_rollback(world):
    player, api = world.player()
    world.server.add_fault("refuse", endpoint="debit", status="INSUFFICIENT_FUNDS", times=1)
    response = api.post("trade", buy_body())
    assert response.status_code == 400 and decimal_json(response)["error"] == "Insufficient balance"
    assert WalletOperation.objects.get().status == OperationStatus.REFUSED
    assert not WalletOperation.objects.filter(kind="rollback").exists()
    assert [e.endpoint for e in world.server.request_log] == ["balance", "debit"]
    assert exposure_book(market_id=MARKET).yes_shares == 0 and Trade.objects.count() == 0
    world.assert_books_balance()


@pytest.mark.parametrize("apply", ["never", "before"])
def test_debit_answered_500_is_rolled_back(world, apply):
    player, api = world.player()
    world.server.add_fault("http_error", endpoint="debit", http_status=500, apply=apply, times=1)
    response = api.post("trade", buy_body())
    assert response.status_code == 502 and decimal_json(response)["code"] == "wallet_outcome_unknown"
    debit = WalletOperation.objects.get(kind="debit")
    rollback = WalletOperation.objects.get(kind="rollback")
    assert rollback.status == OperationStatus.OK
    assert debit.status == (OperationStatus.ROLLED_BACK if apply == "before" else OperationStatus.REFUSED)
    assert world.server.balance(player.external_id) == START
    assert LedgerEntry.objects.filter(player=player).count() == (2 if apply == "before" else 0)
    assert Trade.objects.count() == 0 and exposure_book(market_id=MARKET).yes_shares == 0
    world.assert_books_balance()


def test_debit_that_times_out_but_was_applied_is_rolled_back(world):
    player, api = world.player()
    world.server.add_fault("timeout", endpoint="debit", seconds=float(CLIENT_TIMEOUT) + 0.4, apply="before", times=1)
    response = api.post("trade", buy_body())
    assert response.status_code == 502
    time.sleep(0.5)
    world.settle_everything()
    assert WalletOperation.objects.get(kind="debit").status == OperationStatus.ROLLED_BACK
    assert world.server.balance(player.external_id) == START
    assert sorted(LedgerEntry.objects.filter(player=player).values_list("type", flat=True)) == ["rollback", "trade_debit"]
    world.assert_books_balance()


def test_debit_that_times_out_and_was_not_applied(world):
    player, api = world.player()
    world.server.add_fault("timeout", endpoint="debit", seconds=float(CLIENT_TIMEOUT) + 0.3, apply="never", times=1)
    assert api.post("trade", buy_body()).status_code == 502
    time.sleep(0.4)
    world.settle_everything()
    assert WalletOperation.objects.get(kind="debit").status == OperationStatus.REFUSED
    assert not LedgerEntry.objects.filter(player=player).exists()
    assert world.server.balance(player.external_id) == START
    world.assert_books_balance()


def test_rollback_that_arrives_before_its_late_debit(world):
    player, api = world.player()
    # The debit stalls in the network, the house gives up and rolls back; the debit lands afterwards.
    world.server.add_fault("timeout", endpoint="debit", seconds=float(CLIENT_TIMEOUT) + 0.5, apply="after", times=1)
    assert api.post("trade", buy_body()).status_code == 502
    debit = WalletOperation.objects.get(kind="debit")
    assert WalletOperation.objects.get(kind="rollback").operator_status == "TRANSACTION_NOT_FOUND"
    time.sleep(0.8)  # the late debit arrives now, and is refused by the tombstone
    late = [e for e in world.server.request_log if e.endpoint == "debit"]
    assert late and late[-1].status == "TRANSACTION_ROLLED_BACK"
    assert world.server.balance(player.external_id) == START
    debit.refresh_from_db()
    assert debit.status == OperationStatus.REFUSED
    world.assert_books_balance()


@pytest.mark.parametrize("kind", ["bad_signature", "unsigned", "malformed_body"])
def test_unverifiable_answer_is_an_unknown_outcome(world, kind):
    player, api = world.player()
    world.server.add_fault(kind, endpoint="debit", times=1)  # the debit IS applied, the answer can't be trusted
    response = api.post("trade", buy_body())
    assert response.status_code == 502
    assert WalletOperation.objects.get(kind="debit").status == OperationStatus.ROLLED_BACK
    assert world.server.balance(player.external_id) == START
    world.assert_books_balance()


@pytest.mark.parametrize("apply", ["never", "before"])
def test_credit_failing_twice_then_succeeding_is_paid_exactly_once(world, apply):
    player, api = world.player()
    assert api.post("trade", buy_body(amount="64.00")).status_code == 200  # 100 shares
    world.server.add_fault("http_error", endpoint="credit", http_status=503, apply=apply, times=2)
    sold = api.post("trade", _sell(50))
    assert sold.status_code == 200
    body = decimal_json(sold)
    assert body["walletPending"] is True and body["cost"] == Decimal("30.00")
    credit = WalletOperation.objects.get(kind="credit")
    for _ in range(5):  # the retry task's work, one attempt at a time (eager Celery may already have done one)
        credit.refresh_from_db()
        if credit.status == OperationStatus.OK:
            break
        operation_settle(operation=credit)
    credit.refresh_from_db()
    assert credit.status == OperationStatus.OK
    assert world.server.balance(player.external_id) == START - Decimal("64.00") + Decimal("30.00")
    assert LedgerEntry.objects.filter(player=player, type="trade_credit").count() == 1
    assert Position.objects.get(player=player).shares == 50
    assert [e.endpoint for e in world.server.request_log].count("credit") == 3
    world.assert_books_balance()


class SimulatedCrash(BaseException):
    """The process dies: nothing after this point runs, no handler catches it."""


def test_process_killed_between_debit_and_trade_record_is_compensated(world, monkeypatch):
    from casino.services.trade_executor import operator_wallet

    player, api = world.player()

    def crash(*args, **kwargs):
        raise SimulatedCrash()

    monkeypatch.setattr(operator_wallet, "_record_remote_trade", crash)
    with pytest.raises(SimulatedCrash):
        api.post("trade", buy_body())
    assert world.server.balance(player.external_id) == Decimal("75.00")  # debited, trade never recorded
    assert exposure_book(market_id=MARKET).yes_shares == Decimal("39.0625")  # reservation still held
    monkeypatch.undo()
    assert recover_stalled(older_than_seconds=0) == 1
    world.settle_everything()
    assert world.server.balance(player.external_id) == START
    assert Trade.objects.count() == 0
    assert exposure_book(market_id=MARKET).yes_shares == 0
    assert WalletOperation.objects.get(kind="debit").status == OperationStatus.ROLLED_BACK
    world.assert_books_balance()


def test_process_killed_before_the_debit_call_is_compensated(world, monkeypatch):
    from casino.services.trade_executor import operator_wallet

    player, api = world.player()
    monkeypatch.setattr(operator_wallet, "operation_send", lambda **kwargs: (_ for _ in ()).throw(SimulatedCrash()))
    with pytest.raises(SimulatedCrash):
        api.post("trade", buy_body())
    monkeypatch.undo()
    recover_stalled(older_than_seconds=0)
    world.settle_everything()
    assert WalletOperation.objects.get(kind="debit").status == OperationStatus.REFUSED  # never reached the operator
    assert world.server.balance(player.external_id) == START
    # A debit sent by the dead process and still in the network would now be refused (tombstone).
    assert str(WalletOperation.objects.get(kind="debit").pk) in world.server.tombstones
    world.assert_books_balance()


def test_process_killed_after_the_credit_finishes_the_sell(world, monkeypatch):
    from casino.services.trade_executor import operator_wallet

    player, api = world.player()
    api.post("trade", buy_body(amount="64.00"))
    real = operator_wallet._record_remote_trade
    calls = {"n": 0}

    def crash_on_sell(operation, **kwargs):
        if operation.kind == "credit":
            raise SimulatedCrash()
        return real(operation, **kwargs)

    monkeypatch.setattr(operator_wallet, "_record_remote_trade", crash_on_sell)
    with pytest.raises(SimulatedCrash):
        api.post("trade", _sell(25))
    monkeypatch.undo()
    calls["n"] += 1
    recover_stalled(older_than_seconds=0)
    assert Trade.objects.filter(side="sell").count() == 1
    assert Position.objects.get(player=player).shares == 75
    assert world.server.balance(player.external_id) == START - Decimal("64.00") + Decimal("15.00")
    world.assert_books_balance()


def _settle(action: str, *, expect: str = "completed"):
    from settlement.services.decide import market_settle

    settlement = market_settle(market_id=MARKET, action=action, outcome="yes" if action == "resolve" else None)
    return _advance(settlement, expect=expect)


def _advance(settlement, *, expect: str = "completed"):
    from settlement.models import Settlement
    from settlement.services.payouts import settlement_advance

    for _ in range(20):
        if settlement_advance(settlement_id=settlement.pk):
            break
    assert Settlement.objects.get(pk=settlement.pk).status == expect
    return settlement


@pytest.mark.parametrize("action", ["resolve", "void"])
@pytest.mark.parametrize("side", ["buy", "sell"])
def test_a_trade_finished_after_its_market_settled_leaves_the_settled_book_at_zero(world, monkeypatch, side, action):
    """Found by the soak: a trade killed during its wallet call and finished by recovery after its market
    settled (a buy compensated, a sell recorded) changed the book the settlement had cleared."""
    from casino.services.trade_executor import operator_wallet

    player, api = world.player()
    assert api.post("trade", buy_body(amount="64.00")).status_code == 200  # 100 YES shares
    real = operator_wallet._record_remote_trade

    def crash_on(operation, **kwargs):
        if operation.kind == ("debit" if side == "buy" else "credit"):
            raise SimulatedCrash()
        return real(operation, **kwargs)

    monkeypatch.setattr(operator_wallet, "_record_remote_trade", crash_on)
    with pytest.raises(SimulatedCrash):
        api.post("trade", buy_body() if side == "buy" else _sell(25))
    monkeypatch.undo()
    if side == "sell":
        # The sale's shares are off the position until its credit is decided: the settlement pays the
        # position only once the sale is recorded (or given back), here by recovery.
        settlement = _settle(action, expect="settling")
        assert Position.objects.get(player=player).status == "open"
        recover_stalled(older_than_seconds=0)
        _advance(settlement)
    else:
        _settle(action)
    assert exposure_book(market_id=MARKET) == exposure_book(market_id="0xnone")  # cleared: all zero

    recover_stalled(older_than_seconds=0)
    for op in WalletOperation.objects.filter(status__in=[OperationStatus.PENDING, OperationStatus.UNKNOWN]):
        operation_settle(operation=op)  # the buy's rollback
    assert not WalletOperation.objects.filter(status__in=[OperationStatus.PENDING, OperationStatus.UNKNOWN]).exists()
    assert not WalletOperation.objects.filter(settled_locally=False, payload__handler="trade").exists()
    book = exposure_book(market_id=MARKET)
    assert (book.yes_shares, book.no_shares, book.cash_in) == (0, 0, 0)
    # The money: the buy's stake given back; the sale paid, the settlement on the 75 shares left.
    if side == "buy":  # the 100 shares bought first are paid (1.00 each, or the 64.00 stake back when voided)
        expected = START - Decimal("64.00") + {"resolve": Decimal("100.00"), "void": Decimal("64.00")}[action]
    else:  # 25 shares sold for 15.00; the 75 left are paid (75.00, or their 48.00 cost back when voided)
        expected = START - Decimal("64.00") + Decimal("15.00") + {"resolve": Decimal("75.00"), "void": Decimal("48.00")}[action]
    assert world.server.balance(player.external_id) == expected
    world.assert_books_balance()


@requires_postgres
def test_concurrent_s2s_trading_with_random_faults_keeps_every_cent(world):
    rng_faults = [
        FaultRule("http_error", endpoint=["debit", "credit"], http_status=500, apply="before", probability=0.08),
        FaultRule("http_error", endpoint=["debit", "credit", "rollback"], http_status=502, apply="never", probability=0.08),
        FaultRule("timeout", endpoint="debit", seconds=float(CLIENT_TIMEOUT) + 0.2, apply="before", probability=0.05),
        FaultRule("timeout", endpoint="debit", seconds=float(CLIENT_TIMEOUT) + 0.2, apply="after", probability=0.05),
        FaultRule("bad_signature", endpoint=["debit", "credit"], probability=0.05),
        FaultRule("refuse", endpoint="debit", status="TEMPORARY_ERROR", probability=0.05),
    ]
    players = [world.player(Decimal("200")) for _ in range(8)]
    for rule in rng_faults:
        world.server.add_fault(rule)
    start_total = world.server.total_balance()
    errors = []

    def trade_loop(api, seed):
        import random

        rng = random.Random(seed)
        try:
            for _ in range(10):
                if rng.random() < 0.7:
                    response = api.post("trade", buy_body(amount=str(rng.choice([1, 2, 5]))))
                else:
                    response = api.post("trade", _sell(rng.choice(["1", "2.5"])))
                if response.status_code >= 500 and response.status_code not in (502, 503):
                    errors.append(response.content)
        except Exception as exc:  # noqa: BLE001
            errors.append(repr(exc))
        finally:
            connection.close()

    threads = [threading.Thread(target=trade_loop, args=(api, i)) for i, (_, api) in enumerate(players)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors[:3]
    assert sum(rule.fired for rule in world.server.faults) >= 5, [rule.fired for rule in world.server.faults]
    time.sleep(1.0)  # let stalled late arrivals land
    world.server.clear_faults()
    world.settle_everything()
    ledger_total = LedgerEntry.objects.filter(operator=world.operator).aggregate(s=Sum("amount"))["s"] or Decimal("0")
    assert world.server.total_balance() == start_total + ledger_total
    world.assert_books_balance()
    # The house's book matches its recorded trades.
    book = exposure_book(market_id=MARKET)
    trades = list(Trade.objects.all())
    assert book.yes_shares == sum(t.shares if t.side == "buy" else -t.shares for t in trades)
    assert book.cash_in == sum(t.cost if t.side == "buy" else -t.cost for t in trades)
    assert Trade.objects.filter(side="buy").count() == WalletOperation.objects.filter(kind="debit", status="ok").count()
    assert WalletOperation.objects.filter(kind="rollback", status="ok").exists()


@requires_postgres
def test_no_database_lock_is_held_while_a_wallet_call_is_in_flight(world):
    slow_player, slow_api = world.player()
    _, fast_api = world.player()
    world.server.add_fault("latency", endpoint="debit", user_id=slow_player.external_id, seconds=2.0)
    OperatorWallet.objects.filter(operator=world.operator).update(timeout_seconds=Decimal("5"))
    results = {}

    def slow():
        results["slow"] = slow_api.post("trade", buy_body())
        connection.close()

    t = threading.Thread(target=slow)
    t.start()
    time.sleep(0.3)  # the slow debit is now in flight
    started = time.monotonic()
    fast = fast_api.post("trade", buy_body())
    elapsed = time.monotonic() - started
    t.join()
    assert fast.status_code == 200 and elapsed < 1.0, elapsed
    assert results["slow"].status_code == 200
    world.assert_books_balance()


def test_wallet_call_inside_a_transaction_is_refused(world):
    player, _ = world.player()
    from wallets.services.operations import WalletTarget

    with pytest.raises(WalletCallInsideTransaction), transaction.atomic():
        WalletTarget.for_operator(world.operator.pk).client().call("balance", {"user_id": player.external_id})


def test_circuit_breaker_opens_after_repeated_failures_and_closes_after_a_probe(world):
    OperatorWallet.objects.filter(operator=world.operator).update(breaker_failures=3, breaker_cooldown_seconds=1)
    _, api = world.player()
    world.server.add_fault("http_error", endpoint="*", http_status=500, apply="never", times=3)
    for _ in range(3):
        assert api.post("trade", buy_body()).status_code in (502, 503)
    calls_before = len(world.server.request_log)
    refused = api.post("trade", buy_body())
    assert refused.status_code == 503 and decimal_json(refused)["code"] == "wallet_circuit_open"
    assert len(world.server.request_log) == calls_before  # refused fast, the operator is not called
    time.sleep(1.1)
    assert api.post("trade", buy_body()).status_code == 200  # the probe succeeds: closed again
    assert api.post("trade", buy_body(amount="1")).status_code == 200
    world.settle_everything()
    world.assert_books_balance()


def test_deposit_and_withdraw_are_refused_for_s2s_players(world):
    _, api = world.player()
    assert decimal_json(api.post("deposit", {"amount": 5}))["error"] == "Not available for operator-held wallets"
    assert api.post("withdraw", {"amount": 5}).status_code == 400
    assert decimal_json(api.get("balance"))["balance"] == START


def test_past_the_cutoff_an_operation_is_flagged_for_manual_handling_then_retried_from_the_admin(world, settings, admin_client):
    player, api = world.player()
    world.server.add_fault("http_error", endpoint=["debit", "rollback"], http_status=500, apply="before")
    assert api.post("trade", buy_body()).status_code == 502
    rollback = WalletOperation.objects.get(kind="rollback")
    assert rollback.status == OperationStatus.UNKNOWN
    settings.HOUSE_WALLET_MANUAL_AFTER_SECONDS = 0
    operation_settle(operation=rollback)
    rollback.refresh_from_db()
    assert rollback.status == OperationStatus.MANUAL
    assert admin_client.get("/admin/wallets/walletoperation/?status__exact=manual").status_code == 200
    world.server.clear_faults()
    settings.HOUSE_WALLET_MANUAL_AFTER_SECONDS = 3600
    response = admin_client.post("/admin/wallets/walletoperation/", {"action": "retry_now", "_selected_action": [str(rollback.pk)]})
    assert response.status_code == 302
    rollback.refresh_from_db()
    assert rollback.status == OperationStatus.OK
    assert world.server.balance(player.external_id) == START
    world.assert_books_balance()


def test_seed_demo_wires_an_s2s_operator_to_the_reference_server(db, market):
    import json
    from io import StringIO

    from django.core.management import call_command

    out = StringIO()
    call_command("seed_demo", "--s2s-wallet-url", "http://placeholder", stdout=out)
    demo = json.loads(out.getvalue())["s2s"]
    server = ReferenceWalletServer(demo["walletSecret"])
    url, stop = serve_in_thread(server)
    try:
        OperatorWallet.objects.filter(operator_id=demo["operatorId"]).update(base_url=url)
        server.set_player("dave", balance=Decimal("50"))
        api = Api({"Authorization": f"Bearer {demo['players']['dave']['token']}"})
        assert decimal_json(api.get("balance"))["balance"] == Decimal("50.00")
        assert decimal_json(api.post("trade", buy_body(amount="10")))["newBalance"] == Decimal("40.00")
        assert server.balance("dave") == Decimal("40.00")
    finally:
        stop()


def test_the_retry_task_drives_a_failed_rollback_to_a_definite_answer(world, monkeypatch):
    from casino.services.trade_executor import operator_wallet
    from wallets.tasks import wallet_operation_retry

    monkeypatch.setattr(operator_wallet, "_schedule_retry", lambda operation_id: None)  # queued; the worker runs it below
    player, api = world.player()
    world.server.add_fault("http_error", endpoint="debit", http_status=500, apply="before", times=1)
    world.server.add_fault("timeout", endpoint="rollback", seconds=float(CLIENT_TIMEOUT) + 0.2, apply="never", times=1)
    assert api.post("trade", buy_body()).status_code == 502
    rollback = WalletOperation.objects.get(kind="rollback")
    assert rollback.status == OperationStatus.UNKNOWN and rollback.next_attempt_at is not None
    assert world.server.balance(player.external_id) == Decimal("75.00")  # debited, not yet given back
    assert wallet_operation_retry.apply(args=[str(rollback.pk)]).get() == OperationStatus.OK
    assert world.server.balance(player.external_id) == START
    world.assert_books_balance()


# ----- A sale's credit: an answer that decides nothing never drops the proceeds (issue 13) -----------------


def _sell_with_first_credit_lost(world, api, *, then: dict):
    """100 YES shares bought for 64.00, then 50 sold for 30.00 whose first credit answer is lost (a 503
    the operator did not apply): the sale stands, its credit is retried under the same id and answered
    ``then`` (a fault rule) first."""
    assert api.post("trade", buy_body(amount="64.00")).status_code == 200
    world.server.add_fault("http_error", endpoint="credit", http_status=503, apply="never", times=1)
    world.server.add_fault("refuse", endpoint="credit", **then)
    sold = api.post("trade", _sell(50))
    assert sold.status_code == 200 and decimal_json(sold)["walletPending"] is True
    return WalletOperation.objects.get(kind="credit")


def test_a_sale_whose_credit_retry_is_answered_temporary_error_is_retried_until_paid(world):
    """Before: TEMPORARY_ERROR on the retry marked the credit refused for good, and the recorded sale stood
    without its proceeds (both books agreed, so only the player lost the 30.00)."""
    player, api = world.player()
    credit = _sell_with_first_credit_lost(world, api, then={"status": "TEMPORARY_ERROR", "times": 2})
    for _ in range(5):
        credit.refresh_from_db()
        if credit.status == OperationStatus.OK:
            break
        assert credit.status == OperationStatus.UNKNOWN, credit.status  # retried, never final
        operation_settle(operation=credit)
    assert credit.status == OperationStatus.OK
    assert [e.endpoint for e in world.server.request_log].count("credit") == 4  # lost, two TEMPORARY_ERROR, paid
    assert world.server.balance(player.external_id) == START - Decimal("64.00") + Decimal("30.00")
    assert LedgerEntry.objects.filter(player=player, type="trade_credit").count() == 1
    assert Position.objects.get(player=player).shares == 50
    world.assert_books_balance()


def test_the_proceeds_of_a_recorded_sale_refused_for_good_go_to_staff(world):
    from core.models import Event

    player, api = world.player()
    credit = _sell_with_first_credit_lost(world, api, then={"status": "WRONG_CURRENCY", "times": 1})
    for _ in range(3):
        credit.refresh_from_db()
        if credit.status != OperationStatus.UNKNOWN:
            break
        operation_settle(operation=credit)
    assert credit.status == OperationStatus.MANUAL
    assert credit.last_error == "WRONG_CURRENCY: the sale stands, its proceeds were refused"
    assert Trade.objects.filter(side="sell").count() == 1 and Position.objects.get(player=player).shares == 50
    event = Event.objects.get(type="wallet.manual_intervention")
    assert event.data["transactionId"] == str(credit.pk) and event.data["amount"] == Decimal("30.00")
    world.assert_books_balance()  # nothing moved at either end: the 30.00 is owed, in front of staff


def test_recovery_does_not_give_back_a_sale_on_an_answer_that_decides_nothing(world, monkeypatch):
    """A sale whose process died around its credit call: on recovery's repeat, TEMPORARY_ERROR says nothing
    about the first call (the operator may have applied it), so the sale is recorded and the credit retried."""
    from casino.services.trade_executor import operator_wallet

    player, api = world.player()
    assert api.post("trade", buy_body(amount="64.00")).status_code == 200
    monkeypatch.setattr(operator_wallet, "operation_send", lambda **kwargs: (_ for _ in ()).throw(SimulatedCrash()))
    with pytest.raises(SimulatedCrash):
        api.post("trade", _sell(50))
    monkeypatch.undo()
    world.server.add_fault("refuse", endpoint="credit", status="TEMPORARY_ERROR", times=1)
    recover_stalled(older_than_seconds=0)
    credit = WalletOperation.objects.get(kind="credit")
    assert credit.settled_locally and credit.status in (OperationStatus.UNKNOWN, OperationStatus.OK)
    assert Trade.objects.filter(side="sell").count() == 1
    world.settle_everything()
    assert world.server.balance(player.external_id) == START - Decimal("64.00") + Decimal("30.00")
    assert Position.objects.get(player=player).shares == 50
    world.assert_books_balance()


def test_a_settlement_pays_a_position_only_once_its_sale_in_flight_is_decided(world, monkeypatch):
    """Before: a settlement decided during a sale's credit call paid the position without the shares being
    sold; the credit refused, the shares came back to a position already paid, and were never paid."""
    from casino.services.trade_executor import operator_wallet
    from settlement.models import Payout

    player, api = world.player()
    assert api.post("trade", buy_body(amount="64.00")).status_code == 200  # 100 YES shares
    real = operator_wallet._move_money
    during = {}

    def settle_during_the_call(ctx, operation):
        # The market resolves while the credit is in flight: no position paid yet, the settlement waits.
        during["settlement"] = _settle("resolve", expect="settling")
        during["open"] = Position.objects.get(player=player).status
        world.server.add_fault("refuse", endpoint="credit", status="USER_DISABLED", times=1)
        return real(ctx, operation)

    monkeypatch.setattr(operator_wallet, "_move_money", settle_during_the_call)
    refused = api.post("trade", _sell(50))
    monkeypatch.undo()
    assert refused.status_code == 403 and refused.json()["code"] == "wallet_user_disabled"
    assert during["open"] == "open" and not Payout.objects.exists()
    _advance(during["settlement"])
    payout = Payout.objects.get()
    assert (payout.shares, payout.amount) == (Decimal("100"), Decimal("100.00"))  # the 50 given back are paid too
    assert world.server.balance(player.external_id) == START - Decimal("64.00") + Decimal("100.00")
    world.assert_books_balance()


def test_a_debit_not_found_by_a_look_up_is_compensated_so_its_late_arrival_is_refused(world, monkeypatch):
    """A process dies after its debit's answer was lost, and reconciliation asks the operator before
    recovery runs: TRANSACTION_NOT_FOUND only means "not yet". Before: the debit was marked refused, the
    stalled request then landed and took the stake, and nothing ever gave it back (the player short)."""
    from casino.services.trade_executor import operator_wallet

    player, api = world.player()
    world.server.add_fault("timeout", endpoint="debit", seconds=float(CLIENT_TIMEOUT) + 0.8, apply="after", times=1)
    monkeypatch.setattr(operator_wallet, "_trade_compensate", lambda *a, **k: (_ for _ in ()).throw(SimulatedCrash()))
    with pytest.raises(SimulatedCrash):
        api.post("trade", buy_body())
    monkeypatch.undo()
    debit = WalletOperation.objects.get(kind="debit")
    assert debit.status == OperationStatus.UNKNOWN and not WalletOperation.objects.filter(kind="rollback").exists()
    operation_settle(operation=debit)  # reconciliation, while the debit is still on its way
    assert WalletOperation.objects.get(kind="rollback").operator_status == "TRANSACTION_NOT_FOUND"
    time.sleep(1.2)  # the late arrival lands, and meets the tombstone
    assert world.server.balance(player.external_id) == START
    recover_stalled(older_than_seconds=0)  # the trade's local side: reservations given back
    world.settle_everything()
    assert WalletOperation.objects.get(kind="debit").status == OperationStatus.REFUSED
    assert Trade.objects.count() == 0 and exposure_book(market_id=MARKET).yes_shares == 0
    assert world.server.balance(player.external_id) == START
    world.assert_books_balance()


@pytest.mark.parametrize("answer", ["ok", "refused"])
def test_a_sale_in_flight_across_a_reversal_leaves_the_book_equal_to_the_records(world, monkeypatch, answer):
    """Found by the soak: a sale whose credit was in flight while its market was resolved and the settlement
    reversed. The reversal rebuilt the book from the records only (without the sale's proceeds already taken
    off it, its shares already off the position), then the recorded sale, market closed, left the book alone:
    the book stayed richer than the records by the proceeds. Now the rebuilt book holds what the trades in
    flight hold, and finishing them moves it (sold: its shares leave; refused: its proceeds come back)."""
    from casino.selectors import market_book_from_records
    from casino.services.exposure import Book
    from casino.services.trade_executor import operator_wallet
    from settlement.services.reversal import settlement_reverse

    player, api = world.player()
    assert api.post("trade", buy_body(amount="64.00")).status_code == 200  # 100 YES shares
    real = operator_wallet._move_money
    during = {}

    def resolve_and_reverse_during_the_call(ctx, operation):
        during["settlement"] = _settle("resolve", expect="settling")  # waits for the sale
        settlement_reverse(market_id=MARKET, reason="wrong outcome")
        during["book"] = exposure_book(market_id=MARKET)
        if answer == "refused":
            world.server.add_fault("refuse", endpoint="credit", status="USER_DISABLED", times=1)
        return real(ctx, operation)

    monkeypatch.setattr(operator_wallet, "_move_money", resolve_and_reverse_during_the_call)
    sold = api.post("trade", _sell(50))
    monkeypatch.undo()
    # Rebuilt mid-sale: the 100 shares (50 on the position, 50 in flight), the stake less the proceeds.
    assert during["book"] == Book(Decimal("100"), Decimal("0"), Decimal("34.00"))
    if answer == "ok":
        assert sold.status_code == 200
        book = Book(Decimal("50"), Decimal("0"), Decimal("34.00"))
        assert Position.objects.get(player=player).shares == 50
    else:
        assert sold.status_code == 403
        book = Book(Decimal("100"), Decimal("0"), Decimal("64.00"))
        assert Position.objects.get(player=player).shares == 100
    assert exposure_book(market_id=MARKET) == book == market_book_from_records(market_id=MARKET)
    world.assert_books_balance()


def test_a_buy_in_flight_across_a_reversal_is_given_back_and_leaves_the_book_equal_to_the_records(world, monkeypatch):
    """The buy's shares are on the rebuilt book while its debit is in flight (the settlement cleared the book,
    the reversal rebuilt it); the market is closed when the answer comes, so the stake is rolled back and
    the shares leave the book again."""
    from casino.selectors import market_book_from_records
    from casino.services.exposure import Book
    from casino.services.trade_executor import operator_wallet
    from settlement.services.reversal import settlement_reverse

    player, api = world.player()
    assert api.post("trade", buy_body(amount="64.00")).status_code == 200  # 100 YES shares
    real = operator_wallet._move_money
    during = {}

    def resolve_and_reverse_during_the_call(ctx, operation):
        during["settlement"] = _settle("resolve")  # paid: a buy in flight does not hold a settlement
        settlement_reverse(market_id=MARKET, reason="wrong outcome")
        during["book"] = exposure_book(market_id=MARKET)
        return real(ctx, operation)

    monkeypatch.setattr(operator_wallet, "_move_money", resolve_and_reverse_during_the_call)
    bought = api.post("trade", buy_body(amount="32.00"))  # 50 more YES shares
    monkeypatch.undo()
    assert "book" in during, bought.content
    assert during["book"] == Book(Decimal("150"), Decimal("0"), Decimal("64.00"))  # the 50 in flight included
    assert bought.status_code == 400 and decimal_json(bought)["reason"] == "market_closed_during_wallet_call"
    debit = WalletOperation.objects.get(kind="debit", amount=Decimal("32.00"))
    assert debit.settled_locally and WalletOperation.objects.get(kind="rollback", reference=debit).status == OperationStatus.OK
    assert (
        exposure_book(market_id=MARKET)
        == Book(Decimal("100"), Decimal("0"), Decimal("64.00"))
        == market_book_from_records(market_id=MARKET)
    )
    world.assert_books_balance()
