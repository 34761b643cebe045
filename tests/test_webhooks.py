"""Webhooks (SPEC §14) against the reference receiver over real HTTP on loopback, on real PostgreSQL:
the outbox is written with the change or not at all, deliveries are signed (Standard Webhooks) and
retried under the same webhook-id, nothing crosses operators, replay never skips an event."""

import threading
import time
import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.cache import cache
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone
from standardwebhooks import Webhook

from casino.models import Position, Trade
from casino.services.credentials import operator_create
from casino.services.trade_executor import house_wallet, house_wallet_sql
from core.events import event_record, events_replayable
from core.models import Event
from settlement.models import Payout
from tests.conftest import MARKET, Api, buy_body, decimal_json, requires_postgres
from wallets.services.debts import debt_incur
from webhooks.adapters.endpoint import WebhookClient
from webhooks.models import DeliveryStatus, WebhookDelivery, WebhookDispatchCursor, WebhookEndpoint
from webhooks.reference_receiver import ReferenceWebhookReceiver
from webhooks.services.delivery import webhooks_pump_once
from webhooks.tasks import webhooks_pump

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("no_rate_limits", "no_velocity_limits", "insecure_urls"),
    requires_postgres,
]


@pytest.fixture
def insecure_urls(settings):
    settings.WEBHOOK_ALLOW_INSECURE_URLS = True


@pytest.fixture
def receiver():
    r = ReferenceWebhookReceiver()
    r.start()
    yield r
    r.stop()


@pytest.fixture
def client():
    c = WebhookClient(timeout=1.0, concurrency=4)
    yield c
    c.close()


def wait_settled(timeout: float = 15.0) -> None:
    """Until every committed event is listable: a transaction running anywhere in the PostgreSQL
    cluster (another test process's) holds the horizon back for a moment (core.events)."""
    deadline = time.monotonic() + timeout
    while events_replayable().count() != Event.objects.count():
        assert time.monotonic() < deadline, "events not listable in time"
        time.sleep(0.02)


def pump(client, *, rounds: int = 10):
    """What the webhooks_pump task does, run here (tests run no Celery worker)."""
    wait_settled()
    for _ in range(rounds):
        taken, stats = webhooks_pump_once(client=client)
        if not taken and not stats.claimed:
            return


def delete(api: Api, path: str):
    return api.client.delete(f"/api/casino/{path}", headers=api.headers)


def subscribe(api: Api, receiver: ReferenceWebhookReceiver, events=("*",)) -> dict:
    response = api.post("operator/webhooks", {"url": receiver.url, "events": list(events)})
    assert response.status_code == 201, response.content
    body = decimal_json(response)
    receiver.secrets.append(body["secret"])
    return body


def _events(type_: str | None = None, operator=None):
    rows = Event.objects.order_by("id")
    if type_:
        rows = rows.filter(type=type_)
    if operator is not None:
        rows = rows.filter(operator_id=operator.operator.pk)
    return list(rows)


# --- delivery ----------------------------------------------------------------------------------


def test_a_trade_is_delivered_signed_with_the_trade_record_and_the_request_id(
    operator, operator_api, make_player, market, receiver, client
):
    created = subscribe(operator_api, receiver)
    assert created["secret"].startswith("whsec_") and created["events"] == ["*"] and created["url"] == receiver.url
    player, api = make_player(Decimal("100"), external_id="casino-42")
    response = api.post("trade", buy_body("25.00"), headers={"X-Request-Id": "req-trade-1"})
    assert response.status_code == 200
    trade_id = decimal_json(response)["tradeId"]
    pump(client)
    [delivery] = receiver.delivered()
    event = Event.objects.get()
    assert delivery.verified and delivery.msg_id == f"evt_{event.pk}"
    assert delivery.request_id == "req-trade-1"
    assert Webhook(created["secret"]).verify(
        delivery.body, {"webhook-id": delivery.msg_id, "webhook-timestamp": delivery.timestamp, "webhook-signature": delivery.signature}
    )
    body = delivery.json()
    assert set(body) == {"type", "timestamp", "data"} and body["type"] == "trade.executed"
    trade = Trade.objects.get(pk=trade_id)
    data = body["data"]
    assert data["id"] == trade_id and data["playerId"] == "casino-42" and data["userId"] == str(player.pk) == data["user_id"]
    assert Decimal(str(data["cost"])) == trade.cost == Decimal("25.00")
    assert Decimal(str(data["balance_after"])) == Decimal("75.00") and data["side"] == "buy" and data["market_id"] == MARKET
    assert data["s2s_transaction_id"] is None
    assert WebhookDelivery.objects.get().status == DeliveryStatus.DELIVERED


def test_failed_deliveries_are_retried_with_the_same_webhook_id_backing_off(operator_api, make_player, market, receiver, client):
    subscribe(operator_api, receiver)
    _, api = make_player(Decimal("100"))
    assert api.post("trade", buy_body("10")).status_code == 200
    receiver.fail_next(2)
    waits = []
    for _ in range(3):
        before = timezone.now()
        pump(client)
        delivery = WebhookDelivery.objects.get()
        if delivery.status == DeliveryStatus.DELIVERED:
            break
        waits.append((delivery.next_attempt_at - before).total_seconds())
        WebhookDelivery.objects.update(next_attempt_at=timezone.now())  # the clock moves on
    assert delivery.status == DeliveryStatus.DELIVERED and delivery.attempts == 3
    assert 0 < waits[0] <= 10.5 and 10 < waits[1] <= 20.5  # first retry within 10 s, then doubling
    ids = {d.msg_id for d in receiver.deliveries}
    assert len(receiver.deliveries) == 3 and len(ids) == 1 and [d.answered for d in receiver.deliveries] == [500, 500, 200]
    assert all(d.verified for d in receiver.deliveries)


def test_a_timeout_is_a_failure_retried_later(operator_api, make_player, market, receiver, settings):
    subscribe(operator_api, receiver)
    _, api = make_player(Decimal("100"))
    assert api.post("trade", buy_body("10")).status_code == 200
    receiver.delay(1.0)
    quick = WebhookClient(timeout=0.2, concurrency=2)
    try:
        pump(quick, rounds=1)
    finally:
        quick.close()
    delivery = WebhookDelivery.objects.get()
    assert delivery.status == DeliveryStatus.PENDING and delivery.attempts == 1 and delivery.last_error == "timeout"
    assert WebhookEndpoint.objects.get().failing_since is not None


# --- the outbox and its transaction --------------------------------------------------------------


def test_no_event_survives_a_rolled_back_transaction(operator):
    with pytest.raises(RuntimeError), transaction.atomic():
        event_record(operator_id=operator.operator.pk, type="trade.executed", data={"x": 1})
        raise RuntimeError("the change failed")
    assert not Event.objects.exists()
    with pytest.raises(AssertionError):  # outside a transaction: refused, never written alone
        event_record(operator_id=operator.operator.pk, type="trade.executed", data={})
    with pytest.raises(ValueError), transaction.atomic():
        event_record(operator_id=operator.operator.pk, type="trade.exploded", data={})


def test_a_trade_failing_after_its_event_was_written_leaves_no_event(make_player, market, monkeypatch):
    """The ORM path writes the event, then fails inside the transaction: neither the trade nor the event."""
    _, api = make_player(Decimal("100"))

    def fast_path_declines(ctx, idempotency):
        raise house_wallet_sql.ExposureNeedsLock()

    def fail(ctx):
        assert Event.objects.filter(type="trade.executed").exists()  # written, inside the transaction
        raise RuntimeError("crash after the outbox insert")

    monkeypatch.setattr(house_wallet_sql, "steps_7_to_12", fast_path_declines)
    monkeypatch.setattr(house_wallet, "_result", fail)
    assert api.post("trade", buy_body("10")).status_code == 500  # the API's exception handler answers it
    assert not Trade.objects.exists() and not Event.objects.exists()


def test_the_one_statement_trade_rolled_back_by_a_lost_race_writes_its_event_once(make_player, market, monkeypatch):
    """The fast path's single statement holds the event CTE; a position changed under it refuses the
    statement (nothing of it is written) and the retry writes one trade and one event."""
    player, api = make_player(Decimal("100"))
    assert api.post("trade", buy_body("10")).status_code == 200
    real = house_wallet_sql.position_after_trade
    raced = {"left": 1}

    def racing(position, **kwargs):
        if raced["left"] and position is not None:
            raced["left"] -= 1
            t = threading.Thread(
                target=lambda: (Position.objects.filter(pk=position.id).update(version=F("version") + 1), connection.close())
            )
            t.start()
            t.join()
        return real(position, **kwargs)

    monkeypatch.setattr(house_wallet_sql, "position_after_trade", racing)
    assert api.post("trade", buy_body("10")).status_code == 200
    assert raced["left"] == 0
    assert Trade.objects.count() == 2 and len(_events("trade.executed")) == 2
    assert {e.data["id"] for e in _events("trade.executed")} == {str(t.pk) for t in Trade.objects.all()}


def test_a_refused_trade_writes_no_event(make_player, market):
    _, api = make_player(Decimal("5"))
    assert api.post("trade", buy_body("25")).status_code == 400
    assert not Event.objects.exists()


def test_a_trade_on_each_wallet_kind_emits_exactly_one_trade_executed(operator, make_player, market, monkeypatch, settings):
    from tests.test_s2s_wallet import S2SWorld

    settings.HOUSE_WALLET_RETRY_BASE_SECONDS = 0
    _, api = make_player(Decimal("100"))
    assert api.post("trade", buy_body("10")).status_code == 200  # internal, the one-statement path
    monkeypatch.setattr(house_wallet_sql, "steps_7_to_12", lambda ctx, idem: (_ for _ in ()).throw(house_wallet_sql.ExposureNeedsLock()))
    assert api.post("trade", buy_body("10")).status_code == 200  # internal, the ORM path
    monkeypatch.undo()
    world = S2SWorld()
    try:
        s2s_player, s2s_api = world.player(Decimal("100"), name="s2s-dave")
        response = s2s_api.post("trade", buy_body("10"))
        assert response.status_code == 200, response.content
    finally:
        world.stop()
    events = _events("trade.executed")
    assert len(events) == 3 == Trade.objects.count()
    assert sorted(e.data["id"] for e in events) == sorted(str(t.pk) for t in Trade.objects.all())
    s2s_event = next(e for e in events if e.operator_id == world.operator.pk)
    s2s_trade = Trade.objects.get(player=s2s_player)
    assert s2s_event.data["playerId"] == "s2s-dave" and s2s_event.data["s2s_transaction_id"] == str(s2s_trade.wallet_transaction_id)
    assert [e.operator_id for e in events].count(operator.operator.pk) == 2


# --- tenancy and replay --------------------------------------------------------------------------


def test_no_event_crosses_operators(operator_api, make_player, market, receiver, client):
    other = operator_create(name=f"other-{uuid.uuid4().hex[:6]}", wallet_mode="internal")
    other_api = Api({"X-Operator-Key": other.api_key})
    other_receiver = ReferenceWebhookReceiver()
    other_receiver.start()
    try:
        subscribe(operator_api, receiver)
        other_hook = subscribe(other_api, other_receiver)
        _, api = make_player(Decimal("100"))
        assert api.post("trade", buy_body("10")).status_code == 200
        pump(client)
        assert len(receiver.delivered()) == 1 and other_receiver.deliveries == []
    finally:
        other_receiver.stop()
    wait_settled()
    assert decimal_json(other_api.get("operator/events")) == {"events": [], "nextCursor": None}
    assert len(decimal_json(operator_api.get("operator/events"))["events"]) == 1
    # Another operator's webhook id: 404, as if it did not exist.
    assert delete(operator_api, f"operator/webhooks/{other_hook['id']}").status_code == 404
    response = operator_api.post(f"operator/webhooks/{other_hook['id']}/rotate-secret")
    assert response.status_code == 404 and decimal_json(response) == {"error": "Webhook not found", "code": "not_found"}
    assert delete(operator_api, "operator/webhooks/not-a-uuid").status_code == 404
    assert WebhookEndpoint.objects.filter(pk=other_hook["id"]).exists()


def test_replay_lists_events_after_an_id_filtered_and_paged(operator_api, make_player, market):
    _, api = make_player(Decimal("100"))
    trades = [decimal_json(api.post("trade", buy_body("5")))["tradeId"] for _ in range(3)]
    with transaction.atomic():
        debt_incur(
            player_id=Trade.objects.first().player_id, currency="USD", amount=Decimal("1.50"), reference_id=uuid.uuid4(), description="t"
        )
    wait_settled()
    body = decimal_json(operator_api.get("operator/events"))
    assert [e["type"] for e in body["events"]] == ["trade.executed"] * 3 + ["player.debt_changed"]
    assert [e["data"]["id"] for e in body["events"][:3]] == trades and body["nextCursor"] is None
    assert body["events"][3]["data"]["debt"] == Decimal("1.50")
    first = body["events"][0]["id"]
    after = decimal_json(operator_api.get("operator/events", {"after": first}))["events"]
    assert [e["id"] for e in after] == [e["id"] for e in body["events"][1:]]
    assert (
        decimal_json(operator_api.get("operator/events", {"after": first.removeprefix("evt_"), "type": "player.debt_changed"}))["events"]
        == body["events"][3:]
    )
    page = decimal_json(operator_api.get("operator/events", {"limit": "2"}))
    rest = decimal_json(operator_api.get("operator/events", {"limit": "2", "cursor": page["nextCursor"]}))
    assert [e["id"] for e in page["events"] + rest["events"]] == [e["id"] for e in body["events"]] and rest["nextCursor"] is None
    bad = operator_api.get("operator/events", {"type": "trade.nope"})
    assert bad.status_code == 400 and decimal_json(bad)["code"] == "unknown_event_type"
    assert decimal_json(operator_api.get("operator/events", {"after": "evt_x"})) == {"error": "Invalid after", "code": "invalid_after"}
    Event.objects.update(created_at=timezone.now() - timedelta(days=31))  # out of the 30-day window
    assert decimal_json(operator_api.get("operator/events"))["events"] == []


def test_replay_never_skips_an_event_committed_after_a_larger_id(operator, operator_api):
    """A transaction takes id N and commits after one that took N+1: replay shows neither until both
    are settled, so a client that stored the last id it saw misses nothing."""
    started, release = threading.Event(), threading.Event()

    def slow_writer():
        with transaction.atomic():
            event_record(operator_id=operator.operator.pk, type="market.suspended", data={"n": "first"})
            started.set()
            release.wait(10)
        connection.close()

    writer = threading.Thread(target=slow_writer)
    writer.start()
    assert started.wait(10)
    with transaction.atomic():
        event_record(operator_id=operator.operator.pk, type="market.resumed", data={"n": "second"})
    [second] = Event.objects.all()  # committed, with the larger id; the first is not committed yet
    assert second.data == {"n": "second"}
    assert decimal_json(operator_api.get("operator/events"))["events"] == []
    release.set()
    writer.join()
    wait_settled()
    seen = decimal_json(operator_api.get("operator/events"))["events"]
    assert [e["data"]["n"] for e in seen] == ["first", "second"]


def test_a_smaller_id_committed_later_is_listed_after_the_last_id_seen(operator, operator_api):
    """The older transaction takes the larger id and commits first; the younger one took the smaller id
    and commits later: it is listed after the event the client already saw, not skipped."""
    op = operator.operator.pk
    early_has_xid, late_wrote, early_go, late_go = (threading.Event() for _ in range(4))

    def early():
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_current_xact_id()")  # the older transaction
            early_has_xid.set()
            assert late_wrote.wait(10)
            event_record(operator_id=op, type="market.suspended", data={"n": "early"})  # the larger id
            assert early_go.wait(10)
        connection.close()

    def late():
        assert early_has_xid.wait(10)
        with transaction.atomic():
            event_record(operator_id=op, type="market.resumed", data={"n": "late"})  # the smaller id
            late_wrote.set()
            assert late_go.wait(10)
        connection.close()

    threads = [threading.Thread(target=early), threading.Thread(target=late)]
    for t in threads:
        t.start()
    assert late_wrote.wait(10)
    early_go.set()
    threads[0].join(10)
    wait_until_listed = time.monotonic() + 15
    while not (seen := decimal_json(operator_api.get("operator/events"))["events"]):  # another test process's transaction
        assert time.monotonic() < wait_until_listed
        time.sleep(0.02)
    assert [e["data"]["n"] for e in seen] == ["early"]
    late_go.set()
    threads[1].join(10)
    wait_settled()
    after = decimal_json(operator_api.get("operator/events", {"after": seen[-1]["id"]}))["events"]
    assert [e["data"]["n"] for e in after] == ["late"]
    assert int(after[0]["id"].removeprefix("evt_")) < int(seen[-1]["id"].removeprefix("evt_"))


# --- endpoints: rotation, SSRF, disabling ---------------------------------------------------------


def test_rotation_signs_with_both_secrets_for_24_hours(operator_api, make_player, market, receiver, client):
    created = subscribe(operator_api, receiver)
    response = operator_api.post(f"operator/webhooks/{created['id']}/rotate-secret")
    assert response.status_code == 200
    rotated = decimal_json(response)
    assert rotated["secret"].startswith("whsec_") and rotated["secret"] != created["secret"] and rotated["id"] == created["id"]
    receiver.secrets.append(rotated["secret"])
    listed = decimal_json(operator_api.get("operator/webhooks"))["webhooks"]
    assert listed[0]["previousSecretExpiresAt"] == rotated["previousSecretExpiresAt"] and "secret" not in listed[0]
    _, api = make_player(Decimal("100"))
    assert api.post("trade", buy_body("10")).status_code == 200
    pump(client)
    [delivery] = receiver.delivered()
    assert len(delivery.signature.split(" ")) == 2 and all(s.startswith("v1,") for s in delivery.signature.split(" "))
    assert delivery.verified_by == [0, 1]  # the old secret and the new one both verify
    # After the overlap only the new secret signs.
    WebhookEndpoint.objects.update(previous_secret_expires_at=timezone.now() - timedelta(seconds=1))
    assert api.post("trade", buy_body("10")).status_code == 200
    pump(client)
    latest = receiver.delivered()[-1]
    assert len(latest.signature.split(" ")) == 1 and latest.verified_by == [1]


def test_secrets_are_sealed_at_rest(operator_api, receiver):
    created = subscribe(operator_api, receiver)
    stored = WebhookEndpoint.objects.get()
    assert created["secret"] not in stored.secret_sealed and created["secret"][6:] not in stored.secret_sealed
    assert stored.secret_sealed.startswith("f1:")


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://example.com/hook", "https only"),
        ("https://127.0.0.1/hook", "host resolves to a loopback, private, link-local or reserved address"),
        ("https://localhost:8443/hook", "host resolves to a loopback, private, link-local or reserved address"),
        ("https://10.1.2.3/hook", "host resolves to a loopback, private, link-local or reserved address"),
        ("https://192.168.0.10/hook", "host resolves to a loopback, private, link-local or reserved address"),
        ("https://169.254.169.254/latest/meta-data", "host resolves to a loopback, private, link-local or reserved address"),
        ("https://[::1]/hook", "host resolves to a loopback, private, link-local or reserved address"),
        ("ftp://example.com/hook", "not an http(s) URL"),
        ("https://user:pw@example.com/hook", "credentials in the URL"),
    ],
)
def test_unsafe_urls_are_refused_with_400(operator_api, settings, url, reason):
    settings.WEBHOOK_ALLOW_INSECURE_URLS = False
    response = operator_api.post("operator/webhooks", {"url": url, "events": ["*"]})
    assert response.status_code == 400
    assert decimal_json(response) == {"error": f"Webhook URL refused: {reason}", "code": "webhook_url_refused"}
    assert not WebhookEndpoint.objects.exists()


def test_bad_subscriptions_are_400(operator_api, receiver):
    cases = [
        ({"url": receiver.url, "events": ["trade.executed", "trade.nope"]}, "unknown_event_type"),
        ({"url": receiver.url, "events": []}, "invalid_events"),
        ({"url": receiver.url, "events": "*"}, "invalid_events"),
        ({"url": receiver.url, "events": ["*", "trade.executed"]}, "invalid_events"),
        ({"url": receiver.url}, "missing_fields"),
    ]
    for body, code in cases:
        response = operator_api.post("operator/webhooks", body)
        assert response.status_code == 400 and decimal_json(response)["code"] == code, body
    response = operator_api.post("operator/webhooks", {"url": receiver.url, "events": ["payout.paid", "trade.executed"]})
    assert response.status_code == 201 and decimal_json(response)["events"] == ["payout.paid", "trade.executed"]


def test_the_delivery_checks_the_address_again(operator_api, make_player, market, receiver, client, settings):
    """Created while insecure URLs were allowed, then the rule is on: the loopback target is not called."""
    subscribe(operator_api, receiver)
    settings.WEBHOOK_ALLOW_INSECURE_URLS = False
    _, api = make_player(Decimal("100"))
    assert api.post("trade", buy_body("10")).status_code == 200
    pump(client, rounds=1)
    delivery = WebhookDelivery.objects.get()
    assert receiver.deliveries == [] and delivery.status == DeliveryStatus.PENDING
    assert delivery.last_error.startswith("Webhook URL refused")


def test_only_subscribed_types_are_delivered_and_a_deleted_endpoint_gets_nothing(operator_api, make_player, market, receiver, client):
    hook = operator_api.post("operator/webhooks", {"url": receiver.url, "events": ["payout.paid"]})
    receiver.secrets.append(decimal_json(hook)["secret"])
    _, api = make_player(Decimal("100"))
    assert api.post("trade", buy_body("10")).status_code == 200
    pump(client)
    assert receiver.deliveries == [] and not WebhookDelivery.objects.exists()
    assert WebhookDispatchCursor.objects.get().event_id == Event.objects.get().pk  # fanned out to nobody
    all_events = subscribe(operator_api, receiver)
    assert delete(operator_api, f"operator/webhooks/{all_events['id']}").status_code == 204
    assert api.post("trade", buy_body("10")).status_code == 200
    pump(client)
    assert receiver.deliveries == []
    assert [w["events"] for w in decimal_json(operator_api.get("operator/webhooks"))["webhooks"]] == [["payout.paid"]]


def test_an_endpoint_failing_for_3_days_is_disabled_and_shown_to_staff(operator_api, make_player, market, receiver, client, admin_client):
    created = subscribe(operator_api, receiver)
    receiver.answer(500)
    _, api = make_player(Decimal("100"))
    assert api.post("trade", buy_body("10")).status_code == 200
    pump(client)
    endpoint = WebhookEndpoint.objects.get()
    assert endpoint.enabled and endpoint.failing_since is not None
    # Three days of failures later (the clock moved): the next failure disables it.
    WebhookEndpoint.objects.update(failing_since=timezone.now() - timedelta(days=3, minutes=1))
    WebhookDelivery.objects.update(next_attempt_at=timezone.now())
    pump(client)
    endpoint.refresh_from_db()
    assert not endpoint.enabled and "Failing for 3 days" in endpoint.disabled_reason
    assert WebhookDelivery.objects.get().status == DeliveryStatus.FAILED
    [listed] = decimal_json(operator_api.get("operator/webhooks"))["webhooks"]
    assert listed["id"] == created["id"] and listed["enabled"] is False and listed["disabledReason"].startswith("Failing for 3 days")
    page = admin_client.get("/admin/webhooks/webhookendpoint/")
    assert page.status_code == 200 and b"DISABLED" in page.content and b"disabled (failing for 3 days" in page.content
    assert admin_client.get(f"/admin/webhooks/webhookendpoint/{created['id']}/change/").status_code == 200
    assert b"endpoint disabled" in admin_client.get("/admin/webhooks/webhookdelivery/").content
    assert b"trade.executed" in admin_client.get("/admin/core/event/").content
    # A disabled endpoint gets nothing more.
    receiver.answer(200)
    assert api.post("trade", buy_body("10")).status_code == 200
    pump(client)
    assert receiver.delivered() == []


def test_a_delivery_is_given_up_three_days_after_its_event(operator_api, make_player, market, receiver, client):
    subscribe(operator_api, receiver)
    receiver.answer(503)
    _, api = make_player(Decimal("100"))
    assert api.post("trade", buy_body("10")).status_code == 200
    Event.objects.update(created_at=timezone.now() - timedelta(days=3) + timedelta(seconds=5))
    pump(client)
    delivery = WebhookDelivery.objects.get()
    assert delivery.status == DeliveryStatus.FAILED and delivery.attempts == 1 and delivery.last_status_code == 503


def test_admin_creates_an_endpoint_showing_the_secret_once(admin_client, operator, receiver):
    response = admin_client.post(
        "/admin/webhooks/webhookendpoint/add/",
        {"operator": operator.operator.pk, "url": receiver.url, "event_types": "trade.executed"},
        follow=True,
    )
    assert response.status_code == 200
    endpoint = WebhookEndpoint.objects.get()
    assert endpoint.events == ["trade.executed"]
    assert b"whsec_" in response.content
    refused = admin_client.post(
        "/admin/webhooks/webhookendpoint/add/", {"operator": operator.operator.pk, "url": receiver.url, "event_types": "nope"}
    )
    assert refused.status_code == 200 and b"Unknown event type" in refused.content and WebhookEndpoint.objects.count() == 1


# --- settlement and the other producers ----------------------------------------------------------


def test_a_settlement_emits_payout_paid_per_payout_and_settlement_completed(
    operator, operator_api, make_player, market, staff_api, receiver, client
):
    from tests.test_settlement import _settle_all

    subscribe(operator_api, receiver)
    winners = [make_player(Decimal("100"), external_id=f"w{i}") for i in range(3)]
    loser = make_player(Decimal("100"), external_id="l0")
    for _, api in winners:
        assert api.post("trade", buy_body("10")).status_code == 200
    assert loser[1].post("trade", buy_body("10", outcome="no", mid=38)).status_code == 200
    assert staff_api.post("resolve", {"marketId": MARKET, "outcome": "yes", "action": "resolve"}).status_code == 200
    _settle_all()
    paid = _events("payout.paid")
    payouts = Payout.objects.filter(amount__gt=0)
    assert len(paid) == payouts.count() == 3
    assert sorted(e.data["playerId"] for e in paid) == ["w0", "w1", "w2"]
    assert {e.data["payoutId"]: Decimal(str(e.data["amount"])) for e in paid} == {str(p.pk): p.amount for p in payouts}
    [completed] = _events("settlement.completed")
    assert completed.data["payouts"] == 3 and completed.data["settlementId"] == str(Payout.objects.first().settlement_id)
    assert Decimal(str(completed.data["totalPaid"])) == sum(p.amount for p in payouts)
    [closed] = _events("market.closed")
    assert closed.data["marketId"] == MARKET and closed.data["reason"] == "settlement:resolve"
    pump(client)
    delivered = [d.json()["type"] for d in receiver.delivered()]
    assert sorted(delivered) == sorted(["trade.executed"] * 4 + ["market.closed"] + ["payout.paid"] * 3 + ["settlement.completed"])


def test_market_suspension_and_resumption_are_told_to_operators_with_positions(operator, make_player, market):
    from casino.services.market_state import market_resume, market_suspend

    now = timezone.now()
    assert market_suspend(market_id=MARKET, code="feed_stale", at=now)  # no position anywhere yet: no one to tell
    assert market_resume(market_id=MARKET, at=now)
    assert not Event.objects.exists()
    _, api = make_player(Decimal("100"))
    assert api.post("trade", buy_body("10")).status_code == 200
    assert market_suspend(market_id=MARKET, code="price_jump", at=now)
    assert market_resume(market_id=MARKET, at=now)
    events = [(e.type, e.data["reason"], e.operator_id) for e in _events() if e.type.startswith("market.")]
    assert events == [("market.suspended", "price_jump", operator.operator.pk), ("market.resumed", "price_jump", operator.operator.pk)]


def test_debt_changes_are_events_with_the_new_debt(operator, make_player):
    player, _ = make_player()
    with transaction.atomic():
        debt_incur(player_id=player.pk, currency="USD", amount=Decimal("3.10"), reference_id=uuid.uuid4(), description="reversal")
    [event] = _events("player.debt_changed")
    assert event.operator_id == operator.operator.pk
    assert event.data["debt"] == Decimal("3.10") and event.data["change"] == Decimal("3.10") and event.data["kind"] == "incurred"
    assert event.data["playerId"] == player.external_id and event.data["userId"] == str(player.pk)


@pytest.fixture
def s2s_world(market, settings):
    from tests.test_s2s_wallet import S2SWorld

    settings.HOUSE_WALLET_RETRY_BASE_SECONDS = 0
    world = S2SWorld()
    yield world
    world.stop()


def test_an_s2s_sell_finished_by_recovery_emits_its_trade_once(s2s_world, monkeypatch):
    from casino.services.trade_executor import operator_wallet
    from tests.test_s2s_wallet import SimulatedCrash
    from wallets.tasks import recover_stalled

    player, api = s2s_world.player(name="s2s-erin")
    assert api.post("trade", buy_body("64.00")).status_code == 200
    real = operator_wallet._record_remote_trade

    def crash_on_sell(operation, **kwargs):
        if operation.kind == "credit":
            raise SimulatedCrash()  # the process dies after the operator applied the credit
        return real(operation, **kwargs)

    monkeypatch.setattr(operator_wallet, "_record_remote_trade", crash_on_sell)
    with pytest.raises(SimulatedCrash):
        api.post("trade", {"marketId": MARKET, "side": "sell", "outcome": "yes", "amount": 25, "midPrice": 62})
    monkeypatch.undo()
    assert [e.data["side"] for e in _events("trade.executed")] == ["buy"]
    recover_stalled(older_than_seconds=0)
    recover_stalled(older_than_seconds=0)  # again: nothing more
    events = _events("trade.executed")
    assert [e.data["side"] for e in events] == ["buy", "sell"]
    sell = Trade.objects.get(side="sell")
    assert events[1].data["id"] == str(sell.pk) and events[1].data["playerId"] == "s2s-erin"


def test_an_operation_flagged_for_manual_handling_is_an_event(s2s_world, settings):
    from wallets.models import OperationStatus, WalletOperation
    from wallets.services.operations import operation_settle

    player, api = s2s_world.player(name="s2s-frank")
    s2s_world.server.add_fault("http_error", endpoint=["debit", "rollback"], http_status=500, apply="before")
    assert api.post("trade", buy_body()).status_code == 502
    rollback = WalletOperation.objects.get(kind="rollback")
    settings.HOUSE_WALLET_MANUAL_AFTER_SECONDS = 0
    operation_settle(operation=rollback)
    rollback.refresh_from_db()
    assert rollback.status == OperationStatus.MANUAL
    [event] = _events("wallet.manual_intervention")
    assert event.operator_id == s2s_world.operator.pk
    assert event.data["transactionId"] == str(rollback.pk) and event.data["kind"] == "rollback" and event.data["playerId"] == "s2s-frank"
    assert not _events("trade.executed")  # the trade was compensated: it never happened


def test_sealed_secrets_open_only_unaltered_and_under_a_known_key(settings):
    from core.crypto import SecretUnreadable, secret_open, secret_seal

    settings.HOUSE_SECRETS_KEY = "key-A-of-at-least-thirty-two-characters"
    sealed = secret_seal("whsec_c2VjcmV0")
    assert sealed != secret_seal("whsec_c2VjcmV0")  # a fresh nonce each time
    assert secret_open(sealed) == "whsec_c2VjcmV0"
    tampered = sealed[:-6] + ("A" if sealed[-6] != "A" else "B") + sealed[-5:]
    with pytest.raises(SecretUnreadable):
        secret_open(tampered)
    settings.HOUSE_SECRETS_KEY = "key-B-of-at-least-thirty-two-characters"
    with pytest.raises(SecretUnreadable):
        secret_open(sealed)  # sealed under a key this process no longer has
    settings.HOUSE_SECRETS_KEY_PREVIOUS = "key-A-of-at-least-thirty-two-characters"
    assert secret_open(sealed) == "whsec_c2VjcmV0"  # rotation: the previous key still opens it


def test_the_pump_task_delivers(operator_api, make_player, market, receiver):
    from webhooks.tasks import dispatch_kick

    subscribe(operator_api, receiver)
    _, api = make_player(Decimal("100"))
    assert api.post("trade", buy_body("10")).status_code == 200  # its commit kicked the (absent) worker: no harm
    dispatch_kick()
    wait_settled()
    assert webhooks_pump.apply().get() == {"dispatched": 1, "delivered": 1, "failed": 0}
    assert [d.json()["type"] for d in receiver.delivered()] == ["trade.executed"]


def test_one_pump_is_scheduled_while_one_is_scheduled_or_running(operator_api, make_player, market, receiver, settings):
    """Kicks from every process schedule a pump only when none holds the flag (Redis, shared by the
    processes): under steady trading each process used to queue four pumps a second while each pump
    ran its full minute. Counted on the real broker's queue."""
    import redis

    from webhooks import tasks

    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    queued = lambda: broker.llen("webhooks")  # noqa: E731 - the webhooks queue's list on the Redis broker

    def kick_from_a_new_process():
        tasks._pump_starts_at = 0.0  # a process that has kicked nothing yet
        tasks.dispatch_kick()

    subscribe(operator_api, receiver)
    _, api = make_player(Decimal("100"))
    cache.delete(tasks.PUMP_FLAG)
    before = queued()
    for _ in range(3):
        kick_from_a_new_process()
    assert queued() == before + 1 and cache.get(tasks.PUMP_FLAG) == "scheduled"

    assert api.post("trade", buy_body("10")).status_code == 200  # its commit's kick finds the flag held
    assert queued() == before + 1
    wait_settled()
    # Beat's pump skips while another holds the flag (that one sends what is due too).
    assert webhooks_pump.apply(kwargs={"scheduled": True}).get()["skipped"] is True
    assert receiver.delivered() == []
    # The scheduled pump runs: it takes the trade's event, then releases the flag.
    assert webhooks_pump.apply().get() == {"dispatched": 1, "delivered": 1, "failed": 0}
    assert cache.get(tasks.PUMP_FLAG) is None
    kick_from_a_new_process()
    assert queued() == before + 2
    cache.delete(tasks.PUMP_FLAG)
    # With no pump around, beat's pump runs and leaves the flag free.
    assert webhooks_pump.apply(kwargs={"scheduled": True}).get() == {"dispatched": 0, "delivered": 0, "failed": 0}
    assert cache.get(tasks.PUMP_FLAG) is None


def test_a_pump_that_died_lets_its_flag_lapse(settings):
    """A pump killed with the flag held: kicks and beat wait at most PUMP_FLAG_SECONDS, then go on."""
    from webhooks import tasks

    assert tasks.PUMP_FLAG_SECONDS <= 30
    cache.set(tasks.PUMP_FLAG, "running", 1)  # as a pump refreshed it, one second before dying
    assert webhooks_pump.apply(kwargs={"scheduled": True}).get()["skipped"] is True
    time.sleep(1.2)
    assert webhooks_pump.apply(kwargs={"scheduled": True}).get() == {"dispatched": 0, "delivered": 0, "failed": 0}


def test_events_older_than_the_replay_window_are_deleted_with_their_deliveries(operator_api, make_player, market, receiver, client):
    from webhooks.services.delivery import events_retention

    subscribe(operator_api, receiver)
    _, api = make_player(Decimal("100"))
    for _ in range(3):
        assert api.post("trade", buy_body("5")).status_code == 200
    pump(client)
    old, *recent = _events()
    Event.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=31))
    assert events_retention(days=30) == 1
    assert [e.pk for e in _events()] == [e.pk for e in recent]
    assert WebhookDelivery.objects.count() == 2 and not WebhookDelivery.objects.filter(event_id=old.pk).exists()


def test_a_delivery_connects_to_the_address_it_checked(settings):
    """Resolved and checked at delivery, then sent to that address: the name stays in the Host header
    and the TLS server name (certificates are verified against it); a private address is refused."""
    import threading as _threading

    from webhooks.adapters.endpoint import UrlRefused

    settings.WEBHOOK_ALLOW_INSECURE_URLS = False
    sender = WebhookClient(timeout=1.0, concurrency=1)
    try:
        url, headers, extensions = sender._target("https://93.184.216.34/hooks/house?x=1", {}, _threading.Lock())
        assert url == "https://93.184.216.34:443/hooks/house?x=1"
        assert headers == {"host": "93.184.216.34"} and extensions == {"sni_hostname": "93.184.216.34"}
        with pytest.raises(UrlRefused):
            sender._target("https://localhost/hooks", {}, _threading.Lock())
        with pytest.raises(UrlRefused):
            sender._target("http://93.184.216.34/hooks", {}, _threading.Lock())
    finally:
        sender.close()
