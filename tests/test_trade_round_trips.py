"""The internal-wallet trade on PostgreSQL: three round trips of prepared statements (the session
look-up with the market's read, then the trade's two), its own transaction (or a savepoint inside a
caller's), and a clean connection whatever goes wrong."""

from decimal import Decimal

import psycopg
import pytest
from django.db import DataError, OperationalError, connection
from django.test.utils import CaptureQueriesContext

from casino.models import Position, Trade
from casino.services import markets, trade_executor
from casino.services.trade_executor import house_wallet_sql
from core import prepared
from tests.conftest import MARKET, buy_body, decimal_json, requires_postgres
from wallets.models import LedgerEntry, PlayerWallet

pytestmark = [requires_postgres, pytest.mark.usefixtures("no_rate_limits")]


def _transaction_status():
    return connection.connection.info.transaction_status


@pytest.mark.django_db(transaction=True)
def test_a_trade_is_three_round_trips_of_prepared_executes_after_the_first(make_player, market):
    player, api = make_player(Decimal("100"))
    assert api.post("trade", buy_body(amount="10.00")).status_code == 200  # prepares on this connection
    with CaptureQueriesContext(connection) as queries:
        response = api.post("trade", buy_body(amount="10.00"))
    assert response.status_code == 200
    sent = [q["sql"] for q in queries.captured_queries]
    assert len(sent) == 3, sent  # session + market and price, lock + positions, write + commit
    assert sent[0].startswith("EXECUTE house_session_player(") and ";EXECUTE house_market_with_price(" in sent[0]
    assert sent[1].startswith("BEGIN;EXECUTE house_trade_lock(") and ";EXECUTE house_trade_positions(" in sent[1]
    assert sent[2].startswith("EXECUTE house_trade_write_update(") and sent[2].endswith(";COMMIT")
    assert not any("PREPARE" in q for q in sent)
    assert _transaction_status() == psycopg.pq.TransactionStatus.IDLE
    assert decimal_json(response)["newBalance"] == Decimal("80.00")
    assert markets._wanted.get() is None and markets._prefetched.get() is None  # nothing left for the next request


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "raw, answer",
    [
        ('{"marketId": "' + MARKET + '", "side": "buy", "outcome": "yes", "amount": 10', "Malformed JSON"),
        ('{"marketId": "not a market id!", "side": "buy", "outcome": "yes", "amount": 10}', "Invalid marketId"),
        ('{"marketId": "' + MARKET + '", "side": "buy", "outcome": "maybe", "amount": 10}', "Invalid outcome"),
        ('["' + MARKET + '"]', "Request body must be a JSON object"),
    ],
)
def test_a_body_naming_no_valid_market_is_answered_as_before_without_the_market_read(make_player, market, raw, answer):
    player, api = make_player(Decimal("100"))
    with CaptureQueriesContext(connection) as queries:
        response = api.post("trade", raw=raw)
    assert response.status_code == 400 and decimal_json(response)["error"] == answer, response.content
    assert all("EXECUTE house_market_with_price" not in q["sql"] for q in queries.captured_queries)
    assert PlayerWallet.objects.get(player=player).balance == Decimal("100.00")


@pytest.mark.django_db(transaction=True)
def test_the_market_read_with_the_session_serves_only_the_market_and_outcome_it_read(make_player, market):
    """A wrong token reads the market for nothing and answers 401; an unknown market read with the
    session answers as an unknown market; a read of one outcome is not taken for the other."""
    player, api = make_player(Decimal("100"))
    assert api.post("trade", buy_body(), headers={"Authorization": "Bearer ps_nope"}).status_code == 401
    unknown = api.post("trade", buy_body(market_id="no-such-market"))
    refused = {"error": "Market not tradeable", "code": "market_not_tradeable", "reason": "unknown_market"}
    assert (unknown.status_code, decimal_json(unknown)) == (400, refused)
    with markets.market_prefetch(market_id=MARKET, outcome="no"):
        markets.market_prefetch_store(None)  # as if the market were unknown when read with the session
        assert markets.market_price_book(market_id=MARKET, outcome="yes")[0] is not None  # read again
        assert markets.market_price_book(market_id=MARKET, outcome="no") == (None, None, None)  # taken
        assert markets.market_price_book(market_id=MARKET, outcome="no")[0] is not None  # once
    assert api.post("trade", buy_body(amount="10.00")).status_code == 200
    assert PlayerWallet.objects.get(player=player).balance == Decimal("90.00")


@pytest.mark.django_db(transaction=True)
def test_a_new_connection_prepares_again_and_a_half_prepared_session_is_completed(make_player, market):
    player, api = make_player(Decimal("100"))
    assert api.post("trade", buy_body(amount="5.00")).status_code == 200
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_prepared_statements WHERE name LIKE 'house\\_%%'")
        assert cursor.fetchone()[0] == len(prepared._registry)
        cursor.execute("DEALLOCATE house_trade_lock")  # a session that has some of them only
    connection._house_prepared = None
    assert api.post("trade", buy_body(amount="5.00")).status_code == 200
    connection.close()  # a new session: nothing prepared
    assert api.post("trade", buy_body(amount="5.00")).status_code == 200
    assert PlayerWallet.objects.get(player=player).balance == Decimal("85.00")


@pytest.mark.django_db(transaction=True)
def test_the_round_trips_reuse_the_connections_cursor_and_a_new_connection_gets_its_own(make_player, market):
    """The session look-up and the trade's round trips take the cursor kept with the connection
    (core.prepared.statement_cursor) instead of building one per round trip; a new connection gets
    a new one, and errors still arrive as django.db's."""
    player, api = make_player(Decimal("100"))
    assert api.post("trade", buy_body(amount="5.00")).status_code == 200
    kept = connection._house_cursor
    assert kept.raw_connection is connection.connection
    assert api.post("trade", buy_body(amount="5.00")).status_code == 200
    assert connection._house_cursor is kept
    connection.close()
    assert api.post("trade", buy_body(amount="5.00")).status_code == 200
    assert connection._house_cursor is not kept and connection._house_cursor.raw_connection is connection.connection
    with prepared.statement_cursor() as cursor, pytest.raises(DataError):
        cursor.execute("SELECT 1/0")
    with prepared.statement_cursor() as cursor:  # autocommit: the failed statement left nothing behind
        cursor.execute("SELECT 2")
        assert cursor.fetchone() == (2,)
    assert PlayerWallet.objects.get(player=player).balance == Decimal("85.00")


@pytest.mark.django_db(transaction=True)
def test_plain_statements_when_prepared_statements_are_turned_off(make_player, market, settings):
    settings.DB_PREPARED_STATEMENTS = False
    player, api = make_player(Decimal("100"))
    with CaptureQueriesContext(connection) as queries:
        assert api.post("trade", buy_body(amount="10.00")).status_code == 200
    assert not any("EXECUTE house_" in q["sql"] for q in queries.captured_queries)
    assert PlayerWallet.objects.get(player=player).balance == Decimal("90.00")


@pytest.mark.django_db(transaction=True)
def test_a_refusal_between_the_round_trips_rolls_back_and_the_connection_stays_usable(make_player, market):
    player, api = make_player(Decimal("10"))
    response = api.post("trade", buy_body(amount="25.00"))  # refused after the wallet row is locked
    assert response.status_code == 400 and decimal_json(response)["error"] == "Insufficient balance"
    assert _transaction_status() == psycopg.pq.TransactionStatus.IDLE
    with connection.cursor() as cursor:  # the wallet row is not left locked by this session
        cursor.execute("SELECT count(*) FROM pg_locks WHERE pid = pg_backend_pid() AND locktype = 'transactionid'")
        assert cursor.fetchone()[0] == 0
    assert api.post("trade", buy_body(amount="10.00")).status_code == 200
    assert PlayerWallet.objects.get(player=player).balance == Decimal("0.00")


@pytest.mark.django_db(transaction=True)
def test_a_database_error_in_the_write_rolls_back_everything(make_player, market, monkeypatch):
    player, api = make_player(Decimal("100"))
    write = house_wallet_sql._WRITES[(False, False)]
    monkeypatch.setattr(write, "execute", "SELECT 1/0")  # the write round trip fails on the server
    monkeypatch.setattr(write, "sql", "SELECT 1/0")
    with pytest.raises(DataError):
        trade_executor.trade_execute(player=player, request=_request())
    assert _transaction_status() == psycopg.pq.TransactionStatus.IDLE
    assert not Trade.objects.filter(player=player).exists()
    assert not LedgerEntry.objects.filter(player=player, type="trade_debit").exists()
    assert PlayerWallet.objects.get(player=player).balance == Decimal("100.00")
    monkeypatch.undo()
    assert trade_executor.trade_execute(player=player, request=_request()).new_balance == Decimal("75.00")


@pytest.mark.django_db(transaction=True)
def test_a_position_changed_under_the_trade_is_refused_by_the_write_and_retried(make_player, market, monkeypatch):
    """The write checks the position's version; a stale one raises inside the statement, so
    COMMIT is never reached, nothing of the attempt is written, and the executor tries again."""
    player, api = make_player(Decimal("100"))
    assert api.post("trade", buy_body(amount="25.00")).status_code == 200
    real = house_wallet_sql._HeldPosition
    stale = {"left": 1}

    def held(*row):
        position = real(*row)
        if stale["left"]:
            stale["left"] -= 1
            return real(**{**position.__dict__, "version": position.version - 1})
        return position

    monkeypatch.setattr(house_wallet_sql, "_HeldPosition", held)
    result = trade_executor.trade_execute(player=player, request=_request())
    assert stale["left"] == 0
    assert result.new_balance == Decimal("50.00")
    assert Trade.objects.filter(player=player).count() == 2
    assert LedgerEntry.objects.filter(player=player, type="trade_debit").count() == 2
    assert Position.objects.get(player=player).shares == Decimal("78.125000")


@pytest.mark.django_db
def test_inside_a_callers_transaction_the_trade_uses_a_savepoint(make_player, market):
    """pytest-django's test transaction stands in for a caller's atomic block."""
    player, api = make_player(Decimal("30"))
    with pytest.raises(Exception, match="Insufficient balance"):
        trade_executor.trade_execute(player=player, request=_request(amount="40.00"))
    assert connection.in_atomic_block and not connection.needs_rollback
    assert trade_executor.trade_execute(player=player, request=_request()).new_balance == Decimal("5.00")
    assert PlayerWallet.objects.get(player=player).balance == Decimal("5.00")


@pytest.mark.django_db
def test_a_lost_database_answers_503_in_the_error_shape(make_player, market, monkeypatch):
    player, api = make_player(Decimal("100"))

    def gone(**kwargs):
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr("casino.api.views.trade_execute", gone)
    response = api.post("trade", buy_body())
    assert response.status_code == 503
    assert decimal_json(response) == {"error": "Service temporarily unavailable, please retry", "code": "unavailable"}
    assert response["Retry-After"] == "1"


@pytest.mark.django_db
def test_the_api_answers_json_whatever_the_accept_header(make_player):
    player, api = make_player(Decimal("12.5"))
    response = api.get("balance", headers={"Accept": "text/html"})
    assert response.status_code == 200 and response["Content-Type"] == "application/json"
    assert decimal_json(response)["balance"] == Decimal("12.5")


def _request(amount="25.00"):
    from tests.conftest import MARKET

    return trade_executor.TradeRequest(market_id=MARKET, side="buy", outcome="yes", amount=Decimal(amount), mid_price=Decimal("62"))
