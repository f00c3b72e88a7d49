"""`flagtrl backtest` on a small prepared dataset: the printed table, the JSON report, errors, the console script."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from datasets import Dataset, DatasetDict

from flagtrl.cli import main
from flagtrl.data.schema import MARKET_FEATURES


METRIC_KEYS = {"cumulative_return", "sharpe_ratio", "annualized_volatility", "max_drawdown", "sortino_ratio"}
AAA_PRICES = [10.0, 10.5, 10.2, 11.0, 11.4, 10.9, 11.8, 12.1, 12.0, 12.6]


def save_market(path, prices_by_asset: dict[str, list[float]]):
    rows = []
    for asset, prices in prices_by_asset.items():
        dates = [str(d) for d in np.busday_offset("2021-03-01", np.arange(len(prices)), roll="forward")]
        for date, price in zip(dates, prices):
            rows.append(
                {
                    "date": date,
                    "asset": asset,
                    "asset_class": "stock",
                    "close": price,
                    "open": None,
                    "high": None,
                    "low": None,
                    "volume": None,
                    "news": [f"{asset} on {date}. (Sentiment: neutral)"],
                    "filings": [],
                }
            )
    DatasetDict({"full": Dataset.from_list(rows, features=MARKET_FEATURES)}).save_to_disk(str(path))
    return path


@pytest.fixture
def dataset_dir(tmp_path):
    return save_market(tmp_path / "market", {"AAA": AAA_PRICES, "BBB": [50.0 - i for i in range(len(AAA_PRICES))]})


def strict_json(text: str):
    """Parse as strict JSON: `Infinity`, `-Infinity` and `NaN` are not JSON and fail."""

    def reject(token):
        raise ValueError(f"non-standard JSON token {token}")

    return json.loads(text, parse_constant=reject)


def backtest_args(dataset_dir, *extra: str) -> list[str]:
    return [
        "backtest",
        "--dataset",
        str(dataset_dir),
        "--asset",
        "AAA",
        "--start",
        "2021-03-01",
        "--end",
        "2021-03-12",
        *extra,
    ]


def test_backtest_prints_the_table_and_writes_json(dataset_dir, tmp_path, capsys):
    output = tmp_path / "reports" / "aaa.json"
    assert main(backtest_args(dataset_dir, "--agent", "buy_and_hold", "--output_json", str(output))) == 0
    out = capsys.readouterr().out
    assert "AAA 2021-03-01 → 2021-03-12 (10 trading days, mode=all_in)" in out
    assert "Metrics convention: paper" in out
    header = next(line for line in out.splitlines() if line.startswith("| Asset"))
    for column in ("CR%", "SR", "AV%", "MDD%", "Sortino"):
        assert column in header
    # CR% of buy-and-hold in the paper convention: 100 ln(p_n / p_0).
    row = next(line for line in out.splitlines() if line.startswith("| AAA"))
    assert f"{100 * math.log(12.6 / 10.0):.3f}" in row

    report = json.loads(output.read_text())
    assert set(report["metrics"]) == {"paper", "standard"}
    for convention in ("paper", "standard"):
        assert METRIC_KEYS <= set(report["metrics"][convention])
        assert report["metrics"][convention]["convention"] == convention
    assert report["metrics"]["paper"]["cumulative_return"] == pytest.approx(math.log(12.6 / 10.0))
    # Paper mode buys at day 0's close P_0 and ends at P_9: the account earns what the paper metric credits.
    assert report["metrics"]["standard"]["cumulative_return"] == pytest.approx(12.6 / 10.0 - 1)
    trajectory = report["trajectory"]
    assert [row["price"] for row in trajectory] == AAA_PRICES
    assert trajectory[0]["action"] == "buy" and trajectory[-1]["action"] is None
    assert (report["asset"], report["agent"], report["mode"]) == ("AAA", "buy_and_hold", "all_in")


def test_backtest_standard_convention_and_position_mode(dataset_dir, tmp_path, capsys):
    output = tmp_path / "aaa.json"
    args = backtest_args(dataset_dir, "--convention", "standard", "--mode", "position", "--output_json", str(output))
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "Metrics convention: standard" in out
    assert "mode=position" in out
    report = json.loads(output.read_text())
    assert report["metrics"]["standard"]["cumulative_return"] == pytest.approx(12.6 / 10.0 - 1)
    row = next(line for line in out.splitlines() if line.startswith("| AAA"))
    assert f"{100 * (12.6 / 10.0 - 1):.3f}" in row


def test_backtest_random_agent_is_seeded(dataset_dir, tmp_path, capsys):
    def actions(seed: int) -> list:
        output = tmp_path / f"random_{seed}.json"
        main(backtest_args(dataset_dir, "--agent", "random", "--seed", str(seed), "--output_json", str(output)))
        return [row["action"] for row in json.loads(output.read_text())["trajectory"]]

    assert actions(1) == actions(1)
    assert len({tuple(actions(seed)) for seed in range(6)}) > 1


def test_unknown_agent(dataset_dir):
    with pytest.raises(ValueError, match=r"Unknown agent 'oracle'.*buy_and_hold"):
        main(backtest_args(dataset_dir, "--agent", "oracle"))


def test_unknown_asset(dataset_dir):
    args = backtest_args(dataset_dir)
    args[args.index("AAA")] = "ZZZ"
    with pytest.raises(KeyError, match=r"Unknown asset 'ZZZ'.*AAA.*BBB"):
        main(args)


def test_missing_dataset(tmp_path):
    with pytest.raises(FileNotFoundError, match="No dataset at"):
        main(backtest_args(tmp_path / "nowhere"))


def test_usage(capsys):
    assert main([]) == 0
    assert main(["--help"]) == 0
    assert main(["train"]) == 2
    usage = capsys.readouterr().out
    assert "usage: flagtrl {" in usage and "backtest" in usage and "portfolio" in usage


def test_console_script(dataset_dir, tmp_path):
    script = shutil.which("flagtrl", path=os.path.dirname(sys.executable))
    command = [script] if script else [sys.executable, "-m", "flagtrl.cli"]
    output = tmp_path / "script.json"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}
    done = subprocess.run(
        command + backtest_args(dataset_dir, "--agent", "momentum", "--output_json", str(output)),
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "Metrics convention: paper" in done.stdout
    assert "| AAA | momentum |" in done.stdout
    assert json.loads(output.read_text())["agent"] == "momentum"


def test_backtest_json_is_strict(tmp_path, capsys):
    # A price that only rises: no downside and no drawdown, so Sortino and Calmar are inf (written as "inf").
    dataset = save_market(tmp_path / "market", {"UPP": [100.0, 101.0, 103.0, 103.5, 106.0, 107.0]})
    output = tmp_path / "upp.json"
    args = ["backtest", "--dataset", str(dataset), "--asset", "UPP", "--start", "2021-03-01", "--end", "2021-03-08"]
    assert main([*args, "--output_json", str(output)]) == 0
    report = strict_json(output.read_text())
    assert report["metrics"]["standard"]["sortino_ratio"] == "inf"
    assert report["metrics"]["standard"]["calmar_ratio"] == "inf"
    assert report["metrics"]["paper"]["sortino_ratio"] == "inf"


def test_backtest_reports_a_wiped_out_short(tmp_path, capsys):
    # Falling for 11 days (momentum goes short in position mode), then the price triples: the short loses everything.
    prices = [20.0 - 0.5 * i for i in range(12)] + [45.0, 140.0, 150.0]
    dataset = save_market(tmp_path / "market", {"SQZ": prices})
    output = tmp_path / "sqz.json"
    args = ["backtest", "--dataset", str(dataset), "--asset", "SQZ", "--start", "2021-03-01", "--end", "2021-03-19"]
    assert main([*args, "--agent", "momentum", "--mode", "position", "--output_json", str(output)]) == 0
    out = capsys.readouterr().out
    assert "The account was wiped out on" in out and "before 2021-03-19" in out
    row = next(line for line in out.splitlines() if line.startswith("| SQZ"))
    assert "‡" in row and "100.000" in row  # CR ‡ and MDD 100 % in the paper convention's table
    assert "‡ wiped out" in out
    report = strict_json(output.read_text())
    assert report["wiped_out"] and report["trajectory"][-1]["account_value"] < 0
    assert report["metrics"]["standard"]["cumulative_return"] == -1.0
    assert report["metrics"]["standard"]["max_drawdown"] == 1.0
    assert all(report["metrics"][c]["wiped_out"] for c in ("paper", "standard"))
