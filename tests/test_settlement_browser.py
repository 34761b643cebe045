"""A staff member resolves a market in a real browser: log in, pick the market, read the preview,
confirm, and watch the settlement page reach "Completed" with the totals and paid counts.

Headless Debian Chromium driven by Playwright against pytest-django's live server (a real threaded
HTTP server). Celery is eager without REDIS_URL, so confirming pays inline; under
scripts/with-services tasks go to Redis and no worker runs, so after clicking "Run payouts now"
the test pays the chunks itself (settlement_advance, what the task runs) and reloads the page.
"""

import os
import re
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connections
from playwright.sync_api import expect, sync_playwright

from casino.services.credentials import operator_create
from settlement.models import Settlement
from settlement.services.decide import settlement_plan
from settlement.services.payouts import settlement_advance
from tests.conftest import MARKET, buy_body

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("no_rate_limits", "no_velocity_limits")]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOT = "/tmp/settlement.png"
PASSWORD = "correct-horse-battery"


@pytest.fixture
def book(make_player, market):
    """Three positions from two operators (two YES, one NO) and a superuser with a password."""
    second = operator_create(name="Second Book", wallet_mode="internal")
    for op, outcome, amount in [(None, "yes", "40"), (None, "no", "30"), (second, "yes", "25")]:
        _, api = make_player(Decimal("500"), op=op)
        assert api.post("trade", buy_body(amount=amount, outcome=outcome, mid=62 if outcome == "yes" else 38)).status_code == 200
    get_user_model().objects.create_superuser(username="settler", email="settler@example.com", password=PASSWORD)
    return market


@pytest.fixture
def browser_page():
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is not installed (scripts/test installs Debian's chromium package)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(20_000)
            # The Content-Security-Policy (core.middleware) must not block anything the admin pages use.
            blocked: list[str] = []
            page.on("console", lambda message: blocked.append(message.text) if "Content Security Policy" in message.text else None)
            yield page
            assert blocked == []
        finally:
            browser.close()


def in_db_thread(fn):
    """Run fn() in a short-lived thread. Playwright's sync API keeps an asyncio loop running in the
    test's thread: Django refuses the ORM there, and its connections are per context, so a call
    made there would also open a connection nobody closes (PostgreSQL then cannot drop the test
    database)."""

    def run():
        try:
            return fn()
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(run).result()


def pay_until_complete(settlement_id) -> None:
    """What the settle_market task runs, chunk by chunk (no Celery worker runs in tests)."""
    for _ in range(100):
        if settlement_advance(settlement_id=settlement_id):
            return
    raise AssertionError("settlement did not complete")


def test_staff_resolves_a_market_from_the_admin_site(live_server, book, browser_page):
    plan = in_db_thread(lambda: settlement_plan(market_id=MARKET, action="resolve", outcome="yes"))
    assert (plan.total_positions, plan.total_winners) == (3, 2)
    page = browser_page

    page.goto(f"{live_server.url}/admin/login/?next=/admin/settlement/settlement/")
    page.fill("#id_username", "settler")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    expect(page).to_have_url(re.compile(r"/admin/settlement/settlement/$"))

    page.click("text=Settle a market")
    expect(page.locator("h1")).to_have_text("Settle a market")
    page.fill("#searchbar", "Bitcoin")
    page.press("#searchbar", "Enter")
    row = page.locator(f"tr.market-row[data-market='{MARKET}']")
    expect(row).to_contain_text(book.title)
    expect(row.locator("td.num")).to_have_text("3")
    row.locator("a.settle-yes").click()

    # The confirmation page: what will be paid and the house result, before anything happens.
    expect(page.locator("h1")).to_contain_text("Resolve YES")
    expect(page.locator("#market-id")).to_have_text(MARKET)
    expect(page.locator("#total-positions")).to_have_text(str(plan.total_positions))
    expect(page.locator("#total-winners")).to_have_text(str(plan.total_winners))
    expect(page.locator("#total-payout")).to_have_text(str(plan.total_payout))
    expect(page.locator("#total-cost-basis")).to_have_text(str(plan.total_cost_basis))
    expect(page.locator("#casino-profit")).to_have_text(str(plan.casino_profit))
    expect(page.locator("#settle-operators tr.operator-row")).to_have_count(2)
    assert not in_db_thread(Settlement.objects.exists)
    page.screenshot(path="/tmp/settlement-confirm.png", full_page=True)
    page.click("#confirm-settle")

    expect(page).to_have_url(re.compile(r"/admin/settlement/settlement/[0-9a-f-]{36}/change/$"))
    expect(page.locator("ul.messagelist")).to_contain_text("Resolve YES recorded")
    settlement = in_db_thread(lambda: Settlement.objects.select_related("requested_by").get(market_id=MARKET))
    assert settlement.requested_by.get_username() == "settler"
    if not settings.CELERY_TASK_ALWAYS_EAGER:  # the task went to Redis, where no worker listens
        expect(page.locator("#settlement-status")).to_contain_text("Settling")
        page.click("#run-payouts")
        expect(page.locator("ul.messagelist")).to_contain_text("Payout task queued")
        in_db_thread(lambda: pay_until_complete(settlement.pk))
        page.reload()

    expect(page.locator("#settlement-status")).to_contain_text("Completed")
    expect(page.locator("#settlement-progress-count")).to_have_text(f"{plan.total_winners} / {plan.total_winners}")
    expect(page.locator("#settlement-progress-amount")).to_have_text(f"{plan.total_payout} / {plan.total_payout}")
    expect(page.locator("#settlement-percent")).to_have_text("100%")
    expect(page.locator("#total-positions")).to_have_text(str(plan.total_positions))
    expect(page.locator("#total-winners")).to_have_text(str(plan.total_winners))
    expect(page.locator("#total-payout")).to_have_text(str(plan.total_payout))
    expect(page.locator("#casino-profit")).to_have_text(str(plan.casino_profit))
    expect(page.locator("#paid-amount")).to_have_text(str(plan.total_payout))
    expect(page.locator("#no-failures")).to_be_visible()
    expect(page.locator("#run-payouts")).to_have_count(0)
    page.screenshot(path=SCREENSHOT, full_page=True)

    settlement = in_db_thread(lambda: Settlement.objects.select_related("market").get(pk=settlement.pk))
    assert settlement.status == "completed" and settlement.paid_amount == plan.total_payout
    assert settlement.market.status == "resolved"
