"""The operator revenue share (SPEC §16): ``operatorSharePct`` per operator (default 70, edited in the
admin); every row of the daily report (JSON and CSV) carries ``operatorShare`` = GGR x pct / 100 rounded
down to the cent and ``houseShare`` = the rest; ``GET operator/reports/monthly?month=YYYY-MM`` gives the
month's totals and shares (400 for a bad month, another operator's figures never); the staff dashboard
shows the same per operator. Exact figures, on real PostgreSQL."""

import datetime
import uuid
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from casino.models import Operator
from casino.services.credentials import operator_create
from reports.models import DailyPlayer, DailyRollup
from reports.selectors import revenue_share
from settlement.services.decide import market_settle
from settlement.services.payouts import settlement_advance
from tests.conftest import MARKET, Api, buy_body, decimal_json, requires_postgres

pytestmark = [requires_postgres, pytest.mark.usefixtures("no_rate_limits", "no_velocity_limits")]

D = Decimal


def _rollup(operator, day: str, shard: int = 0, **figures):
    DailyRollup.objects.create(operator_id=operator.pk, day=datetime.date.fromisoformat(day), currency="USD", shard=shard, **figures)


def _played(operator, day: str, player_id):
    DailyPlayer.objects.create(operator_id=operator.pk, day=datetime.date.fromisoformat(day), player_id=player_id, currency="USD")


@pytest.fixture
def march(operator):
    """A book in March 2026 (and around it) written straight into the rollup (derived data the
    triggers keep; here the figures are chosen): two active days, one split over two shards."""
    op = operator.operator
    _rollup(op, "2026-03-05", 0, trades=3, players=2, stakes=D("100.00"), payouts=D("30.50"))
    _rollup(op, "2026-03-05", 7, trades=1, players=0, stakes=D("0.01"))
    _rollup(op, "2026-03-31", 0, trades=2, players=1, stakes=D("50.25"), sale_proceeds=D("10.00"), refunds=D("5.00"), reversals=D("1.10"))
    _rollup(op, "2026-02-28", 0, trades=9, players=1, stakes=D("999.00"))  # another month
    _rollup(op, "2026-04-01", 0, trades=9, players=1, stakes=D("888.00"))
    a, b = uuid.uuid4(), uuid.uuid4()  # the players' ids only matter for counting them
    _played(op, "2026-03-05", a)
    _played(op, "2026-03-05", b)
    _played(op, "2026-03-31", a)  # the same player on another day: once in the month
    _played(op, "2026-04-01", uuid.uuid4())
    return operator


def test_the_split_rounds_the_operators_share_down_to_the_cent_and_sums_to_the_ggr():
    assert revenue_share(D("100.00"), D("70")) == (D("70.00"), D("30.00"))
    assert revenue_share(D("69.51"), D("70")) == (D("48.65"), D("20.86"))  # 48.657 -> 48.65
    assert revenue_share(D("-14.06"), D("70")) == (D("-9.85"), D("-4.21"))  # -9.842 -> -9.85: still the house's way
    assert revenue_share(D("0.00"), D("70")) == (D("0.00"), D("0.00"))
    assert revenue_share(D("70.01"), D("33.33")) == (D("23.33"), D("46.68"))
    assert revenue_share(D("12.34"), D("100")) == (D("12.34"), D("0.00"))
    assert revenue_share(D("12.34"), D("0")) == (D("0.00"), D("12.34"))


@pytest.mark.django_db
def test_a_new_operator_shares_70_percent(db):
    assert operator_create(name="Fresh", wallet_mode="internal").operator.operator_share_pct == D("70")
    assert Operator.objects.get(name="Fresh").operator_share_pct == D("70.00") and Operator.objects.get(name="Fresh").notify_losses


@pytest.mark.django_db
def test_daily_rows_carry_the_shares_in_json_and_csv(march, operator_api):
    response = operator_api.get("operator/reports/daily", {"from": "2026-03-01", "to": "2026-03-31"})
    assert response.status_code == 200
    assert decimal_json(response) == {
        "days": [
            {
                "date": "2026-03-05", "currency": "USD", "trades": 4, "players": 2, "stakes": D("100.01"), "saleProceeds": D("0.00"),
                "payouts": D("30.50"), "refunds": D("0.00"), "reversals": D("0.00"), "ggr": D("69.51"),
                "operatorShare": D("48.65"), "houseShare": D("20.86"),
            },
            {
                "date": "2026-03-31", "currency": "USD", "trades": 2, "players": 1, "stakes": D("50.25"), "saleProceeds": D("10.00"),
                "payouts": D("0.00"), "refunds": D("5.00"), "reversals": D("1.10"), "ggr": D("36.35"),
                "operatorShare": D("25.44"), "houseShare": D("10.91"),
            },
        ]
    }  # fmt: skip
    csv = operator_api.get("operator/reports/daily", {"from": "2026-03-01", "to": "2026-03-31", "format": "csv"})
    assert b"".join(csv.streaming_content).decode() == (
        "date,currency,trades,players,stakes,saleProceeds,payouts,refunds,reversals,ggr,operatorShare,houseShare\r\n"
        "2026-03-05,USD,4,2,100.01,0.00,30.50,0.00,0.00,69.51,48.65,20.86\r\n"
        "2026-03-31,USD,2,1,50.25,10.00,0.00,5.00,1.10,36.35,25.44,10.91\r\n"
    )


@pytest.mark.django_db
def test_the_share_percent_is_the_one_at_report_time(march, operator_api):
    Operator.objects.filter(pk=march.operator.pk).update(operator_share_pct=D("33.33"))
    days = decimal_json(operator_api.get("operator/reports/daily", {"from": "2026-03-05", "to": "2026-03-05"}))["days"]
    assert (days[0]["ggr"], days[0]["operatorShare"], days[0]["houseShare"]) == (D("69.51"), D("23.16"), D("46.35"))  # 23.1676...


@pytest.mark.django_db
def test_monthly_totals_and_shares(march, operator_api):
    response = operator_api.get("operator/reports/monthly", {"month": "2026-03"})
    assert response.status_code == 200, response.content
    assert decimal_json(response) == {
        "month": "2026-03",
        "start": "2026-03-01",
        "end": "2026-03-31",
        "operatorSharePct": D("70.00"),
        "totals": [
            {
                "currency": "USD", "trades": 6, "players": 2, "stakes": D("150.26"), "saleProceeds": D("10.00"), "payouts": D("30.50"),
                "refunds": D("5.00"), "reversals": D("1.10"), "ggr": D("105.86"), "operatorShare": D("74.10"), "houseShare": D("31.76"),
            }
        ],
    }  # fmt: skip
    # 74.102 of the month's GGR; the days' shares sum to 74.09 (each rounded down): the month is split as a whole.
    assert '"operatorShare":74.10' in response.content.decode()
    assert decimal_json(operator_api.get("operator/reports/monthly", {"month": "2026-02"}))["totals"][0]["stakes"] == D("999.00")
    assert decimal_json(operator_api.get("operator/reports/monthly", {"month": "2025-03"}))["totals"] == []


@pytest.mark.django_db
def test_another_operator_sees_only_its_own_month(march):
    other = operator_create(name="Other Casino", wallet_mode="internal")
    body = decimal_json(Api({"X-Operator-Key": other.api_key}).get("operator/reports/monthly", {"month": "2026-03"}))
    assert body["totals"] == [] and body["operatorSharePct"] == D("70.00")
    assert Api().get("operator/reports/monthly", {"month": "2026-03"}).status_code in (401, 403)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"month": "2026-13"}, "invalid_month"),
        ({"month": "2026-00"}, "invalid_month"),
        ({"month": "2026-3"}, "invalid_month"),
        ({"month": "26-03"}, "invalid_month"),
        ({"month": "2026-03-01"}, "invalid_month"),
        ({"month": "0000-01"}, "invalid_month"),
        ({"month": "march"}, "invalid_month"),
        ({"month": ""}, "invalid_month"),
        ({}, "missing_fields"),
    ],
)
def test_a_bad_month_is_400(operator_api, params, code):
    response = operator_api.get("operator/reports/monthly", params)
    assert response.status_code == 400
    body = decimal_json(response)
    assert body["code"] == code and body["error"]


@pytest.mark.django_db(transaction=True)
def test_a_losing_day_splits_the_loss_from_real_trades_and_a_settlement(make_player, operator, market, monkeypatch):
    """Through the triggers: $25 of YES at 64 pays 39.06 when YES wins, a GGR of -14.06 that day."""
    from settlement.services import decide

    monkeypatch.setattr(decide, "_start", lambda settlement_id: None)
    _, api = make_player(D("100"))
    assert api.post("trade", buy_body()).status_code == 200
    settlement = market_settle(market_id=MARKET, action="resolve", outcome="yes")
    assert settlement_advance(settlement_id=settlement.pk)
    today = timezone.now().astimezone(datetime.UTC).date()
    operator_api = Api({"X-Operator-Key": operator.api_key})
    days = decimal_json(operator_api.get("operator/reports/daily", {"from": today.isoformat(), "to": today.isoformat()}))["days"]
    assert [(d["ggr"], d["operatorShare"], d["houseShare"]) for d in days] == [(D("-14.06"), D("-9.85"), D("-4.21"))]
    month = decimal_json(operator_api.get("operator/reports/monthly", {"month": f"{today:%Y-%m}"}))
    assert [(t["trades"], t["players"], t["ggr"], t["operatorShare"], t["houseShare"]) for t in month["totals"]] == [
        (1, 1, D("-14.06"), D("-9.85"), D("-4.21"))
    ]


@pytest.mark.django_db
def test_the_staff_dashboard_shows_the_shares_per_operator(operator, client):
    first = operator.operator
    second = operator_create(name="Second Book", wallet_mode="internal").operator
    Operator.objects.filter(pk=second.pk).update(operator_share_pct=D("55.50"))
    today = timezone.now().astimezone(datetime.UTC).date()
    earlier = today.replace(day=1) if today.day > 1 else None
    _rollup(first, today.isoformat(), trades=2, stakes=D("200.00"), payouts=D("60.00"))  # GGR 140.00
    _rollup(second, today.isoformat(), trades=1, stakes=D("10.01"))  # GGR 10.01
    if earlier:
        _rollup(second, earlier.isoformat(), trades=1, stakes=D("90.00"))  # month to date: 100.01
    get_user_model().objects.create_superuser(username="desk", email="desk@example.com", password="pw-12345678")
    client.force_login(get_user_model().objects.get(username="desk"))
    page = client.get("/admin/").content.decode()
    today_table = page.split('id="today-by-operator"')[1].split("</table>")[0]
    first_row = today_table.split(f'data-operator="{first.pk}"')[1].split("</tr>")[0]
    assert 'class="num ggr">140.00<' in first_row
    assert 'class="num operator-share" title="70.00% of GGR">98.00<' in first_row and 'class="num house-share">42.00<' in first_row
    second_row = today_table.split(f'data-operator="{second.pk}"')[1].split("</tr>")[0]
    assert ">5.55<" in second_row and 'class="num house-share">4.46<' in second_row  # 10.01 x 55.5% = 5.5555
    month = page.split('id="revenue-share"')[1].split("</table>")[0]
    rows = {pk: month.split(f'data-operator="{pk}"')[1].split("</tr>")[0] for pk in (first.pk, second.pk)}
    assert first.name in rows[first.pk] and 'class="num share-pct">70.00<' in rows[first.pk]
    assert 'class="num operator-share">98.00<' in rows[first.pk] and 'class="num house-share">42.00<' in rows[first.pk]
    second_ggr, second_op, second_house = (D("100.01"), D("55.50"), D("44.51")) if earlier else (D("10.01"), D("5.55"), D("4.46"))
    assert f'class="num ggr">{second_ggr}<' in rows[second.pk] and 'class="num share-pct">55.50<' in rows[second.pk]
    assert f'class="num operator-share">{second_op}<' in rows[second.pk] and f'class="num house-share">{second_house}<' in rows[second.pk]


@pytest.mark.django_db
def test_the_share_and_the_loss_switch_are_edited_in_the_admin(operator, admin_client):
    from django.urls import reverse

    url = reverse("admin:casino_operator_change", args=[operator.operator.pk])
    page = admin_client.get(url).content.decode()
    assert 'name="operator_share_pct"' in page and 'name="notify_losses"' in page
    form = {"name": operator.operator.name, "is_active": "on", "operator_share_pct": "101"}
    response = admin_client.post(url, form)
    assert response.status_code == 200 and "Ensure this value is less than or equal to 100." in response.content.decode()
    assert admin_client.post(url, {**form, "operator_share_pct": "62.5"}).status_code == 302
    row = Operator.objects.get(pk=operator.operator.pk)
    assert (row.operator_share_pct, row.notify_losses) == (D("62.50"), False)  # the box left unticked
