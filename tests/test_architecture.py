"""The arrows of docs/architecture.md hold: the code keeps the import-linter contracts in
pyproject.toml, and an import that crosses them breaks the check (shown on a copy of the tree)."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ["config", "core", "casino", "wallets", "risk", "settlement", "marketdata", "reports", "webhooks"]
CONTRACTS = 4


def lint_imports(tree: Path) -> subprocess.CompletedProcess:
    """import-linter on ``tree`` (its own packages and pyproject.toml), in a fresh interpreter."""
    command = [str(Path(sys.executable).with_name("lint-imports")), "--no-cache", str(tree / "pyproject.toml")]
    return subprocess.run(command, cwd=tree, env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"}, capture_output=True, text=True)


def test_the_code_keeps_every_contract():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"Contracts: {CONTRACTS} kept, 0 broken." in result.stdout


@pytest.fixture
def tree_copy(tmp_path) -> Path:
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__", "migrations"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


@pytest.mark.parametrize(
    ("module", "forbidden_import", "broken"),
    [
        ("core/money.py", "from casino.models import Market", ["The kernel imports no app", "Layers"]),
        ("risk/services/config.py", "from casino.services.trade_executor import steps", ["Layers"]),
        ("casino/models.py", "from casino.services.credentials import token_hash", ["Layers"]),
        ("wallets/services/balances.py", "from risk.services.config import risk_config", ["The risk engine and the wallets"]),
        ("settlement/services/decide.py", "from casino.services.trade_executor import trade_execute", ["Trading and settlement"]),
    ],
)
def test_an_import_against_the_arrows_breaks_the_check(tree_copy, module, forbidden_import, broken):
    path = tree_copy / module
    path.write_text(path.read_text() + f"\n{forbidden_import}  # noqa\n")
    result = lint_imports(tree_copy)
    assert result.returncode == 1, result.stdout
    for contract in broken:
        assert any(line.startswith(contract) and line.rstrip().endswith("BROKEN") for line in _contract_lines(result.stdout)), (
            contract,
            result.stdout,
        )
    assert forbidden_import.split()[1] in result.stdout  # the report names the offending import


def _contract_lines(output: str) -> list[str]:
    """import-linter wraps long contract names; join each contract's line back together."""
    lines, current = [], ""
    for line in output.splitlines():
        current = f"{current} {line.strip()}".strip() if current else line.strip()
        if current.endswith(("KEPT", "BROKEN")):
            lines.append(current)
            current = ""
        elif not line.strip():
            current = ""
    return lines
