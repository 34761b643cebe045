"""The daily report of SPEC §13 (GET operator/reports/daily), read from the rollup the database triggers
keep in the same transaction as each trade and ledger row: its figures equal an independent computation
from the source rows on a book with buys, sells, a resolved market paid, a voided market refunded, a
reversal leaving an uncollected debt and its later recovery, on both wallet kinds; the CSV body; the
range checks; scoping; exact totals under concurrent trades; nothing for a rolled-back trade; reads routed
to the replica (a mirror alias, and a real streaming standby started by the test)."""

import datetime
import glob
import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections import defaultdict
from decimal import ROUND_FLOOR, Decimal

import pytest
from django.core.management import call_command
from django.db import DatabaseError, connections, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from casino.models import Trade
from casino.services.credentials import operator_create
from casino.services.markets import reference_price_set
from core.db import reads
from core.db_router import ReplicaRouter
from reports.models import DailyRollup
from reports.selectors import daily_report
from settlement.models import Reversal, Settlement
from settlement.services.decide import market_settle
from settlement.services.payouts import settlement_advance
from settlement.services.reversal import reversal_advance, settlement_reverse
from tests.conftest import MARKET, Api, buy_body, decimal_json, requires_postgres
from tests.test_s2s_wallet import S2SWorld
from wallets.models import LedgerEntry, PlayerDebt
from wallets.services.transfers import wallet_withdraw

pytestmark = [requires_postgres, pytest.mark.usefixtures("no_rate_limits", "no_velocity_limits")]

VOIDED = "0x1234abcd00000000000000000000000000000000000000000000000000000002"
MONEY_FIELDS = ("stakes", "saleProceeds", "payouts", "refunds", "reversals", "ggr")
TAKEN_BACK = ("payout_reversal", "refund_reversal", "debt_recovery")


def today() -> str:
    return timezone.now().astimezone(datetime.UTC).date().isoformat()


def expected_days(operator) -> list[dict]:
    """The report computed in Python from the source rows: trades (with their player's currency) and the ledger."""
    days: dict[tuple, dict] = defaultdict(
        lambda: {"trades": 0, "players": set(), **{f: Decimal("0") for f in ("stakes", "saleProceeds", "payouts", "refunds", "reversals")}}
    )
    for t in Trade.objects.filter(operator=operator).select_related("player"):
        day = days[(t.created_at.astimezone(datetime.UTC).date().isoformat(), t.player.currency)]
        day["trades"] += 1
        day["players"].add(t.player_id)
        day["stakes" if t.side == "buy" else "saleProceeds"] += t.cost
    for e in LedgerEntry.objects.filter(operator=operator):
        key = (e.created_at.astimezone(datetime.UTC).date().isoformat(), e.currency)
        if e.type == "payout":
            days[key]["payouts"] += e.amount
        elif e.type == "refund":
            days[key]["refunds"] += e.amount
        elif e.type in TAKEN_BACK:
            days[key]["reversals"] -= e.amount
    out = []
    for (date, currency), d in sorted(days.items()):
        ggr = d["stakes"] - d["saleProceeds"] - d["payouts"] - d["refunds"] + d["reversals"]
        operator_share = (ggr * operator.operator_share_pct / 100).quantize(Decimal("0.01"), rounding=ROUND_FLOOR)  # SPEC §16
        out.append(
            {
                "date": date,
                "currency": currency,
                "trades": d["trades"],
                "players": len(d["players"]),
                **{k: d[k] for k in MONEY_FIELDS[:-1]},
                "ggr": ggr,
                "operatorShare": operator_share,
                "houseShare": ggr - operator_share,
            }
        )
    return out


def _sell(api, player, market_id, fraction=Decimal("0.5"), mid=62):
    shares = sum(t.shares for t in Trade.objects.filter(player=player, market_id=market_id, side="buy"))
    amount = (shares * fraction).quantize(Decimal("0.000001"))
    body = {"marketId": market_id, "side": "sell", "outcome": "yes", "amount": amount, "midPrice": mid}
    assert api.post("trade", body).status_code == 200


def _settle(market_id, action, outcome=None):
    settlement = market_settle(market_id=market_id, action=action, outcome=outcome)
    for _ in range(50):
        if settlement_advance(settlement_id=settlement.pk):
            return settlement
    raise AssertionError("settlement did not complete")


def _reverse(market_id):
    rev = settlement_reverse(market_id=market_id, reason="the source corrected its resolution")
    for _ in range(50):
        if reversal_advance(reversal_id=rev.pk, chunk=1000):
            return rev
    raise AssertionError("reversal did not complete")


@pytest.fixture
def no_auto_start(monkeypatch):
    from settlement.services import decide, reversal

    monkeypatch.setattr(decide, "_start", lambda settlement_id: None)
    monkeypatch.setattr(reversal, "_start", lambda reversal_id: None)


@pytest.fixture
def s2s(market, settings):
    settings.HOUSE_WALLET_RETRY_BASE_SECONDS = 0
    world = S2SWorld()
    yield world
    world.stop()


@pytest.fixture
def book(make_player, operator, market, s2s, no_auto_start):
    """Both wallet kinds: buys and sells on MARKET and VOIDED; VOIDED voided (refunds); MARKET resolved YES
    (payouts), reversed with one player per operator unable to give it all back (debts), then resolved
    YES again (the new payouts recover the debts)."""
    reference_price_set(market_id=VOIDED, outcome="yes", mid_price=Decimal("40"), title="Voided market", category="test")
    internal = [make_player(Decimal("500")) for _ in range(3)]
    external = [s2s.player() for _ in range(3)]
    for i, (player, api) in enumerate(internal + external):
        assert api.post("trade", buy_body(amount=str(20 + i))).status_code == 200
        assert api.post("trade", buy_body(amount="10", market_id=VOIDED, mid=40)).status_code == 200
        if i % 3 == 0:
            _sell(api, player, MARKET)
    _settle(VOIDED, "void")
    _settle(MARKET, "resolve", "yes")
    poor_internal, _ = internal[1]
    wallet_withdraw(player=poor_internal, amount=Decimal("480.00"))
    poor_external, _ = external[1]
    s2s.server.add_fault("refuse", endpoint="debit", status="INSUFFICIENT_FUNDS", user_id=poor_external.external_id)
    _reverse(MARKET)
    assert PlayerDebt.objects.get(player=poor_internal).amount > 0
    assert PlayerDebt.objects.get(player=poor_external).amount > 0
    _settle(MARKET, "resolve", "yes")
    assert LedgerEntry.objects.filter(type="debt_recovery", operator=operator.operator).exists()
    assert LedgerEntry.objects.filter(type="debt_recovery", operator=s2s.operator).exists()
    assert Settlement.objects.filter(status="completed").count() == 2 and Reversal.objects.get().status == "completed"
    return {"internal": operator, "s2s": s2s}


@pytest.mark.django_db(transaction=True)
def test_daily_report_equals_the_sums_of_trades_payouts_refunds_and_reversals(book):
    for issued, operator in [(book["internal"], book["internal"].operator), (None, book["s2s"].operator)]:
        key = issued.api_key if issued else _new_key(operator)
        expected = expected_days(operator)
        assert len(expected) == 1 and all(expected[0][f] > 0 for f in ("stakes", "saleProceeds", "payouts", "refunds", "reversals"))
        response = Api({"X-Operator-Key": key}).get("operator/reports/daily", {"from": today(), "to": today()})
        assert response.status_code == 200, response.content
        assert decimal_json(response) == {"days": expected}
        # Money with two decimals, counts as integers, as SPEC §3 renders money.
        day = expected[0]
        assert f'"stakes":{day["stakes"]:.2f}' in response.content.decode()
        assert f'"trades":{day["trades"]},' in response.content.decode()


@pytest.mark.django_db(transaction=True)
def test_rebuilding_the_rollup_from_the_source_rows_gives_the_same_report(book):
    operator = book["internal"].operator
    before = daily_report(operator_id=operator.pk, start=timezone.now().date(), end=timezone.now().date())
    call_command("reports_rebuild", stdout=open("/dev/null", "w"))  # noqa: SIM115
    assert DailyRollup.objects.exclude(shard=0).count() == 0
    assert daily_report(operator_id=operator.pk, start=timezone.now().date(), end=timezone.now().date()) == before


@pytest.mark.django_db(transaction=True)
def test_csv_body_is_exact_and_another_operator_sees_nothing(book):
    issued = book["internal"]
    day = expected_days(issued.operator)[0]
    api = Api({"X-Operator-Key": issued.api_key})
    header = "date,currency,trades,players,stakes,saleProceeds,payouts,refunds,reversals,ggr,operatorShare,houseShare\r\n"
    line = ",".join(
        [day["date"], day["currency"], str(day["trades"]), str(day["players"])]
        + [f"{day[f]:.2f}" for f in (*MONEY_FIELDS, "operatorShare", "houseShare")]
    )
    for response in (
        api.get("operator/reports/daily", {"from": today(), "to": today()}, headers={"Accept": "text/csv"}),
        api.get("operator/reports/daily", {"from": today(), "to": today(), "format": "csv"}),
    ):
        assert response.status_code == 200
        assert response.streaming and response["Content-Type"] == "text/csv; charset=utf-8"
        assert b"".join(response.streaming_content).decode() == header + line + "\r\n"

    other = operator_create(name="Other Casino", wallet_mode="internal")
    other_api = Api({"X-Operator-Key": other.api_key})
    assert decimal_json(other_api.get("operator/reports/daily", {"from": today(), "to": today()})) == {"days": []}
    empty = other_api.get("operator/reports/daily", {"from": today(), "to": today(), "format": "csv"})
    assert b"".join(empty.streaming_content).decode() == header
    assert Api().get("operator/reports/daily", {"from": today(), "to": today()}).status_code in (401, 403)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"from": "2026-01-01", "to": "2027-01-02"}, "invalid_range"),  # 367 days
        ({"from": "2026-02-01", "to": "2026-01-31"}, "invalid_range"),
        ({"from": "2026-02-30", "to": "2026-03-01"}, "invalid_from"),
        ({"from": "2026-01-01", "to": "tomorrow"}, "invalid_to"),
        ({"from": "2026-1-1", "to": "2026-01-02"}, "invalid_from"),
        ({"to": "2026-01-02"}, "missing_fields"),
        ({"from": "2026-01-01", "to": "2026-01-02", "format": "xml"}, "invalid_format"),
    ],
)
def test_bad_ranges_and_dates_are_400(operator_api, params, code):
    response = operator_api.get("operator/reports/daily", params)
    assert response.status_code == 400
    body = decimal_json(response)
    assert body["code"] == code and body["error"]


@pytest.mark.django_db
def test_366_days_is_accepted(operator_api):
    response = operator_api.get("operator/reports/daily", {"from": "2024-01-01", "to": "2024-12-31"})  # leap year: 366 days
    assert response.status_code == 200 and decimal_json(response) == {"days": []}


@pytest.mark.django_db(transaction=True)
def test_concurrent_trades_leave_exact_totals_and_count_each_player_once(make_player, operator, market):
    players = [make_player(Decimal("1000")) for _ in range(5)]
    errors: list = []
    barrier = threading.Barrier(10)

    def trade(n: int):
        try:
            _, api = players[n % len(players)]
            barrier.wait()
            for i in range(6):
                response = api.post("trade", buy_body(amount=f"{1 + (n + i) % 7}.{n:02d}"))
                if response.status_code != 200:
                    errors.append(response.content)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=trade, args=(n,)) for n in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    expected = expected_days(operator.operator)
    assert expected[0]["trades"] == 60 and expected[0]["players"] == 5
    body = decimal_json(Api({"X-Operator-Key": operator.api_key}).get("operator/reports/daily", {"from": today(), "to": today()}))
    assert body == {"days": expected}


@pytest.mark.django_db(transaction=True, databases=["default", "replica"])
def test_operator_reads_go_to_the_replica_and_writes_never(make_player, operator, market, settings):
    _, api = make_player(Decimal("100"))
    assert api.post("trade", buy_body()).status_code == 200
    assert reads() == "default"
    settings.DATABASE_REPLICA_READS = True
    assert reads() == "replica"
    try:
        with CaptureQueriesContext(connections["replica"]) as on_replica, CaptureQueriesContext(connections["default"]) as on_primary:
            body = decimal_json(Api({"X-Operator-Key": operator.api_key}).get("operator/reports/daily", {"from": today(), "to": today()}))
        assert body["days"][0]["stakes"] == Decimal("25.00")
        assert any("reports_daily" in q["sql"] for q in on_replica.captured_queries)
        assert not any("reports_daily" in q["sql"] for q in on_primary.captured_queries)

        row = DailyRollup.objects.using("replica").get(operator=operator.operator)
        router = ReplicaRouter()
        assert router.db_for_write(DailyRollup, instance=row) == "default"
        assert router.allow_migrate("replica", "reports") is False and router.allow_migrate("default", "reports") is None
        with CaptureQueriesContext(connections["replica"]) as on_replica:
            row.save()  # read from the replica, written to the primary
        assert not on_replica.captured_queries and row._state.db == "default"
    finally:
        connections["replica"].close()


def _new_key(operator) -> str:
    """The S2S world's operator key (operator_create shows it once; rotate to get one)."""
    from casino.services.credentials import operator_rotate_key

    return operator_rotate_key(operator=operator)


@pytest.mark.django_db(transaction=True)
def test_a_rolled_back_trade_or_payout_counts_nothing(make_player, operator, market):
    player, api = make_player(Decimal("100"))
    assert api.post("trade", buy_body()).status_code == 200
    before = daily_report(operator_id=operator.operator.pk, start=timezone.now().date(), end=timezone.now().date())
    trade = Trade.objects.get(player=player)

    class Abort(Exception):
        pass

    with pytest.raises(Abort), transaction.atomic():
        Trade.objects.create(
            player=player,
            operator=operator.operator,
            market=market,
            side="buy",
            outcome="yes",
            shares=trade.shares,
            price_mid=trade.price_mid,
            price_executed=trade.price_executed,
            spread_applied=trade.spread_applied,
            cost=Decimal("99.00"),
            balance_before=Decimal("0"),
            balance_after=Decimal("0"),
        )
        LedgerEntry.objects.create(
            player=player, operator=operator.operator, type="payout", amount=Decimal("5.00"), balance_after=Decimal("80.00")
        )
        raise Abort
    after = daily_report(operator_id=operator.operator.pk, start=timezone.now().date(), end=timezone.now().date())
    assert after == before and before[0].trades == 1 and before[0].stakes == Decimal("25.00")


def _pg_bindir() -> str | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: [int(x) for x in re.findall(r"\d+", p)])
    return found[-1] if found and os.path.exists(f"{found[-1]}/pg_basebackup") else None


@pytest.fixture
def streaming_replica(transactional_db):
    """A real PostgreSQL hot standby of the test server (pg_basebackup -R, streaming), on its own port,
    stopped and removed after the test."""
    bindir = _pg_bindir()
    primary = connections["default"].settings_dict
    if bindir is None or primary["HOST"] not in ("127.0.0.1", "localhost"):
        pytest.skip("no local PostgreSQL server binaries")
    run_as = ["runuser", "-u", "housepg", "--"] if os.geteuid() == 0 else []
    workdir = tempfile.mkdtemp(prefix="house-replica-")
    data = os.path.join(workdir, "data")
    if run_as:
        shutil.chown(workdir, "housepg")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    user = primary["USER"] or "house"
    base = [
        f"{bindir}/pg_basebackup",
        "-h",
        "127.0.0.1",
        "-p",
        str(primary["PORT"]),
        "-U",
        user,
        "-D",
        data,
        "-R",
        "-X",
        "stream",
        "-c",
        "fast",
    ]
    started = False
    try:
        subprocess.run(run_as + base, check=True, capture_output=True, timeout=120)
        with connections["default"].cursor() as cursor:  # a hot standby needs at least the primary's connection slots
            cursor.execute("SHOW max_connections")
            slots = cursor.fetchone()[0]
        options = f"-c listen_addresses=127.0.0.1 -p {port} -k {data} -c hot_standby=on -c fsync=off -c max_connections={slots}"
        start = subprocess.run(
            run_as + [f"{bindir}/pg_ctl", "-D", data, "-l", f"{workdir}/server.log", "-w", "-t", "60", "start", "-o", options],
            capture_output=True,
            text=True,
            timeout=120,
        )
        started = True
        if start.returncode != 0:
            log = open(f"{workdir}/server.log").read() if os.path.exists(f"{workdir}/server.log") else ""
            raise AssertionError(f"the standby did not start: {start.stdout} {start.stderr} {log}")
        yield port
    finally:
        if started:
            subprocess.run(run_as + [f"{bindir}/pg_ctl", "-D", data, "-m", "immediate", "stop"], capture_output=True, timeout=60)
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.mark.django_db(transaction=True, databases=["default", "replica"])
def test_the_report_reads_a_real_streaming_replica(streaming_replica, make_player, operator, market, settings):
    """The replica alias pointed at a hot standby: the report answers from it once the trade is replayed,
    the standby refuses writes, and an object read there is saved on the primary."""
    replica = connections["replica"]
    replica.close()
    original_port = replica.settings_dict["PORT"]
    replica.settings_dict["PORT"] = streaming_replica
    settings.DATABASE_REPLICA_READS = True
    try:
        _, api = make_player(Decimal("100"))
        assert api.post("trade", buy_body(amount="30.00")).status_code == 200
        operator_api = Api({"X-Operator-Key": operator.api_key})
        for _ in range(100):  # the standby's replay delay
            days = decimal_json(operator_api.get("operator/reports/daily", {"from": today(), "to": today()}))["days"]
            if days:
                break
            time.sleep(0.05)
        assert days and days[0]["stakes"] == Decimal("30.00") and days[0]["trades"] == 1
        with replica.cursor() as cursor:
            cursor.execute("SELECT pg_is_in_recovery(), current_setting('port')")
            assert cursor.fetchone() == (True, str(streaming_replica))
        with pytest.raises(DatabaseError, match="read-only"), transaction.atomic(using="replica"):
            DailyRollup.objects.using("replica").update(trades=0)
        row = DailyRollup.objects.using("replica").get(operator=operator.operator)
        row.save()  # the router writes it on the primary
        assert row._state.db == "default"
    finally:
        replica.close()
        replica.settings_dict["PORT"] = original_port
