"""The walls' counters on the real Redis: each thread sends its reservations on a connection it
keeps (risk.counters._RedisBackend._evalsha), so the connection's failures are the backend's to
handle: a connection Redis closed is replaced, a script Redis forgot is loaded again, and a Redis
that cannot be reached answers 503 in the error shape with no money moved."""

import os
import socket
import uuid
from decimal import Decimal

import pytest
import redis
from django.conf import settings

from casino.models import Trade
from risk import counters
from tests.conftest import buy_body, decimal_json
from wallets.models import PlayerWallet

pytestmark = pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="needs Redis (run via scripts/test)")


def _counter(key: str, add: int, limit: int = -1) -> counters.Counter:
    return counters.Counter.rolling(key, window_seconds=3600, add=add, limit=None if limit < 0 else limit)


def _admin() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL)


def test_a_connection_redis_closed_is_replaced_and_the_reservation_counted_once():
    key = f"test:kill:{uuid.uuid4().hex}"
    assert counters.reserve([_counter(key, 3)]) is not None
    held = counters._redis._held.conn
    admin = _admin()
    killed = admin.client_kill_filter(_type="normal", skipme=True)  # every client connection but this one
    assert killed >= 1
    assert counters.reserve([_counter(key, 4)]) is not None  # the same thread, its connection gone
    assert counters._redis._held.conn is held  # reconnected in place
    assert counters.current_value(_counter(key, 0)) == 7  # counted once each


def test_a_script_redis_no_longer_knows_is_loaded_again():
    key = f"test:flush:{uuid.uuid4().hex}"
    assert counters.reserve([_counter(key, 1)]) is not None
    _admin().script_flush()
    assert counters.reserve([_counter(key, 2)]) is not None
    limited = counters.reserve([_counter(key, 1, limit=3)])
    assert isinstance(limited, counters.Exceeded) and limited.current == 3


def test_a_new_process_takes_its_own_connection(monkeypatch):
    key = f"test:fork:{uuid.uuid4().hex}"
    assert counters.reserve([_counter(key, 1)]) is not None
    inherited = counters._redis._held.conn
    monkeypatch.setattr(counters._redis._held, "pid", -1)  # as a forked child sees its parent's
    assert counters.reserve([_counter(key, 1)]) is not None
    assert counters._redis._held.conn is not inherited
    assert counters.current_value(_counter(key, 0)) == 2


@pytest.mark.django_db(transaction=True)
def test_redis_out_of_reach_answers_503_and_moves_no_money(make_player, market, monkeypatch):
    player, api = make_player(Decimal("100"))
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        dead_port = s.getsockname()[1]
    dead = redis.Redis(host="127.0.0.1", port=dead_port, socket_connect_timeout=0.5, retry=None)
    monkeypatch.setattr(counters._redis, "_client", lambda: dead)
    response = api.post("trade", buy_body(amount="10.00"))
    assert response.status_code == 503
    assert decimal_json(response) == {"error": "Service temporarily unavailable, please retry", "code": "unavailable"}
    assert response["Retry-After"] == "1"
    assert PlayerWallet.objects.get(player=player).balance == Decimal("100.00")
    assert not Trade.objects.filter(player=player).exists()
    monkeypatch.undo()
    assert api.post("trade", buy_body(amount="10.00")).status_code == 200
    assert PlayerWallet.objects.get(player=player).balance == Decimal("90.00")
