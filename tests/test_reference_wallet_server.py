"""The reference operator wallet server (SPEC §9) over real HTTP on loopback: signing, the operator-side
rules (replay, duplicates, rollback, tombstones, tokens), transaction look-up, fault switches, concurrency."""

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from wallets import signing
from wallets.reference_server import FaultRule, ReferenceWalletServer, serve_in_thread

SECRET = "operator-secret"
TOKEN = "session-token-1"


class WalletClient:
    """The house side, minimal: signs requests, verifies and parses answers."""

    def __init__(self, base_url: str):
        self.http = httpx.Client(base_url=base_url, timeout=5)

    def send(self, endpoint: str, payload: dict | bytes, *, secret=SECRET, now=None, headers=None, timeout=None) -> httpx.Response:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        signed = signing.signed_headers(secret, body, now=now) if secret else {}
        extra = {"timeout": timeout} if timeout is not None else {}
        return self.http.post(f"/wallet/{endpoint}", content=body, headers={**signed, **(headers or {})}, **extra)

    def call(self, endpoint: str, **fields) -> dict:
        response = self.send(endpoint, fields)
        assert response.status_code == 200
        assert verified(response)
        return json.loads(response.content, parse_float=Decimal)

    def debit(self, user_id="p1", amount="10.00", transaction_id=None, **fields) -> dict:
        payload = {"transaction_id": transaction_id or new_id(), "user_id": user_id, "amount": amount, "currency": "USD"}
        return self.call("debit", **{"session_token": TOKEN, "type": "trade_debit", **payload, **fields})

    def credit(self, user_id="p1", amount="10.00", transaction_id=None, **fields) -> dict:
        payload = {"transaction_id": transaction_id or new_id(), "user_id": user_id, "amount": amount, "currency": "USD"}
        return self.call("credit", **{"type": "trade_credit", **payload, **fields})

    def rollback(self, reference, user_id="p1", transaction_id=None, **fields) -> dict:
        payload = {"transaction_id": transaction_id or new_id(), "reference_transaction_id": reference, "user_id": user_id}
        return self.call("rollback", **{"type": "rollback", **payload, **fields})

    def lookup(self, transaction_id, **fields) -> dict:
        return self.call("transaction", transaction_id=transaction_id, **fields)


def new_id() -> str:
    return str(uuid.uuid4())


def verified(response: httpx.Response, secret=SECRET) -> bool:
    return signing.verify(secret, response.headers.get("X-Timestamp"), response.content, response.headers.get("X-Signature"))


@pytest.fixture
def server():
    app = ReferenceWalletServer(SECRET, seed=7)
    app.set_player("p1", balance=Decimal("100.00"))
    return app


@pytest.fixture
def wallet(server):
    base_url, stop = serve_in_thread(server)
    client = WalletClient(base_url)
    yield client
    client.http.close()
    stop()


# ----- signing ------------------------------------------------------------------------------------


def test_signature_is_base64_hmac_sha256_of_timestamp_dot_body():
    import base64
    import hashlib
    import hmac

    expected = base64.b64encode(hmac.new(b"k", b"1700000000.{}", hashlib.sha256).digest()).decode()
    assert signing.sign("k", "1700000000", b"{}") == expected
    assert signing.verify("k", "1700000000", b"{}", expected, now=1700000030)
    assert not signing.verify("k", "1700000000", b"{}", expected, now=1700000061)
    assert not signing.verify("k", "1700000000", b"{ }", expected, now=1700000000)
    assert not signing.verify("k", "17e8", b"{}", expected, now=1700000000)
    assert not signing.verify("k", None, b"{}", expected)
    assert signing.verify_any(["new", "k"], "1700000000", b"{}", expected, now=1700000000)
    assert not signing.verify_any(["new"], "1700000000", b"{}", expected, now=1700000000)
    headers = signing.signed_headers("k", b"{}", now=1700000000)
    assert headers == {"X-Timestamp": "1700000000", "X-Signature": expected}


def test_missing_or_wrong_signature_is_refused_and_changes_nothing(wallet, server):
    payload = {"transaction_id": new_id(), "user_id": "p1", "amount": "10.00", "currency": "USD", "session_token": TOKEN}
    for kwargs in ({"secret": None}, {"secret": "not-the-secret"}, {"headers": {"X-Signature": "AAAA"}}):
        response = wallet.send("debit", payload, **kwargs)
        assert response.status_code == 200 and verified(response)
        body = response.json()
        assert body["status"] == "INVALID_SIGNATURE"
        assert body["balance"] == "0.00" and body["transaction_id"] is None
    assert server.balance("p1") == Decimal("100.00")
    assert server.transactions == {}


def test_stale_timestamp_is_refused(wallet, server):
    payload = {"user_id": "p1"}
    assert wallet.send("balance", payload, now=time.time() - 61).json()["status"] == "INVALID_SIGNATURE"
    assert wallet.send("balance", payload, now=time.time() + 120).json()["status"] == "INVALID_SIGNATURE"
    assert wallet.send("balance", payload, now=time.time() - 30).json()["status"] == "OK"


def test_rotated_secret_old_and_new_both_accepted_answers_signed_with_new(server):
    app = ReferenceWalletServer(["new-secret", SECRET])
    base_url, stop = serve_in_thread(app)
    try:
        client = WalletClient(base_url)
        for secret in ("new-secret", SECRET):
            response = client.send("balance", {"user_id": "x"}, secret=secret)
            assert response.json()["status"] == "OK"
            assert verified(response, "new-secret") and not verified(response, SECRET)
    finally:
        stop()


def test_answers_are_signed_and_echo_the_request_id(wallet):
    response = wallet.send("balance", {"user_id": "p1"}, headers={"X-Request-Id": "req-42"})
    assert verified(response)
    assert not verified(response, "other")
    assert response.headers["X-Request-Id"] == "req-42"
    assert response.json() == {
        "status": "OK",
        "transaction_id": None,
        "operator_transaction_id": None,
        "balance": "100.00",
        "currency": "USD",
    }


# ----- money rules --------------------------------------------------------------------------------


def test_debit_credit_and_balance_arithmetic(wallet, server):
    debit = wallet.debit(amount="12.34")
    assert debit["status"] == "OK" and debit["balance"] == "87.66" and debit["currency"] == "USD"
    assert debit["operator_transaction_id"].startswith("ref-")
    assert wallet.credit(amount="0.01")["balance"] == "87.67"
    assert wallet.call("balance", user_id="p1")["balance"] == "87.67"
    assert server.balance("p1") == Decimal("87.67") == server.total_balance()
    assert [(e.endpoint, e.status, e.http_status) for e in server.request_log] == [
        ("debit", "OK", 200),
        ("credit", "OK", 200),
        ("balance", "OK", 200),
    ]


def test_identical_replay_returns_the_first_answer_byte_for_byte_and_applies_once(wallet, server):
    payload = {"transaction_id": new_id(), "user_id": "p1", "amount": "10.00", "currency": "USD", "session_token": TOKEN}
    first = wallet.send("debit", payload)
    wallet.credit(amount="5.00")
    again = wallet.send("debit", {**payload, "session_token": "a-newer-token", "description": "retry"})
    assert again.content == first.content and verified(again)
    assert server.balance("p1") == Decimal("95.00")
    assert len(server.transactions) == 2


def test_same_id_with_different_fields_is_a_duplicate(wallet, server):
    tid = new_id()
    wallet.debit(transaction_id=tid, amount="10.00")
    duplicate = wallet.debit(transaction_id=tid, amount="11.00")
    assert duplicate["status"] == "DUPLICATE_TRANSACTION" and duplicate["balance"] == "90.00"
    assert wallet.credit(transaction_id=tid, amount="10.00", type="trade_debit")["status"] == "DUPLICATE_TRANSACTION"
    assert server.balance("p1") == Decimal("90.00")
    assert server.transactions[tid]["amount"] == Decimal("10.00")


def test_insufficient_funds_leaves_the_balance_and_is_recorded(wallet, server):
    tid = new_id()
    refused = wallet.debit(transaction_id=tid, amount="100.01")
    assert refused["status"] == "INSUFFICIENT_FUNDS" and refused["balance"] == "100.00"
    assert server.balance("p1") == Decimal("100.00")
    assert wallet.debit(transaction_id=tid, amount="100.01") == refused
    assert wallet.lookup(tid)["status"] == "INSUFFICIENT_FUNDS"
    assert wallet.debit(amount="100.00")["balance"] == "0.00"


def test_rollback_restores_once_and_a_repeated_rollback_returns_the_first_ok(wallet, server):
    debit_id, rollback_id = new_id(), new_id()
    wallet.debit(transaction_id=debit_id, amount="30.00")
    first = wallet.send("rollback", {"transaction_id": rollback_id, "reference_transaction_id": debit_id, "user_id": "p1"})
    assert first.json()["status"] == "OK" and first.json()["balance"] == "100.00"
    repeated = wallet.send("rollback", {"transaction_id": rollback_id, "reference_transaction_id": debit_id, "user_id": "p1"})
    assert repeated.content == first.content
    other = wallet.rollback(debit_id)
    assert other["status"] == "OK" and other["operator_transaction_id"] == first.json()["operator_transaction_id"]
    assert server.balance("p1") == Decimal("100.00")
    assert server.transactions[debit_id]["rolled_back"] is True
    # A late replay of the rolled-back debit is not applied again.
    assert wallet.debit(transaction_id=debit_id, amount="30.00")["status"] == "TRANSACTION_ROLLED_BACK"
    assert server.balance("p1") == Decimal("100.00")


def test_rollback_before_its_debit_leaves_a_tombstone(wallet, server):
    debit_id = new_id()
    rollback = wallet.rollback(debit_id)
    assert rollback["status"] == "TRANSACTION_NOT_FOUND" and rollback["balance"] == "100.00"
    late = wallet.debit(transaction_id=debit_id, amount="40.00")
    assert late["status"] == "TRANSACTION_ROLLED_BACK"
    assert server.balance("p1") == Decimal("100.00")
    assert wallet.rollback(debit_id)["status"] == "OK"
    assert server.balance("p1") == Decimal("100.00")


def test_rollback_only_undoes_debits_of_the_same_player(wallet, server):
    credit_id, debit_id = new_id(), new_id()
    wallet.credit(transaction_id=credit_id)
    assert wallet.rollback(credit_id)["status"] == "UNKNOWN_ERROR"
    wallet.debit(transaction_id=debit_id, amount="5.00")
    assert wallet.rollback(debit_id, user_id="someone-else")["status"] == "UNKNOWN_ERROR"
    assert wallet.rollback(debit_id, amount="4.00")["status"] == "UNKNOWN_ERROR"
    assert server.balance("p1") == Decimal("105.00")
    assert wallet.rollback(debit_id, amount="5.00")["balance"] == "110.00"


def test_rollback_of_a_refused_debit_moves_no_money(wallet, server):
    debit_id = new_id()
    assert wallet.debit(transaction_id=debit_id, amount="500.00")["status"] == "INSUFFICIENT_FUNDS"
    assert wallet.rollback(debit_id)["status"] == "OK"
    assert server.balance("p1") == Decimal("100.00")


def test_session_token_is_checked_on_debit_only(wallet, server):
    server.set_player("p1", tokens={"good"}, expired_tokens={"old"})
    assert wallet.debit(session_token="bad")["status"] == "INVALID_TOKEN"
    assert wallet.debit(session_token="")["status"] == "INVALID_TOKEN"
    assert wallet.debit(session_token="old")["status"] == "TOKEN_EXPIRED"
    assert wallet.debit(session_token="good")["status"] == "OK"
    assert wallet.credit(session_token="bad")["status"] == "OK"
    assert wallet.call("balance", user_id="p1", session_token="bad")["status"] == "OK"
    server.expire_token("p1", "good")
    assert wallet.debit(session_token="good")["status"] == "TOKEN_EXPIRED"
    assert server.balance("p1") == Decimal("100.00")


def test_disabled_player_wrong_currency_and_debit_limit(wallet, server):
    server.set_player("p2", balance=Decimal("50.00"), currency="EUR", debit_limit=Decimal("20.00"))
    assert wallet.debit(user_id="p2", currency="USD")["status"] == "WRONG_CURRENCY"
    assert wallet.debit(user_id="p2", currency="EUR", amount="15.00")["status"] == "OK"
    assert wallet.debit(user_id="p2", currency="EUR", amount="6.00")["status"] == "LIMIT_REACHED"
    server.set_player("p2", disabled=True)
    assert wallet.debit(user_id="p2", currency="EUR", amount="1.00")["status"] == "USER_DISABLED"
    assert wallet.call("balance", user_id="p2")["status"] == "USER_DISABLED"
    assert wallet.credit(user_id="p2", currency="EUR", amount="1.00")["balance"] == "36.00"


def test_malformed_requests_answer_unknown_error_and_are_not_recorded(wallet, server):
    tid = new_id()
    for amount in (10, "10", "10.5", "-1.00", "0.00", "1e3"):
        answer = wallet.debit(transaction_id=tid, amount=amount)
        assert answer["status"] == "UNKNOWN_ERROR" and "amount" in answer["error"]
    response = wallet.send("debit", b"not json")
    assert response.json()["status"] == "UNKNOWN_ERROR"
    assert server.transactions == {}
    assert wallet.debit(transaction_id=tid, amount="10.00")["status"] == "OK"


def test_unknown_players_are_auto_created_unless_switched_off(wallet, server):
    assert wallet.call("balance", user_id="new-player", currency="USD") == {
        "status": "OK",
        "transaction_id": None,
        "operator_transaction_id": None,
        "balance": "0.00",
        "currency": "USD",
    }
    server.auto_create_players = False
    answer = wallet.credit(user_id="stranger")
    assert answer["status"] == "UNKNOWN_ERROR" and answer["balance"] == "0.00"
    assert server.balance("stranger") is None


def test_transaction_lookup_reports_the_current_state(wallet):
    ok_id, rolled_id, missing_id = new_id(), new_id(), new_id()
    wallet.debit(transaction_id=ok_id, amount="10.00")
    wallet.debit(transaction_id=rolled_id, amount="20.00")
    rollback = wallet.rollback(rolled_id)

    ok = wallet.lookup(ok_id)
    assert ok["status"] == "OK" and ok["found"] is True and ok["amount"] == "10.00" and ok["operation"] == "debit"
    assert ok["type"] == "trade_debit" and ok["rolled_back"] is False and ok["applied"] is True and ok["balance"] == "90.00"
    rolled = wallet.lookup(rolled_id)
    assert rolled["status"] == "TRANSACTION_ROLLED_BACK" and rolled["rolled_back"] is True
    assert rolled["rolled_back_by"] == rollback["transaction_id"] and rolled["original_status"] == "OK"
    missing = wallet.lookup(missing_id)
    assert missing["status"] == "TRANSACTION_NOT_FOUND" and missing["found"] is False
    assert wallet.lookup(ok_id, user_id="someone-else")["status"] == "TRANSACTION_NOT_FOUND"
    wallet.rollback(missing_id)
    tombstone = wallet.lookup(missing_id)
    assert tombstone["status"] == "TRANSACTION_ROLLED_BACK" and tombstone["tombstone"] is True and tombstone["found"] is False


# ----- fault switches -----------------------------------------------------------------------------


def test_latency(wallet, server):
    server.add_fault("latency", endpoint="debit", seconds=0.2)
    started = time.monotonic()
    wallet.call("balance", user_id="p1")
    assert time.monotonic() - started < 0.15
    started = time.monotonic()
    assert wallet.debit()["status"] == "OK"
    assert time.monotonic() - started >= 0.2


def test_http_error_without_applying(wallet, server):
    server.add_fault("http_error", endpoint="debit", http_status=503, times=1)
    tid = new_id()
    payload = {"transaction_id": tid, "user_id": "p1", "amount": "10.00", "currency": "USD", "session_token": TOKEN}
    response = wallet.send("debit", payload, headers={"X-Request-Id": "r1"})
    assert response.status_code == 503 and response.headers["X-Request-Id"] == "r1"
    assert server.balance("p1") == Decimal("100.00") and tid not in server.transactions
    assert server.request_log[-1] == ("debit", tid, None, 503)
    assert wallet.call("debit", **payload)["status"] == "OK"


def test_http_error_after_applying(wallet, server):
    server.add_fault("http_error", endpoint="debit", http_status=500, apply="before", times=1)
    tid = new_id()
    payload = {"transaction_id": tid, "user_id": "p1", "amount": "10.00", "currency": "USD", "session_token": TOKEN}
    assert wallet.send("debit", payload).status_code == 500
    assert server.balance("p1") == Decimal("90.00")
    assert server.request_log[-1] == ("debit", tid, "OK", 500)
    replay = wallet.call("debit", **payload)
    assert replay["status"] == "OK" and replay["balance"] == "90.00"
    assert server.balance("p1") == Decimal("90.00")


def test_timeout_with_the_debit_applied(wallet, server):
    server.add_fault("timeout", endpoint="debit", seconds=0.6, apply="before")
    payload = {"transaction_id": new_id(), "user_id": "p1", "amount": "10.00", "currency": "USD", "session_token": TOKEN}
    with pytest.raises(httpx.ReadTimeout):
        wallet.send("debit", payload, timeout=0.3)
    assert server.balance("p1") == Decimal("90.00")


def test_timeout_without_applying(wallet, server):
    server.add_fault("timeout", endpoint="debit", seconds=0.4, apply="never", times=1)
    tid = new_id()
    payload = {"transaction_id": tid, "user_id": "p1", "amount": "10.00", "currency": "USD", "session_token": TOKEN}
    with pytest.raises(httpx.ReadTimeout):
        wallet.send("debit", payload, timeout=0.2)
    deadline = time.monotonic() + 2
    while not server.request_log and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.request_log == [("debit", tid, None, 504)]
    assert server.balance("p1") == Decimal("100.00") and server.transactions == {}


def test_timeout_with_the_debit_arriving_late(wallet, server):
    server.add_fault("timeout", endpoint="debit", seconds=0.4, apply="after", times=1)
    payload = {"transaction_id": new_id(), "user_id": "p1", "amount": "10.00", "currency": "USD", "session_token": TOKEN}
    with pytest.raises(httpx.ReadTimeout):
        wallet.send("debit", payload, timeout=0.2)
    assert server.balance("p1") == Decimal("100.00")
    deadline = time.monotonic() + 2
    while server.balance("p1") == Decimal("100.00") and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.balance("p1") == Decimal("90.00")


@pytest.mark.parametrize("kind", ["bad_signature", "unsigned", "malformed_body"])
def test_corrupted_answers_of_an_applied_debit(wallet, server, kind):
    server.add_fault(FaultRule(kind, endpoint="debit", times=1))
    payload = {"transaction_id": new_id(), "user_id": "p1", "amount": "10.00", "currency": "USD", "session_token": TOKEN}
    response = wallet.send("debit", payload)
    assert response.status_code == 200
    if kind == "bad_signature":
        assert response.headers["X-Signature"] and not verified(response)
        assert response.json()["status"] == "OK"
    elif kind == "unsigned":
        assert "X-Signature" not in response.headers and "X-Timestamp" not in response.headers
    else:
        assert verified(response)
        with pytest.raises(ValueError):
            json.loads(response.content)
    assert server.balance("p1") == Decimal("90.00")
    assert wallet.call("debit", **payload)["status"] == "OK"


def test_refusal_switch_is_recorded_like_a_real_refusal(wallet, server):
    server.add_fault("refuse", endpoint="debit", status="LIMIT_REACHED", times=1)
    tid = new_id()
    assert wallet.debit(transaction_id=tid)["status"] == "LIMIT_REACHED"
    assert wallet.debit(transaction_id=tid)["status"] == "LIMIT_REACHED"
    assert wallet.debit()["status"] == "OK"
    assert server.balance("p1") == Decimal("90.00")


def test_temporary_error_is_not_recorded_so_a_retry_goes_through(wallet, server):
    server.add_fault("refuse", endpoint=["credit", "balance"], status="TEMPORARY_ERROR", times=2)
    tid = new_id()
    assert wallet.credit(transaction_id=tid)["status"] == "TEMPORARY_ERROR"
    assert wallet.call("balance", user_id="p1")["status"] == "TEMPORARY_ERROR"
    assert wallet.credit(transaction_id=tid)["status"] == "OK"
    assert server.balance("p1") == Decimal("110.00")


def test_faults_limited_by_times_endpoint_and_player(wallet, server):
    rule = server.add_fault("http_error", endpoint="credit", times=2)
    server.add_fault("refuse", endpoint="*", user_id="p2", status="USER_DISABLED")
    assert wallet.debit()["status"] == "OK"
    credit = {"user_id": "p1", "amount": "1.00", "currency": "USD"}
    statuses = [wallet.send("credit", {**credit, "transaction_id": new_id()}).status_code for _ in range(3)]
    assert statuses == [500, 500, 200] and rule.fired == 2
    assert wallet.call("balance", user_id="p2")["status"] == "USER_DISABLED"
    assert wallet.call("balance", user_id="p1")["status"] == "OK"
    server.clear_faults()
    assert server.faults == []


def test_fault_rules_are_validated():
    with pytest.raises(ValueError):
        FaultRule("explode")
    with pytest.raises(ValueError):
        FaultRule("http_error", endpoint="withdraw")
    with pytest.raises(ValueError):
        FaultRule("refuse", status="OK")
    with pytest.raises(ValueError):
        FaultRule("timeout", seconds=0)
    with pytest.raises(ValueError):
        FaultRule("bad_signature", apply="never")
    assert FaultRule("timeout", seconds=1, apply=False).apply == "never"


def test_probabilistic_faults_are_reproducible_with_a_seed():
    def pattern(seed):
        app = ReferenceWalletServer(SECRET, seed=seed)
        app.add_fault("http_error", endpoint="balance", probability=0.5)
        base_url, stop = serve_in_thread(app)
        try:
            client = WalletClient(base_url)
            return [client.send("balance", {"user_id": "p"}).status_code for _ in range(16)]
        finally:
            stop()

    first = pattern(123)
    assert first == pattern(123)
    assert set(first) == {200, 500}


def test_control_endpoint_is_off_unless_enabled(wallet):
    assert wallet.http.get("/_state").status_code == 404
    assert wallet.http.post("/_control", json={"action": "reset"}).status_code == 404


def test_control_endpoint_drives_players_and_faults():
    app = ReferenceWalletServer(SECRET, control=True)
    base_url, stop = serve_in_thread(app)
    try:
        client = WalletClient(base_url)
        control = client.http.post("/_control", json={"action": "set_player", "user_id": "c1", "balance": "25.00", "tokens": ["t"]})
        assert control.json()["ok"] is True and app.balance("c1") == Decimal("25.00")
        assert client.http.post("/_control", json={"action": "add_fault", "kind": "http_error", "endpoint": "debit"}).json()["ok"]
        assert client.http.post("/_control", json={"action": "bogus"}).status_code == 400
        debit = {"transaction_id": new_id(), "user_id": "c1", "amount": "1.00", "currency": "USD", "session_token": "t"}
        assert client.send("debit", debit).status_code == 500
        client.http.post("/_control", json={"action": "clear_faults"})
        client.http.post("/_control", json={"action": "configure", "latency_seconds": 0.01})
        assert client.send("debit", debit).json()["balance"] == "24.00"
        state = client.http.get("/_state").json()
        assert state["players"]["c1"]["balance"] == "24.00" and state["total_balance"] == "24.00"
        assert [entry["http_status"] for entry in state["request_log"]] == [500, 200]
        assert list(state["transactions"]) == [debit["transaction_id"]]
    finally:
        stop()


# ----- concurrency --------------------------------------------------------------------------------


def test_concurrent_debits_never_overdraw(wallet, server):
    start = threading.Barrier(50)

    def debit(_):
        start.wait()
        return wallet.debit(amount="3.00")

    with ThreadPoolExecutor(max_workers=50) as pool:
        answers = list(pool.map(debit, range(50)))
    statuses = [answer["status"] for answer in answers]
    assert statuses.count("OK") == 33 and statuses.count("INSUFFICIENT_FUNDS") == 17
    assert server.balance("p1") == Decimal("1.00")
    assert all(Decimal(answer["balance"]) >= 0 for answer in answers)
    applied = sum(tx["amount"] for tx in server.transactions.values() if tx["applied"])
    assert Decimal("100.00") - applied == server.balance("p1")
    assert sorted(Decimal(answer["balance"]) for answer in answers if answer["status"] == "OK") == [
        Decimal("1.00") + 3 * n for n in range(33)
    ]


# ----- management command -------------------------------------------------------------------------


def test_run_wallet_server_command_serves_until_stopped():
    root = Path(__file__).resolve().parent.parent
    command = [sys.executable, "manage.py", "run_wallet_server", "--port", "0", "--secret", SECRET, "--seed-player", "m1=7.50"]
    process = subprocess.Popen(command, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ}, text=True)
    try:
        banner = json.loads(process.stdout.readline())
        client = WalletClient(banner["url"])
        assert client.call("balance", user_id="m1")["balance"] == "7.50"
    finally:
        process.terminate()
        process.wait(timeout=5)
