"""Request ids end to end: the id a request arrives with (or one made up for it) is echoed back,
sent to the operator's wallet server on every call made for it, carried by the Celery tasks it
enqueues (their log lines and wallet calls), and found in every log line, structlog's and the
standard library's alike (house.*, Django)."""

import contextlib
import io
import json
import logging
import uuid

import pytest
import structlog
from celery import shared_task, signals
from celery.app.trace import build_tracer

from config.celery import app as celery_app
from core.logging_setup import JSONFormatter
from core.middleware import request_id_current
from core.task_request_ids import HEADER
from settlement.models import Settlement
from tests.conftest import MARKET, buy_body
from tests.test_s2s_wallet import S2SWorld
from wallets.models import OperationStatus, WalletOperation

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("no_rate_limits", "no_velocity_limits")]


@pytest.fixture
def world(market, settings):
    settings.HOUSE_WALLET_RETRY_BASE_SECONDS = 0
    w = S2SWorld()
    yield w
    w.stop()


@pytest.fixture
def log_lines():
    """What the configured console handler (settings.LOGGING) writes, parsed: one JSON object a line."""
    handler = next(h for h in logging.getLogger().handlers if isinstance(h.formatter, JSONFormatter))
    stream = io.StringIO()
    previous = handler.setStream(stream)

    def lines() -> list[dict]:
        return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]

    try:
        yield lines
    finally:
        handler.setStream(previous)


@contextlib.contextmanager
def published_tasks():
    """Tasks go to the broker (not run eagerly, even without Redis); yields the (name, headers, body)
    of every message published meanwhile."""
    published = []

    def capture(sender=None, headers=None, body=None, **kwargs):
        published.append((sender, dict(headers), body))

    eager, celery_app.conf.task_always_eager = celery_app.conf.task_always_eager, False
    signals.before_task_publish.connect(capture, weak=False)
    try:
        yield published
    finally:
        signals.before_task_publish.disconnect(capture)
        celery_app.conf.task_always_eager = eager


def run_as_worker(name: str, headers: dict, body) -> None:
    """Run a published message the way a worker does: its headers become the task request's attributes."""
    args, kwargs, _ = body
    tracer = build_tracer(name, celery_app.tasks[name], eager=False, propagate=True, app=celery_app)
    tracer(headers["id"], args, kwargs, {**headers, "ignore_result": True, "delivery_info": {}})


@shared_task
def request_id_probe() -> str | None:
    """The request id a task runs under."""
    return request_id_current()


def test_a_trade_on_an_s2s_operator_sends_the_request_id_to_the_wallet_server(world):
    _, api = world.player()
    response = api.post("trade", buy_body(), headers={"X-Request-Id": "abc-123"})
    assert response.status_code == 200, response.content
    assert response["X-Request-Id"] == "abc-123"
    received = world.server.request_ids
    assert "debit" in [entry.endpoint for entry in received]
    assert {entry.request_id for entry in received} == {"abc-123"}


def test_calls_for_different_requests_carry_their_own_ids(world):
    _, api = world.player()
    api.post("trade", buy_body(amount="5"), headers={"X-Request-Id": "first-1"})
    api.post("trade", buy_body(amount="5"), headers={"X-Request-Id": "second-2"})
    debits = [entry.request_id for entry in world.server.request_ids if entry.endpoint == "debit"]
    assert debits == ["first-1", "second-2"]


@pytest.mark.parametrize("incoming", ["has spaces", "x" * 65, "semi;colon", ""])
def test_an_invalid_incoming_id_is_replaced_by_a_generated_one_everywhere(world, incoming):
    _, api = world.player()
    response = api.post("trade", buy_body(), headers={"X-Request-Id": incoming})
    assert response.status_code == 200, response.content
    generated = response["X-Request-Id"]
    assert generated != incoming and str(uuid.UUID(generated)) == generated
    assert {entry.request_id for entry in world.server.request_ids} == {generated}


def test_a_wallet_call_outside_any_request_gets_its_own_id(world):
    player, _ = world.player()
    from wallets.adapters import wallet_adapter_for

    assert request_id_current() is None
    wallet_adapter_for(world.operator).balance(player=player)
    wallet_adapter_for(world.operator).balance(player=player)
    first, second = (entry.request_id for entry in world.server.request_ids)
    assert first != second and str(uuid.UUID(first)) == first


def test_log_lines_during_a_request_carry_its_id_structlog_and_stdlib_alike(world, log_lines, staff_api):
    _, api = world.player()
    assert api.post("trade", buy_body(), headers={"X-Request-Id": "abc-123"}).status_code == 200
    refused = api.post("trade", {**buy_body(), "side": "hold"}, headers={"X-Request-Id": "bad-req-7"})
    assert refused.status_code == 400
    assert staff_api.patch("admin/risk", {"global": {"tradingEnabled": True}}, headers={"X-Request-Id": "risk-9"}).status_code == 200

    lines = log_lines()
    wallet_calls = [line for line in lines if line.get("event") == "wallet_call"]
    assert wallet_calls and {line["request_id"] for line in wallet_calls} == {"abc-123"}
    assert wallet_calls[-1]["logger"] == "house.wallet.s2s" and wallet_calls[-1]["endpoint"] == "debit"
    # Django's own line for the 400, written after the middleware has returned.
    django_lines = [line for line in lines if line["logger"] == "django.request"]
    assert [(line["event"], line["level"], line["request_id"]) for line in django_lines] == [
        ("Bad Request: /api/casino/trade", "warning", "bad-req-7")
    ]
    # A house.* standard-library logger.
    risk_lines = [line for line in lines if line["logger"] == "house.risk"]
    assert len(risk_lines) == 1 and risk_lines[0]["request_id"] == "risk-9"
    assert risk_lines[0]["event"].startswith("risk configuration changed by staff:risk-desk")
    # Outside a request nothing is bound any more.
    assert request_id_current() is None
    logging.getLogger("house.test").warning("between requests")
    assert "request_id" not in log_lines()[-1]


def test_a_stdlib_record_carries_the_request_id_for_any_handler(caplog):
    structlog.contextvars.bind_contextvars(request_id="rec-42")
    try:
        with caplog.at_level(logging.INFO, logger="house"):
            logging.getLogger("house.wallet.tasks").info("hello")
    finally:
        structlog.contextvars.clear_contextvars()
    assert [(record.name, record.request_id) for record in caplog.records] == [("house.wallet.tasks", "rec-42")]


def test_a_task_enqueued_in_a_request_carries_its_id_to_the_worker(world, log_lines):
    """Published to the broker (not eager) with the request id in its headers; then run the way a
    worker runs a message (headers become the task request's attributes) in a clean context: its
    wallet call and its log lines carry the id of the request that enqueued it."""
    with published_tasks() as published:
        player, api = world.player()
        world.server.add_fault("http_error", endpoint="debit", http_status=500, apply="before", times=1)
        world.server.add_fault("timeout", endpoint="rollback", seconds=0.6, apply="never", times=1)
        assert api.post("trade", buy_body(), headers={"X-Request-Id": "abc-123"}).status_code == 502
    rollback = WalletOperation.objects.get(kind="rollback")
    assert rollback.status == OperationStatus.UNKNOWN

    [(name, headers, body)] = published
    assert name == "wallets.tasks.wallet_operation_retry" and headers[HEADER] == "abc-123"
    assert request_id_current() is None  # the request is over: the "worker" starts clean
    run_as_worker(name, headers, body)

    assert WalletOperation.objects.get(pk=rollback.pk).status == OperationStatus.OK
    assert [(entry.endpoint, entry.request_id) for entry in world.server.request_ids] == [
        ("balance", "abc-123"),
        ("debit", "abc-123"),
        ("rollback", "abc-123"),  # timed out in the request
        ("rollback", "abc-123"),  # sent again by the task
    ]
    task_lines = [line for line in log_lines() if line.get("task") == name]
    assert task_lines and {line["request_id"] for line in task_lines} == {"abc-123"}
    assert request_id_current() is None  # and the worker's context is clean again after the run
    world.assert_books_balance()


def test_a_task_with_no_origin_runs_under_a_fresh_id_of_its_own():
    first = request_id_probe.apply().get()
    second = request_id_probe.apply().get()
    assert first != second and str(uuid.UUID(first)) == first
    assert request_id_current() is None


def test_an_eager_task_keeps_its_callers_id_and_gives_the_caller_its_context_back():
    structlog.contextvars.bind_contextvars(request_id="caller-1")
    try:
        assert request_id_probe.apply().get() == "caller-1"
        assert structlog.contextvars.get_contextvars() == {"request_id": "caller-1"}
        assert request_id_probe.apply(headers={HEADER: "origin-2"}).get() == "origin-2"  # the message's id wins
        assert structlog.contextvars.get_contextvars() == {"request_id": "caller-1"}
    finally:
        structlog.contextvars.clear_contextvars()


def test_the_payout_task_of_a_staff_resolve_carries_the_resolve_requests_id(world, staff_api, log_lines):
    for _ in range(2):
        _, api = world.player()
        assert api.post("trade", buy_body(), headers={"X-Request-Id": "buy-1"}).status_code == 200
    with published_tasks() as published:
        resolve = staff_api.post("resolve", {"marketId": MARKET, "outcome": "yes"}, headers={"X-Request-Id": "resolve-77"})
        assert resolve.status_code == 200, resolve.content
        for _ in range(20):  # the worker: each settle_market message, retries included, until paid
            pending = [message for message in published if message[0] == "settlement.tasks.settle_market"]
            if Settlement.objects.get().status == "completed" or not pending:
                break
            published.remove(pending[0])
            assert request_id_current() is None
            run_as_worker(*pending[0])
            assert request_id_current() is None
    assert Settlement.objects.get().status == "completed"

    credits = [entry.request_id for entry in world.server.request_ids if entry.endpoint == "credit"]
    assert credits == ["resolve-77", "resolve-77"]
    # Published from inside the task's run (the exposure rebuild after the last payout): the same id.
    assert {headers[HEADER] for _, headers, _ in published} == {"resolve-77"}
    completed = [line for line in log_lines() if line["logger"] == "house.settlement" and line["event"].endswith("completed")]
    assert [(line["request_id"], line["task"]) for line in completed] == [("resolve-77", "settlement.tasks.settle_market")]
    world.assert_books_balance()
