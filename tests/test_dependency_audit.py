"""The pinned requirements audited for known vulnerabilities (SPEC §15): pip-audit on requirements-dev.txt
(which includes requirements.txt), exact pins only (``--no-deps``: the versions this repository chose).

pip-audit asks a vulnerability service (PyPI's JSON API) over the network. A CI runner that cannot reach it
gets a skip with a clear note, not a failure; a known vulnerability in a pin fails. ``make audit`` runs
the same check on its own.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PIP_AUDIT = Path(sys.executable).parent / "pip-audit"
# Errors that mean "the service was not reached", as opposed to "pip-audit is broken".
UNREACHABLE = ("ConnectionError", "NameResolutionError", "Max retries exceeded", "Timeout", "timed out", "Temporary failure")
NOT_ON_SERVICE = "not found on PyPI"


def audit_verdict(report: dict) -> tuple[str, str]:
    """("fail" | "skip" | "pass", note) for pip-audit's JSON report."""
    dependencies = report.get("dependencies", [])
    vulnerable = [d for d in dependencies if d.get("vulns")]
    if vulnerable:
        lines = [
            f"{d['name']}=={d['version']}: {v['id']} (fixed in {', '.join(v.get('fix_versions') or ['no release yet'])})"
            for d in vulnerable
            for v in d["vulns"]
        ]
        return "fail", "known vulnerabilities in pinned requirements:\n" + "\n".join(lines)
    audited = [d for d in dependencies if "skip_reason" not in d]
    if dependencies and not audited:
        if all(NOT_ON_SERVICE in d["skip_reason"] for d in dependencies):
            return "skip", "pip-audit: the vulnerability service knows none of the pins (no real PyPI JSON API reachable): NOT audited"
        return "skip", "pip-audit: every pin skipped: NOT audited (" + dependencies[0]["skip_reason"] + ")"
    skipped = [d["name"] for d in dependencies if "skip_reason" in d]
    return "pass", f"{len(audited)} pins audited, no known vulnerabilities" + (f"; not audited: {', '.join(skipped)}" if skipped else "")


def run_pip_audit(requirements: Path) -> tuple[str, str]:
    command = [str(PIP_AUDIT), "-r", str(requirements), "--no-deps", "--disable-pip", "--progress-spinner", "off"]
    command += ["--format", "json", "--timeout", "15"]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return "skip", "pip-audit: the vulnerability service did not answer within 5 minutes: NOT audited"
    try:
        report = json.loads(result.stdout)
    except json.JSONDecodeError:
        if any(marker in result.stderr for marker in UNREACHABLE):
            last = result.stderr.strip().splitlines()[-1] if result.stderr.strip() else ""
            return "skip", f"pip-audit: vulnerability service unreachable: NOT audited ({last[:200]})"
        return "fail", f"pip-audit failed (exit {result.returncode}):\n{result.stderr[-2000:]}"
    return audit_verdict(report)


def test_pinned_requirements_have_no_known_vulnerabilities():
    if not PIP_AUDIT.exists():
        pytest.fail(f"{PIP_AUDIT} missing: pip-audit is pinned in requirements-dev.txt")
    verdict, note = run_pip_audit(ROOT / "requirements-dev.txt")
    print(note)
    if verdict == "skip":
        pytest.skip(note)
    assert verdict == "pass", note


# -- the verdict itself, on pip-audit's report shapes --------------------------------------------------


def test_a_known_vulnerability_fails_the_audit():
    report = {
        "dependencies": [
            {"name": "django", "version": "4.2.0", "vulns": [{"id": "PYSEC-2023-100", "fix_versions": ["4.2.2"], "aliases": []}]},
            {"name": "httpx", "version": "0.28.1", "vulns": []},
            {"name": "ruff", "version": "0.17.6", "skip_reason": "Dependency not found on PyPI and could not be audited: ruff (0.17.6)"},
        ]
    }
    assert audit_verdict(report) == (
        "fail",
        "known vulnerabilities in pinned requirements:\ndjango==4.2.0: PYSEC-2023-100 (fixed in 4.2.2)",
    )


def test_an_unreachable_service_is_a_skip_never_a_pass():
    everything_unknown = {
        "dependencies": [
            {"name": n, "skip_reason": f"Dependency not found on PyPI and could not be audited: {n} (1.0)"} for n in ("django", "httpx")
        ]
    }
    verdict, note = audit_verdict(everything_unknown)
    assert verdict == "skip" and "NOT audited" in note


def test_a_clean_audit_passes_and_names_what_it_could_not_audit():
    report = {
        "dependencies": [
            {"name": "django", "version": "5.2.19", "vulns": []},
            {"name": "ruff", "version": "0.17.6", "skip_reason": "Dependency not found on PyPI and could not be audited: ruff (0.17.6)"},
        ]
    }
    assert audit_verdict(report) == ("pass", "1 pins audited, no known vulnerabilities; not audited: ruff")
