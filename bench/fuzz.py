"""Schema fuzzing at scale (SPEC §15, `make fuzz`): schemathesis against gunicorn + PostgreSQL + Redis.

    make fuzz        # = scripts/with-services .venv/bin/python bench/fuzz.py --write
    scripts/with-services .venv/bin/python bench/fuzz.py --examples 200 --seed 7

Migrates the database of scripts/with-services, seeds an internal operator with funded players, a
market with a fresh reference price and a staff token (tests/fuzzing.py: seed_house), starts the
product under gunicorn (the shipped gunicorn.conf.py, rate limits off so the fuzzer reaches the
business logic), loads the served document from /api/schema/ and sends up to --examples positive and
as many negative cases per operation, each with the credential the operation names (player session
token, operator key, staff token). Checks: no answer >= 500, the status documented, the content type
documented, the body conforms to the schema. Rewrites its block of bench/RESULTS.md with --write;
exits 1 on any finding. gunicorn runs in its own session and its process group is stopped at the end.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django  # noqa: E402

django.setup()

import requests  # noqa: E402
import schemathesis  # noqa: E402
from django.core.management import call_command  # noqa: E402

from tests.fuzzing import fuzz, seed_house  # noqa: E402
from tests.gunicorn_server import Gunicorn  # noqa: E402

BEGIN = "<!-- BEGIN bench/fuzz.py output: rewritten by every run with --write -->"
END = "<!-- END bench/fuzz.py output -->"
MIN_CASES = 5000


def log(message: str) -> None:
    print(f"[fuzz] {message}", file=sys.stderr, flush=True)


def _write_block(path: Path, text: str) -> None:
    current = path.read_text() if path.exists() else ""
    if BEGIN in current and END in current:
        head, rest = current.split(BEGIN, 1)
        current = head + text.rstrip("\n") + rest.split(END, 1)[1]
    else:
        current = current.rstrip("\n") + "\n\n" + text
    path.write_text(current)


def _commit() -> str:
    try:
        line = subprocess.run(["git", "log", "-1", "--format=%h %s"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown (no git)"
    return f"`{line.strip()[:100]}`" + (", with uncommitted changes" if dirty.strip() else ", clean work tree")


def _block(report, args, gunicorn_errors: int) -> str:
    statuses = ", ".join(f"{status}: {count:,}" for status, count in sorted(report.statuses.items()))
    transport = sum(report.transport_errors.values())
    findings = "\n".join(f"  - {f.operation} [{f.check}] {f.status}: {f.detail[:200]}" for f in report.findings.values()) or "  - none"
    verdict = "PASS" if report.cases >= MIN_CASES and not report.findings and not gunicorn_errors else "FAIL"
    return f"""{BEGIN}
## Schema fuzzing (SPEC §15): schemathesis against gunicorn

- Command: `make fuzz` (= `scripts/with-services .venv/bin/python bench/fuzz.py --write`), seed {args.seed},
  up to {args.examples} positive and {args.examples} negative cases per operation; {time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
- Code: {_commit()}
- Stack: gunicorn {args.workers} workers (`gunicorn.conf.py`) + PostgreSQL + Redis of scripts/with-services, rate limits off,
  Celery eager; credentials: a player session token, an operator key, a staff token (each operation gets the one it names)
- Checks: not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance

| figure | value |
|---|---:|
| cases sent | {report.cases:,} |
| operations | {len(report.operations)} |
| answers >= 500 | {report.server_errors} |
| schema violations (status, content type, body) | {report.schema_violations} |
| unhandled errors in the gunicorn log | {gunicorn_errors} |
| cases the HTTP client refused to send | {transport} |
| time | {report.seconds:,.0f} s ({report.cases / max(report.seconds, 0.001):,.0f} cases/s) |

Answers by status: {statuses}

Findings:
{findings}

Verdict: **{verdict}** (target: >= {MIN_CASES:,} cases, 0 answers >= 500, 0 schema violations)
{END}
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=100, help="cases per operation and generation mode (default 100)")
    parser.add_argument("--seed", type=int, default=13, help="Hypothesis seed (0: derandomized)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--write", action="store_true", help="rewrite the block of bench/RESULTS.md")
    parser.add_argument("--results", type=Path, default=ROOT / "bench" / "RESULTS.md")
    args = parser.parse_args()
    if not os.environ.get("DATABASE_URL", "").startswith("postgres"):
        log("needs PostgreSQL and Redis: run through scripts/with-services (make fuzz)")
        return 2

    call_command("migrate", verbosity=0, interactive=False)
    credentials = seed_house()
    log_dir = ROOT / "var"
    log_dir.mkdir(exist_ok=True)
    server = Gunicorn(workers=args.workers, log_path=log_dir / "fuzz-gunicorn.log")
    try:
        log(f"gunicorn on {server.url}; loading {server.url}/api/schema/")
        schema = schemathesis.openapi.from_url(f"{server.url}/api/schema/?format=json")
        session = requests.Session()

        def send(case, headers):
            return case.call(base_url=server.url, session=session, headers=headers, timeout=30)

        report = fuzz(schema, credentials, send=send, examples=args.examples, seed=args.seed, progress=log)
    finally:
        server.stop()
    gunicorn_errors = server.unhandled_errors()
    print(report.summary())
    print(f"unhandled errors in the gunicorn log ({server.log_path}): {gunicorn_errors}")
    if args.write:
        _write_block(args.results, _block(report, args, gunicorn_errors))
        log(f"wrote the fuzz block of {args.results}")
    ok = report.cases >= MIN_CASES and not report.findings and not gunicorn_errors
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
