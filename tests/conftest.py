"""Shared fixtures. Every test that touches the database ends with the ledger check:
for every internal-wallet player, the ledger sums to the balance."""

import json
import os
import uuid
from decimal import Decimal

import pytest
from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.db.models import Sum
from django.test import Client

from casino.services.credentials import operator_create, session_open, staff_token_create
from casino.services.markets import reference_price_set
from core.api.rendering import dumps
from wallets.models import DebtEntry, LedgerEntry, PlayerDebt, PlayerWallet
from wallets.services.transfers import wallet_deposit

MARKET = "0x1234abcd00000000000000000000000000000000000000000000000000000001"

# A read-replica alias for the routing tests (tests/test_operator_reports.py), Django's documented way:
# a TEST MIRROR of the primary (no database of its own). core.db.reads() uses it only when a test sets
# DATABASE_REPLICA_READS; DATABASE_REPLICA_URL, when set, defines the alias itself (config/settings.py).
if "replica" not in settings.DATABASES:
    settings.DATABASES["replica"] = {**settings.DATABASES["default"], "TEST": {"MIRROR": "default"}}

requires_postgres = pytest.mark.skipif(
    not os.environ.get("DATABASE_URL", "").startswith("postgres"), reason="needs real PostgreSQL (run via scripts/test)"
)


def decimal_json(response) -> dict:
    """Parse a response body with exact decimals (the API renders Decimals as JSON numbers)."""
    return json.loads(response.content, parse_float=Decimal, parse_int=Decimal)


def assert_ledger_matches_balances() -> None:
    sums = dict(LedgerEntry.objects.values("player_id").annotate(total=Sum("amount")).values_list("player_id", "total"))
    for player_id, balance in PlayerWallet.objects.values_list("player_id", "balance"):
        assert sums.get(player_id, Decimal("0")) == balance, (
            f"ledger of player {player_id} sums to {sums.get(player_id)} but balance is {balance}"
        )
        assert balance >= 0
    debts = dict(DebtEntry.objects.values("player_id").annotate(total=Sum("amount")).values_list("player_id", "total"))
    for player_id, amount in PlayerDebt.objects.values_list("player_id", "amount"):
        assert debts.get(player_id, Decimal("0")) == amount >= 0, f"debt entries of player {player_id} do not sum to its debt {amount}"


@pytest.fixture(autouse=True)
def ledger_invariant(request):
    marker = request.node.get_closest_marker("django_db")
    if marker is None:
        yield
        return
    request.getfixturevalue("transactional_db" if marker.kwargs.get("transaction") else "db")
    yield
    assert_ledger_matches_balances()


@pytest.fixture(autouse=True)
def _fresh_cache():
    from risk.counters import counters_clear_local
    from risk.services.config import _bump_version

    cache.clear()
    counters_clear_local()
    _bump_version()  # every worker's cached risk configuration is stale: the walls reload it
    yield


@pytest.fixture
def risk_limits(db):
    """risk_limits(**fields) updates the house risk settings (through save(), so the walls see it)."""
    from risk.services.config import risk_settings

    def update(**fields):
        row = risk_settings()
        for name, value in fields.items():
            setattr(row, name, value)
        row.save()
        return row

    return update


@pytest.fixture
def no_rate_limits(settings):
    settings.RATELIMIT_ENABLE = False


@pytest.fixture
def no_velocity_limits(risk_limits):
    """Tests of money races send many trades per player and market: lift wall 1 out of the way."""
    risk_limits(max_trades_per_minute=100000, max_stake_per_minute=Decimal("100000000"), market_burst_trades=100000)


class Api:
    """A thin JSON client for one caller."""

    def __init__(self, headers: dict | None = None):
        self.client = Client()
        self.headers = headers or {}

    def post(self, path: str, body=None, raw: str | None = None, headers: dict | None = None):
        data = raw if raw is not None else dumps(body if body is not None else {})
        return self.client.post(
            f"/api/casino/{path}", data=data, content_type="application/json", headers={**self.headers, **(headers or {})}
        )

    def patch(self, path: str, body=None, headers: dict | None = None):
        return self.client.patch(
            f"/api/casino/{path}",
            data=dumps(body if body is not None else {}),
            content_type="application/json",
            headers={**self.headers, **(headers or {})},
        )

    def get(self, path: str, params: dict | None = None, headers: dict | None = None):
        return self.client.get(f"/api/casino/{path}", params or {}, headers={**self.headers, **(headers or {})})


@pytest.fixture
def operator(db):
    return operator_create(name=f"op-{uuid.uuid4().hex[:8]}", wallet_mode="internal")


@pytest.fixture
def operator_api(operator):
    return Api({"X-Operator-Key": operator.api_key})


@pytest.fixture
def market(db):
    return reference_price_set(
        market_id=MARKET, outcome="yes", mid_price=Decimal("62"), title="Will Bitcoin hit $100k by June?", category="crypto"
    ).market


@pytest.fixture
def make_player(operator):
    """make_player(balance) -> (player, Api with the player's bearer token)."""

    def make(balance: Decimal = Decimal("0"), external_id: str | None = None, op=None):
        session = session_open(operator=(op or operator).operator, external_player_id=external_id or f"p-{uuid.uuid4().hex[:10]}")
        if balance > 0:
            wallet_deposit(player=session.player, amount=Decimal(balance))
        return session.player, Api({"Authorization": f"Bearer {session.token}"})

    return make


@pytest.fixture
def staff_api(db):
    return Api({"Authorization": f"Bearer {staff_token_create(username='risk-desk')}"})


def buy_body(amount="25.00", mid=62, market_id=MARKET, outcome="yes") -> dict:
    return {"marketId": market_id, "side": "buy", "outcome": outcome, "amount": Decimal(str(amount)), "midPrice": mid}


@pytest.fixture
def is_postgres(db):
    return connection.vendor == "postgresql"
