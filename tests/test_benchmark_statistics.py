"""The benchmark's measured differences: intervals against buy-and-hold, the rolling windows and their distribution,
real against anonymised inputs, provenance, and the same report from two processes as from one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from flagtrl.agents import MomentumAgent, RandomAgent
from flagtrl.benchmark import parse_benchmark_config, run_benchmark
from flagtrl.benchmark.config import AgentSpec, input_variants, normalize_window
from flagtrl.benchmark.differences import daily_returns, sharpe_function
from flagtrl.benchmark.runner import covers, month_windows
from flagtrl.data.schema import MarketSeries
from flagtrl.data.synthetic import make_synthetic_dataset


ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def market_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("market") / "synthetic"
    make_synthetic_dataset({"SYNA": "stock", "SYNB": "stock"}, seed=0, history_days=40).save_to_disk(str(path))
    return path


def recipe(tmp_path: Path, dataset: Path, name: str = "bench", **overrides) -> Path:
    settings = {
        "dataset": str(dataset),
        "output_dir": str(tmp_path / name),
        "assets": ["SYNA", "SYNB"],
        "windows": [{"start": "2020-06-01", "end": "2021-02-28", "months": 3}],
        "seeds": [0, 1],
        "progress": False,
        "plots": False,
        "bootstrap_resamples": 200,
        "agents": [{"type": "buy_and_hold"}, {"type": "random"}, {"type": "momentum", "params": {"lookback": 5}}],
    }
    settings.update(overrides)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(settings))
    return path


def config_from(path: Path, *extra: str):
    return parse_benchmark_config(["--config", str(path), *extra])


def test_month_windows():
    assert month_windows("1990-01-01", "1992-12-31", 12) == [
        ("1990-01-01", "1990-12-31"),
        ("1991-01-01", "1991-12-31"),
        ("1992-01-01", "1992-12-31"),
    ]
    # The shorter tail is left out; a quarter from the 31st ends the day before the next one starts.
    assert month_windows("2020-01-31", "2020-08-15", 3) == [("2020-01-31", "2020-04-29"), ("2020-04-30", "2020-07-30")]
    with pytest.raises(ValueError, match="shorter than one window of 12"):
        month_windows("2020-01-01", "2020-06-30", 12)
    with pytest.raises(ValueError, match="`months` must be a whole number"):
        normalize_window({"start": "2020-01-01", "end": "2021-01-01", "months": 0})
    with pytest.raises(ValueError, match="either `split`"):
        normalize_window({"split": "test", "months": 3})
    # An asset's data must span a window, give or take a week of holidays at either end.
    series = MarketSeries("X", "stock", ["1990-01-02", "1990-06-01", "1990-12-28"], [1.0, 1.1, 1.2])
    assert covers(series, "1990-01-01", "1990-12-31")
    assert not covers(series, "1989-12-01", "1990-11-30") and not covers(series, "1990-02-01", "1991-01-31")


def test_intervals_psr_and_composite_rank(tmp_path, market_dir):
    summary = run_benchmark(config_from(recipe(tmp_path, market_dir, composite_rank=True)))
    rows = summary["versus_buy_and_hold"]
    # 3 quarterly windows x 2 assets x 3 agents x 2 conventions.
    assert len(rows) == 36
    for row in rows:
        assert 0.0 <= row["psr"] <= 1.0 and row["composite_rank"] in (1, 2, 3)
        if row["agent"] == "buy_and_hold":
            assert row["difference"] is None
        else:
            d = row["difference"]
            assert d["low"] < d["high"] and d["num_resamples"] == 200 and d["confidence"] == 0.95
    report = (tmp_path / "bench" / "report.md").read_text()
    assert "## How sure: Sharpe against buy_and_hold — `paper` convention" in report
    assert "| Window | Asset | Agent | SR | PSR | ΔSR vs B&H | 95% CI | Composite rank |" in report


def test_the_intervals_use_the_returns_the_metrics_score(tmp_path, market_dir):
    summary = run_benchmark(config_from(recipe(tmp_path, market_dir, transaction_cost_bps=10.0, risk_free_rate=0.03)))
    runs = {
        (r["agent"], r["asset"], r["start"], r["seed"]): r
        for r in (json.loads(p.read_text()) for p in (tmp_path / "bench" / "runs").glob("*.json"))
    }
    checked = 0
    for run in runs.values():
        for convention in ("paper", "standard"):
            metrics = run["metrics"][convention]
            returns = daily_returns(run, convention, risk_free_rate=0.03)
            recomputed = sharpe_function(convention, metrics["trading_days_per_year"])(returns)
            assert recomputed == pytest.approx(metrics["sharpe_ratio"], rel=1e-9, abs=1e-12)
            checked += 1
    assert checked == 2 * len(runs) == 2 * summary["timing"]["planned"]
    # The interval's observed difference is the difference of the reported Sharpe ratios.
    reported = {(e["agent"], e["asset"], e["start"]): e["median"] for e in summary["summary"]}
    for row in summary["versus_buy_and_hold"]:
        if row["difference"] is not None:
            key = (row["agent"], row["asset"], row["start"])
            expected = (
                reported[key][row["convention"]]["sharpe_ratio"]
                - reported[("buy_and_hold", row["asset"], row["start"])][row["convention"]]["sharpe_ratio"]
            )
            assert row["difference"]["difference"] == pytest.approx(expected)


def test_rolling_distribution_and_plot(tmp_path, market_dir):
    config = config_from(recipe(tmp_path, market_dir, plots=True, per_window=False))
    summary = run_benchmark(config)
    distributions = summary["window_distributions"]
    assert set(distributions) == {"paper", "standard"}
    for convention, agents in distributions.items():
        assert set(agents) == {"random", "momentum"}
        for agent, d in agents.items():
            assert (d["cells"], d["windows"]) == (6, 3)
            differences = [
                e["median"][convention]["sharpe_ratio"] - b["median"][convention]["sharpe_ratio"]
                for e in summary["summary"]
                for b in summary["summary"]
                if e["agent"] == agent
                and b["agent"] == "buy_and_hold"
                and (e["asset"], e["start"]) == (b["asset"], b["start"])
            ]
            assert d["median"] == pytest.approx(float(np.median(differences)))
            assert d["win_rate"] == pytest.approx(float(np.mean(np.array(differences) > 0)))
    report = (tmp_path / "bench" / "report.md").read_text()
    assert "## Across windows: Sharpe difference to buy_and_hold — `standard` convention" in report
    # per_window: false leaves out the per-window tables and plots, not the distribution's figure.
    assert "## Median-Sharpe runs" not in report and "## How sure" not in report
    assert [Path(p).name for p in summary["files"]["plots"]] == ["sharpe_difference_distribution.png"]
    assert (tmp_path / "bench" / "plots" / "sharpe_difference_distribution.png").stat().st_size > 10_000


def test_real_against_anonymised_inputs(tmp_path, market_dir):
    spec = AgentSpec(type="zero_shot", name="llm", model="m", knowledge_cutoff="2019")
    assert [(s.name, s.anonymise, s.base_name) for s in input_variants(spec, ["real", "anonymised"])] == [
        ("llm", False, "llm"),
        ("llm+anon", True, "llm"),
    ]
    assert [s.name for s in input_variants(AgentSpec(type="random"), ["real", "anonymised"])] == ["random"]

    agents = [
        {"type": "buy_and_hold"},
        {"type": "zero_shot", "name": "llm", "model": "m", "knowledge_cutoff": "2024-10", "greedy": True},
    ]
    path = recipe(tmp_path, market_dir, agents=agents, inputs=["real", "anonymised"])
    config = config_from(path)
    assert [s.name for s in config.agent_specs] == ["buy_and_hold", "llm", "llm+anon"]

    def factory(spec):  # stands in for an LLM that trades differently once it cannot recognise the market
        return RandomAgent(seed=3) if spec.anonymise else MomentumAgent(lookback=5)

    summary = run_benchmark(config, agent_factory=factory)
    rows = summary["real_vs_anonymised"]
    assert len(rows) == 12 and {r["agent"] for r in rows} == {"llm"}
    assert all(r["contamination"] == "BEFORE cutoff" for r in rows)
    for row in rows:
        assert row["difference"]["difference"] == pytest.approx(
            row["real"]["sharpe_ratio"] - row["anonymised"]["sharpe_ratio"]
        )
    report = (tmp_path / "bench" / "report.md").read_text()
    assert "## Memorisation: real against anonymised inputs" in report
    assert "| SR real | SR anonymised | ΔSR real − anon |" in report
    # The anonymised runs record it, and a bad `inputs` is one line.
    run = json.loads(next((tmp_path / "bench" / "runs").glob("llm+anon__*.json")).read_text())
    assert run["provenance"]["anonymised"] is True
    with pytest.raises(ValueError, match="inputs of the benchmark must be a non-empty list"):
        config_from(path, "--inputs", "masked")


def test_each_run_records_its_provenance(tmp_path, market_dir):
    run_benchmark(config_from(recipe(tmp_path, market_dir)))
    run = json.loads(next((tmp_path / "bench" / "runs").glob("random__*seed1.json")).read_text())
    provenance = run["provenance"]
    assert provenance["seed"] == 1 and provenance["processes"] == 1
    assert provenance["versions"]["numpy"] == np.__version__ and provenance["versions"]["python"]
    assert provenance["hardware"]["cpu_count"] >= 1 and "native_bf16" in provenance["hardware"]
    report = (tmp_path / "bench" / "report.md").read_text()
    assert "## Reproducibility" in report and f"numpy {np.__version__}" in report


def _comparable(report: str) -> str:
    """The report without what differs between two launches: the wall time line and the machine section."""
    body = report.split("## Reproducibility")[0]
    return "\n".join(line for line in body.splitlines() if "Wall time" not in line)


@pytest.mark.distributed
def test_two_processes_write_the_same_report_as_one(tmp_path, market_dir):
    one = run_benchmark(config_from(recipe(tmp_path, market_dir, name="one", composite_rank=True)))
    two_recipe = recipe(tmp_path, market_dir, name="two", composite_rank=True)
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", "OMP_NUM_THREADS": "1"}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    command += ["-m", "flagtrl.cli", "benchmark", "--config", str(two_recipe)]
    completed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert completed.stdout.count("# Benchmark report") == 1  # rank 0 prints it

    two = json.loads((tmp_path / "two" / "results.json").read_text())
    assert two["timing"]["processes"] == 2 and two["timing"]["ran"] == two["timing"]["planned"] == 24
    for key in ("summary", "versus_buy_and_hold", "window_distributions"):
        assert json.dumps(two[key], sort_keys=True) == json.dumps(one[key], sort_keys=True, default=str), key
    assert _comparable((tmp_path / "two" / "report.md").read_text()) == _comparable(
        (tmp_path / "one" / "report.md").read_text()
    )
    # Both ranks ran a share.
    ranks = {json.loads(p.read_text())["provenance"]["processes"] for p in (tmp_path / "two" / "runs").glob("*.json")}
    assert ranks == {2}
