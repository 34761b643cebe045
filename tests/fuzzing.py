"""Schema fuzzing (SPEC §15): schemathesis cases for every operation of the served OpenAPI document,
sent with a valid credential of the kind the operation names, each answer checked against the
document (no 5xx, documented status, documented content type, body conforms to the schema).

Shared by tests/test_schema_fuzz.py (a short, derandomized budget in `make test`, in-process WSGI)
and bench/fuzz.py (`make fuzz`: >= 5,000 cases against gunicorn). Findings are collected, not
raised, so one run reports all of them.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.generation.modes import GenerationMode
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance, status_code_conformance

from core.api.inputs import UNSAFE_TEXT_RE

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
MARKET = "0xf0220000000000000000000000000000000000000000000000000000000000001"


@dataclass(frozen=True)
class Credentials:
    player: str  # ps_... session token
    operator: str  # X-Operator-Key
    staff: str  # st_... staff token
    player_id: str = ""  # the house's id of the player of ``player`` (userId, targetUserId)
    player_external_id: str = ""  # the operator's id of that player (playerId)


def seed_house(*, players: int = 3, balance: Decimal = Decimal("10000")) -> Credentials:
    """An internal operator with funded players, a tradeable market, a staff token; the risk limits
    lifted so that the fuzzer's trades reach the executor instead of the velocity wall."""
    from casino.models import CasinoSettings
    from casino.services.credentials import operator_create, session_open, staff_token_create
    from casino.services.markets import reference_price_set
    from risk.services.config import risk_settings
    from wallets.services.transfers import wallet_deposit

    operator = operator_create(name=f"fuzz-{uuid.uuid4().hex[:8]}", wallet_mode="internal")
    sessions = []
    for number in range(players):
        session = session_open(operator=operator.operator, external_player_id=f"fuzz-player-{number}-{uuid.uuid4().hex[:6]}")
        wallet_deposit(player=session.player, amount=balance)
        sessions.append(session)
    # A run lasts minutes: the seeded reference price stays fresh for it (as bench/seed.py does).
    CasinoSettings.objects.update_or_create(pk=1, defaults={"price_max_age_seconds": 7 * 86400})
    reference_price_set(market_id=MARKET, outcome="yes", mid_price=Decimal("50"), title="Fuzz market", category="crypto")
    row = risk_settings()
    row.max_trades_per_minute = 2_000_000_000
    row.market_burst_trades = 2_000_000_000
    row.max_stake_per_minute = Decimal("10000000000")
    row.save()
    return Credentials(
        player=sessions[0].token,
        operator=operator.api_key,
        staff=staff_token_create(username=f"fuzz-{uuid.uuid4().hex[:6]}"),
        player_id=str(sessions[0].player.pk),
        player_external_id=sessions[0].player.external_id,
    )


# Fields whose random values nearly always miss (an unknown market or player, a price far from the
# reference, an amount of the wrong precision: a 4xx and no further): one case in two gets the seeded
# one instead, so the fuzzer reaches the trade, the transfer, the controls.
def known_values(credentials: Credentials) -> dict[str, str]:
    return {
        "marketId": MARKET,
        "midPrice": "50",
        "amount": "5",
        "liquidity": "1000",
        "market_id": MARKET,
        "targetUserId": credentials.player_id,
        "userId": credentials.player_id,
        "playerId": credentials.player_external_id,
    }


def _safe(value: str, empty: str) -> str:
    return UNSAFE_TEXT_RE.sub("", value) or empty


def steer(case, credentials: Credentials):
    """Half the cases: the seeded ids and values where the operation takes them, and no text the kernel
    refuses (the document allows fields and parameters it does not name, and the API ignores them)."""
    known = known_values(credentials)
    if isinstance(case.body, dict):
        for name, value in list(case.body.items()):
            if UNSAFE_TEXT_RE.search(name) or not isinstance(value, str | int | bool | None):
                del case.body[name]
            elif isinstance(value, str):
                case.body[name] = _safe(value, "x")
        for name, value in known.items():
            if name in case.body:
                case.body[name] = value
    for container in (case.path_parameters, case.query, case.headers):
        if isinstance(container, dict):
            for name, value in list(container.items()):
                if isinstance(value, str):
                    container[name] = _safe(value, "x")
            for name, value in known.items():
                if name in container:
                    container[name] = value
    return case


def credential_headers(operation, credentials: Credentials) -> dict[str, str]:
    """The credential the operation's first security requirement names (none for public ones)."""
    return security_headers(operation.definition.raw.get("security") or [], credentials)


def security_headers(security: list[dict], credentials: Credentials) -> dict[str, str]:
    for requirement in security:
        if "operatorKey" in requirement:
            return {"X-Operator-Key": credentials.operator}
        if "staffToken" in requirement:
            return {"Authorization": f"Bearer {credentials.staff}"}
        if "playerToken" in requirement:
            return {"Authorization": f"Bearer {credentials.player}"}
    return {}


@dataclass
class Finding:
    operation: str
    check: str
    status: int
    detail: str


@dataclass
class Report:
    cases: int = 0
    seconds: float = 0.0
    operations: set[str] = field(default_factory=set)
    statuses: Counter = field(default_factory=Counter)
    by_operation: Counter = field(default_factory=Counter)  # (operation, status) -> answers
    error_codes: Counter = field(default_factory=Counter)  # (operation, error code) -> answers
    samples: dict = field(default_factory=dict)  # (operation, error code) -> the first case that got it (curl)
    findings: dict[tuple[str, str], Finding] = field(default_factory=dict)
    transport_errors: Counter = field(default_factory=Counter)
    server_errors: int = 0
    schema_violations: int = 0

    def summary(self) -> str:
        lines = [
            f"{self.cases} cases over {len(self.operations)} operations in {self.seconds:.1f} s; "
            f"{self.server_errors} answers >= 500, {self.schema_violations} schema violations"
        ]
        lines += [f"  {f.operation} [{f.check}] {f.status}: {f.detail}" for f in self.findings.values()]
        lines += [f"  transport error {name}: {count}" for name, count in self.transport_errors.items()]
        return "\n".join(lines)


def fuzz(
    schema,
    credentials: Credentials,
    *,
    send: Callable,
    examples: int,
    seed: int | None = 0,
    modes: tuple[GenerationMode, ...] = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE),
    progress: Callable[[str], None] | None = None,
) -> Report:
    """Up to ``examples`` cases per operation and generation mode; ``send(case, headers)`` returns the
    response. ``seed`` fixes Hypothesis' randomness (None: random)."""
    report = Report()
    started = time.monotonic()
    # Staff operations run last: they reprice the seeded market (the steered trades' midPrice would then
    # be "price moved"), change the risk settings, settle the market (ends its trading); settling last of all.
    operations = sorted(
        (result.ok() for result in schema.get_all_operations()),
        key=lambda op: ("resol" in op.path, op.path.startswith("/api/casino/admin/")),
    )
    for operation in operations:
        label = f"{operation.method.upper()} {operation.path}"
        report.operations.add(label)
        headers = credential_headers(operation, credentials)
        for mode in modes:
            before = report.cases
            _fuzz_operation(operation, label, mode, headers, credentials, send, examples, seed, report)
            if progress:
                statuses = sorted((status, n) for (name, status), n in report.by_operation.items() if name == label)
                codes = sorted((code, n) for (name, code), n in report.error_codes.items() if name == label)
                progress(f"{label} {mode.value}: {report.cases - before} cases; answers so far {statuses}, errors {codes}")
    report.seconds = time.monotonic() - started
    return report


def _error_code(response) -> str:
    try:
        return str(response.json().get("code"))
    except Exception:  # noqa: BLE001 - not the error shape: the schema check reports it
        return "?"


def _fuzz_operation(operation, label, mode, headers, credentials, send, examples, seed, report: Report) -> None:
    @settings(
        max_examples=examples,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
        derandomize=seed is not None and seed == 0,
    )
    @given(case=operation.as_strategy(generation_mode=mode), steered=st.booleans())
    def one(case, steered):
        if steered:
            steer(case, credentials)
        report.cases += 1
        try:
            response = send(case, headers)
        except Exception as exc:  # a case the HTTP client itself refuses to send (e.g. a newline in a header)
            report.transport_errors[type(exc).__name__] += 1
            return
        report.statuses[response.status_code] += 1
        report.by_operation[(label, response.status_code)] += 1
        if response.status_code >= 400:
            code = _error_code(response)
            report.error_codes[(label, code)] += 1
            report.samples.setdefault((label, code), case.as_curl_command(headers=headers)[:500])
        try:
            case.validate_response(response, checks=CHECKS, headers=headers)
        except BaseExceptionGroup as exc:  # schemathesis' FailureGroup: one per failed check
            for failure in exc.exceptions:
                title = getattr(failure, "title", type(failure).__name__)
                if response.status_code >= 500:
                    report.server_errors += 1
                else:
                    report.schema_violations += 1
                key = (label, title)
                if key not in report.findings:
                    body = response.text if hasattr(response, "text") else ""
                    message = getattr(failure, "message", str(failure))[:300]
                    detail = f"{message} | sent {case.as_curl_command(headers=headers)[:400]} | got {body[:300]}"
                    report.findings[key] = Finding(label, title, response.status_code, detail)

    if seed:
        one = hypothesis_seed(seed)(one)
    try:
        one()
    except Unsatisfiable:  # nothing to make invalid (an operation without parameters, in negative mode)
        pass
