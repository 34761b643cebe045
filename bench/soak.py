"""Soak (SPEC §15): the production shape on loopback, with faults and killed processes, then the invariants.

    make soak                                    # = PG_DURABLE=1 scripts/with-services .venv/bin/python bench/soak.py --minutes 10 --write
    PG_DURABLE=1 scripts/with-services .venv/bin/python bench/soak.py --seconds 60

Needs the environment of scripts/with-services (DATABASE_URL, REDIS_URL). Runs:

* gunicorn (gunicorn.conf.py), two Celery workers on every queue and Celery beat on the Redis broker
  (CELERY_TASK_ALWAYS_EAGER=0), each in its own session;
* the reference wallet server (wallets/reference_server.py, in this process) as an S2S operator's
  wallet, injecting random faults: HTTP 5xx applied and not applied, timeouts applied before, after
  (a late arrival) and never, bad signatures, unsigned and malformed answers, refusals;
* players trading concurrently over HTTP (buys and sells, several markets whose reference prices a
  staff client keeps fresh through ``POST admin/prices``) on an internal and an S2S operator; a
  settlement (staff ``POST resolve``) and its reversal (action ``reverse``) during the run;
* a chaos loop SIGKILLing gunicorn workers (the master respawns them), Celery pool processes (the
  worker respawns them) and whole Celery workers (restarted here) at random moments.

Then the chaos stops, the faults are cleared, the processes are stopped and recovery runs until
nothing is pending (wallet recovery and reconciliation, settlement and reversal resume), with a
deadline; then the invariants are checked and the run FAILS (exit 1) if any is broken:
internal ledgers sum to balances (and debts to their entries); every S2S player's balance at the
wallet server equals the house's view (starting balance + the player's ledger); no payout, refund or
reversal applied twice (at the wallet server by transaction, and in the house's ledger); no wallet
operation left pending/unknown/manual; every S2S trade's movement applied at the operator (a sale
never stands without its proceeds); every settlement and reversal finished; every loss notice sent (or
cancelled by a reversal) and at the wallet server exactly once; the exposure book of
every market equals what its positions and trades imply, and the global bound (and each category's
bound) the sum of the market shards' worst cases (those counted under the category); the risk
counters (operator open exposure) rebuilt equal the database; the daily-report rollup equals its
recomputation; one ``trade.executed`` event per trade.

``--database-url`` runs against an existing, migrated database (the test suite's) with ``--no-migrate``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from decimal import Decimal
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))

BEGIN = "<!-- soak:begin -->"
END = "<!-- soak:end -->"
QUEUES = "celery,wallets,settlement,risk,marketdata,webhooks"
START = Decimal("500.00")
MARKETS = [f"0x50a{i:061x}" for i in range(1, 5)]  # MARKETS[0] is settled, then reversed
SETTLED = MARKETS[0]
VOIDED = MARKETS[1]  # voided (refunds) late in the run


def log(msg: str) -> None:
    print(f"[soak] {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def children_of(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                raw = fh.read()
        except OSError:
            continue
        fields = raw[raw.rfind(")") + 2 :].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(entry))
    return found


class Proc:
    """A child process in its own session (killed as a whole group)."""

    def __init__(self, name: str, argv: list[str], env: dict, logdir: Path):
        self.name, self.argv, self.env, self.logdir = name, argv, env, logdir
        self.starts = 0
        self.process: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        self.starts += 1
        logfile = open(self.logdir / f"{self.name}.log", "ab")  # noqa: SIM115 - kept by the child
        self.process = subprocess.Popen(self.argv, cwd=ROOT, env=self.env, stdout=logfile, stderr=subprocess.STDOUT, start_new_session=True)
        logfile.close()

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        if self.alive():
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.process.wait()

    def stop(self, timeout: float = 20) -> None:
        if not self.alive():
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
        except ProcessLookupError:
            pass


def stop_all(procs: list[Proc], timeout: float = 20) -> None:
    """SIGTERM every process group at once (warm shutdowns overlap), then SIGKILL what is left."""
    for proc in procs:
        if proc.alive():
            try:
                os.killpg(proc.process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + timeout
    for proc in procs:
        try:
            proc.process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()


class Soak:
    def __init__(self, args, env: dict, workdir: Path):
        self.args = args
        self.env = env
        self.workdir = workdir
        self.rng = random.Random(args.seed)
        self.stop_trading = threading.Event()
        self.stop_chaos = threading.Event()
        self.lock = threading.Lock()
        self.trades = Counter()  # ok / refused:<code> / error:<status> / interrupted
        self.killed = Counter()
        self.events: list[str] = []
        self.mids = {market: Decimal(self.rng.randint(35, 65)) for market in MARKETS}
        self.server_errors: list[str] = []

    # ----- set-up -------------------------------------------------------------------------------

    def setup(self) -> None:
        from casino.services.credentials import operator_create, session_open, staff_token_create
        from casino.services.markets import reference_price_set
        from risk.services.config import risk_settings
        from wallets.models import OperatorWallet
        from wallets.reference_server import ReferenceWalletServer, serve_in_thread
        from wallets.services.transfers import wallet_deposit

        row = risk_settings()
        row.max_trades_per_minute, row.max_stake_per_minute, row.market_burst_trades = 100000, Decimal("100000000"), 100000
        row.save()
        for market in MARKETS:
            reference_price_set(market_id=market, outcome="yes", mid_price=self.mids[market], title=f"Soak {market[-4:]}", category="soak")
        tag = uuid.uuid4().hex[:6]
        internal = operator_create(name=f"soak-internal-{tag}", wallet_mode="internal").operator
        issued = operator_create(name=f"soak-s2s-{tag}", wallet_mode="s2s", wallet_url="http://placeholder")
        self.s2s_operator = issued.operator
        self.wallet = ReferenceWalletServer(issued.wallet_secret, seed=self.args.seed)
        self.wallet_url, self.wallet_stop = serve_in_thread(self.wallet)
        # A short client timeout (the timeout faults outlast it) and a breaker that recovers quickly.
        OperatorWallet.objects.filter(operator=self.s2s_operator).update(
            base_url=self.wallet_url, timeout_seconds=Decimal("1.0"), breaker_cooldown_seconds=3, breaker_failures=8
        )
        self.players = []  # (kind, player, token)
        for i in range(self.args.players):
            session = session_open(operator=internal, external_player_id=f"soak-int-{i}")
            wallet_deposit(player=session.player, amount=START)
            self.players.append(("internal", session.player, session.token))
            session = session_open(operator=self.s2s_operator, external_player_id=f"soak-s2s-{i}")
            self.wallet.set_player(session.player.external_id, balance=START)
            self.players.append(("s2s", session.player, session.token))
        self.staff = staff_token_create(username=f"soak-desk-{tag}")

    def add_faults(self) -> None:
        p = self.args.fault_rate
        self.fault_rules = [
            ("http 500, not applied", dict(kind="http_error", http_status=500, apply="never", probability=p)),
            ("http 502, applied", dict(kind="http_error", http_status=502, apply="before", probability=p)),
            ("timeout, applied", dict(kind="timeout", seconds=1.5, apply="before", probability=p / 2)),
            ("timeout, late arrival", dict(kind="timeout", seconds=1.5, apply="after", probability=p / 2)),
            ("timeout, not applied", dict(kind="timeout", seconds=1.5, apply="never", probability=p / 2)),
            ("bad signature", dict(kind="bad_signature", probability=p)),
            ("unsigned answer", dict(kind="unsigned", probability=p / 2)),
            ("malformed answer", dict(kind="malformed_body", probability=p / 2)),
            ("refused: insufficient funds", dict(kind="refuse", endpoint="debit", status="INSUFFICIENT_FUNDS", probability=p)),
            ("refused: temporary error", dict(kind="refuse", status="TEMPORARY_ERROR", probability=p)),
        ]
        from wallets.reference_server import FaultRule

        self.fault_objects = [(name, self.wallet.add_fault(FaultRule(**fields))) for name, fields in self.fault_rules]

    def start_processes(self) -> None:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        env = {**self.env, "GUNICORN_BIND": f"127.0.0.1:{port}", "GUNICORN_WORKERS": str(self.args.gunicorn_workers)}
        self.gunicorn = Proc(
            "gunicorn",
            [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "--no-control-socket", "config.wsgi:application"],
            env,
            self.workdir,
        )
        celery = [sys.executable, "-m", "celery", "-A", "config"]
        self.workers = [
            Proc(f"celery-{i}", [*celery, "worker", "-Q", QUEUES, "-c", "2", "-n", f"soak{i}@%h", "-l", "WARNING"], self.env, self.workdir)
            for i in range(2)
        ]
        self.beat = Proc(
            "celery-beat",
            [*celery, "beat", "-l", "WARNING", "-s", str(self.workdir / "beat-schedule"), "--pidfile", str(self.workdir / "beat.pid")],
            self.env,
            self.workdir,
        )
        import httpx

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if not self.gunicorn.alive():
                raise SystemExit("gunicorn exited:\n" + (self.workdir / "gunicorn.log").read_text(errors="replace")[-3000:])
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise SystemExit("gunicorn did not answer /healthz")

    # ----- load ---------------------------------------------------------------------------------

    def count(self, key: str, n: int = 1) -> None:
        with self.lock:
            self.trades[key] += n

    def player_loop(self, token: str, seed: int) -> None:
        import httpx

        rng = random.Random(seed)
        held: dict[tuple[str, str], Decimal] = {}
        client = httpx.Client(base_url=f"{self.url}/api/casino", headers={"Authorization": f"Bearer {token}"}, timeout=30)
        while not self.stop_trading.is_set():
            market = rng.choice(MARKETS)
            outcome = rng.choice(["yes", "no"])
            mid = self.mids[market] if outcome == "yes" else 100 - self.mids[market]
            sellable = held.get((market, outcome), Decimal("0"))
            if sellable > 1 and rng.random() < 0.4:
                body = {
                    "marketId": market,
                    "side": "sell",
                    "outcome": outcome,
                    "amount": str((sellable / 2).quantize(Decimal("0.01"))),
                    "midPrice": str(mid),
                }
            else:
                body = {"marketId": market, "side": "buy", "outcome": outcome, "amount": rng.choice([1, 2, 5, 10]), "midPrice": str(mid)}
            key = str(uuid.uuid4())
            for _attempt in range(3):  # a killed worker: the client retries under the same idempotency key
                try:
                    response = client.post("trade", json=body, headers={"Idempotency-Key": key})
                except httpx.HTTPError:
                    self.count("interrupted")
                    client.close()
                    client = httpx.Client(base_url=f"{self.url}/api/casino", headers={"Authorization": f"Bearer {token}"}, timeout=30)
                    time.sleep(0.2)
                    continue
                break
            else:
                continue
            if response.status_code == 200:
                self.count("ok")
                data = response.json()
                shares = Decimal(str(data.get("shares", "0")))
                held[(market, outcome)] = held.get((market, outcome), Decimal("0")) + (shares if body["side"] == "buy" else -shares)
            elif response.status_code < 500:
                try:
                    code = response.json().get("code", "?")
                except ValueError:
                    code = "?"
                self.count(f"refused:{code}")
                if code in ("insufficient_shares", "position_not_found"):
                    held.pop((market, outcome), None)
            else:
                try:
                    code = response.json().get("code", "?")
                except ValueError:
                    code = "?"
                self.count(f"error:{response.status_code} {code}")
                if response.status_code == 500:
                    with self.lock:
                        self.server_errors.append(response.text[:300])
            time.sleep(rng.uniform(0, 0.05))
        client.close()

    def staff_post(self, path: str, body: dict):
        import httpx

        for _ in range(10):
            try:
                return httpx.post(f"{self.url}/api/casino/{path}", json=body, headers={"Authorization": f"Bearer {self.staff}"}, timeout=60)
            except httpx.HTTPError:
                time.sleep(0.5)
        raise RuntimeError(f"staff POST {path} never answered")

    def prices_loop(self) -> None:
        while not self.stop_trading.wait(2.0):
            for market in MARKETS:
                self.mids[market] = max(Decimal(20), min(Decimal(80), self.mids[market] + self.rng.choice([-1, 0, 1])))
                self.staff_post("admin/prices", {"marketId": market, "midPrice": str(self.mids[market])})

    def chaos_loop(self) -> None:
        rng = random.Random(self.args.seed + 1)
        low, high = self.args.chaos_interval
        while not self.stop_chaos.wait(rng.uniform(low, high)):
            roll = rng.random()
            if roll < 0.55:
                victims = children_of(self.gunicorn.process.pid)
                if victims:
                    os.kill(rng.choice(victims), signal.SIGKILL)
                    self.killed["gunicorn worker"] += 1
            elif roll < 0.85:
                worker = rng.choice(self.workers)
                victims = children_of(worker.process.pid) if worker.alive() else []
                if victims:
                    os.kill(rng.choice(victims), signal.SIGKILL)
                    self.killed["celery pool process"] += 1
            else:
                worker = rng.choice(self.workers)
                worker.kill()
                self.killed["celery worker (restarted)"] += 1
                time.sleep(rng.uniform(0.2, 1.5))
                worker.start()

    def settlement_script(self, seconds: float, started: float) -> None:
        if self.stop_trading.wait(max(0.0, started + seconds * 0.35 - time.monotonic())):
            return
        answer = self.staff_post("resolve", {"marketId": SETTLED, "outcome": self.rng.choice(["yes", "no"])})
        self.events.append(f"resolve {answer.status_code} {answer.text[:200]}")
        log(f"settlement: {answer.status_code} {answer.text[:200]}")
        if self.stop_trading.wait(max(0.0, started + seconds * 0.6 - time.monotonic())):
            return
        while not self.stop_trading.is_set():
            answer = self.staff_post("resolve", {"marketId": SETTLED, "action": "reverse", "reason": "soak: reversed during the run"})
            self.events.append(f"reverse {answer.status_code} {answer.text[:200]}")
            log(f"reversal: {answer.status_code} {answer.text[:200]}")
            if answer.status_code == 200:
                break
            self.stop_trading.wait(2.0)
        # A second market is voided late in the run: every position refunded.
        if self.stop_trading.wait(max(0.0, started + seconds * 0.8 - time.monotonic())):
            return
        answer = self.staff_post("resolve", {"marketId": VOIDED, "action": "void"})
        self.events.append(f"void {answer.status_code} {answer.text[:200]}")
        log(f"void: {answer.status_code} {answer.text[:200]}")

    # ----- run ----------------------------------------------------------------------------------

    def run(self) -> dict:
        seconds = self.args.seconds
        self.setup()
        self.start_processes()
        self.add_faults()
        log(f"running {seconds:.0f} s: {len(self.players)} players, gunicorn {self.url}, wallet {self.wallet_url}")
        started = time.monotonic()
        threads = [threading.Thread(target=self.player_loop, args=(token, i), daemon=True) for i, (_, _, token) in enumerate(self.players)]
        threads += [
            threading.Thread(target=self.prices_loop, daemon=True),
            threading.Thread(target=self.settlement_script, args=(seconds, started), daemon=True),
        ]
        chaos = threading.Thread(target=self.chaos_loop, daemon=True)
        for thread in threads:
            thread.start()
        chaos.start()
        while time.monotonic() - started < seconds:
            time.sleep(1)
            if self.args.progress and int(time.monotonic() - started) % 30 == 0:
                log(f"{time.monotonic() - started:.0f} s: {dict(self.trades)} killed {dict(self.killed)}")
        self.stop_chaos.set()
        chaos.join()
        self.stop_trading.set()
        for thread in threads:
            thread.join(timeout=90)
        elapsed = time.monotonic() - started
        faults = Counter()
        for name, rule in self.fault_objects:
            faults[name] += rule.fired
        self.wallet.clear_faults()
        log(f"load stopped after {elapsed:.0f} s; trades {dict(self.trades)}; killed {dict(self.killed)}; faults {dict(faults)}")

        # Recovery: the production processes run on for a moment without chaos or faults, then stop.
        for worker in self.workers:
            if not worker.alive():
                worker.start()
        time.sleep(self.args.settle_seconds)
        stopping = time.monotonic()
        stop_all([self.gunicorn, *self.workers, self.beat])
        log(f"processes stopped in {time.monotonic() - stopping:.1f} s")
        recovery_started = time.monotonic()
        passes = self.recover()
        recovery = time.monotonic() - recovery_started
        log(f"recovery took {recovery:.1f} s ({passes} passes)")
        checks = self.check()
        self.wallet_stop()
        return {
            "seconds": elapsed,
            "trades": dict(self.trades),
            "faults": dict(faults),
            "killed": dict(self.killed),
            "events": self.events,
            "recovery_seconds": recovery,
            "recovery_passes": passes,
            "checks": checks,
            "server_errors": self.server_errors[:5],
            "command": " ".join(sys.argv),
        }

    def recover(self) -> int:
        """Drive every unfinished thing to its end, as the beat tasks do, until nothing is pending."""
        from django.utils import timezone

        from settlement.models import LossNotice, LossNoticeStatus, Reversal, ReversalStatus, Settlement, SettlementStatus
        from settlement.services.loss_notices import loss_notices_send
        from settlement.services.payouts import settlement_advance
        from settlement.services.reversal import reversal_advance
        from wallets.models import OperationStatus, WalletOperation
        from wallets.tasks import reconcile, recover_stalled

        deadline = time.monotonic() + self.args.recovery_deadline
        passes = 0
        while True:
            passes += 1
            WalletOperation.objects.filter(status__in=[OperationStatus.UNKNOWN, OperationStatus.PENDING]).update(
                next_attempt_at=timezone.now()
            )
            recover_stalled(older_than_seconds=0)
            reconcile(limit=10000)
            for settlement_id in Settlement.objects.filter(status=SettlementStatus.SETTLING).values_list("pk", flat=True):
                settlement_advance(settlement_id=settlement_id)
            for reversal_id in Reversal.objects.filter(status=ReversalStatus.REVERSING).values_list("pk", flat=True):
                reversal_advance(reversal_id=reversal_id)
            LossNotice.objects.filter(status=LossNoticeStatus.PENDING).update(next_attempt_at=timezone.now())  # leases and backoff
            loss_notices_send(limit=10000)
            pending = (
                WalletOperation.objects.filter(status__in=[OperationStatus.UNKNOWN, OperationStatus.PENDING]).count()
                + _unsettled_locally().count()
                + Settlement.objects.filter(status=SettlementStatus.SETTLING).count()
                + Reversal.objects.filter(status=ReversalStatus.REVERSING).count()
                + LossNotice.objects.filter(status=LossNoticeStatus.PENDING).count()
            )
            if not pending:
                return passes
            if time.monotonic() > deadline:
                log(f"recovery deadline passed with {pending} things pending")
                return passes
            time.sleep(0.5)

    # ----- invariants ---------------------------------------------------------------------------

    def check(self) -> list[tuple[str, bool, str]]:
        results: list[tuple[str, bool, str]] = []

        def check(name: str, fn) -> None:
            try:
                detail = fn() or ""
                results.append((name, True, detail))
            except AssertionError as error:
                results.append((name, False, str(error)[:2000]))
            except Exception as error:  # noqa: BLE001 - a broken check is a failed check
                results.append((name, False, f"{type(error).__name__}: {error}"[:2000]))

        check("internal ledgers sum to their balances (and debts to their entries)", self.check_internal_ledgers)
        check("operator-side S2S balances equal the house's view", self.check_s2s_balances)
        check("no payout, refund or reversal applied twice", self.check_no_double_apply)
        check("no wallet operation left pending, unknown or manual", self.check_no_pending)
        check("every S2S trade recorded has its movement applied at the operator", self.check_trades_applied)
        check("every settlement and reversal finished", self.check_settlements_finished)
        check("loss notices: every one sent (or cancelled by a reversal) and at the wallet server once", self.check_loss_notices)
        check("exposure book equals what positions and trades imply", self.check_exposure)
        check("risk counters rebuilt equal the database", self.check_risk_counters)
        check("breaker loss windows rebuilt equal the database", self.check_breaker_windows)
        check("daily report rollup equals its recomputation", self.check_rollup)
        check("one trade.executed event per trade", self.check_events)
        check("no request answered 500 (an unhandled error)", self.check_no_500)
        return results

    def check_internal_ledgers(self) -> str:
        from django.db.models import Sum

        from wallets.models import DebtEntry, LedgerEntry, PlayerDebt, PlayerWallet

        sums = dict(LedgerEntry.objects.values("player_id").annotate(total=Sum("amount")).values_list("player_id", "total"))
        wallets = list(PlayerWallet.objects.values_list("player_id", "balance"))
        bad = [(p, sums.get(p), b) for p, b in wallets if sums.get(p, Decimal("0")) != b or b < 0]
        assert not bad, f"ledger != balance (player, ledger, balance): {bad[:5]}"
        debts = dict(DebtEntry.objects.values("player_id").annotate(total=Sum("amount")).values_list("player_id", "total"))
        bad = [
            (p, debts.get(p), a)
            for p, a in PlayerDebt.objects.values_list("player_id", "amount")
            if debts.get(p, Decimal("0")) != a or a < 0
        ]
        assert not bad, f"debt entries != debt: {bad[:5]}"
        return f"{len(wallets)} wallets"

    def check_s2s_balances(self) -> str:
        from django.db.models import Sum

        from wallets.models import LedgerEntry

        sums = dict(
            LedgerEntry.objects.filter(operator=self.s2s_operator)
            .values("player_id")
            .annotate(total=Sum("amount"))
            .values_list("player_id", "total")
        )
        bad = []
        players = [player for kind, player, _ in self.players if kind == "s2s"]
        for player in players:
            house = START + (sums.get(player.pk) or Decimal("0"))
            operator = self.wallet.balance(player.external_id)
            if house != operator:
                bad.append((player.external_id, str(house), str(operator)))
        if bad:
            by_id = {player.external_id: player for kind, player, _ in self.players if kind == "s2s"}
            raise AssertionError(f"(player, house view, wallet server): {bad}; {[self.movements_apart(by_id[b[0]]) for b in bad]}")
        return f"{len(players)} players, wallet total {self.wallet.total_balance()}"

    def movements_apart(self, player) -> dict:
        """The movements on which the wallet server and the house's ledger disagree for one player, by
        transaction id (a rolled-back debit nets to zero on both sides)."""
        from wallets.models import LedgerEntry

        wallet = Counter()
        for tid, tx in self.wallet.transactions.items():
            if tx["user_id"] != player.external_id or not tx["applied"] or tx["operation"] == "rollback":
                continue
            amount = Decimal(str(tx["amount"]))
            wallet[tid] += Decimal("0") if tx["rolled_back"] else (-amount if tx["operation"] == "debit" else amount)
        house = Counter()
        for row_id, kind, amount, reference in LedgerEntry.objects.filter(player=player).values_list(
            "id", "type", "amount", "reference_id"
        ):
            house[str(reference if kind == "rollback" and reference else row_id)] += amount
        apart = {
            tid: (str(house.get(tid, 0)), str(wallet.get(tid, 0)))
            for tid in set(wallet) | set(house)
            if house.get(tid, 0) != wallet.get(tid, 0)
        }
        ops = {}
        if apart:
            from wallets.models import WalletOperation

            for op in WalletOperation.objects.filter(pk__in=list(apart)):
                ops[str(op.pk)] = (op.kind, op.type, op.status, op.operator_status, op.last_error, op.settled_locally, str(op.amount))
        return {
            "player": player.external_id,
            "apart (house, wallet)": apart,
            "operations": ops,
            "wallet": {tid: self.wallet.transactions[tid] for tid in apart if tid in self.wallet.transactions},
        }

    def check_no_double_apply(self) -> str:
        """Each payout, refund and reversal item moved money at most once: at the wallet server (its standing
        applied transactions, traced to the item through the house's operation of that id) and in the house's
        ledger (its rows traced the same way); and the house's own rows say one payout per position."""
        from django.db.models import Count

        from settlement.models import Payout
        from wallets.models import LedgerEntry, WalletOperation

        kinds = ("payout", "refund", "payout_reversal", "refund_reversal")
        applied = {
            tid: tx["type"]
            for tid, tx in self.wallet.transactions.items()
            if tx["applied"] and not tx["rolled_back"] and tx["type"] in kinds
        }
        item_of = {
            str(op_id): payload.get("payout_id") or payload.get("item_id")
            for op_id, payload in WalletOperation.objects.filter(type__in=kinds).values_list("id", "payload")
        }
        unknown = [tid for tid in applied if not item_of.get(tid)]
        assert not unknown, f"applied at the wallet server, unknown to the house: {unknown[:5]}"
        twice = {item: n for item, n in Counter(item_of[tid] for tid in applied).items() if n > 1}
        assert not twice, f"applied more than once at the wallet server (payout or reversal item: times): {twice}"
        rows = LedgerEntry.objects.filter(type__in=kinds, operator=self.s2s_operator).values_list("id", flat=True)
        in_ledger = Counter(item_of.get(str(row)) for row in rows)
        twice = {item: n for item, n in in_ledger.items() if n > 1}
        assert not twice, f"more than one ledger row for one payout or reversal item: {twice}"
        per_position = Payout.objects.values("position_id", "settlement_id").annotate(n=Count("id")).filter(n__gt=1)
        assert not per_position.exists(), f"two payouts for one position: {list(per_position)[:5]}"
        return f"wallet server: {dict(Counter(applied.values()))}; {LedgerEntry.objects.filter(type__in=kinds).count()} ledger rows"

    def check_no_pending(self) -> str:
        from wallets.models import FINAL_STATUSES, WalletOperation

        left = Counter(WalletOperation.objects.exclude(status__in=FINAL_STATUSES).values_list("status", flat=True))
        assert not left, f"wallet operations not final: {dict(left)}"
        unsettled = Counter(_unsettled_locally().values_list("kind", "type"))
        assert not unsettled, f"operations OK at the operator but their trade never finished locally: {dict(unsettled)}"
        return f"{WalletOperation.objects.count()} operations: {dict(Counter(WalletOperation.objects.values_list('status', flat=True)))}"

    def check_trades_applied(self) -> str:
        """A sale is recorded on an unknown credit answer and its credit retried: a credit left refused
        would leave the sale standing without its proceeds, which both balances agree on."""
        from casino.models import Trade
        from wallets.models import OperationStatus, WalletOperation

        s2s = Trade.objects.filter(operator__wallet_mode="s2s")
        ops = WalletOperation.objects.filter(pk__in=s2s.values("wallet_transaction_id"))
        wrong = Counter(ops.exclude(status=OperationStatus.OK).values_list("kind", "status"))
        assert not wrong, f"trades whose movement is not applied at the operator: {dict(wrong)}"
        return f"{s2s.count()} S2S trades, every movement OK"

    def check_loss_notices(self) -> str:
        """SPEC §16 under faults and killed workers: each loss notice (a 0.00 credit of type loss) sent or cancelled
        (its settlement reversed first), none left pending; every loss notification at the wallet server is a
        notice the house recorded as sent, and none arrived twice. (One notice per losing position is
        tests/test_loss_notifications.py's.)"""
        from settlement.models import LossNotice, LossNoticeStatus

        notices = {str(n.transaction_id): n for n in LossNotice.objects.all()}
        statuses = Counter(n.status for n in notices.values())
        assert not statuses.get(LossNoticeStatus.PENDING), f"loss notices left pending: {dict(statuses)}"
        arrived = self.wallet.loss_notifications
        ids = Counter(str(n["transaction_id"]) for n in arrived)
        assert all(n == 1 for n in ids.values()), f"a loss notification arrived twice: {[i for i, n in ids.items() if n > 1][:5]}"
        unknown = [i for i in ids if i not in notices]
        assert not unknown, f"loss notifications the house never recorded: {unknown[:5]}"
        sent = {i for i, n in notices.items() if n.status == LossNoticeStatus.SENT}
        assert sent == set(ids), (
            f"sent but not at the wallet server: {list(sent - set(ids))[:5]}; there but not sent: {list(set(ids) - sent)[:5]}"
        )
        wrong = [n for n in arrived if str(n["amount"]) != "0.00"]
        assert not wrong, f"loss notifications with an amount: {wrong[:3]}"
        return f"{len(notices)} notices: {dict(statuses)}; {len(arrived)} at the wallet server"

    def check_settlements_finished(self) -> str:
        from settlement.models import Reversal, Settlement

        settlements = dict(Counter(Settlement.objects.values_list("status", flat=True)))
        reversals = dict(Counter(Reversal.objects.values_list("status", flat=True)))
        if "settling" in settlements or "reversing" in reversals:
            raise AssertionError(f"{settlements}, {reversals}; {self.settlement_backlog()}")
        return f"settlements {settlements}, reversals {reversals}"

    def settlement_backlog(self) -> str:
        """What an unfinished settlement waits for: its payouts by status, and the operator's last answers."""
        from settlement.models import Payout, Settlement
        from wallets.models import WalletOperation

        parts = []
        for settlement in Settlement.objects.filter(status="settling"):
            payouts = Counter(Payout.objects.filter(settlement=settlement).values_list("status", flat=True))
            stuck = Payout.objects.filter(settlement=settlement).exclude(status__in=["paid", "nothing_due"])
            answers = Counter(
                WalletOperation.objects.filter(payload__payout_id__in=[str(p) for p in stuck.values_list("id", flat=True)]).values_list(
                    "status", "operator_status", "last_error"
                )
            )
            parts.append(f"settlement {settlement.action} payouts {dict(payouts)}; their operations {dict(answers)}")
        return "; ".join(parts)

    def check_exposure(self) -> str:
        from casino.models import MarketExposure
        from casino.selectors import market_book_from_records
        from casino.services.exposure import (
            _worst,
            category_bounds_from_books,
            category_exposure_bounds,
            exposure_book,
            global_exposure_bound,
        )
        from settlement.models import LIVE_SETTLEMENT, Settlement

        bad = []
        for market in MARKETS:
            book = exposure_book(market_id=market)
            settled = Settlement.objects.filter(market_id=market, status__in=LIVE_SETTLEMENT).exists()
            expected = market_book_from_records(market_id=market)
            if settled:
                expected = type(expected)(Decimal("0"), Decimal("0"), Decimal("0"))
            if (book.yes_shares, book.no_shares, book.cash_in) != (expected.yes_shares, expected.no_shares, expected.cash_in):
                bad.append((market[-4:], "settled" if settled else "open", book, expected))
        assert not bad, f"(market, state, book, records): {bad}"
        shards = sum((_worst(s) for s in MarketExposure.objects.all()), Decimal("0"))
        bound = global_exposure_bound()
        assert bound == shards, f"global bound {bound} != sum of market shards' worst cases {shards}"
        categories = {c: b for c, b in category_exposure_bounds().items() if b}
        expected_categories = {c: b for c, b in category_bounds_from_books().items() if b}
        assert categories == expected_categories, f"category bounds {categories} != their market shards' worst cases {expected_categories}"
        return f"{len(MARKETS)} markets, global bound {bound}, category bounds {categories}"

    def check_risk_counters(self) -> str:
        from casino.models import Operator
        from risk import counters
        from risk.selectors import operator_open_exposure
        from risk.services.assessment import cents, operator_open_exposure_key
        from risk.tasks import operator_open_exposure_rebuild

        def value(operator_id) -> int:
            return counters.current_value(counters.Counter.total(operator_open_exposure_key(operator_id), add=0, limit=None))

        ids = list(Operator.objects.filter(pk__in=[self.s2s_operator.pk, self.players[0][1].operator_id]).values_list("pk", flat=True))
        drift = {str(i)[:8]: value(i) - cents(operator_open_exposure(operator_id=i)) for i in ids}
        operator_open_exposure_rebuild()
        bad = {
            str(i): (value(i), cents(operator_open_exposure(operator_id=i)))
            for i in ids
            if value(i) != cents(operator_open_exposure(operator_id=i))
        }
        assert not bad, f"(counter, database) in cents after the rebuild: {bad}"
        return f"drift before the rebuild (cents): {drift}"

    def check_breaker_windows(self) -> str:
        """The circuit breakers' 24 h windows (SPEC §16), after the rebuild, equal the trades and the ledger."""
        from django.db.models import Sum

        from casino.models import Trade
        from risk.services.breakers import breaker_windows_rebuild, platform_window_loss, player_window_loss
        from wallets.models import LedgerEntry

        kinds = ("payout", "refund", "payout_reversal", "refund_reversal", "debt_recovery")

        def database(player) -> Decimal:
            sales = Trade.objects.filter(player=player, side="sell").aggregate(v=Sum("cost"))["v"] or Decimal("0")
            stakes = Trade.objects.filter(player=player, side="buy").aggregate(v=Sum("cost"))["v"] or Decimal("0")
            paid = LedgerEntry.objects.filter(player=player, type__in=kinds).aggregate(v=Sum("amount"))["v"] or Decimal("0")
            return sales - stakes + paid

        live = {p.pk: player_window_loss(player_id=p.pk) for _, p, _ in self.players}
        breaker_windows_rebuild()
        bad = {str(p.pk)[:8]: (player_window_loss(player_id=p.pk), database(p)) for _, p, _ in self.players}
        bad = {k: v for k, v in bad.items() if v[0] != v[1]}
        assert not bad, f"(window, database) after the rebuild: {bad}"
        drift = sum((abs(live[p.pk] - player_window_loss(player_id=p.pk)) for _, p, _ in self.players), Decimal("0"))
        return f"{len(self.players)} players, platform {platform_window_loss()}, live drift before the rebuild {drift}"

    def check_rollup(self) -> str:
        from django.db import connection, transaction

        from reports.rollup import rebuild_statements

        query = (
            "SELECT operator_id::text, day::text, currency, sum(trades), sum(players), sum(stakes), sum(sale_proceeds), sum(payouts),"
            " sum(refunds), sum(reversals) FROM reports_daily GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"
        )

        class Undo(Exception):
            pass

        with connection.cursor() as cursor:
            cursor.execute(query)
            live = cursor.fetchall()
        rebuilt = []
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                for statement in rebuild_statements(connection.vendor):
                    cursor.execute(statement)
                cursor.execute(query)
                rebuilt[:] = cursor.fetchall()
                raise Undo
        except Undo:
            pass
        assert live == rebuilt, f"live {live} != rebuilt {rebuilt}"
        return f"{len(live)} operator-days"

    def check_no_500(self) -> str:
        assert not self.server_errors, f"{len(self.server_errors)} answers 500: {self.server_errors[:3]}"
        return f"{sum(n for key, n in self.trades.items() if key.startswith('error:'))} 5xx, all the wallet's (502/503/504)"

    def check_events(self) -> str:
        from django.db.models import Count

        from casino.models import Trade
        from core.models import Event

        per_trade = Counter(Event.objects.filter(type="trade.executed").values_list("data__id", flat=True))
        trades = set(str(t) for t in Trade.objects.values_list("id", flat=True))
        missing = trades - set(per_trade)
        twice = {t: n for t, n in per_trade.items() if n > 1}
        extra = set(per_trade) - trades
        assert not missing and not twice and not extra, (
            f"missing {list(missing)[:5]}, twice {list(twice)[:5]}, without a trade {list(extra)[:5]}"
        )
        del Count
        return f"{len(trades)} trades, {sum(per_trade.values())} events"


def _unsettled_locally():
    """Trade movements (those with a recovery handler) applied at the operator whose local side never finished."""
    from wallets.models import OperationKind, OperationStatus, WalletOperation

    return WalletOperation.objects.filter(
        settled_locally=False, status=OperationStatus.OK, kind__in=[OperationKind.DEBIT, OperationKind.CREDIT], payload__handler="trade"
    )


# ----- reporting --------------------------------------------------------------------------------


def render(result: dict, command: str) -> str:
    trades = result["trades"]
    ok = trades.get("ok", 0)
    refused = {k.split(":", 1)[1]: v for k, v in trades.items() if k.startswith("refused:")}
    errors = {k.split(":", 1)[1]: v for k, v in trades.items() if k.startswith("error:")}
    lines = [
        BEGIN,
        f"### Soak ({dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, commit {commit()})",
        "",
        f"`{command}`",
        "",
        f"- Duration: {result['seconds']:.0f} s of load, then {result['recovery_seconds']:.1f} s of recovery"
        f" ({result['recovery_passes']} passes).",
        f"- Trades: {ok} ok, {sum(refused.values())} refused ({by_count(refused)}), {sum(errors.values())} 5xx ({by_count(errors)}),"
        f" {trades.get('interrupted', 0)} interrupted by a killed worker (retried under the same idempotency key).",
        f"- Faults injected at the wallet server: {sum(result['faults'].values())} ("
        + ", ".join(f"{k} {v}" for k, v in result["faults"].items())
        + ").",
        f"- Processes killed (SIGKILL): {sum(result['killed'].values())} ("
        + ", ".join(f"{k} {v}" for k, v in result["killed"].items())
        + ").",
        f"- Settlements (resolve, its reversal, a void): {'; '.join(e.split(' {')[0] if e else e for e in result['events']) or 'none'}.",
        "",
        "| Invariant | Result | Detail |",
        "|---|---|---|",
    ]
    for name, passed, detail in result["checks"]:
        lines.append(f"| {name} | {'PASS' if passed else '**FAIL**'} | {detail.replace('|', '/')} |")
    lines.append(END)
    return "\n".join(lines)


def by_count(counts: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1])) or "none"


def commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "?"


def write_block(path: Path, text: str) -> None:
    old = path.read_text() if path.exists() else ""
    if BEGIN in old and END in old:
        new = old[: old.index(BEGIN)] + text + old[old.index(END) + len(END) :]
    else:
        new = old.rstrip("\n") + "\n\n## Soak (`make soak`)\n\n" + text + "\n"
    path.write_text(new)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--players", type=int, default=6, help="per operator")
    parser.add_argument("--gunicorn-workers", type=int, default=3)
    parser.add_argument("--fault-rate", type=float, default=0.03, help="probability of each fault kind per wallet call")
    parser.add_argument("--chaos-interval", type=float, nargs=2, default=[1.0, 5.0], metavar=("MIN", "MAX"))
    parser.add_argument("--settle-seconds", type=float, default=3.0, help="the processes run on this long after the load")
    parser.add_argument("--recovery-deadline", type=float, default=120.0)
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL", ""))
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL", ""))
    parser.add_argument("--no-migrate", action="store_true")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--write", action="store_true", help="record the figures in bench/RESULTS.md")
    parser.add_argument("--results", type=Path, default=BENCH / "RESULTS.md")
    parser.add_argument("--json", type=Path, help="also write the result as JSON here")
    parser.add_argument("--progress", action="store_true")
    args = parser.parse_args(argv)
    if args.minutes:
        args.seconds = args.minutes * 60
    if not args.database_url.startswith("postgres") or not args.redis_url:
        parser.error("needs PostgreSQL and Redis: run under scripts/with-services (DATABASE_URL, REDIS_URL)")
    env = {
        **os.environ,
        "DATABASE_URL": args.database_url,
        "REDIS_URL": args.redis_url,
        "CELERY_BROKER_URL": args.redis_url,
        "CELERY_TASK_ALWAYS_EAGER": "0",
        "RATELIMIT_ENABLE": "0",
        "LOG_LEVEL": os.environ.get("LOG_LEVEL", "WARNING"),
        "HOUSE_WALLET_HOLD_MARGIN_SECONDS": "2",
        "DJANGO_SECRET_KEY": os.environ.get("DJANGO_SECRET_KEY", "soak-only-secret-key"),
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "PYTHONPATH": str(ROOT),
    }
    os.environ.update(env)
    import django

    django.setup()
    import logging

    logging.getLogger().setLevel(logging.WARNING)
    for name in ("house", "house.wallet.s2s", "house.settlement"):
        logging.getLogger(name).setLevel(logging.WARNING)
    from django.core.cache import cache
    from django.core.management import call_command

    if not args.no_migrate:
        call_command("migrate", verbosity=0)
    cache.clear()  # this run's Redis database: the broker's queues and the counters start empty
    command = " ".join(["bench/soak.py", *(argv if argv is not None else sys.argv[1:])])
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        soak = Soak(args, env, Path(tmp))
        try:
            result = soak.run()
        finally:
            for proc in [getattr(soak, "gunicorn", None), *getattr(soak, "workers", []), getattr(soak, "beat", None)]:
                if proc is not None:
                    proc.kill()
            if os.environ.get("SOAK_KEEP_LOGS"):
                for logfile in Path(tmp).glob("*.log"):
                    target = Path(os.environ["SOAK_KEEP_LOGS"]) / logfile.name
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(logfile.read_bytes())
    text = render(result, command)
    print(text)
    if args.json:
        args.json.write_text(json.dumps(result, default=str, indent=2))
    if args.write:
        write_block(args.results, text)
    failed = [name for name, passed, _ in result["checks"] if not passed]
    if failed:
        log("FAILED: " + "; ".join(failed))
        return 1
    log("all invariants hold")
    return 0


if __name__ == "__main__":
    sys.exit(main())
