"""Who may call what: 401 Unauthorized without valid credentials, 403 for the wrong kind of caller."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from casino.models import PlayerSession
from tests.conftest import Api, decimal_json

pytestmark = pytest.mark.django_db

PLAYER_ENDPOINTS = [
    ("post", "trade"),
    ("get", "balance"),
    ("post", "deposit"),
    ("post", "withdraw"),
    ("get", "positions"),
    ("get", "trades"),
]


@pytest.mark.parametrize("method,path", PLAYER_ENDPOINTS)
def test_player_endpoints_without_token_are_401(method, path):
    response = getattr(Api(), method)(path)
    assert response.status_code == 401
    assert decimal_json(response)["error"] == "Unauthorized"


@pytest.mark.parametrize("method,path", PLAYER_ENDPOINTS)
def test_player_endpoints_with_unknown_token_are_401(method, path):
    response = getattr(Api({"Authorization": "Bearer ps_not-a-real-token"}), method)(path)
    assert response.status_code == 401
    assert decimal_json(response)["error"] == "Unauthorized"


def test_expired_session_is_401(make_player):
    player, api = make_player()
    PlayerSession.objects.filter(player=player).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert api.get("balance").status_code == 401


def test_malformed_authorization_header_is_401():
    assert Api({"Authorization": "Basic Zm9vOmJhcg=="}).get("balance").status_code == 401
    assert Api({"Authorization": "Bearer"}).get("balance").status_code == 401


@pytest.mark.parametrize("path", ["admin/balance", "admin/prices"])
def test_admin_endpoints_refuse_players_with_403(make_player, path):
    _, api = make_player()
    response = api.post(path, {"targetUserId": "x", "amount": 1, "action": "deposit"})
    assert response.status_code == 403
    assert decimal_json(response)["error"] == "Admin access required"


@pytest.mark.parametrize("path", ["admin/balance", "admin/prices"])
def test_admin_endpoints_without_token_are_401(path):
    assert Api().post(path, {}).status_code == 401


def test_staff_token_cannot_trade(staff_api):
    assert staff_api.post("trade", {}).status_code == 403


def test_operator_sessions_need_a_valid_operator_key(db):
    assert Api().post("operator/sessions", {"playerId": "x"}).status_code == 401
    assert Api({"X-Operator-Key": "op_wrong"}).post("operator/sessions", {"playerId": "x"}).status_code == 401


def test_inactive_operator_key_is_401(operator, operator_api):
    operator.operator.is_active = False
    operator.operator.save()
    assert operator_api.post("operator/sessions", {"playerId": "x"}).status_code == 401


def test_sessions_of_inactive_operator_stop_working(operator, make_player):
    _, api = make_player(Decimal("5"))
    operator.operator.is_active = False
    operator.operator.save()
    assert api.get("balance").status_code == 401


def test_quote_and_markets_need_no_authentication(db):
    assert Api().get("markets").status_code == 200
    assert Api().get("quote", {"side": "buy", "outcome": "yes", "amount": "1", "midPrice": "50"}).status_code == 200


def test_admin_balance_unknown_user_is_404(staff_api):
    response = staff_api.post("admin/balance", {"targetUserId": "00000000-0000-0000-0000-000000000000", "amount": 1, "action": "deposit"})
    assert response.status_code == 404
    assert decimal_json(response)["error"] == "User not found"
