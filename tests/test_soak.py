"""The soak of `make soak` (bench/soak.py) for 30 seconds, so CI keeps the harness working: gunicorn, Celery
workers and beat on Redis, the reference wallet server injecting faults, players trading on an internal and
an S2S operator, a settlement, its reversal and a void, workers SIGKILLed at random; then recovery, and
every money invariant must hold. The harness runs as a subprocess against this test's database (it commits:
the processes it starts are other processes) and its own Redis database, so no other test's cache flush or
queue touches it.
"""

import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import pytest
from django.conf import settings

from tests.conftest import requires_postgres

ROOT = Path(__file__).resolve().parent.parent
SOAK_REDIS_DB = 9


def _database_url() -> str:
    url = urlparse(os.environ["DATABASE_URL"])
    return urlunparse(url._replace(path=f"/{settings.DATABASES['default']['NAME']}"))


def _redis_url() -> str:
    return urlunparse(urlparse(os.environ["REDIS_URL"])._replace(path=f"/{SOAK_REDIS_DB}"))


@requires_postgres
@pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="needs Redis (run via scripts/test)")
@pytest.mark.django_db(transaction=True)
def test_a_30_second_soak_with_faults_and_killed_workers_keeps_every_money_invariant(tmp_path):
    result_path = tmp_path / "soak.json"
    command = [
        sys.executable,
        "bench/soak.py",
        "--seconds",
        "30",
        "--players",
        "4",
        "--gunicorn-workers",
        "2",
        "--chaos-interval",
        "1",
        "4",
        "--settle-seconds",
        "2",
        "--recovery-deadline",
        "60",
        "--no-migrate",
        "--database-url",
        _database_url(),
        "--redis-url",
        _redis_url(),
        "--json",
        str(result_path),
    ]
    run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, f"soak failed:\n{run.stdout[-4000:]}\n{run.stderr[-4000:]}"
    result = json.loads(result_path.read_text())

    checks = {name: (passed, detail) for name, passed, detail in result["checks"]}
    assert len(checks) == 13 and all(passed for passed, _ in checks.values()), checks
    # The run really was a soak: trades went through, faults were injected, processes died,
    # and the market was settled, reversed, and another voided, all over HTTP.
    assert result["trades"].get("ok", 0) > 50, result["trades"]
    assert sum(result["faults"].values()) > 0, result["faults"]
    assert sum(result["killed"].values()) > 0, result["killed"]
    done = sorted(event.split()[0] for event in result["events"] if event.split()[1] == "200")
    assert done == ["resolve", "reverse", "void"], result["events"]
    assert "all invariants hold" in run.stderr
