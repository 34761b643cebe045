"""Settlement from the admin site: pick a market, preview what the decision pays, confirm, follow
the payouts, retry a failure; staff only, and a second decision is a message, not a crash."""

from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from casino.models import Market, Position
from casino.services.credentials import operator_create
from casino.services.markets import reference_price_set
from core import money
from settlement.models import Payout, PayoutStatus, Settlement
from settlement.services.decide import market_settle, settlement_plan
from settlement.services.payouts import settlement_advance, settlement_refresh
from tests.conftest import MARKET, buy_body
from wallets.models import LedgerEntry, LedgerType

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("no_rate_limits", "no_velocity_limits")]

SETTLE = "admin:settlement_settlement_settle"
OTHER_MARKET = "0xother0000000000000000000000000000000000000000000000000000000002"


def resolve_url(decision: str, market_id: str = MARKET) -> str:
    return reverse("admin:settlement_settlement_resolve", args=[market_id, decision])


def detail_url(settlement) -> str:
    return reverse("admin:settlement_settlement_change", args=[settlement.pk])


def messages_of(response) -> list[str]:
    return [str(m.message) for m in response.context["messages"]]


def pay_all(settlement) -> None:
    """What the settle_market task does; tests do not count on a Celery worker (none runs under scripts/test)."""
    for _ in range(100):
        if settlement_advance(settlement_id=settlement.pk):
            return
    raise AssertionError("settlement did not complete")


@pytest.fixture
def book(make_player, market):
    """Four positions on the market from two operators: two YES, one NO, one on both sides."""
    second = operator_create(name="Second Book", wallet_mode="internal")
    trades = [
        (None, [("yes", "40")]),
        (None, [("no", "30")]),
        (second, [("yes", "25")]),
        (second, [("yes", "10"), ("no", "12")]),
    ]
    for op, buys in trades:
        _, api = make_player(Decimal("500"), op=op)
        for outcome, amount in buys:
            response = api.post("trade", buy_body(amount=amount, outcome=outcome, mid=62 if outcome == "yes" else 38))
            assert response.status_code == 200, response.content
    return market


def test_settle_page_lists_open_markets_with_the_three_actions(admin_client, book):
    reference_price_set(market_id=OTHER_MARKET, outcome="yes", mid_price=Decimal("50"), title="Will it snow in May?", category="weather")
    Market.objects.create(id="0xclosed", title="Already resolved", status="resolved", outcome="yes")
    changelist = admin_client.get(reverse("admin:settlement_settlement_changelist")).content.decode()
    assert reverse(SETTLE) in changelist
    assert reverse(SETTLE) in admin_client.get(reverse("admin:app_list", args=["settlement"])).content.decode()

    response = admin_client.get(reverse(SETTLE))
    assert response.status_code == 200
    assert [m.pk for m in response.context["markets"]] == [MARKET, OTHER_MARKET]  # most open positions first
    assert response.context["markets"][0].open_positions == 5
    html = response.content.decode()
    for decision in ("yes", "no", "void"):
        assert resolve_url(decision) in html
    assert "Already resolved" not in html

    searched = admin_client.get(reverse(SETTLE), {"q": "snow"})
    assert [m.pk for m in searched.context["markets"]] == [OTHER_MARKET]


@pytest.mark.parametrize("decision, action, outcome", [("yes", "resolve", "yes"), ("no", "resolve", "no"), ("void", "void", None)])
def test_confirmation_page_shows_what_the_decision_pays(admin_client, book, decision, action, outcome):
    plan = settlement_plan(market_id=MARKET, action=action, outcome=outcome)
    assert plan.total_positions == 5 and plan.total_payout > 0

    response = admin_client.get(resolve_url(decision))
    assert response.status_code == 200
    assert response.context["plan"] == plan
    html = response.content.decode()
    assert book.title in html and MARKET in html
    assert f'id="total-positions">{plan.total_positions}<' in html
    assert f'id="total-payout">{plan.total_payout}<' in html
    assert f'id="total-cost-basis">{plan.total_cost_basis}<' in html
    assert f">{plan.casino_profit}</span>" in html
    assert f'id="total-winners">{plan.total_winners}<' in html
    if action == "void":
        assert plan.casino_profit == 0 and plan.total_payout == plan.total_cost_basis
    rows = {row["name"]: row for row in response.context["by_operator"]}
    assert set(rows) == set(plan.by_operator) and len(rows) == 2
    assert rows["Second Book"]["positions"] == 3
    assert sum(row["payout"] for row in rows.values()) == plan.total_payout
    assert "internal" in html
    assert 'name="csrfmiddlewaretoken"' in html and "Confirm: " in html
    assert reverse(SETTLE) in html  # the cancel link
    assert not Settlement.objects.exists()  # looking changes nothing
    assert Market.objects.get(pk=MARKET).status == "open"


def test_confirming_resolves_the_market_and_pays_the_winners(admin_client, book, django_capture_on_commit_callbacks):
    plan = settlement_plan(market_id=MARKET, action="resolve", outcome="yes")
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = admin_client.post(resolve_url("yes"), {"reason": ""})
    assert callbacks  # the settle_market task, scheduled on commit (and, run eagerly, its follow-up)
    settlement = Settlement.objects.get(market_id=MARKET)
    assert response.status_code == 302 and response["Location"] == detail_url(settlement)
    assert settlement.requested_by.get_username() == "admin"
    assert (settlement.action, settlement.outcome) == ("resolve", "yes")
    assert (settlement.total_positions, settlement.total_winners) == (plan.total_positions, plan.total_winners)
    assert (settlement.total_payout, settlement.casino_profit) == (plan.total_payout, plan.casino_profit)
    assert Market.objects.get(pk=MARKET).status in ("resolving", "resolved")

    pay_all(settlement)  # already done inline when Celery is eager; a no-op then
    settlement.refresh_from_db()
    assert settlement.status == "completed" and settlement.paid_amount == plan.total_payout
    assert Market.objects.get(pk=MARKET).status == "resolved"
    paid = sum(e.amount for e in LedgerEntry.objects.filter(type=LedgerType.PAYOUT))
    assert paid == plan.total_payout

    page = admin_client.get(response["Location"])
    assert "recorded" in " ".join(messages_of(page))


def test_confirming_twice_is_one_settlement(admin_client, book):
    first = admin_client.post(resolve_url("no"), {})
    second = admin_client.post(resolve_url("no"), {})
    assert first["Location"] == second["Location"]
    assert Settlement.objects.count() == 1


def test_void_records_the_reason_and_refunds_the_cost_basis(admin_client, book):
    plan = settlement_plan(market_id=MARKET, action="void", outcome=None)
    response = admin_client.post(resolve_url("void"), {"reason": "Resolution source disappeared"}, follow=True)
    assert response.status_code == 200
    settlement = Settlement.objects.get(market_id=MARKET)
    assert (settlement.action, settlement.outcome, settlement.reason) == ("void", None, "Resolution source disappeared")
    assert settlement.casino_profit == 0 and settlement.total_payout == plan.total_cost_basis
    pay_all(settlement)
    assert Market.objects.get(pk=MARKET).status == "voided"
    assert sum(e.amount for e in LedgerEntry.objects.filter(type=LedgerType.REFUND)) == plan.total_cost_basis


def test_settlement_page_shows_progress_totals_and_operators(admin_client, book):
    settlement = market_settle(market_id=MARKET, action="resolve", outcome="yes")
    pending = admin_client.get(detail_url(settlement))
    assert pending.status_code == 200
    html = pending.content.decode()
    assert "Settling" in html and f"0 / {settlement.total_winners}" in html
    assert 'id="run-payouts"' in html
    assert pending.context["percent"] == 0

    pay_all(settlement)
    settlement.refresh_from_db()
    response = admin_client.get(detail_url(settlement))
    html = response.content.decode()
    assert response.context["percent"] == 100
    assert "Completed" in html and 'id="run-payouts"' not in html
    assert f"{settlement.paid_count} / {settlement.total_winners}" in html
    assert f"{settlement.paid_amount} / {settlement.total_payout}" in html
    for field in ("totalPositions", "totalWinners", "totalPayout", "casinoProfit"):
        assert field in html
    assert f'id="total-positions">{settlement.total_positions}<' in html
    assert f'id="total-payout">{settlement.total_payout}<' in html
    assert f'id="paid-amount">{settlement.paid_amount}<' in html
    assert str(settlement.casino_profit) in html
    operators = response.context["by_operator"]
    assert len(operators) == 2 and "Second Book" in {row["operator__name"] for row in operators}
    assert sum(row["paid"] for row in operators) == sum(row["payout"] for row in operators) == settlement.total_payout
    for row in operators:
        assert f'<td class="num">{row["payout"]}</td>' in html and row["payout"].as_tuple().exponent == -2
    assert "No failed payout." in html


def _a_refused_payout(settlement) -> Payout:
    """What an operator's refusal leaves: the position closed, its payout failed. The book's wallets are
    house-held, which never refuse, so the state is written here."""
    position = Position.objects.filter(market_id=MARKET, outcome="yes", status="open").order_by("shares").first()
    payout = Payout.objects.create(
        settlement=settlement,
        position=position,
        player_id=position.player_id,
        operator_id=position.operator_id,
        outcome=position.outcome,
        shares=position.shares,
        cost_basis=money.cents_down(position.shares * position.avg_price / money.HUNDRED),
        amount=money.payout_for_shares(position.shares),
        status=PayoutStatus.FAILED,
        attempts=1,
        last_error="operator refused: ACCOUNT_LOCKED",
    )
    Position.objects.filter(pk=position.pk).update(status="resolved")
    return payout


def test_a_failed_payout_is_listed_and_retried(admin_client, book):
    settlement = market_settle(market_id=MARKET, action="resolve", outcome="yes")
    failing = _a_refused_payout(settlement)
    old_transaction = failing.transaction_id
    assert settlement_advance(settlement_id=settlement.pk) is False  # the others are paid; the failure keeps it open
    settlement.refresh_from_db()
    assert settlement.failed_count == 1 and settlement.status == "settling"

    page = admin_client.get(detail_url(settlement))
    html = page.content.decode()
    assert [p.pk for p in page.context["failed"]] == [failing.pk]
    assert failing.player.external_id in html and "ACCOUNT_LOCKED" in html and str(failing.amount) in html
    retry = reverse("admin:settlement_settlement_retry", args=[settlement.pk, failing.pk])
    assert retry in html

    assert admin_client.get(retry).status_code == 403  # never a write on GET
    response = admin_client.post(retry, follow=True)
    assert response.status_code == 200
    assert any("queued again" in m for m in messages_of(response))
    pay_all(settlement)
    failing.refresh_from_db()
    settlement.refresh_from_db()
    assert failing.status == PayoutStatus.PAID and failing.transaction_id != old_transaction and failing.last_error == ""
    assert settlement.status == "completed" and settlement.failed_count == 0
    assert LedgerEntry.objects.filter(pk=failing.transaction_id, amount=failing.amount).exists()

    again = admin_client.post(retry, follow=True)  # a second click on the stale page
    assert any("no longer failed" in m for m in messages_of(again))
    assert LedgerEntry.objects.filter(type=LedgerType.PAYOUT, player=failing.player).count() == 1


def test_run_payouts_now_starts_the_task(admin_client, book):
    settlement = market_settle(market_id=MARKET, action="resolve", outcome="no")
    run = reverse("admin:settlement_settlement_run", args=[settlement.pk])
    assert admin_client.get(run).status_code == 403
    response = admin_client.post(run, follow=True)
    assert response.status_code == 200
    assert messages_of(response)  # completed inline (eager) or queued for a worker
    pay_all(settlement)
    settlement.refresh_from_db()
    assert settlement.status == "completed"


def test_a_second_decision_is_refused_with_a_message(admin_client, book):
    settlement = market_settle(market_id=MARKET, action="resolve", outcome="yes")
    response = admin_client.post(resolve_url("no"), {"reason": ""}, follow=True)
    assert response.status_code == 200
    assert response.redirect_chain[-1][0] == detail_url(settlement)
    assert any("Market already settled" in m for m in messages_of(response))
    settlement.refresh_from_db()
    assert (settlement.action, settlement.outcome) == ("resolve", "yes")

    looked = admin_client.get(resolve_url("void"), follow=True)  # the confirmation page is not even shown
    assert looked.redirect_chain[-1][0] == detail_url(settlement)
    assert any("already settled" in m for m in messages_of(looked))


def test_unknown_market_or_decision_is_a_message_not_an_error(admin_client, market):
    for url in (resolve_url("yes", "0xnope"), resolve_url("maybe")):
        response = admin_client.get(url, follow=True)
        assert response.status_code == 200
        assert response.redirect_chain[-1][0] == reverse(SETTLE)
        assert messages_of(response)
    assert admin_client.post(resolve_url("yes", "0xnope"), follow=True).status_code == 200
    assert not Settlement.objects.exists()


def test_non_staff_are_sent_to_the_login_page(client, book):
    settlement = market_settle(market_id=MARKET, action="resolve", outcome="yes")
    urls = [
        reverse(SETTLE),
        resolve_url("no"),
        detail_url(settlement),
        reverse("admin:settlement_settlement_run", args=[settlement.pk]),
    ]
    player_like = get_user_model().objects.create_user(username="not-staff", password="pw")
    for login in (None, player_like):
        if login is not None:
            client.force_login(login)
        for url in urls:
            response = client.post(url, {"reason": ""}) if "resolve" in url or "run" in url else client.get(url)
            assert response.status_code == 302, url
            assert response["Location"].startswith(reverse("admin:login")), url
    assert Settlement.objects.get().outcome == "yes"


def test_staff_without_the_change_permission_cannot_settle(client, book):
    viewer = get_user_model().objects.create_user(username="viewer", password="pw", is_staff=True)
    client.force_login(viewer)
    assert client.get(reverse(SETTLE)).status_code == 403
    assert client.post(resolve_url("yes"), {}).status_code == 403
    assert not Settlement.objects.exists()


def test_settlement_and_payout_lists_filter_and_search(admin_client, book):
    settlement = market_settle(market_id=MARKET, action="resolve", outcome="yes")
    pay_all(settlement)
    payout = Payout.objects.filter(settlement=settlement, status=PayoutStatus.PAID).first()
    pages = [
        ("admin:settlement_settlement_changelist", {}),
        ("admin:settlement_settlement_changelist", {"status__exact": "completed", "action__exact": "resolve"}),
        ("admin:settlement_settlement_changelist", {"q": "Bitcoin"}),
        ("admin:settlement_payout_changelist", {"status__exact": "paid", "settlement__id__exact": str(settlement.pk)}),
        ("admin:settlement_payout_changelist", {"q": payout.player.external_id}),
        ("admin:settlement_payout_changelist", {"q": str(payout.transaction_id)}),
        ("admin:settlement_payout_changelist", {"q": "not-a-uuid"}),
    ]
    for name, params in pages:
        assert admin_client.get(reverse(name), params).status_code == 200, (name, params)
    found = admin_client.get(reverse("admin:settlement_payout_changelist"), {"q": str(payout.transaction_id)})
    assert found.context["cl"].result_count == 1
    listed = admin_client.get(reverse("admin:settlement_settlement_changelist")).content.decode()
    settlement.refresh_from_db()
    assert f'<td class="field-progress_column">{settlement.progress}</td>' in listed
    assert admin_client.get(reverse("admin:settlement_payout_change", args=[payout.pk])).status_code == 200
    assert admin_client.get(reverse("admin:settlement_payout_add")).status_code == 403
    assert admin_client.get(reverse("admin:settlement_settlement_add")).status_code == 403
    assert admin_client.post(detail_url(settlement), {}).status_code == 405


def test_lists_do_not_query_per_row(admin_client, book, make_player):
    def counts():
        result = []
        for name in ("admin:settlement_settlement_changelist", "admin:settlement_payout_changelist", SETTLE):
            with CaptureQueriesContext(connection) as queries:
                assert admin_client.get(reverse(name)).status_code == 200
            result.append(len(queries))
        return result

    market_settle(market_id=MARKET, action="resolve", outcome="yes")
    reference_price_set(market_id=OTHER_MARKET, outcome="yes", mid_price=Decimal("50"))
    few = counts()
    _, api = make_player(Decimal("100"))
    assert api.post("trade", buy_body(amount="5", market_id=OTHER_MARKET, mid=50)).status_code == 200
    market_settle(market_id=OTHER_MARKET, action="void")
    reference_price_set(market_id="0xthird", outcome="yes", mid_price=Decimal("40"))
    assert counts() == few


def test_settlement_refresh_counts_match_the_page(admin_client, book):
    settlement = market_settle(market_id=MARKET, action="void")
    pay_all(settlement)
    settlement_refresh(settlement_id=settlement.pk)
    response = admin_client.get(detail_url(settlement))
    counts = response.context["counts"]
    assert counts["paid"] == Payout.objects.filter(settlement=settlement, status="paid").count() == settlement.total_positions
    assert counts["failed"] == 0
