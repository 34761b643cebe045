"""Management commands, health/readiness, metrics and the OpenAPI document."""

import json
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import call_command
from django.test import Client

from casino.models import Operator
from casino.services.credentials import token_hash
from tests.conftest import Api, decimal_json

pytestmark = pytest.mark.django_db


def _command(*args) -> dict:
    out = StringIO()
    call_command(*args, stdout=out)
    return json.loads(out.getvalue())


def test_create_operator_prints_keys_once():
    result = _command("create_operator", "--name", "Casino Royale", "--wallet", "s2s", "--wallet-url", "http://127.0.0.1:9000")
    assert set(result) == {"operatorId", "apiKey", "walletSecret"}
    operator = Operator.objects.get(pk=result["operatorId"])
    assert operator.api_key_hash == token_hash(result["apiKey"]) and operator.wallet_mode == "s2s"
    assert operator.wallet_config.base_url == "http://127.0.0.1:9000"
    session = Api({"X-Operator-Key": result["apiKey"]}).post("operator/sessions", {"playerId": "u1"})
    assert session.status_code == 200


def test_create_staff_token_grants_admin_endpoints():
    token = _command("create_staff_token", "--username", "ops")["token"]
    response = Api({"Authorization": f"Bearer {token}"}).post("admin/prices", {"marketId": "0xfeed", "midPrice": 40})
    assert response.status_code == 200


def test_seed_demo_is_rerunnable_and_its_keys_work():
    _command("seed_demo")
    demo = _command("seed_demo", "--price-max-age", "86400")
    alice = Api({"Authorization": f"Bearer {demo['players']['alice']['token']}"})
    assert decimal_json(alice.get("balance"))["balance"] == Decimal("100.00")
    market = demo["markets"][0]["marketId"]
    trade = alice.post("trade", {"marketId": market, "side": "buy", "outcome": "yes", "amount": 25, "midPrice": 62})
    assert decimal_json(trade)["newBalance"] == Decimal("75.00")
    assert Api({"X-Operator-Key": demo["operatorApiKey"]}).post("operator/sessions", {"playerId": "x"}).status_code == 200
    assert Operator.objects.count() == 1


def test_health_and_readiness():
    client = Client()
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200, ready.content
    assert ready.json()["checks"] == {"database": "ok", "cache": "ok", "broker": "ok"}


def test_metrics_count_trades_and_rejections(make_player, market):
    from tests.conftest import buy_body

    _, api = make_player(Decimal("30"))
    api.post("trade", buy_body())
    api.post("trade", buy_body())  # insufficient balance
    body = Client().get("/metrics").content.decode()
    assert 'house_trades_total{side="buy"}' in body
    assert 'house_trade_rejections_total{code="insufficient_balance"}' in body


def test_openapi_schema_and_docs():
    client = Client()
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/json")
    assert schema.status_code == 200
    paths = json.loads(schema.content)["paths"]
    for path in [
        "trade",
        "quote",
        "balance",
        "deposit",
        "withdraw",
        "positions",
        "trades",
        "markets",
        "operator/sessions",
        "admin/balance",
        "admin/prices",
    ]:
        assert f"/api/casino/{path}" in paths
    assert client.get("/api/docs/").status_code == 200


def test_request_id_is_echoed():
    response = Client().get("/healthz", HTTP_X_REQUEST_ID="abc-123")
    assert response["X-Request-Id"] == "abc-123"


def test_every_task_goes_to_its_apps_queue_and_beat_names_only_real_tasks():
    from config.celery import app

    app.loader.import_default_modules()
    tasks = [name for name in app.tasks if name.split(".")[0] in {"wallets", "settlement", "risk"}]
    assert tasks
    for name in tasks:
        assert app.amqp.router.route({}, name)["queue"].name == name.split(".")[0], name
    for entry in app.conf.beat_schedule.values():
        assert entry["task"] in app.tasks, entry
