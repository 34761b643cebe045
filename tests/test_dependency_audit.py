"""The pinned requirements audited for known vulnerabilities (SPEC §15), twice:

* offline, always (CI has no network): every pin of requirements.txt and requirements-dev.txt against
  security/advisories.json, a snapshot of the PyPA advisory database (OSV) for the pinned packages, refreshed
  by scripts/advisories_snapshot.py (its date is printed; refresh it with every change of pins);
* online, pip-audit on requirements-dev.txt (exact pins, ``--no-deps``) against PyPI's live vulnerability
  service. A runner that cannot reach it gets a skip with a clear note, not a failure.

A known vulnerability in a pin fails either. ``make audit`` runs the same checks on their own.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.version import InvalidVersion, Version

ROOT = Path(__file__).resolve().parent.parent
SNAPSHOT = ROOT / "security" / "advisories.json"
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


# -- offline: the pins against the advisory snapshot ------------------------------------------------------


def _affected(version: str, advisory: dict) -> bool:
    """OSV semantics: listed explicitly, or inside an ECOSYSTEM range (introduced <= v < fixed, or <= last_affected)."""
    if version in advisory["versions"]:
        return True
    try:
        v = Version(version)
    except InvalidVersion:
        return False
    for events in advisory["ranges"]:
        low = None
        for event in events:
            if "introduced" in event:
                low = Version("0") if event["introduced"] == "0" else Version(event["introduced"])
            elif low is not None and "fixed" in event:
                if low <= v < Version(event["fixed"]):
                    return True
                low = None
            elif low is not None and "last_affected" in event:
                if low <= v <= Version(event["last_affected"]):
                    return True
                low = None
        if low is not None and v >= low:  # introduced, never fixed
            return True
    return False


def snapshot_findings(pins: dict[str, str], snapshot: dict) -> list[str]:
    return [
        f"{name}=={version}: {advisory['id']} ({', '.join(advisory['aliases']) or 'no alias'})"
        for name, version in sorted(pins.items())
        for advisory in snapshot["packages"].get(name, [])
        if _affected(version, advisory)
    ]


def test_pinned_requirements_have_no_advisory_in_the_offline_snapshot():
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        from advisories_snapshot import pinned
    finally:
        sys.path.pop(0)
    pins = pinned(ROOT / "requirements.txt", ROOT / "requirements-dev.txt")
    snapshot = json.loads(SNAPSHOT.read_text())
    missing = sorted(set(pins) - set(snapshot["packages"]))
    assert not missing, f"pins not in {SNAPSHOT.name}: run scripts/advisories_snapshot.py ({missing})"
    findings = snapshot_findings(pins, snapshot)
    print(f"{len(pins)} pins checked against the advisory database of {snapshot['date']} ({snapshot['commit'][:12]})")
    assert not findings, "known vulnerabilities in pinned requirements:\n" + "\n".join(findings)


def test_the_snapshot_check_finds_a_known_vulnerable_pin():
    snapshot = json.loads(SNAPSHOT.read_text())
    # PYSEC-2024-70 (CVE-2024-42005): Django 5.0 before 5.0.8 and 4.2 before 4.2.15.
    assert "django==4.2.14: PYSEC-2024-70 (CVE-2024-42005)" in snapshot_findings({"django": "4.2.14"}, snapshot)
    assert not [f for f in snapshot_findings({"django": "4.2.15"}, snapshot) if "PYSEC-2024-70" in f]
    introduced_only = {"packages": {"x": [{"id": "X-1", "aliases": [], "versions": [], "ranges": [[{"introduced": "0"}]]}]}}
    assert snapshot_findings({"x": "9.9"}, introduced_only) == ["x==9.9: X-1 (no alias)"]


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
