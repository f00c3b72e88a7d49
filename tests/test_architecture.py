"""Imports flow one way (README: Architecture): the `[tool.importlinter]` contracts in pyproject.toml must hold."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest


REPO_ROOT = Path(__file__).resolve().parents[1]


def lint_imports_executable() -> str | None:
    # The one installed beside this interpreter first (a virtual environment that is not activated), then PATH.
    beside = Path(sys.executable).with_name("lint-imports")
    return str(beside) if beside.exists() else shutil.which("lint-imports")


def test_import_contracts_hold():
    executable = lint_imports_executable()
    if executable is None:
        pytest.skip("lint-imports is not installed: pip install -e '.[dev]' (the import-linter package)")
    # `--no-cache`: the verdict is about the files as they are now, and the test writes nothing into the repository.
    result = subprocess.run(
        [executable, "--no-cache"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=600, check=False
    )
    assert result.returncode == 0, f"An import breaks a contract (run `lint-imports`):\n{result.stdout}{result.stderr}"
