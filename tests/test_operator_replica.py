"""With a read replica configured, every operator read (SPEC §13) is served by it and writes never are.

The replica here is a TEST MIRROR alias of the primary (tests/conftest.py, Django's documented way):
the same rows, a connection of its own, so the queries each alias ran tell where a read went. A real
streaming replica is exercised by tests/test_operator_reports.py.
"""

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.db import connections
from django.test.utils import CaptureQueriesContext

from tests.conftest import buy_body

pytestmark = [pytest.mark.django_db(transaction=True, databases=["default", "replica"]), pytest.mark.usefixtures("no_rate_limits")]

# Each read and a table its answer comes from.
READS = [
    ("operator/players", {}, "casino_players"),
    ("operator/players/alice", {}, "casino_players"),
    ("operator/trades", {}, "casino_trades"),
    ("operator/trades", {"playerId": "alice"}, "casino_trades"),
    ("operator/positions", {}, "casino_positions"),
    ("operator/transactions", {}, "s2s_transactions"),
    ("operator/exposure", {}, "casino_positions"),
    ("operator/settlements", {}, "settlement"),
    ("operator/reports/daily", {"from": "TODAY", "to": "TODAY"}, "reports_daily"),
]


@pytest.fixture
def replica_reads(settings):
    settings.DATABASE_REPLICA_READS = True
    yield
    connections["replica"].close()


@pytest.mark.parametrize(("path", "params", "table"), READS, ids=[f"{p}{'?' + ','.join(q) if q else ''}" for p, q, _ in READS])
def test_operator_reads_are_served_by_the_replica(path, params, table, make_player, operator, operator_api, market, replica_reads):
    _, api = make_player(Decimal("100"), external_id="alice")
    assert api.post("trade", buy_body()).status_code == 200
    today = datetime.now(UTC).date().isoformat()
    params = {k: today if v == "TODAY" else v for k, v in params.items()}

    with CaptureQueriesContext(connections["replica"]) as on_replica, CaptureQueriesContext(connections["default"]) as on_primary:
        response = operator_api.get(path, params)

    assert response.status_code == 200, response.content
    assert any(table in q["sql"] for q in on_replica.captured_queries)
    assert not any(table in q["sql"] for q in on_primary.captured_queries)


def test_a_player_control_change_is_written_to_and_answered_from_the_primary(make_player, operator_api, replica_reads):
    make_player(Decimal("0"), external_id="alice")

    with CaptureQueriesContext(connections["replica"]) as on_replica:
        response = operator_api.client.patch(
            "/api/casino/operator/players/alice",
            {"status": "blocked"},
            content_type="application/json",
            headers=operator_api.headers,
        )

    assert response.status_code == 200 and response.json()["status"] == "blocked"
    assert not on_replica.captured_queries
