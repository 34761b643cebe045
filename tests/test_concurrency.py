"""Races on real PostgreSQL: many threads, each with its own connection, released at once."""

import threading
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest
from django.db import connection, connections

from casino.models import MarketExposure, Position, Trade
from casino.services.exposure import exposure_book
from casino.services.markets import reference_price_set
from risk.models import MarketRiskLimit
from tests.conftest import MARKET, buy_body, decimal_json, requires_postgres
from wallets.models import LedgerEntry, PlayerWallet

pytestmark = [requires_postgres, pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("no_rate_limits", "no_velocity_limits")]


def run_at_once(calls):
    """Run the callables in parallel threads released together by a barrier; return their results."""
    barrier = threading.Barrier(len(calls))

    def run(call):
        try:
            barrier.wait(timeout=30)
            return call()
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return list(pool.map(run, calls))


def test_forty_simultaneous_10_dollar_buys_from_100_make_exactly_10_trades(make_player, market):
    player, api = make_player(Decimal("100"))
    responses = run_at_once([lambda: api.post("trade", buy_body(amount="10.00"))] * 40)
    statuses = sorted(r.status_code for r in responses)
    assert statuses.count(200) == 10, statuses
    assert all(decimal_json(r)["error"] == "Insufficient balance" for r in responses if r.status_code != 200)
    assert Trade.objects.filter(player=player).count() == 10
    assert PlayerWallet.objects.get(player=player).balance == Decimal("0.00")
    assert sorted(decimal_json(r)["newBalance"] for r in responses if r.status_code == 200) == [Decimal(10 * i) for i in range(10)]
    position = Position.objects.get(player=player)
    assert position.shares == sum(t.shares for t in Trade.objects.filter(player=player))


def test_simultaneous_sells_never_sell_more_than_held(make_player, market):
    player, api = make_player(Decimal("100"))
    assert api.post("trade", buy_body(amount="64.00")).status_code == 200  # exactly 100 shares at 64
    sell = {"marketId": MARKET, "side": "sell", "outcome": "yes", "amount": 20, "midPrice": 62}
    responses = run_at_once([lambda: api.post("trade", sell)] * 25)
    ok = [r for r in responses if r.status_code == 200]
    assert len(ok) == 5
    assert all(decimal_json(r)["error"] == "Insufficient shares" for r in responses if r.status_code != 200)
    position = Position.objects.get(player=player)
    assert position.shares == 0 and position.status == "closed"
    assert PlayerWallet.objects.get(player=player).balance == Decimal("36.00") + 5 * Decimal("12.00")


def test_many_players_on_one_hot_market_keep_the_book_exact(make_player, market, settings):
    players = [make_player(Decimal("50")) for _ in range(24)]
    calls = []
    for i, (_, api) in enumerate(players):
        body = buy_body(amount="3.00") if i % 3 else buy_body(amount="2.00", outcome="no", mid=38)
        calls += [lambda api=api, body=body: api.post("trade", body)] * 3
    responses = run_at_once(calls)
    assert all(r.status_code == 200 for r in responses), [r.content for r in responses if r.status_code != 200][:3]
    trades = list(Trade.objects.filter(market_id=MARKET))
    assert len(trades) == 72
    book = exposure_book(market_id=MARKET)
    assert book.yes_shares == sum(t.shares for t in trades if t.outcome == "yes")
    assert book.no_shares == sum(t.shares for t in trades if t.outcome == "no")
    assert book.cash_in == sum(t.cost for t in trades)
    assert MarketExposure.objects.filter(market_id=MARKET).count() == settings.HOUSE_EXPOSURE_SHARDS


def test_exposure_cap_holds_under_concurrent_trades(make_player, market):
    cap = Decimal("100")
    MarketRiskLimit.objects.create(market=market, exposure_cap=cap)
    players = [make_player(Decimal("100")) for _ in range(30)]
    # Each $25 YES buy at 64 adds 14.0625 to the worst case: at most 7 fit under 100.
    responses = run_at_once([lambda api=api: api.post("trade", buy_body()) for _, api in players])
    ok = [r for r in responses if r.status_code == 200]
    refused = [r for r in responses if r.status_code != 200]
    assert len(ok) == 7
    assert all(decimal_json(r)["error"] == "Market exposure cap reached" for r in refused)
    book = exposure_book(market_id=MARKET)
    assert book.worst_case_loss <= cap
    assert book.worst_case_loss == 7 * Decimal("14.0625")
    # Refused trades cost the players nothing.
    balances = sorted(PlayerWallet.objects.filter(player__in=[p for p, _ in players]).values_list("balance", flat=True))
    assert balances == [Decimal("75.00")] * 7 + [Decimal("100.00")] * 23 or balances == [Decimal("75.00")] * 7 + [Decimal("100.00")] * 23
    assert balances.count(Decimal("100.00")) == 23


def test_exposure_cap_holds_with_mixed_trades_near_the_cap(make_player, market):
    cap = Decimal("300")
    MarketRiskLimit.objects.create(market=market, exposure_cap=cap)
    reference_price_set(market_id=MARKET, outcome="yes", mid_price=Decimal("50"))
    players = [make_player(Decimal("200")) for _ in range(20)]
    calls = []
    for i, (_, api) in enumerate(players):
        outcome = "yes" if i % 4 else "no"
        calls += [lambda api=api, o=outcome: api.post("trade", buy_body(amount="13.00", outcome=o, mid=50))] * 3
    responses = run_at_once(calls)
    assert {r.status_code for r in responses} <= {200, 400}
    book = exposure_book(market_id=MARKET)
    assert book.worst_case_loss <= cap
    trades = list(Trade.objects.filter(market_id=MARKET))
    assert book.cash_in == sum(t.cost for t in trades)
    assert LedgerEntry.objects.filter(type="trade_debit").count() == len(trades)


def test_concurrent_requests_with_one_idempotency_key_trade_once(make_player, market):
    player, api = make_player(Decimal("100"))
    headers = {"Idempotency-Key": "order-7f3a"}
    responses = run_at_once([lambda: api.post("trade", buy_body(), headers=headers)] * 12)
    assert {r.status_code for r in responses} == {200}
    assert len({r.content for r in responses}) == 1
    assert Trade.objects.filter(player=player).count() == 1
    assert PlayerWallet.objects.get(player=player).balance == Decimal("75.00")


def test_ledger_rows_cannot_be_changed_or_deleted(make_player):
    from django.db import IntegrityError, transaction

    player, _ = make_player(Decimal("10"))
    entry = LedgerEntry.objects.get(player=player)
    for statement in ("UPDATE s2s_transactions SET amount = 1000 WHERE id = %s", "DELETE FROM s2s_transactions WHERE id = %s"):
        with pytest.raises(IntegrityError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(statement, [entry.pk])
    assert LedgerEntry.objects.get(pk=entry.pk).amount == Decimal("10.00")
