"""`benchmarks/real_data.py`: the real-data table reads the recipe's `backtest.json` files and reports each policy's
Sharpe difference to buy-and-hold with the paired bootstrap interval of `flagtrl.statistics`."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from flagtrl.agents import BuyAndHoldAgent, MomentumAgent, RandomAgent
from flagtrl.backtest import run_backtest
from flagtrl.benchmark.differences import daily_returns, sharpe_function
from flagtrl.data.schema import MarketSeries
from flagtrl.statistics import sharpe_difference_ci
from flagtrl.strict_json import write_json


SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "real_data.py"


@pytest.fixture(scope="module")
def real_data():
    spec = importlib.util.spec_from_file_location("real_data", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their annotations through it
    spec.loader.exec_module(module)
    return module


def series() -> MarketSeries:
    dates = [str(d) for d in np.busday_offset("2021-01-04", np.arange(80), roll="forward")]
    close = 100.0 * np.exp(np.cumsum(np.random.default_rng(3).normal(0.0005, 0.015, size=80)))
    return MarketSeries(asset="AAA", asset_class="stock", dates=dates, close=close)


def write_run(folder: Path, seed: int) -> dict:
    """A run folder as the recipe leaves it: buy-and-hold, the untrained and the trained policy on the test window."""
    data, results = series(), []
    for name, agent in (
        ("buy_and_hold", BuyAndHoldAgent()),
        ("untrained", MomentumAgent()),
        ("flag_trader", RandomAgent(seed)),
    ):
        result = run_backtest(agent, data, data.dates[20], data.dates[-1], seed=seed, mode="position")
        result.agent = name
        results.append(result.to_dict())
    folder.mkdir(parents=True)
    write_json(folder / "backtest.json", {"train_seconds": 1.0, "env_steps": 64, "results": results})
    return {r["agent"]: r for r in results}


def test_table_reports_each_seed_against_buy_and_hold_with_the_bootstrap_interval(tmp_path, real_data):
    runs = {seed: write_run(tmp_path / f"aaa-seed{seed}", seed) for seed in (0, 1)}
    args = real_data.RealDataArguments(assets="AAA", seeds="0,1", runs_dir=str(tmp_path), n_bootstrap=300)
    assert real_data.main(args) == 0

    report = json.loads((tmp_path / "real_data.json").read_text())
    assert report["machine"]["versions"]["torch"]
    for convention in ("paper", "standard"):
        for seed, results in runs.items():
            row = report["assets"]["AAA"][convention]["seeds"][str(seed)]
            expected = sharpe_difference_ci(
                daily_returns(results["flag_trader"], convention),
                daily_returns(results["buy_and_hold"], convention),
                num_resamples=300,
                seed=seed,
                sharpe=sharpe_function(convention, 252),
            )
            assert row["sharpe_ratio"] == pytest.approx(results["flag_trader"]["metrics"][convention]["sharpe_ratio"])
            assert (row["sharpe_difference"], row["ci_low"], row["ci_high"]) == pytest.approx(
                (expected.difference, expected.low, expected.high)
            )
            # The difference is the reported Sharpe ratios' difference, not a different Sharpe.
            assert row["sharpe_difference"] == pytest.approx(
                row["sharpe_ratio"] - results["buy_and_hold"]["metrics"][convention]["sharpe_ratio"]
            )
    text = (tmp_path / "real_data.md").read_text()
    assert "flag_trader mean of 2 seeds" in text and "ΔSR vs buy-and-hold [95 % CI]" in text
    # The overview line: buy-and-hold's and the seeds' mean Sharpe, each seed's difference with its interval.
    (line,) = [line for line in text.splitlines() if line.startswith("| AAA |")]
    paper = report["assets"]["AAA"]["paper"]
    mean = (paper["seeds"]["0"]["sharpe_ratio"] + paper["seeds"]["1"]["sharpe_ratio"]) / 2
    assert f"| {paper['buy_and_hold']['sharpe_ratio']:.3f} |" in line and f"| {mean:.3f} |" in line
    seed1 = paper["seeds"]["1"]
    assert f"1: {seed1['sharpe_difference']:+.2f} [{seed1['ci_low']:+.2f}, {seed1['ci_high']:+.2f}]" in line
    assert (tmp_path / "real_data.png").stat().st_size > 0


def test_a_broken_run_file_is_named(tmp_path, real_data):
    (tmp_path / "aaa-seed0").mkdir()
    (tmp_path / "aaa-seed0" / "backtest.json").write_text("{not json")
    args = real_data.RealDataArguments(assets="AAA", seeds="0", runs_dir=str(tmp_path))
    with pytest.raises(ValueError, match=r"aaa-seed0/backtest.json: not a finished run's report"):
        real_data.main(args)
    with pytest.raises(ValueError, match="no finished run"):
        real_data.main(real_data.RealDataArguments(assets="BBB", seeds="0", runs_dir=str(tmp_path)))


def test_training_runs_the_recommended_recipe_with_the_given_arguments(tmp_path, real_data, monkeypatch):
    calls = []
    monkeypatch.setattr(
        real_data.subprocess, "run", lambda command, **_: calls.append(command) or SimpleNamespace(returncode=0)
    )
    real_data.train_run("MSFT", 2, tmp_path / "msft-seed2", 768, "--eval_strategy no --logging_steps 8")
    (command,) = calls
    assert command[1].endswith("recipes/ppo_flag.py")
    assert command[command.index("--config") + 1].endswith("config_msft_recommended.yaml")
    assert command[command.index("--seed") + 1] == "2" and command[command.index("--total_timesteps") + 1] == "768"
    assert command[-4:] == ["--eval_strategy", "no", "--logging_steps", "8"]
    with pytest.raises(ValueError, match="no recommended recipe for XYZ"):
        real_data.train_run("XYZ", 0, tmp_path / "xyz-seed0", 0)
