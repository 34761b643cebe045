"""The operator's read lists (SPEC §13): trades, positions, transactions, exposure, settlements.

What an operator sees of its own players, exactly; nothing of another operator's, whatever it asks;
pages that walk every row once while trades keep arriving; a 400 in the error shape for bad input.
"""

import threading
import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection, connections

from casino.models import Position, Trade
from casino.services.credentials import operator_create, session_open
from casino.services.markets import reference_price_set
from core.api.rendering import iso
from settlement.models import Payout, Settlement
from tests.conftest import MARKET, Api, buy_body, decimal_json, requires_postgres
from tests.test_settlement import _settle_all
from wallets.models import LedgerEntry, OperationStatus, WalletOperation
from wallets.services.transfers import wallet_deposit

pytestmark = [pytest.mark.usefixtures("no_rate_limits", "no_velocity_limits")]

MARKET2 = "0x1234abcd00000000000000000000000000000000000000000000000000000002"
ZERO = Decimal("0.00")


def _sell(shares, mid=62, market_id=MARKET, outcome="yes"):
    return {"marketId": market_id, "side": "sell", "outcome": outcome, "amount": str(shares), "midPrice": mid}


@pytest.fixture
def no_auto_start(monkeypatch):
    from settlement.services import decide, reversal

    monkeypatch.setattr(decide, "_start", lambda settlement_id: None)
    monkeypatch.setattr(reversal, "_start", lambda reversal_id: None)


class Book:
    """Operator A (internal wallets): alice and bob on two markets, MARKET2 resolved YES.
    Operator B: its own "alice" (same external id, another player) and carol, who trades MARKET only."""

    def __init__(self, operator, make_player, staff_api):
        self.a, self.a_key = operator.operator, operator.api_key
        self.alice, self.alice_api = make_player(Decimal("100"), external_id="alice")
        self.bob, self.bob_api = make_player(Decimal("100"), external_id="bob")
        reference_price_set(market_id=MARKET2, outcome="yes", mid_price=Decimal("62"), title="Will it rain in Paris?", category="weather")
        for api, body in [
            (self.alice_api, buy_body("25.00")),  # 39.0625 YES at 64
            (self.bob_api, buy_body("10.00", mid=38, outcome="no")),  # 25 NO at 40
            (self.alice_api, _sell("10")),  # 10 YES at 60: 6.00
            (self.alice_api, buy_body("10.00", market_id=MARKET2)),  # 15.625 YES at 64
            (self.bob_api, buy_body("5.00", mid=38, outcome="no", market_id=MARKET2)),  # 12.5 NO at 40
        ]:
            response = api.post("trade", body)
            assert response.status_code == 200, response.content
        assert staff_api.post("resolve", {"marketId": MARKET2, "outcome": "yes"}).status_code == 200
        _settle_all()
        self.settlement = Settlement.objects.get(market_id=MARKET2)

        issued = operator_create(name=f"op-b-{uuid.uuid4().hex[:8]}", wallet_mode="internal")
        self.b, self.b_api = issued.operator, Api({"X-Operator-Key": issued.api_key})
        self.b_alice, _ = make_player(Decimal("50"), external_id="alice", op=issued)
        self.carol, carol_api = make_player(Decimal("100"), external_id="carol", op=issued)
        assert carol_api.post("trade", buy_body("20.00")).status_code == 200


@pytest.fixture
def book(operator, make_player, staff_api, market, no_auto_start):
    return Book(operator, make_player, staff_api)


def _get(api, path, **params):
    response = api.get(f"operator/{path}", params)
    assert response.status_code == 200, response.content
    return decimal_json(response)


# ---- exact bodies, house-held wallets ------------------------------------------------------------------


@pytest.mark.django_db
def test_trades_are_the_player_api_records_plus_player_ids(book, operator_api):
    body = _get(operator_api, "trades")
    alice = decimal_json(book.alice_api.get("trades"))["trades"]
    bob = decimal_json(book.bob_api.get("trades"))["trades"]
    with_ids = {
        **{t["id"]: {**t, "playerId": "alice", "userId": str(book.alice.pk)} for t in alice},
        **{t["id"]: {**t, "playerId": "bob", "userId": str(book.bob.pk)} for t in bob},
    }
    newest_first = Trade.objects.filter(operator=book.a).order_by("-created_at", "-id").values_list("id", flat=True)
    assert body == {"trades": [with_ids[str(i)] for i in newest_first], "nextCursor": None}
    assert [(t["playerId"], t["market_id"], t["side"], t["outcome"], t["shares"], t["cost"]) for t in body["trades"]] == [
        ("bob", MARKET2, "buy", "no", Decimal("12.5"), Decimal("5.00")),
        ("alice", MARKET2, "buy", "yes", Decimal("15.625"), Decimal("10.00")),
        ("alice", MARKET, "sell", "yes", Decimal("10"), Decimal("6.00")),
        ("bob", MARKET, "buy", "no", Decimal("25"), Decimal("10.00")),
        ("alice", MARKET, "buy", "yes", Decimal("39.0625"), Decimal("25.00")),
    ]
    assert _get(operator_api, "trades", playerId="alice", marketId=MARKET) == {
        "trades": [with_ids[t["id"]] for t in alice if t["market_id"] == MARKET],
        "nextCursor": None,
    }


@pytest.mark.django_db
def test_trades_from_to_select_by_creation_time(book, operator_api):
    trades = list(Trade.objects.filter(operator=book.a).order_by("created_at", "id"))
    middle = trades[2].created_at
    ids = lambda body: [t["id"] for t in body["trades"]]  # noqa: E731
    assert ids(_get(operator_api, "trades", **{"from": iso(middle)})) == [str(t.id) for t in reversed(trades[2:])]
    assert ids(_get(operator_api, "trades", to=middle.isoformat())) == [str(t.id) for t in reversed(trades[:2])]
    today, tomorrow = middle.date(), middle.date() + timedelta(days=1)
    assert len(_get(operator_api, "trades", **{"from": today.isoformat(), "to": today.isoformat()})["trades"]) == 5  # its whole day
    assert _get(operator_api, "trades", **{"from": tomorrow.isoformat()})["trades"] == []
    assert _get(operator_api, "trades", to=today.isoformat() + "T00:00:00Z")["trades"] == []


@pytest.mark.django_db
def test_positions_body(book, operator_api):
    body = _get(operator_api, "positions")
    by_id = {p.pk: p for p in Position.objects.filter(operator=book.a)}
    newest_first = sorted(by_id.values(), key=lambda p: (p.created_at, p.pk), reverse=True)
    assert [p["id"] for p in body["positions"]] == [str(p.pk) for p in newest_first]
    alice_open = decimal_json(book.alice_api.get("positions"))["positions"]
    assert _get(operator_api, "positions", playerId="alice", status="open") == {
        "positions": [{**p, "playerId": "alice", "userId": str(book.alice.pk)} for p in alice_open],
        "nextCursor": None,
    }
    assert [(p["market_id"], p["outcome"], p["shares"], p["avg_price"], p["status"], p["realized_pnl"]) for p in alice_open] == [
        (MARKET, "yes", Decimal("29.0625"), Decimal("64"), "open", Decimal("-0.40"))
    ]
    resolved = _get(operator_api, "positions", marketId=MARKET2)["positions"]
    assert sorted((p["playerId"], p["outcome"], p["status"]) for p in resolved) == [("alice", "yes", "resolved"), ("bob", "no", "resolved")]


@pytest.mark.django_db
def test_transactions_of_house_held_wallets(book, operator_api):
    body = _get(operator_api, "transactions", playerId="alice")
    entries = list(LedgerEntry.objects.filter(player=book.alice).order_by("-created_at", "-id"))
    assert [(t["type"], t["amount"], t["balanceAfter"]) for t in body["transactions"]] == [
        ("payout", Decimal("15.62"), Decimal("86.62")),
        ("trade_debit", Decimal("-10.00"), Decimal("71.00")),
        ("trade_credit", Decimal("6.00"), Decimal("81.00")),
        ("trade_debit", Decimal("-25.00"), Decimal("75.00")),
        ("deposit", Decimal("100.00"), Decimal("100.00")),
    ]
    sell = entries[2]
    assert body["transactions"][2] == {
        "transactionId": str(sell.pk),
        "playerId": "alice",
        "userId": str(book.alice.pk),
        "type": "trade_credit",
        "amount": Decimal("6.00"),
        "currency": "USD",
        "state": "completed",
        "balanceAfter": Decimal("81.00"),
        "roundId": str(sell.trade_id),
        "tradeId": str(sell.trade_id),
        "referenceTransactionId": None,
        "operatorTransactionId": None,
        "description": sell.description,
        "createdAt": iso(sell.created_at),
    }
    assert body["nextCursor"] is None
    payout = Payout.objects.get(player=book.alice)
    assert [t["transactionId"] for t in _get(operator_api, "transactions", roundId=str(book.settlement.pk))["transactions"]] == [
        str(payout.transaction_id)
    ]
    assert [t["type"] for t in _get(operator_api, "transactions", type="deposit")["transactions"]] == ["deposit", "deposit"]


@pytest.mark.django_db
def test_exposure_from_open_positions(book, operator_api):
    # MARKET: alice 29.0625 YES at 64 (18.60), bob 25 NO at 40 (10.00); MARKET2 is settled.
    assert _get(operator_api, "exposure") == {
        "markets": [
            {
                "marketId": MARKET,
                "title": "Will Bitcoin hit $100k by June?",
                "yesShares": Decimal("29.0625"),
                "noShares": Decimal("25"),
                "cashIn": Decimal("28.60"),
                "worstCaseLoss": Decimal("0.46"),
            }
        ],
        "totals": {
            "markets": 1,
            "yesShares": Decimal("29.0625"),
            "noShares": Decimal("25"),
            "cashIn": Decimal("28.60"),
            "worstCaseLoss": Decimal("0.46"),
        },
    }


@pytest.mark.django_db
def test_settlements_with_the_operators_share(book, operator_api):
    s = book.settlement
    s.refresh_from_db()
    assert _get(operator_api, "settlements") == {
        "settlements": [
            {
                "settlementId": str(s.pk),
                "marketId": MARKET2,
                "title": "Will it rain in Paris?",
                "action": "resolve",
                "outcome": "yes",
                "status": "completed",
                "requestedAt": iso(s.requested_at),
                "completedAt": iso(s.completed_at),
                "positions": 2,
                "payouts": {"count": 1, "amount": Decimal("15.62")},
                "refunds": {"count": 0, "amount": ZERO},
                "due": {"count": 0, "amount": ZERO},
                "reversals": {"count": 0, "amount": ZERO, "uncollected": ZERO},
            }
        ],
        "nextCursor": None,
    }
    # Operator B's carol never traded MARKET2: nothing of it is B's.
    assert _get(book.b_api, "settlements") == {"settlements": [], "nextCursor": None}


@pytest.mark.django_db
def test_a_void_shows_refunds_and_a_losers_only_operator_still_sees_its_positions(book, operator_api, staff_api):
    assert staff_api.post("resolve", {"marketId": MARKET, "action": "void", "reason": "ambiguous"}).status_code == 200
    _settle_all()
    voided = Settlement.objects.get(market_id=MARKET)
    rows = {r["marketId"]: r for r in _get(operator_api, "settlements")["settlements"]}
    assert rows[MARKET]["settlementId"] == str(voided.pk)
    assert (rows[MARKET]["positions"], rows[MARKET]["refunds"], rows[MARKET]["payouts"]) == (
        2,
        {"count": 2, "amount": Decimal("28.60")},
        {"count": 0, "amount": ZERO},
    )
    carol_refund = _get(book.b_api, "settlements")["settlements"]
    assert [(r["marketId"], r["positions"], r["refunds"]["count"]) for r in carol_refund] == [(MARKET, 1, 1)]
    assert _get(operator_api, "exposure")["markets"] == []


@pytest.mark.django_db
def test_a_reversed_settlement_shows_what_was_taken_back(book, operator_api, staff_api):
    from settlement.models import Reversal
    from settlement.services.reversal import reversal_advance

    reason = "Wrong outcome: the source corrected its resolution"
    assert staff_api.post("resolve", {"marketId": MARKET2, "action": "reverse", "reason": reason}).status_code == 200
    for reversal in Reversal.objects.filter(status="reversing"):
        while not reversal_advance(reversal_id=reversal.pk):
            pass
    [row] = _get(operator_api, "settlements")["settlements"]
    assert (row["settlementId"], row["status"], row["positions"]) == (str(book.settlement.pk), "reversed", 1)
    assert row["payouts"] == {"count": 1, "amount": Decimal("15.62")}  # paid, then taken back
    assert row["reversals"] == {"count": 1, "amount": Decimal("15.62"), "uncollected": ZERO}
    taken = _get(operator_api, "transactions", type="payout_reversal")["transactions"]
    assert [(t["playerId"], t["amount"], t["state"]) for t in taken] == [("alice", Decimal("-15.62"), "completed")]
    assert {m["marketId"] for m in _get(operator_api, "exposure")["markets"]} == {MARKET, MARKET2}  # open again


# ---- S2S: every attempted movement with its state ------------------------------------------------------


@requires_postgres
@pytest.mark.django_db(transaction=True)
def test_s2s_transactions_are_the_wallet_operations_with_their_state(market, settings):
    from tests.test_s2s_wallet import S2SWorld

    settings.HOUSE_WALLET_RETRY_BASE_SECONDS = 0
    world = S2SWorld()
    try:
        player, api = world.player(name="sam")
        assert api.post("trade", buy_body("25.00")).status_code == 200
        world.server.add_fault("refuse", endpoint="debit", status="INSUFFICIENT_FUNDS", times=1)
        assert api.post("trade", buy_body("30.00")).status_code == 400
        operator_api = Api({"X-Operator-Key": _key_for(world.operator)})
        body = _get(operator_api, "transactions")
        assert _get(operator_api, "transactions", playerId="sam", type="trade_credit") == {"transactions": [], "nextCursor": None}
        other = operator_create(name=f"other-{uuid.uuid4().hex[:8]}", wallet_mode="s2s", wallet_url="http://127.0.0.1:1")
        other_api = Api({"X-Operator-Key": other.api_key})
        for params in [{}, {"playerId": "sam"}, {"playerId": str(player.pk)}, {"roundId": str(Trade.objects.get().pk)}]:
            assert _get(other_api, "transactions", **params) == {"transactions": [], "nextCursor": None}
    finally:
        world.stop()
    refused, applied = WalletOperation.objects.filter(status=OperationStatus.REFUSED).get(), WalletOperation.objects.get(status="ok")
    trade = Trade.objects.get()
    assert applied.round_id == str(trade.pk) and applied.operator_transaction_id
    assert body == {
        "transactions": [
            {
                "transactionId": str(refused.pk),
                "playerId": "sam",
                "userId": str(player.pk),
                "type": "trade_debit",
                "amount": Decimal("-30.00"),
                "currency": "USD",
                "state": "refused",
                "balanceAfter": None,
                "roundId": refused.round_id,
                "tradeId": None,
                "referenceTransactionId": None,
                "operatorTransactionId": refused.operator_transaction_id or None,
                "description": refused.description,
                "createdAt": iso(refused.created_at),
            },
            {
                "transactionId": str(applied.pk),
                "playerId": "sam",
                "userId": str(player.pk),
                "type": "trade_debit",
                "amount": Decimal("-25.00"),
                "currency": "USD",
                "state": "ok",
                "balanceAfter": Decimal("75.00"),
                "roundId": str(trade.pk),
                "tradeId": str(trade.pk),
                "referenceTransactionId": None,
                "operatorTransactionId": applied.operator_transaction_id,
                "description": applied.description,
                "createdAt": iso(applied.created_at),
            },
        ],
        "nextCursor": None,
    }


def _key_for(operator) -> str:
    """A fresh API key for an operator made by a helper that did not keep it."""
    from casino.services.credentials import operator_rotate_key

    return operator_rotate_key(operator=operator)


# ---- tenant isolation as a matrix ------------------------------------------------------------------------


def _a_ids(book):
    """Every id of operator A's that could leak: players, trades, positions, ledger rows, the settlement."""
    ids = {str(book.alice.pk), str(book.bob.pk), str(book.settlement.pk)}
    ids |= {str(i) for i in Trade.objects.filter(operator=book.a).values_list("id", flat=True)}
    ids |= {str(i) for i in Position.objects.filter(operator=book.a).values_list("id", flat=True)}
    ids |= {str(i) for i in LedgerEntry.objects.filter(operator=book.a).values_list("id", flat=True)}
    return ids


MATRIX = [
    ("trades", {"playerId": "bob"}),
    ("trades", {"playerId": "{alice_pk}"}),
    ("trades", {"marketId": MARKET2}),
    ("trades", {"playerId": "bob", "marketId": MARKET}),
    ("trades", {"playerId": "bob", "from": "2000-01-01"}),
    ("positions", {"playerId": "bob"}),
    ("positions", {"playerId": "{alice_pk}"}),
    ("positions", {"marketId": MARKET2}),
    ("positions", {"playerId": "bob", "status": "open"}),
    ("positions", {"marketId": MARKET2, "status": "resolved"}),
    ("transactions", {"playerId": "bob"}),
    ("transactions", {"playerId": "{alice_pk}"}),
    ("transactions", {"roundId": "{a_trade}"}),
    ("transactions", {"roundId": "{settlement}"}),
    ("transactions", {"playerId": "bob", "type": "deposit"}),
    ("transactions", {"type": "payout"}),
    ("settlements", {}),
]


@pytest.mark.django_db
@pytest.mark.parametrize(("path", "params"), MATRIX, ids=[f"{p}-{'-'.join(q) or 'all'}" for p, q in MATRIX])
def test_operator_b_never_sees_operator_as_rows(book, path, params):
    values = {"alice_pk": str(book.alice.pk), "a_trade": str(Trade.objects.filter(operator=book.a).first().pk)}
    values["settlement"] = str(book.settlement.pk)
    response = book.b_api.get(f"operator/{path}", {k: v.format(**values) for k, v in params.items()})
    assert response.status_code == 200, response.content
    body = decimal_json(response)
    assert body == {path: [], "nextCursor": None}
    # And the same query by A finds its rows: the filter is right, only the operator differs.
    mine = Api({"X-Operator-Key": book.a_key}).get(f"operator/{path}", {k: v.format(**values) for k, v in params.items()})
    if params.get("playerId") != "{alice_pk}":  # A's own house ids are not its player ids either
        assert decimal_json(mine)[path] != []


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["trades", "positions", "transactions", "exposure", "settlements"])
def test_no_list_of_operator_b_mentions_an_id_of_operator_a(book, path):
    text = book.b_api.get(f"operator/{path}").content.decode()
    assert not [i for i in _a_ids(book) if i in text]
    assert "bob" not in text


@pytest.mark.django_db
def test_the_same_external_id_at_two_operators_is_two_players(book):
    b_alice = _get(book.b_api, "transactions", playerId="alice")["transactions"]
    assert [(t["userId"], t["type"], t["amount"]) for t in b_alice] == [(str(book.b_alice.pk), "deposit", Decimal("50.00"))]
    assert _get(book.b_api, "trades", playerId="alice")["trades"] == []
    exposure = _get(book.b_api, "exposure")
    assert [m["marketId"] for m in exposure["markets"]] == [MARKET] and exposure["totals"]["yesShares"] == Decimal("31.25")


# ---- bad input -------------------------------------------------------------------------------------------


BAD = [
    ("trades", {"limit": "0"}, "invalid_limit"),
    ("trades", {"limit": "ten"}, "invalid_limit"),
    ("trades", {"limit": "-5"}, "invalid_limit"),
    ("trades", {"cursor": "not-a-cursor"}, "invalid_cursor"),
    ("trades", {"from": "yesterday"}, "invalid_from"),
    ("trades", {"to": "2026-13-01"}, "invalid_to"),
    ("trades", {"from": "2026-02-30T10:00:00"}, "invalid_from"),
    ("trades", {"from": "2026-05-02", "to": "2026-05-01"}, "invalid_range"),
    ("trades", {"marketId": "bad id!"}, "invalid_marketid"),
    ("trades", {"playerId": "x" * 129}, "invalid_playerid"),
    ("positions", {"status": "sideways"}, "invalid_status"),
    ("positions", {"cursor": "x" * 1001}, "invalid_cursor"),
    ("transactions", {"type": "bonus"}, "invalid_type"),
    ("transactions", {"roundId": "r" * 65}, "invalid_roundid"),
    # A control character in any parameter is refused by the kernel before the field is read (core.api.base).
    ("transactions", {"roundId": "a\x00b"}, "invalid_characters"),
    ("positions", {"playerId": "al\x00ice"}, "invalid_characters"),
    ("trades", {"from": "\x00"}, "invalid_characters"),
    ("trades", {"to": "9999-12-31"}, "invalid_to"),
    ("transactions", {"to": "soon"}, "invalid_to"),
    ("settlements", {"limit": "1.5"}, "invalid_limit"),
]


@pytest.mark.django_db
@pytest.mark.parametrize(("path", "params", "code"), BAD, ids=[f"{p}-{c}-{i}" for i, (p, _, c) in enumerate(BAD)])
def test_bad_input_is_a_400_in_the_error_shape(operator_api, path, params, code):
    response = operator_api.get(f"operator/{path}", params)
    assert response.status_code == 400, response.content
    body = decimal_json(response)
    assert body["code"] == code and set(body) == {"error", "code"}


@pytest.mark.django_db
def test_a_cursor_of_another_list_is_refused(book, operator_api):
    cursor = _get(operator_api, "trades", limit="1")["nextCursor"]
    assert cursor is not None
    response = operator_api.get("operator/positions", {"cursor": cursor})
    assert response.status_code == 400 and decimal_json(response)["code"] == "invalid_cursor"


@pytest.mark.django_db
def test_only_an_operator_key_opens_the_lists(book):
    assert Api().get("operator/trades").status_code == 401
    assert book.alice_api.get("operator/trades").status_code == 401  # a player token is no operator key
    assert Api({"X-Operator-Key": "op_wrong"}).get("operator/exposure").status_code == 401


# ---- pagination while trades keep arriving -------------------------------------------------------------


def _walk(api, path, key, limit):
    seen, cursor = [], None
    while True:
        params = {"limit": str(limit)} | ({"cursor": cursor} if cursor else {})
        body = _get(api, path, **params)
        seen += [row[key] for row in body[path]]
        cursor = body["nextCursor"]
        if cursor is None:
            return seen


@requires_postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(("path", "key"), [("trades", "id"), ("transactions", "transactionId")])
def test_pages_walk_every_row_exactly_once_while_trades_arrive(operator, operator_api, market, path, key):
    operator = operator.operator
    players = [session_open(operator=operator, external_player_id=f"w-{i}").player for i in range(3)]
    for p in players:
        wallet_deposit(player=p, amount=Decimal("100000"))
    _insert_trades(operator, players, 150)
    model = Trade if path == "trades" else LedgerEntry
    before = {str(i) for i in model.objects.filter(operator=operator).values_list("id", flat=True)}
    stop = threading.Event()
    inserted = []

    def keep_trading():
        try:
            while not stop.is_set():
                inserted.extend(_insert_trades(operator, players, 3))
        finally:
            connections.close_all()

    thread = threading.Thread(target=keep_trading)
    thread.start()
    try:
        seen = _walk(operator_api, path, key, limit=7)
    finally:
        stop.set()
        thread.join()
    assert inserted, "no trade arrived during the walk"
    assert len(seen) == len(set(seen)), "a row came twice"
    assert set(seen) >= before, "a row that existed before the walk was missed"
    # Rows that arrived during the walk are newer than the first page: at most the ones of the first page's
    # instant show up, never a row twice.
    assert set(seen) - before <= {str(i) for i in model.objects.filter(operator=operator).values_list("id", flat=True)}


def _insert_trades(operator, players, n) -> list:
    """n trades (and their ledger debits) committed one by one, as the executor would: real transactions."""
    from django.db import transaction

    from wallets.services.balances import wallet_change

    made = []
    for i in range(n):
        player = players[i % len(players)]
        trade_id = uuid.uuid4()
        with transaction.atomic():
            change = wallet_change(
                player=player, amount=Decimal("-1.00"), type="trade_debit", description="", round_id=str(trade_id), trade_id=trade_id
            )
            Trade.objects.create(
                id=trade_id,
                player=player,
                operator=operator,
                market_id=MARKET,
                side="buy",
                outcome="yes",
                shares=Decimal("1.5625"),
                price_mid=Decimal("62"),
                price_executed=Decimal("64"),
                spread_applied=Decimal("2"),
                cost=Decimal("1.00"),
                balance_before=change.balance_after + 1,
                balance_after=change.balance_after,
            )
        made.append(trade_id)
    return made


# ---- the plan of a page --------------------------------------------------------------------------------


@requires_postgres
@pytest.mark.django_db
@pytest.mark.parametrize(
    ("sql_of", "index", "by_player"),
    [
        ("trades", "trade_operator_recent", False),
        ("ledger", "ledger_operator_recent", False),
        ("operations", "wallet_op_operator_recent", False),
        ("positions", "position_operator_recent", False),
        ("trades", "trade_player_recent", True),
        ("ledger", "ledger_player_recent", True),
        ("operations", "wallet_op_player_recent", True),
    ],
)
def test_a_deep_page_is_one_index_range_without_a_sort(operator, sql_of, index, by_player):
    operator = operator.operator
    from core.api.pagination import PageParams, keyset_page
    from wallets.selectors import NEWEST_FIRST

    model = {"trades": Trade, "ledger": LedgerEntry, "operations": WalletOperation, "positions": Position}[sql_of]
    cursor = _cursor_for(model, operator)
    # One player's rows: at scale PostgreSQL takes the player's index (bench/RESULTS.md shows the plan); on an
    # empty table only the player's filter makes it the one to use.
    qs = model.objects.filter(player_id=uuid.uuid4()) if by_player else model.objects.filter(operator_id=operator.pk)
    captured = []

    def capture(execute, sql, params, many, context):
        captured.append((sql, params))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(capture):
        keyset_page(qs, ordering=NEWEST_FIRST, params=PageParams(1000, cursor), scope="plan")
    sql, params = captured[-1]
    with connection.cursor() as c:
        # A handful of rows: PostgreSQL would rather read the table, or sort a few rows after another index once
        # earlier tests have left statistics (or take the created_at index and sort each created_at's few rows by id:
        # an Incremental Sort). All disabled: a Sort still in the plan means no index gives the order.
        c.execute("SET LOCAL enable_seqscan = off")
        c.execute("SET LOCAL enable_sort = off")
        c.execute("SET LOCAL enable_incremental_sort = off")
        c.execute("EXPLAIN " + sql, params)
        plan = "\n".join(row[0] for row in c.fetchall())
    assert index in plan, plan
    assert "Sort" not in plan, plan
    assert "Index Cond" in plan and "created_at <=" in plan.replace('"', ""), plan


def _cursor_for(model, operator) -> str:
    """A cursor somewhere in the middle of the list (the plan of a deep page)."""
    from django.core import signing
    from django.utils import timezone

    return signing.dumps([timezone.now().isoformat(), str(uuid.uuid4())], salt="house.cursor.plan", compress=True)


# ---- OpenAPI -----------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_every_list_is_in_the_openapi_schema_with_the_operator_key():
    import json

    from django.test import Client

    paths = json.loads(Client().get("/api/schema/", HTTP_ACCEPT="application/json").content)["paths"]
    for name in ["trades", "positions", "transactions", "exposure", "settlements"]:
        operation = paths[f"/api/casino/operator/{name}"]["get"]
        assert {"operatorKey": []} in operation["security"], operation["security"]
        assert "200" in operation["responses"]
    params = {p["name"] for p in paths["/api/casino/operator/transactions"]["get"]["parameters"]}
    assert params == {"playerId", "type", "roundId", "from", "to", "limit", "cursor"}
