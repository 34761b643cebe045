"""The API docs work without internet: Swagger UI (/api/docs/) and ReDoc (/api/redoc/) render the
operations from assets the product serves itself, and the browser asks no other host for anything.

Headless Debian Chromium driven by Playwright against pytest-django's live server (static files
from the finders there); a second test collects the static files and checks WhiteNoise serves the
same assets the way gunicorn does in production (after ``collectstatic``).
"""

import os
import re
from urllib.parse import urlsplit

import pytest
from django.core.management import call_command
from django.test import Client
from playwright.sync_api import expect, sync_playwright

pytestmark = pytest.mark.django_db(transaction=True)

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
LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1", "[::1]"}
TRADE_SUMMARY = "Buy or sell shares"
SESSION_SUMMARY = "Open a player session (creates the player on first use)"


@pytest.fixture
def browser_page():
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is not installed (scripts/test installs Debian's chromium package)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(20_000)
            requested: list[str] = []
            page.on("request", lambda request: requested.append(request.url))
            failed: list[str] = []
            page.on("requestfailed", lambda request: failed.append(request.url))
            # Whatever the Content-Security-Policy (core.middleware) blocks is a failure too.
            page.on("console", lambda message: failed.append(message.text) if "Content Security Policy" in message.text else None)
            yield page, requested, failed
        finally:
            browser.close()


def _foreign(urls: list[str]) -> list[str]:
    """Requests that would leave the machine (data: and blob: URLs stay in the page)."""
    return [url for url in urls if urlsplit(url).scheme in ("http", "https", "ws", "wss") and urlsplit(url).hostname not in LOCAL_HOSTS]


def test_swagger_ui_renders_the_operations_from_local_assets(live_server, browser_page):
    page, requested, failed = browser_page
    page.goto(f"{live_server.url}/api/docs/")

    trade = page.locator("#operations-casino-casino_trade_create")
    expect(trade).to_be_visible()
    expect(trade.locator(".opblock-summary-path")).to_have_text(re.compile(r"^/api/casino/trade"))
    expect(trade.locator(".opblock-summary-description")).to_have_text(TRADE_SUMMARY)
    session = page.locator(".opblock", has=page.locator(".opblock-summary-path[data-path='/api/casino/operator/sessions']"))
    expect(session.locator(".opblock-summary-description")).to_have_text(SESSION_SUMMARY)
    # The lock icons: the document's security schemes reached the page (Authorize lists them).
    page.click("button.authorize")
    expect(page.locator(".auth-container h4", has_text="operatorKey")).to_be_visible()
    expect(page.locator(".auth-container h4", has_text="playerToken")).to_be_visible()
    expect(page.locator(".auth-container h4", has_text="staffToken")).to_be_visible()

    assert any("/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in url for url in requested)
    assert _foreign(requested) == []
    assert failed == []


def test_redoc_renders_the_operations_from_local_assets(live_server, browser_page):
    page, requested, failed = browser_page
    page.goto(f"{live_server.url}/api/redoc/")

    expect(page.locator("h2", has_text=TRADE_SUMMARY)).to_be_visible()
    # Each operation names the credential it takes.
    session = page.locator("[id='tag/casino/operation/casino_operator_sessions_create']")
    expect(session.locator("h2")).to_have_text(SESSION_SUMMARY)
    expect(session).to_contain_text("Authorizations:operatorKey")
    expect(page.locator("[id='tag/casino/operation/casino_trade_create']")).to_contain_text("Authorizations:playerToken")

    assert any("/static/drf_spectacular_sidecar/redoc/bundles/redoc.standalone.js" in url for url in requested)
    assert _foreign(requested) == []
    assert failed == []


def test_collected_static_files_serve_the_docs_assets_through_whitenoise(settings, tmp_path):
    """What gunicorn serves: ``collectstatic`` (scripts/run, the deployment steps) then WhiteNoise, no finders."""
    settings.STATIC_ROOT = str(tmp_path)
    settings.WHITENOISE_USE_FINDERS = False
    call_command("collectstatic", interactive=False, verbosity=0, ignore_patterns=["admin/*", "*.map"])
    client = Client()  # a new client loads the middleware, so WhiteNoise scans the new STATIC_ROOT
    page = client.get("/api/docs/").content.decode()
    assets = re.findall(r'(?:src|href)="(/static/[^"]+)"', page)
    # Swagger UI's start-up script is served as a file too (no inline script: the Content-Security-Policy).
    assert "<script>" not in page and '<script src="/api/docs/?script=">' in page
    assert {a.rsplit("/", 1)[-1] for a in assets} == {
        "favicon-32x32.png",
        "swagger-ui.css",
        "swagger-ui-bundle.js",
        "swagger-ui-standalone-preset.js",
    }
    redoc = re.findall(r'src="(/static/[^"]+)"', client.get("/api/redoc/").content.decode())
    assert [a.rsplit("/", 1)[-1] for a in redoc] == ["redoc-local-images.js", "redoc.standalone.js"]
    for asset in assets + redoc:
        response = client.get(asset)
        assert response.status_code == 200, asset
        assert int(response["Content-Length"]) > 0
