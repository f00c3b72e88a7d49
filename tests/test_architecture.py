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


def readme_architecture() -> tuple[list[str], list[str]]:
    """The README's Architecture section: its layer diagram (one entry a layer) and its module list (the lines)."""
    section = (REPO_ROOT / "README.md").read_text().split("## Architecture\n", 1)[1].split("\n## ", 1)[0]
    blocks = section.split("```")[1::2]
    diagram, tree = blocks[0], blocks[1]
    layers = [line.strip() for line in diagram.splitlines() if line.strip() and line.strip() != "│"]
    return layers, tree.splitlines()


def test_readme_layer_diagram_is_the_import_contract():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

    contract = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"][0]
    layers, _ = readme_architecture()
    drawn = [
        " | ".join(name.strip().removesuffix("/").removesuffix(".py") for name in layer.split("|")) for layer in layers
    ]
    assert drawn == contract["layers"]


def test_readme_lists_every_module_of_the_package():
    _, tree = readme_architecture()
    listed, folder = set(), None
    package_lines = tree[tree.index("flagtrl/") + 1 :]
    for line in package_lines[: next(i for i, line in enumerate(package_lines) if not line.startswith(" "))]:
        name = line.split()[0]
        if line.startswith("    "):
            listed.add(f"{folder}{name}")
        else:
            folder = name if name.endswith("/") else None
            listed.add(name)
    package = REPO_ROOT / "flagtrl"
    modules = {
        str(path.relative_to(package)) for path in package.glob("**/*.py") if "evaluate_metrics" not in path.parts
    }
    modules = {m for m in modules if m == "__init__.py" or not m.endswith("/__init__.py")}
    folders = {f"{p.name}/" for p in package.iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert listed == modules | folders
