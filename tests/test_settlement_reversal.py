"""Reversing a settlement (SPEC §12) on house-held wallets: resolve → reverse → resolve the other
way, checked against an independent computation from the trades; empty balances leave a debt,
recovered from the next payout; repeats answer the first result, conflicts are 400; a worker killed
mid-chunk takes nothing twice; the admin's confirmation page."""

from decimal import Decimal

import pytest
from django.db.models import Sum
from django.urls import reverse

from casino.models import Market, Position
from casino.services.exposure import exposure_book, global_exposure_bound
from settlement.models import Payout, Reversal, ReversalItem, Settlement
from settlement.services.payouts import settlement_advance
from settlement.services.reversal import reversal_advance
from tests.conftest import MARKET, buy_body, decimal_json
from tests.test_settlement import _book, _expected, _settle_all
from wallets.models import DebtEntry, LedgerEntry, PlayerDebt, PlayerWallet
from wallets.services.transfers import wallet_withdraw

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("no_rate_limits", "no_velocity_limits", "no_auto_start")]


@pytest.fixture
def no_auto_start(monkeypatch):
    """The test drives payouts and reversals itself (what the Celery tasks do)."""
    from settlement.services import decide, reversal

    monkeypatch.setattr(decide, "_start", lambda settlement_id: None)
    monkeypatch.setattr(reversal, "_start", lambda reversal_id: None)


def _reverse_all(chunk: int = 1000):
    for rev in Reversal.objects.filter(status="reversing"):
        for _ in range(1000):
            if reversal_advance(reversal_id=rev.pk, chunk=chunk):
                break


def _positions_snapshot():
    return {(p.player_id, p.outcome): (p.shares, p.avg_price, p.status) for p in Position.objects.filter(market_id=MARKET, shares__gt=0)}


def _balances(players):
    return {p.pk: PlayerWallet.objects.get(player=p).balance for p, _ in players}


def _reverse(staff_api, reason="Wrong outcome: the source corrected its resolution"):
    return staff_api.post("resolve", {"marketId": MARKET, "action": "reverse", "reason": reason})


def test_resolve_reverse_resolve_the_other_way(make_player, market, staff_api):
    players = _book(make_player, market)
    before = _balances(players)
    positions_before = _positions_snapshot()
    book_before = exposure_book(market_id=MARKET)
    _, _, payout_yes = _expected("yes")

    assert staff_api.post("resolve", {"marketId": MARKET, "outcome": "yes"}).status_code == 200
    _settle_all()
    assert exposure_book(market_id=MARKET).worst_case_loss == 0

    response = _reverse(staff_api)
    assert response.status_code == 200, response.content
    winners = len([v for v in payout_yes.values() if v > 0])
    assert decimal_json(response) == {
        "success": True,
        "marketId": MARKET,
        "action": "reverse",
        "totalPositions": len(positions_before),
        "totalReversed": 0,  # taken back by the worker, which has not run yet
        "totalUncollected": 0,
    }
    # Trading stays stopped: the market is closed awaiting a new decision; positions and book are back.
    assert Market.objects.get(pk=MARKET).status == "closed"
    _, api = players[0]
    refused = api.post("trade", buy_body())
    assert refused.status_code == 400 and decimal_json(refused)["code"] == "market_reversed"
    assert _positions_snapshot() == positions_before
    assert exposure_book(market_id=MARKET) == book_before
    # The global bound takes the market's exact worst case back (its shards consolidated into one: the
    # bound before the decision was the sum of the shards' worst cases, an upper bound of it).
    assert global_exposure_bound() == max(book_before.worst_case_loss, Decimal("0")) > 0

    _reverse_all(chunk=4)
    total_paid = sum(payout_yes.values(), Decimal("0"))
    again = decimal_json(_reverse(staff_api, reason="another reason: the same reversal answers"))
    assert again == {
        "success": True,
        "marketId": MARKET,
        "action": "reverse",
        "totalPositions": len(positions_before),
        "totalReversed": total_paid,
        "totalUncollected": 0,
    }
    assert _balances(players) == before  # every payout taken back, each by its own transaction
    reversals = LedgerEntry.objects.filter(type="payout_reversal")
    assert reversals.count() == winners
    for row in reversals:
        original = LedgerEntry.objects.get(pk=row.reference_id)
        assert original.type == "payout" and row.amount == -original.amount and row.player_id == original.player_id
    settlement = Settlement.objects.get()
    assert settlement.status == "reversed"
    assert set(Payout.objects.filter(settlement=settlement).values_list("status", flat=True)) <= {"reversed", "nothing_due"}
    assert Reversal.objects.get().status == "completed" and Reversal.objects.get().total_reversed == total_paid

    # Settle again, the other way: paid exactly as an independent computation says.
    _, _, payout_no = _expected("no")
    response = staff_api.post("resolve", {"marketId": MARKET, "outcome": "no"})
    assert response.status_code == 200, response.content
    assert decimal_json(response)["totalPayout"] == sum(payout_no.values(), Decimal("0"))
    _settle_all()
    for player, _ in players:
        due = sum((payout_no[k] for k in payout_no if k[0] == player.pk), Decimal("0"))
        assert PlayerWallet.objects.get(player=player).balance == before[player.pk] + due
    assert Settlement.objects.filter(market_id=MARKET).count() == 2
    assert Market.objects.get(pk=MARKET).status == "resolved"
    assert exposure_book(market_id=MARKET).worst_case_loss == 0
    assert not PlayerDebt.objects.filter(amount__gt=0).exists()


def test_a_reversal_meeting_an_empty_balance_leaves_a_debt_recovered_from_the_next_payout(make_player, market, staff_api):
    player, api = make_player(Decimal("100"))
    assert api.post("trade", buy_body()).status_code == 200  # 39.0625 YES shares for $25
    staff_api.post("resolve", {"marketId": MARKET, "outcome": "yes"})
    _settle_all()
    assert PlayerWallet.objects.get(player=player).balance == Decimal("114.06")
    wallet_withdraw(player=player, amount=Decimal("100.00"))  # 14.06 left of the 39.06 paid

    _reverse(staff_api)
    _reverse_all()
    body = decimal_json(_reverse(staff_api))
    assert body["totalReversed"] == Decimal("14.06") and body["totalUncollected"] == Decimal("25.00")
    assert PlayerWallet.objects.get(player=player).balance == 0  # never below zero
    assert LedgerEntry.objects.get(player=player, type="payout_reversal").amount == Decimal("-14.06")
    assert PlayerDebt.objects.get(player=player).amount == Decimal("25.00")
    item = ReversalItem.objects.get()
    assert (item.amount_due, item.amount_taken, item.amount_uncollected, item.status) == (
        Decimal("39.06"),
        Decimal("14.06"),
        Decimal("25.00"),
        "done",
    )
    assert DebtEntry.objects.get(player=player).reference_id == item.pk

    # The market is settled again (YES after all): the payout gives the debt back first.
    staff_api.post("resolve", {"marketId": MARKET, "outcome": "yes"})
    _settle_all()
    new_payout = Payout.objects.get(settlement__status="completed")
    recovery = LedgerEntry.objects.get(player=player, type="debt_recovery")
    assert recovery.amount == Decimal("-25.00") and recovery.reference_id == new_payout.transaction_id
    assert PlayerWallet.objects.get(player=player).balance == Decimal("39.06") - Decimal("25.00")
    assert PlayerDebt.objects.get(player=player).amount == 0
    assert DebtEntry.objects.filter(player=player).aggregate(s=Sum("amount"))["s"] == 0


def test_repeats_answer_the_first_result_and_conflicts_are_400(make_player, market, staff_api):
    _, api = make_player(Decimal("100"))
    api.post("trade", buy_body())
    nothing = _reverse(staff_api)
    assert nothing.status_code == 400 and decimal_json(nothing)["error"] == "Market has no settlement to reverse"
    no_reason = staff_api.post("resolve", {"marketId": MARKET, "action": "reverse"})
    assert no_reason.status_code == 400 and decimal_json(no_reason)["error"] == "Missing required fields"
    blank = staff_api.post("resolve", {"marketId": MARKET, "action": "reverse", "reason": "  "})
    assert blank.status_code == 400 and decimal_json(blank)["code"] == "missing_fields"

    first = staff_api.post("resolve", {"marketId": MARKET, "action": "void", "reason": "cancelled event"})
    assert staff_api.post("resolve", {"marketId": MARKET, "action": "void", "reason": "cancelled event"}).content == first.content
    other = staff_api.post("resolve", {"marketId": MARKET, "outcome": "yes"})
    assert other.status_code == 400 and decimal_json(other)["error"] == "Market already settled"

    reversed_ = _reverse(staff_api)
    assert reversed_.status_code == 200
    assert _reverse(staff_api).content == reversed_.content  # the worker has not run: the same answer
    busy = staff_api.post("resolve", {"marketId": MARKET, "outcome": "yes"})
    assert busy.status_code == 400 and decimal_json(busy)["error"] == "Settlement being reversed"
    _reverse_all()
    assert staff_api.post("resolve", {"marketId": MARKET, "outcome": "yes"}).status_code == 200
    _settle_all()
    # The void's refund was never paid (its position never reached a chunk): nothing to take back.
    assert LedgerEntry.objects.filter(type="refund_reversal").count() == 0
    assert Reversal.objects.get().total_items == 0 and not Payout.objects.filter(settlement__action="void").exists()


def test_reversing_while_payouts_are_in_progress_takes_back_the_paid_ones_only(make_player, market, staff_api):
    players = _book(make_player, market)
    before = _balances(players)
    staff_api.post("resolve", {"marketId": MARKET, "action": "void", "reason": "test"})
    settlement = Settlement.objects.get()
    settlement_advance(settlement_id=settlement.pk, chunk=5)  # five refunds paid, the rest pending
    assert Payout.objects.filter(status="paid").count() == 5
    _reverse(staff_api)
    assert settlement_advance(settlement_id=settlement.pk) is True  # a payout worker finds nothing to pay
    assert Payout.objects.filter(status="paid").count() == 5
    _reverse_all()
    rev = Reversal.objects.get()
    assert rev.total_items == 5 and rev.total_cancelled == 0  # the positions no chunk reached have no payout
    assert rev.total_positions == Position.objects.filter(market_id=MARKET, shares__gt=0).count()
    assert set(Position.objects.filter(market_id=MARKET, shares__gt=0).values_list("status", flat=True)) == {"open"}
    assert LedgerEntry.objects.filter(type="refund_reversal").count() == 5
    assert _balances(players) == before
    assert Settlement.objects.get().status == "reversed" and Market.objects.get(pk=MARKET).status == "closed"


class SimulatedCrash(BaseException):
    """The worker dies: nothing after this point runs."""


def test_a_reversal_worker_killed_mid_chunk_takes_nothing_twice(make_player, market, staff_api, monkeypatch):
    from settlement.services import reversal

    players = _book(make_player, market)
    before = _balances(players)
    staff_api.post("resolve", {"marketId": MARKET, "action": "void", "reason": "test"})
    _settle_all()
    _reverse(staff_api)
    real = reversal.wallet_takes_bulk
    calls = {"n": 0}

    def dies_in_the_second_chunk(**kwargs):
        calls["n"] += 1
        result = real(**kwargs)  # the money moved, then the worker dies before the items are marked
        if calls["n"] == 2:
            raise SimulatedCrash()
        return result

    monkeypatch.setattr(reversal, "wallet_takes_bulk", dies_in_the_second_chunk)
    rev = Reversal.objects.get()
    reversal_advance(reversal_id=rev.pk, chunk=3)
    with pytest.raises(SimulatedCrash):
        reversal_advance(reversal_id=rev.pk, chunk=3)
    assert ReversalItem.objects.filter(status="done").count() == 3
    monkeypatch.setattr(reversal, "wallet_takes_bulk", real)
    while not reversal_advance(reversal_id=rev.pk, chunk=2):
        pass
    assert _balances(players) == before
    assert LedgerEntry.objects.filter(type="refund_reversal").count() == LedgerEntry.objects.filter(type="refund").count()


def test_admin_confirmation_page_lists_what_each_player_gives_back(make_player, market, admin_client):
    from settlement.services.decide import market_settle

    player, api = make_player(Decimal("100"))
    api.post("trade", buy_body())
    settlement = market_settle(market_id=MARKET, action="resolve", outcome="yes")
    _settle_all()
    detail = admin_client.get(reverse("admin:settlement_settlement_change", args=[settlement.pk]))
    assert b'id="reverse-settlement"' in detail.content
    url = reverse("admin:settlement_settlement_reverse", args=[settlement.pk])
    page = admin_client.get(url)
    assert page.status_code == 200
    text = page.content.decode()
    assert player.external_id in text and "39.06" in text and 'id="reverse-total">39.06<' in text
    refused = admin_client.post(url, {"reason": ""})
    assert refused.status_code == 200 and "This field is required" in refused.content.decode()
    assert not Reversal.objects.exists()
    done = admin_client.post(url, {"reason": "Source corrected the outcome"})
    assert done.status_code == 302
    _reverse_all()
    detail = admin_client.get(reverse("admin:settlement_settlement_change", args=[settlement.pk])).content.decode()
    assert 'id="reversal-taken">39.06<' in detail and "Source corrected the outcome" in detail
    assert PlayerWallet.objects.get(player=player).balance == Decimal("75.00")


OTHER = "0x1234abcd00000000000000000000000000000000000000000000000000000002"


def _sell_all(api, player, market_id, outcome="yes", mid=62):
    shares = Position.objects.get(player=player, market_id=market_id, outcome=outcome).shares
    return api.post("trade", {"marketId": market_id, "side": "sell", "outcome": outcome, "amount": shares, "midPrice": mid})


@pytest.mark.parametrize("debt_exceeds_sale", [True, False])
def test_a_debt_is_recovered_from_the_players_next_sale(make_player, market, staff_api, debt_exceeds_sale):
    from casino.services.markets import reference_price_set

    reference_price_set(market_id=OTHER, outcome="yes", mid_price=Decimal("62"), title="Another market")
    player, api = make_player(Decimal("100"))
    assert api.post("trade", buy_body(amount="10", market_id=OTHER)).status_code == 200
    assert api.post("trade", buy_body()).status_code == 200
    staff_api.post("resolve", {"marketId": MARKET, "outcome": "yes"})
    _settle_all()
    wallet_withdraw(player=player, amount=PlayerWallet.objects.get(player=player).balance)
    if not debt_exceeds_sale:  # a small balance, taken by the reversal, then the sale pays the rest
        from wallets.services.transfers import wallet_deposit

        wallet_deposit(player=player, amount=Decimal("30.00"))
    _reverse(staff_api)
    _reverse_all()
    debt = PlayerDebt.objects.get(player=player).amount
    assert debt == (Decimal("39.06") if debt_exceeds_sale else Decimal("9.06"))

    sold = _sell_all(api, player, OTHER)
    assert sold.status_code == 200, sold.content
    proceeds = decimal_json(sold)["cost"]
    recovered = min(debt, proceeds)
    assert decimal_json(sold)["newBalance"] == proceeds - recovered
    assert PlayerWallet.objects.get(player=player).balance == proceeds - recovered
    credit = LedgerEntry.objects.get(player=player, type="trade_credit")
    recovery = LedgerEntry.objects.get(player=player, type="debt_recovery")
    assert credit.amount == proceeds and recovery.amount == -recovered and recovery.reference_id == credit.pk
    assert PlayerDebt.objects.get(player=player).amount == debt - recovered
    # Buys pay no debt, and a deposit is never taken.
    from wallets.services.transfers import wallet_deposit

    wallet_deposit(player=player, amount=Decimal("50.00"))
    assert api.post("trade", buy_body(amount="10", market_id=OTHER)).status_code == 200
    assert LedgerEntry.objects.filter(type="debt_recovery").count() == 1
