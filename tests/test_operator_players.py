"""The operator's players (SPEC §13): the bodies of GET and PATCH operator/players, their pages,
tenant isolation, and the controls at work in the trade (blocking, the operator's limits)."""

import json
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.db import connection, connections
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from casino.models import Player, Trade
from casino.services.credentials import operator_create, session_open, session_player
from core.api.rendering import iso
from risk import counters
from risk.models import RiskDecision
from tests.conftest import MARKET, Api, buy_body, decimal_json
from wallets.models import DebtEntry, OperatorWallet, PlayerDebt
from wallets.reference_server import ReferenceWalletServer, serve_in_thread
from wallets.services.transfers import wallet_deposit

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("no_rate_limits")]

NO_LIMITS = {"maxStakePerTrade": None, "maxDailyStake": None, "maxDailyLoss": None}
BLOCKED = {"error": "Player blocked", "code": "player_blocked"}
NOT_FOUND = {"error": "Player not found", "code": "player_not_found"}


def sell_body(shares, mid=62):
    return {"marketId": MARKET, "side": "sell", "outcome": "yes", "amount": shares, "midPrice": mid}


def refused(response, limit: str) -> RiskDecision:
    """A refusal by the operator's limit on the player, answered and recorded like the house's walls."""
    assert response.status_code == 400, response.content
    code = f"risk.tier.{limit}"
    assert decimal_json(response) == {"error": "Trade rejected by risk engine", "code": code, "wall": "tier", "limit": limit}
    decision = RiskDecision.objects.order_by("-id").first()
    assert (decision.wall, decision.limit, decision.code, decision.side) == ("tier", limit, code, "buy")
    return decision


def patch(operator_api, player_id: str, body: dict) -> dict:
    response = operator_api.patch(f"operator/players/{player_id}", body)
    assert response.status_code == 200, response.content
    return decimal_json(response)


@pytest.fixture
def other_operator(db):
    return operator_create(name=f"op-b-{uuid.uuid4().hex[:8]}", wallet_mode="internal")


# -- reads ---------------------------------------------------------------------------------------


def test_player_detail_shows_the_players_figures(make_player, market, operator_api):
    player, api = make_player(Decimal("100"), external_id="alice")
    assert api.post("trade", buy_body()).status_code == 200  # 39.0625 shares at 64 for $25
    PlayerDebt.objects.create(player=player, amount=Decimal("3.50"))
    DebtEntry.objects.create(player=player, kind="incurred", amount=Decimal("3.50"), reference_id=uuid.uuid4())
    response = operator_api.get("operator/players/alice")
    assert response.status_code == 200
    assert decimal_json(response) == {
        "userId": str(player.pk),
        "playerId": "alice",
        "tier": "standard",
        "status": "active",
        "limits": NO_LIMITS,
        "totalWagered": Decimal("25.00"),
        "debt": Decimal("3.50"),
        "balance": Decimal("75.00"),
        "openExposure": Decimal("14.06"),  # 39.0625 shares owe $39.0625 if YES wins, minus the $25.00 paid at 64
        "createdAt": iso(player.created_at),
    }
    assert b'"totalWagered":25.00,' in response.content  # money renders as numbers with two decimals


def test_player_list_is_newest_first_in_keyset_pages(make_player, operator_api):
    made = [make_player(external_id=f"p{i}")[0] for i in range(5)]
    expected = [p.external_id for p in sorted(made, key=lambda p: (p.created_at, p.pk), reverse=True)]
    seen, cursor, pages = [], None, 0
    while True:
        params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        body = decimal_json(operator_api.get("operator/players", params))
        assert len(body["players"]) <= 2
        seen += [p["playerId"] for p in body["players"]]
        pages += 1
        cursor = body["nextCursor"]
        if cursor is None:
            break
    assert (seen, pages) == (expected, 3)
    first = decimal_json(operator_api.get("operator/players"))
    assert [p["playerId"] for p in first["players"]] == expected and first["nextCursor"] is None
    assert first["players"][0] == {
        "userId": str(made[-1].pk),
        "playerId": "p4",
        "tier": "standard",
        "status": "active",
        "limits": NO_LIMITS,
        "totalWagered": Decimal("0.00"),
        "debt": Decimal("0.00"),
        "balance": Decimal("0.00"),
        "openExposure": Decimal("0.00"),
        "createdAt": iso(made[-1].created_at),
    }


def test_player_list_filters_by_status_and_tier(make_player, operator_api):
    for name in ("a", "b", "c"):
        make_player(external_id=name)
    patch(operator_api, "a", {"status": "blocked"})
    patch(operator_api, "b", {"tier": "vip"})

    def ids(params):
        return [p["playerId"] for p in decimal_json(operator_api.get("operator/players", params))["players"]]

    assert ids({"status": "blocked"}) == ["a"]
    assert ids({"tier": "vip"}) == ["b"]
    assert ids({"status": "active", "tier": "standard"}) == ["c"]
    assert ids({"tier": "nobody"}) == []
    bad = operator_api.get("operator/players", {"status": "frozen"})
    assert (bad.status_code, decimal_json(bad)) == (400, {"error": "Invalid status", "code": "invalid_status"})
    assert decimal_json(operator_api.get("operator/players", {"limit": "0"}))["code"] == "invalid_limit"
    assert decimal_json(operator_api.get("operator/players", {"cursor": "forged"}))["code"] == "invalid_cursor"


def test_player_list_reads_a_page_in_a_fixed_number_of_queries(make_player, market, operator_api):
    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert operator_api.get("operator/players").status_code == 200
        return len(captured)

    _, api = make_player(Decimal("100"))
    api.post("trade", buy_body(amount="5"))
    few = queries()
    for _ in range(5):
        _, api = make_player(Decimal("100"))
        assert api.post("trade", buy_body(amount="5")).status_code == 200
    assert queries() == few <= 2  # the operator key, then the page with every figure


def test_operator_endpoints_need_the_operator_key(make_player):
    make_player(external_id="alice")
    assert Api().get("operator/players").status_code == 401
    assert Api({"X-Operator-Key": "op_wrong"}).get("operator/players/alice").status_code == 401
    _, player_api = make_player()
    assert player_api.patch("operator/players/alice", {"status": "blocked"}).status_code == 401


def test_unknown_player_is_404(operator_api):
    for response in (operator_api.get("operator/players/nobody"), operator_api.patch("operator/players/nobody", {"status": "blocked"})):
        assert (response.status_code, decimal_json(response)) == (404, NOT_FOUND)


# -- tenant isolation ---------------------------------------------------------------------------


def test_another_operators_player_is_404_and_never_listed(make_player, operator, operator_api, other_operator):
    mine, _ = make_player(external_id="alice")
    make_player(external_id="shared")
    theirs, _ = make_player(external_id="bob", op=other_operator)
    their_shared, _ = make_player(external_id="shared", op=other_operator)
    other_api = Api({"X-Operator-Key": other_operator.api_key})

    for response in (
        other_api.get("operator/players/alice"),
        other_api.patch("operator/players/alice", {"status": "blocked", "limits": {"maxDailyLoss": 1}}),
        operator_api.get("operator/players/bob"),
        operator_api.patch("operator/players/bob", {"tier": "vip"}),
    ):
        assert (response.status_code, decimal_json(response)) == (404, NOT_FOUND)
    assert Player.objects.get(pk=mine.pk).status == "active" and Player.objects.get(pk=mine.pk).max_daily_loss is None
    assert Player.objects.get(pk=theirs.pk).tier == "standard"

    mine_listed = decimal_json(operator_api.get("operator/players"))["players"]
    theirs_listed = decimal_json(other_api.get("operator/players"))["players"]
    assert sorted(p["playerId"] for p in mine_listed) == ["alice", "shared"]
    assert sorted(p["playerId"] for p in theirs_listed) == ["bob", "shared"]
    assert {p["userId"] for p in mine_listed}.isdisjoint({p["userId"] for p in theirs_listed})
    # The same player id at two operators is two players: each operator changes its own.
    assert patch(other_api, "shared", {"status": "blocked"})["userId"] == str(their_shared.pk)
    assert decimal_json(operator_api.get("operator/players/shared"))["status"] == "active"
    # A cursor of one operator's list does not page another's.
    make_player(external_id="carol")
    cursor = decimal_json(operator_api.get("operator/players", {"limit": "1"}))["nextCursor"]
    assert decimal_json(other_api.get("operator/players", {"cursor": cursor}))["code"] == "invalid_cursor"


# -- PATCH ---------------------------------------------------------------------------------------


def test_patch_sets_status_tier_and_limits_and_answers_the_player(make_player, operator_api):
    player, _ = make_player(external_id="alice")
    body = patch(
        operator_api,
        "alice",
        {"status": "blocked", "tier": "vip", "limits": {"maxStakePerTrade": 50, "maxDailyStake": "500", "maxDailyLoss": Decimal("200.5")}},
    )
    assert body == {
        "userId": str(player.pk),
        "playerId": "alice",
        "tier": "vip",
        "status": "blocked",
        "limits": {"maxStakePerTrade": Decimal("50.00"), "maxDailyStake": Decimal("500.00"), "maxDailyLoss": Decimal("200.50")},
        "totalWagered": Decimal("0.00"),
        "debt": Decimal("0.00"),
        "balance": Decimal("0.00"),
        "openExposure": Decimal("0.00"),
        "createdAt": iso(player.created_at),
    }
    assert decimal_json(operator_api.get("operator/players/alice")) == body
    # Every field is optional; a limit set to null is removed, the others stay.
    body = patch(operator_api, "alice", {"limits": {"maxStakePerTrade": None}})
    assert body["limits"] == {"maxStakePerTrade": None, "maxDailyStake": Decimal("500.00"), "maxDailyLoss": Decimal("200.50")}
    assert (body["status"], body["tier"]) == ("blocked", "vip")
    assert patch(operator_api, "alice", {}) == body
    body = patch(operator_api, "alice", {"status": "active", "limits": {"maxDailyStake": 0}})
    assert (body["status"], body["limits"]["maxDailyStake"]) == ("active", Decimal("0.00"))
    row = Player.objects.get(pk=player.pk)
    assert (row.status, row.tier, row.max_stake_per_trade, row.max_daily_stake, row.max_daily_loss) == (
        "active",
        "vip",
        None,
        Decimal("0"),
        Decimal("200.50"),
    )


@pytest.mark.parametrize(
    ("body", "error", "code"),
    [
        ({"nickname": "x"}, "Unknown field: nickname", "unknown_field"),
        ({"status": "frozen"}, "Invalid status", "invalid_status"),
        ({"status": None}, "Invalid status", "invalid_status"),
        ({"status": 1}, "Invalid status", "invalid_status"),
        ({"tier": "gold"}, "Unknown tier", "unknown_tier"),
        ({"tier": "Not A Tier!"}, "Invalid tier", "invalid_tier"),
        ({"tier": None}, "Invalid tier", "invalid_tier"),
        ({"limits": 50}, "Invalid limits", "invalid_limits"),
        ({"limits": None}, "Invalid limits", "invalid_limits"),
        ({"limits": {"maxStake": 50}}, "Unknown field: maxStake", "unknown_field"),
        ({"limits": {"maxDailyLoss": -1}}, "Invalid maxDailyLoss", "invalid_maxdailyloss"),
        ({"limits": {"maxDailyLoss": "lots"}}, "Invalid maxDailyLoss", "invalid_maxdailyloss"),
        ({"limits": {"maxDailyStake": Decimal("1.001")}}, "Invalid maxDailyStake", "invalid_maxdailystake"),
        ({"limits": {"maxStakePerTrade": True}}, "Invalid maxStakePerTrade", "invalid_maxstakepertrade"),
        ({"limits": {"maxStakePerTrade": [1]}}, "Invalid maxStakePerTrade", "invalid_maxstakepertrade"),
        ({"limits": {"maxStakePerTrade": "1e400"}}, "Invalid maxStakePerTrade", "invalid_maxstakepertrade"),
        ({"status": "blocked", "limits": {"maxDailyLoss": -5}}, "Invalid maxDailyLoss", "invalid_maxdailyloss"),
    ],
)
def test_patch_refuses_bad_input_and_changes_nothing(make_player, operator_api, body, error, code):
    player, _ = make_player(external_id="alice")
    response = operator_api.patch("operator/players/alice", body)
    assert (response.status_code, decimal_json(response)) == (400, {"error": error, "code": code})
    row = Player.objects.get(pk=player.pk)
    assert (row.status, row.tier, row.max_stake_per_trade, row.max_daily_stake, row.max_daily_loss) == (
        "active",
        "standard",
        None,
        None,
        None,
    )


def test_patch_refuses_a_body_that_is_not_an_object(make_player, operator_api):
    make_player(external_id="alice")
    response = operator_api.client.patch(
        "/api/casino/operator/players/alice", data="[1]", content_type="application/json", headers=operator_api.headers
    )
    assert (response.status_code, decimal_json(response)["code"]) == (400, "invalid_body")
    response = operator_api.client.patch(
        "/api/casino/operator/players/alice", data="{not json", content_type="application/json", headers=operator_api.headers
    )
    assert (response.status_code, decimal_json(response)["code"]) == (400, "malformed_json")


# -- blocking ------------------------------------------------------------------------------------


def test_a_blocked_player_cannot_buy_or_open_a_session_but_can_sell(make_player, market, operator_api):
    player, api = make_player(Decimal("100"), external_id="alice")
    assert api.post("trade", buy_body()).status_code == 200
    patch(operator_api, "alice", {"status": "blocked"})

    response = api.post("trade", buy_body(amount="1"))
    assert (response.status_code, decimal_json(response)) == (400, BLOCKED)
    decision = RiskDecision.objects.get()
    assert (decision.player_id, decision.wall, decision.limit, decision.code, decision.message) == (
        player.pk,
        "kill_switch",
        "player_blocked",
        "player_blocked",
        "Player blocked",
    )
    response = operator_api.post("operator/sessions", {"playerId": "alice"})
    assert (response.status_code, decimal_json(response)) == (400, BLOCKED)
    sold = api.post("trade", sell_body(10))  # the session opened before the block still sells
    assert sold.status_code == 200, sold.content
    assert api.get("balance").status_code == 200 and api.get("positions").status_code == 200

    patch(operator_api, "alice", {"status": "active"})
    assert api.post("trade", buy_body(amount="1")).status_code == 200
    assert operator_api.post("operator/sessions", {"playerId": "alice"}).status_code == 200


def test_blocking_does_not_stop_new_players_of_the_operator(make_player, market, operator_api):
    make_player(external_id="alice")
    patch(operator_api, "alice", {"status": "blocked"})
    assert operator_api.post("operator/sessions", {"playerId": "bob"}).status_code == 200


# -- the operator's limits in the trade ----------------------------------------------------------


def test_max_stake_per_trade(make_player, market, operator_api):
    player, api = make_player(Decimal("200"), external_id="alice")
    patch(operator_api, "alice", {"limits": {"maxStakePerTrade": 50}})
    decision = refused(api.post("trade", buy_body(amount="50.01")), "player_limit_stake_per_trade")
    assert decision.values == {"stake": "50.01", "limit": "50.00"} and decision.player_id == player.pk
    assert api.post("trade", buy_body(amount="50")).status_code == 200  # at the limit
    assert api.post("trade", buy_body(amount="49.99")).status_code == 200
    patch(operator_api, "alice", {"limits": {"maxStakePerTrade": None}})  # null removes it
    assert api.post("trade", buy_body(amount="60")).status_code == 200


def test_max_daily_stake_counts_every_buy_of_the_day(make_player, market, operator_api):
    _, api = make_player(Decimal("200"), external_id="alice")
    assert api.post("trade", buy_body(amount="20")).status_code == 200  # before any limit: counted all the same
    patch(operator_api, "alice", {"limits": {"maxDailyStake": 60}})
    assert api.post("trade", buy_body(amount="30")).status_code == 200
    decision = refused(api.post("trade", buy_body(amount="10.01")), "player_limit_daily_stake")
    assert decision.values == {"current": "5000", "adding": "1001", "limit": "6000"}  # cents, as the house's counters
    assert api.post("trade", buy_body(amount="10")).status_code == 200  # exactly at the limit
    assert api.post("trade", sell_body(10)).status_code == 200  # sells stake nothing, and give no room back
    refused(api.post("trade", buy_body(amount="0.01")), "player_limit_daily_stake")
    patch(operator_api, "alice", {"limits": {"maxDailyStake": None}})
    assert api.post("trade", buy_body(amount="1")).status_code == 200


def test_max_daily_loss_is_stakes_minus_sale_proceeds(make_player, market, operator_api):
    _, api = make_player(Decimal("200"), external_id="alice")
    patch(operator_api, "alice", {"limits": {"maxDailyLoss": 40}})
    assert api.post("trade", buy_body(amount="25")).status_code == 200
    assert api.post("trade", sell_body(10)).status_code == 200  # 10 shares at mid 62: 6.20 back, as the tier's wall counts it
    refused(api.post("trade", buy_body(amount="21.21")), "player_limit_daily_loss")  # 25 - 6.20 + 21.21 = 40.01
    assert api.post("trade", buy_body(amount="21.20")).status_code == 200  # exactly 40
    decision = refused(api.post("trade", buy_body(amount="0.01")), "player_limit_daily_loss")
    assert decision.values == {"current": "4000", "adding": "1", "limit": "4000"}
    assert api.post("trade", sell_body(5)).status_code == 200  # proceeds come back: room again
    assert api.post("trade", buy_body(amount="0.01")).status_code == 200
    patch(operator_api, "alice", {"limits": {"maxDailyLoss": None}})
    assert api.post("trade", buy_body(amount="50")).status_code == 200


def test_the_tiers_daily_loss_refuses_first_when_it_is_the_one_passed(operator, market, operator_api):
    session = session_open(operator=operator.operator, external_player_id="restricted-1", tier="restricted")  # daily loss 200
    wallet_deposit(player=session.player, amount=Decimal("500"))
    api = Api({"Authorization": f"Bearer {session.token}"})
    patch(operator_api, "restricted-1", {"limits": {"maxDailyLoss": 150}})
    assert api.post("trade", buy_body(amount="100")).status_code == 200
    refused(api.post("trade", buy_body(amount="50.01")), "player_limit_daily_loss")  # 150.01: past the player's, not the tier's
    patch(operator_api, "restricted-1", {"limits": {"maxDailyLoss": 300}})
    assert api.post("trade", buy_body(amount="100")).status_code == 200  # 200: the tier's limit
    refused(api.post("trade", buy_body(amount="1")), "max_daily_loss")  # past both: the house's wall is named


def test_a_trade_that_fails_after_the_walls_uses_none_of_the_days_room(make_player, market, operator_api):
    player, api = make_player(Decimal("10"), external_id="alice")
    patch(operator_api, "alice", {"limits": {"maxDailyStake": 30, "maxDailyLoss": 30}})
    assert decimal_json(api.post("trade", buy_body(amount="25")))["code"] == "insufficient_balance"
    wallet_deposit(player=player, amount=Decimal("20"))
    assert api.post("trade", buy_body(amount="30")).status_code == 200
    refused(api.post("trade", buy_body(amount="0.01")), "player_limit_daily_loss")  # the house's daily loss counter comes first


# -- the seamless wallet (S2S) -------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_controls_apply_to_players_of_an_s2s_operator(market, settings):
    settings.HOUSE_WALLET_RETRY_BASE_SECONDS = 0
    issued = operator_create(name=f"s2s-{uuid.uuid4().hex[:8]}", wallet_mode="s2s", wallet_url="http://placeholder")
    server = ReferenceWalletServer(issued.wallet_secret, seed=7)
    url, stop = serve_in_thread(server)
    try:
        OperatorWallet.objects.filter(operator=issued.operator).update(base_url=url)
        session = session_open(operator=issued.operator, external_player_id="s2s-alice")
        server.set_player("s2s-alice", balance=Decimal("100"))
        api = Api({"Authorization": f"Bearer {session.token}"})
        operator_api = Api({"X-Operator-Key": issued.api_key})

        body = patch(operator_api, "s2s-alice", {"limits": {"maxStakePerTrade": 20}})
        assert (body["balance"], body["limits"]["maxStakePerTrade"]) == (None, Decimal("20.00"))
        refused(api.post("trade", buy_body(amount="20.01")), "player_limit_stake_per_trade")
        assert api.post("trade", buy_body(amount="20")).status_code == 200
        assert server.balance("s2s-alice") == Decimal("80.00")

        patch(operator_api, "s2s-alice", {"status": "blocked"})
        response = api.post("trade", buy_body(amount="1"))
        assert (response.status_code, decimal_json(response)) == (400, BLOCKED)
        assert server.balance("s2s-alice") == Decimal("80.00")  # the wallet was never called
        assert api.post("trade", sell_body(10)).status_code == 200
        assert server.balance("s2s-alice") == Decimal("86.00")  # 10 shares at 60
        detail = decimal_json(operator_api.get("operator/players/s2s-alice"))
        assert (detail["status"], detail["balance"], detail["totalWagered"]) == ("blocked", None, Decimal("20.00"))
    finally:
        stop()


def test_the_session_lookup_carries_the_controls(make_player, operator_api, django_assert_num_queries):
    """The trade reads the controls from the player its session lookup built: no query of its own."""

    make_player(external_id="alice")
    patch(operator_api, "alice", {"limits": {"maxStakePerTrade": 5, "maxDailyLoss": "7.5"}})
    token = operator_api.post("operator/sessions", {"playerId": "alice"}).json()["token"]
    patch(operator_api, "alice", {"status": "blocked", "limits": {"maxStakePerTrade": None, "maxDailyStake": 9}})
    player = session_player(token)
    with django_assert_num_queries(0):
        controls = (player.status, player.max_stake_per_trade, player.max_daily_stake, player.max_daily_loss, player.tier)
    assert controls == ("blocked", None, Decimal("9.00"), Decimal("7.50"), "standard")


def test_an_exceeded_counter_is_named_by_its_place_in_the_callers_list():
    """Counters with nothing to add or check are skipped by the script; the refusal still names the
    caller's counter (a sell adds nothing to the day's stakes, and wall 5's counters come after)."""

    key = uuid.uuid4().hex
    skipped = counters.Counter.daily(f"skip:{key}", add=0, limit=None)
    full = counters.Counter.daily(f"full:{key}", add=5, limit=4)
    assert counters.reserve([skipped, full]) == counters.Exceeded(index=1, current=0)


# -- the admin and the OpenAPI document ----------------------------------------------------------


def test_staff_see_and_edit_the_controls_in_the_player_admin(client, make_player):

    client.force_login(get_user_model().objects.create_superuser(username="desk", email="desk@example.com", password="pw-not-used"))
    player, _ = make_player(external_id="alice")
    url = reverse("admin:casino_player_change", args=[player.pk])
    page = client.get(url).content.decode()
    for field in ("status", "max_stake_per_trade", "max_daily_stake", "max_daily_loss"):
        assert f'name="{field}"' in page
    form = {"tier": "standard", "status": "blocked", "max_stake_per_trade": "25", "max_daily_stake": "", "max_daily_loss": "100.50"}
    assert client.post(url, form).status_code == 302
    row = Player.objects.get(pk=player.pk)
    assert (row.status, row.max_stake_per_trade, row.max_daily_stake, row.max_daily_loss) == (
        "blocked",
        Decimal("25"),
        None,
        Decimal("100.50"),
    )
    refused_form = client.post(url, {**form, "max_daily_stake": "-1"})
    assert refused_form.status_code == 200 and "max_daily_stake" in refused_form.context["adminform"].form.errors
    assert "blocked" in client.get(reverse("admin:casino_player_changelist"), {"status__exact": "blocked"}).content.decode()


def test_the_player_endpoints_are_in_the_openapi_document():

    schema = json.loads(Client().get("/api/schema/", HTTP_ACCEPT="application/json").content)
    players, player = schema["paths"]["/api/casino/operator/players"], schema["paths"]["/api/casino/operator/players/{playerId}"]
    assert set(player) >= {"get", "patch"}
    for operation in (players["get"], player["get"], player["patch"]):
        assert operation["security"] == [{"operatorKey": []}]
    assert {p["name"] for p in players["get"]["parameters"]} >= {"limit", "cursor", "status", "tier"}


@pytest.mark.django_db(transaction=True)
def test_simultaneous_buys_never_pass_the_daily_stake_limit(make_player, market, operator_api, no_velocity_limits):

    player, api = make_player(Decimal("500"), external_id="alice")
    patch(operator_api, "alice", {"limits": {"maxDailyStake": 30}})
    barrier = threading.Barrier(10)

    def buy(_):
        try:
            barrier.wait(timeout=30)
            return api.post("trade", buy_body(amount="10"))
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=10) as pool:
        responses = list(pool.map(buy, range(10)))
    assert sorted(r.status_code for r in responses) == [200] * 3 + [400] * 7
    assert {decimal_json(r)["code"] for r in responses if r.status_code == 400} == {"risk.tier.player_limit_daily_stake"}
    assert Trade.objects.filter(player=player).count() == 3
    assert RiskDecision.objects.filter(code="risk.tier.player_limit_daily_stake").count() == 7
