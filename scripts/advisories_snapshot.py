#!/usr/bin/env python3
"""Refresh security/advisories.json: the known vulnerabilities of the packages this repository pins, from a
checkout of the PyPA advisory database (https://github.com/pypa/advisory-database, OSV format), so the audit
in make test runs without a network (tests/test_dependency_audit.py).

    git clone --depth 1 https://github.com/pypa/advisory-database /tmp/advisory-database
    .venv/bin/python scripts/advisories_snapshot.py /tmp/advisory-database
"""

import json
import re
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "security" / "advisories.json"
PIN = re.compile(r"^([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?==([^\s;#]+)")


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pinned(*files: Path) -> dict[str, str]:
    pins = {}
    for path in files:
        for line in path.read_text().splitlines():
            match = PIN.match(line.strip())
            if match:
                pins[normalize(match.group(1))] = match.group(2)
    return pins


def main(database: Path) -> None:
    pins = pinned(ROOT / "requirements.txt", ROOT / "requirements-dev.txt")
    head = subprocess.run(["git", "-C", str(database), "log", "-1", "--format=%H %cI"], capture_output=True, text=True)
    commit, _, date = head.stdout.strip().partition(" ")
    advisories = {}
    vulns = database / "vulns"
    folders = {normalize(p.name): p for p in vulns.iterdir() if p.is_dir()} if vulns.is_dir() else {}
    for name in sorted(pins):
        entries = []
        for path in sorted(folders[name].glob("*.yaml")) if name in folders else []:
            doc = yaml.safe_load(path.read_text())
            if doc.get("withdrawn"):  # retracted by its publisher
                continue
            for affected in doc.get("affected", []):
                if normalize(affected.get("package", {}).get("name", "")) != name:
                    continue
                ranges = [r["events"] for r in affected.get("ranges", []) if r.get("type") == "ECOSYSTEM"]
                entries.append(
                    {
                        "id": doc["id"],
                        "aliases": doc.get("aliases", []),
                        "ranges": ranges,
                        # The explicit list only where no range says it (it repeats the ranges otherwise).
                        "versions": [] if ranges else affected.get("versions", []),
                    }
                )
        advisories[name] = entries
    document = {"source": "https://github.com/pypa/advisory-database", "commit": commit, "date": date, "packages": advisories}
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps(document, indent=1, sort_keys=True) + "\n")
    print(f"{OUT}: {sum(len(v) for v in advisories.values())} advisories for {len(advisories)} pinned packages, database of {date}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
