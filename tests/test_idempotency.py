"""Idempotency-Key on trade, deposit, withdraw and the admin adjustment."""

from decimal import Decimal

import pytest

from casino.models import Trade
from tests.conftest import buy_body, decimal_json
from wallets.models import LedgerEntry

pytestmark = pytest.mark.django_db


def test_same_key_same_body_returns_the_first_response_and_trades_once(make_player, market):
    player, api = make_player(Decimal("100"))
    first = api.post("trade", buy_body(), headers={"Idempotency-Key": "k1"})
    again = api.post("trade", buy_body(), headers={"Idempotency-Key": "k1"})
    assert first.status_code == again.status_code == 200
    assert first.content == again.content
    assert again["Idempotent-Replayed"] == "true"
    assert Trade.objects.filter(player=player).count() == 1
    assert decimal_json(api.get("balance"))["balance"] == Decimal("75.00")


def test_same_key_other_body_is_409(make_player, market):
    _, api = make_player(Decimal("100"))
    api.post("trade", buy_body(), headers={"Idempotency-Key": "k2"})
    response = api.post("trade", buy_body(amount="10"), headers={"Idempotency-Key": "k2"})
    assert response.status_code == 409
    assert decimal_json(response)["code"] == "idempotency_key_reused"


def test_keys_are_per_player(make_player, market):
    _, alice = make_player(Decimal("100"))
    _, bob = make_player(Decimal("100"))
    assert alice.post("trade", buy_body(), headers={"Idempotency-Key": "same"}).status_code == 200
    assert decimal_json(bob.post("trade", buy_body(), headers={"Idempotency-Key": "same"}))["newBalance"] == Decimal("75.00")
    assert Trade.objects.count() == 2


def test_refused_request_is_not_stored_and_can_be_retried(make_player, market):
    player, api = make_player(Decimal("10"))
    assert api.post("trade", buy_body(), headers={"Idempotency-Key": "k3"}).status_code == 400
    api.post("deposit", {"amount": 20})
    assert api.post("trade", buy_body(), headers={"Idempotency-Key": "k3"}).status_code == 200


@pytest.mark.parametrize("path,body", [("deposit", {"amount": 10}), ("withdraw", {"amount": 10})])
def test_deposit_and_withdraw_are_idempotent(make_player, path, body):
    player, api = make_player(Decimal("50"))
    first = api.post(path, body, headers={"Idempotency-Key": "dw"})
    second = api.post(path, body, headers={"Idempotency-Key": "dw"})
    assert first.content == second.content and first.status_code == 200
    assert LedgerEntry.objects.filter(player=player).count() == 2  # the initial deposit + one


def test_admin_adjustment_is_idempotent(make_player, staff_api):
    player, _ = make_player(Decimal("50"))
    body = {"targetUserId": str(player.pk), "amount": 5, "action": "deposit"}
    first = staff_api.post("admin/balance", body, headers={"Idempotency-Key": "adj-1"})
    second = staff_api.post("admin/balance", body, headers={"Idempotency-Key": "adj-1"})
    assert first.content == second.content == b'{"success":true,"newBalance":55.00}'


def test_overlong_key_is_400(make_player, market):
    _, api = make_player(Decimal("10"))
    assert api.post("trade", buy_body(), headers={"Idempotency-Key": "x" * 256}).status_code == 400
