"""The staff operations dashboard, the admin's front page: today's figures per operator from the report's
rollup, open liability by market, the 30-day chart of trades and GGR (inline SVG, no script), settlements
in progress, wallet operations waiting for a person, pending resolution proposals, feed health, webhook endpoints disabled or failing. In
headless Chromium against the live server: it renders the figures and the chart, and the browser asks
no host but the server."""

import re
from decimal import Decimal
from urllib.parse import urlsplit

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone
from playwright.sync_api import expect

from casino.services.credentials import operator_create
from casino.services.markets import reference_price_set
from settlement.models import ResolutionProposal
from settlement.services.decide import market_settle
from tests.conftest import MARKET, buy_body
from tests.test_settlement_browser import PASSWORD, in_db_thread
from tests.test_settlement_browser import browser_page as browser_page  # noqa: F401 - the fixture
from wallets.models import WalletOperation
from webhooks.models import WebhookEndpoint

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("no_rate_limits", "no_velocity_limits")]

OTHER = "0x1234abcd00000000000000000000000000000000000000000000000000000003"


@pytest.fixture
def house(make_player, operator, market, monkeypatch):
    """Two operators trading, a second market being settled, a wallet operation for manual handling,
    a pending proposal and a staff user."""
    from settlement.services import decide

    monkeypatch.setattr(decide, "_start", lambda settlement_id: None)
    second = operator_create(name="Second Book", wallet_mode="internal")
    reference_price_set(market_id=OTHER, outcome="yes", mid_price=Decimal("50"), title="Settling market", category="test")
    amounts = {operator.operator.pk: Decimal("0"), second.operator.pk: Decimal("0")}
    for op, amount in [(operator, "40.00"), (operator, "30.00"), (second, "25.00")]:
        player, api = make_player(Decimal("500"), op=op)
        assert api.post("trade", buy_body(amount=amount)).status_code == 200
        assert api.post("trade", buy_body(amount="5.00", market_id=OTHER, mid=50)).status_code == 200
        amounts[op.operator.pk] += Decimal(amount) + Decimal("5.00")
    market_settle(market_id=OTHER, action="resolve", outcome="yes")  # payouts not run: in progress
    WalletOperation.objects.create(
        operator=operator.operator, player=player, kind="credit", type="payout", amount=Decimal("12.34"), status="manual"
    )
    ResolutionProposal.objects.create(market=market, action="resolve", outcome="yes", seen_at=timezone.now())
    WebhookEndpoint.objects.create(
        operator=second.operator,
        url="https://hooks.second.example/house",
        events=["*"],
        secret_sealed="x",
        enabled=False,
        disabled_reason="failing for 3 days",
        disabled_at=timezone.now(),
    )
    WebhookEndpoint.objects.create(operator=operator.operator, url="https://hooks.first.example/ok", events=["*"], secret_sealed="x")
    get_user_model().objects.create_superuser(username="desk", email="desk@example.com", password=PASSWORD)
    return {"operator": operator.operator, "second": second.operator, "stakes": amounts}


def test_the_front_page_is_the_dashboard_for_staff_only(house, client):
    response = client.get("/admin/")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
    client.force_login(get_user_model().objects.get(username="desk"))
    page = client.get("/admin/").content.decode()
    assert 'id="dashboard-chart"' in page and page.count('class="bar"') == 30
    assert "Second Book" in page and 'id="proposals-count">1<' in page
    webhooks = page.split('id="webhook-endpoints"')[1].split("</div>")[0]
    assert 'id="webhooks-troubled-count">1<' in webhooks and "hooks.second.example" in webhooks and "disabled" in webhooks
    assert "hooks.first.example" not in webhooks  # a healthy endpoint needs nobody
    assert "<script" not in page.split('id="dashboard"')[1].split("</svg>")[0]


def test_staff_sees_the_figures_and_the_chart_in_a_browser(live_server, house, browser_page):
    page = browser_page
    hosts: set[str] = set()
    page.on("request", lambda request: hosts.add(urlsplit(request.url).hostname or ""))

    page.goto(f"{live_server.url}/admin/login/?next=/admin/")
    page.fill("#id_username", "desk")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    expect(page).to_have_url(re.compile(r"/admin/$"))

    for key in ("operator", "second"):
        row = page.locator(f"tr.operator-row[data-operator='{house[key].pk}']")
        expect(row.locator("td.stakes")).to_have_text(f"{house['stakes'][house[key].pk]:.2f}")
        expect(row.locator("td.ggr")).to_have_text(f"{house['stakes'][house[key].pk]:.2f}")  # nothing paid back yet
    first = page.locator(f"tr.operator-row[data-operator='{house['operator'].pk}']")
    expect(first.locator("td.trades")).to_have_text("4")
    expect(first.locator("td.players")).to_have_text("2")

    chart = page.locator("svg#dashboard-chart")
    expect(chart).to_be_visible()
    expect(chart.locator("rect.bar")).to_have_count(30)
    today = timezone.now().date().isoformat()
    expect(chart.locator(f"rect.bar[data-date='{today}']")).to_have_attribute("data-trades", "6")
    expect(page.locator("#chart-total-trades")).to_have_text("6")
    assert chart.bounding_box()["height"] > 100

    expect(page.locator(f"tr.liability-row[data-market='{MARKET}']")).to_have_count(1)
    expect(page.locator("#settlements-in-progress tr.settlement-row")).to_contain_text("Settling market")
    expect(page.locator("#manual-count")).to_have_text("1")
    expect(page.locator("#waiting-operations tr.operation-row")).to_contain_text("12.34")
    expect(page.locator("#proposals-count")).to_have_text("1")
    expect(page.locator("#feed-status")).to_have_text("absent")
    page.screenshot(path="/tmp/dashboard.png", full_page=True)

    page.click("#manual-count")
    expect(page).to_have_url(re.compile(r"/admin/wallets/walletoperation/\?status__exact=manual$"))
    assert hosts <= {"localhost", "127.0.0.1"}, hosts
    assert in_db_thread(lambda: ResolutionProposal.objects.count()) == 1
