"""The public API: `from flagtrl import FlagPPOConfig, FlagPPOTrainer, FlagPolicy, ...`, loaded lazily."""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


REPO_ROOT = Path(__file__).parents[1]
HEAVY_MODULES = ("torch", "transformers", "trl", "peft", "datasets")


def imported_after(code: str) -> list[str]:
    """The heavy modules that a fresh interpreter has imported after running `code`."""
    probe = f"import sys, json\n{code}\nprint(json.dumps([m for m in {HEAVY_MODULES!r} if m in sys.modules]))"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO_ROOT)}
    done = subprocess.run([sys.executable, "-c", probe], cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def test_import_flagtrl_loads_no_heavy_module():
    assert imported_after("import flagtrl; flagtrl.__version__; flagtrl.__all__") == []
    # The command's parser needs transformers' HfArgumentParser, but not torch.
    assert "torch" not in imported_after("import flagtrl.cli")


def test_names_load_on_first_use():
    assert "torch" not in imported_after("from flagtrl import run_backtest, paper_metrics, TradingMetrics")
    assert "torch" in imported_after("from flagtrl import FlagPPOConfig, FlagPPOTrainer, FlagPolicy")


def test_version():
    import flagtrl

    assert flagtrl.__version__ == importlib.metadata.version("flagtrl")


@pytest.mark.parametrize(
    "name",
    [
        "FlagPPOConfig",
        "FlagPPOTrainer",
        "FlagPolicy",
        "FlagAgent",
        "TradingEnv",
        "TradingState",
        "run_backtest",
        "paper_metrics",
        "standard_metrics",
        "TradingMetrics",
        "PromptBuilder",
        "PromptConfig",
        "build_market_dataset",
        "read_price_csv",
        "make_synthetic_dataset",
        "BuyAndHoldAgent",
        "make_baseline",
        "Team",
        "PortfolioManager",
        "run_portfolio_comparison",
    ],
)
def test_public_name_is_the_defining_object(name):
    import flagtrl

    assert name in flagtrl.__all__ and name in dir(flagtrl)
    value = getattr(flagtrl, name)
    module = importlib.import_module(f"flagtrl.{flagtrl._module_of[name]}")
    assert value is getattr(module, name)


def test_every_exported_name_resolves_and_unknown_names_fail():
    import flagtrl

    for name in flagtrl.__all__:
        assert getattr(flagtrl, name) is not None, name
    with pytest.raises(AttributeError, match="has no attribute 'FlagTrainer'"):
        flagtrl.FlagTrainer  # noqa: B018
    from flagtrl import FlagPolicy, FlagPPOConfig, FlagPPOTrainer  # the example

    assert FlagPPOTrainer.__name__ == "FlagPPOTrainer" and FlagPPOConfig and FlagPolicy
