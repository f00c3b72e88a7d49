"""Bad input to the `datasets/prepare_*.py` scripts and the `flagtrl` command: one line naming the problem, exit code 2,
no traceback (unless `FLAGTRL_DEBUG=1`), and no output folder left behind."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from flagtrl.data import builder
from flagtrl.data.builder import DatasetCardInfo, build_market_dataset, save_market_dataset
from flagtrl.data.validation import MarketDataError


REPO_ROOT = Path(__file__).parents[1]
WINDOWS = "stock.train=2020-07-01:2020-07-02,stock.test=2020-07-03:2020-07-06"


def run(*args: str, debug: bool = False) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1", "PYTHONPATH": str(REPO_ROOT)}
    env.pop("FLAGTRL_DEBUG", None)
    if debug:
        env["FLAGTRL_DEBUG"] = "1"
    return subprocess.run([sys.executable, *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)


def prices_csv(tmp_path: Path, text: str, name: str = "prices.csv") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


# Each case: the command (given tmp_path) and the fragments its one-line message must hold.
CASES = {
    "prices_nan_close": (
        lambda tmp: (
            ["datasets/prepare_prices.py", "--source", "csv", "--asset", "MSFT", "--windows", WINDOWS, "--csv"]
            + [prices_csv(tmp, "date,close\n2020-07-01,1\n2020-07-02,\n2020-07-03,3\n", "nan.csv")]
        ),
        ["prepare_prices.py: error: nan.csv", "asset MSFT", "date 2020-07-02", "close is nan"],
    ),
    "prices_ambiguous_dates": (
        lambda tmp: (
            ["datasets/prepare_prices.py", "--source", "csv", "--asset", "MSFT", "--windows", WINDOWS, "--csv"]
            + [prices_csv(tmp, "Date,Close\n01/07/2020,1\n02/07/2020,2\n03/07/2020,3\n", "eu.csv")]
        ),
        ["eu.csv", "column 'Date'", "'01/07/2020'", "ambiguous", "--date_format dayfirst"],
    ),
    "prices_missing_file": (
        lambda tmp: ["datasets/prepare_prices.py", "--source", "csv", "--csv", str(tmp / "nowhere.csv")],
        ["No CSV file at", "nowhere.csv"],
    ),
    "investorbench_missing_dir": (
        lambda tmp: ["datasets/prepare_investorbench.py", "--data_dir", str(tmp / "nowhere")],
        ["prepare_investorbench.py: error: No InvestorBench folder at", "nowhere"],
    ),
    "investorbench_nan_close": (
        lambda tmp: ["datasets/prepare_investorbench.py", "--data_dir", str(tmp / "ib")],
        ["msft.json", "asset MSFT", "date 2020-07-02", "close is nan"],
    ),
    "synthetic_bad_assets": (
        lambda tmp: ["datasets/prepare_synthetic.py", "--assets", "SYNA"],
        ["prepare_synthetic.py: error: --assets is 'SYNA'", "TICKER=asset_class"],
    ),
    "backtest_missing_dataset": (
        lambda tmp: (
            ["-m", "flagtrl.cli", "backtest", "--dataset", str(tmp / "nowhere"), "--asset", "MSFT"]
            + ["--start", "2020-10-01", "--end", "2021-05-05"]
        ),
        ["flagtrl: error: No dataset at", "nowhere"],
    ),
    "benchmark_bad_yaml": (
        lambda tmp: ["-m", "flagtrl.cli", "benchmark", "--config", prices_csv(tmp, "assets: [MSFT\n", "bad.yaml")],
        ["flagtrl: error:", "bad.yaml", "line"],
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_prints_one_line_without_traceback(tmp_path, case):
    (tmp_path / "ib").mkdir()
    (tmp_path / "ib" / "msft.json").write_text('{"2020-07-01": {"prices": 1.0}, "2020-07-02": {"prices": NaN}}')
    command, fragments = CASES[case]
    args = command(tmp_path)
    if "datasets/" in args[0]:
        args += ["--output_dir", str(tmp_path / "out")]
    done = run(*args)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and len(lines) == 1, done.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert not (tmp_path / "out").exists() and not (tmp_path / ".out.partial").exists()


def test_debug_variable_shows_the_traceback(tmp_path):
    done = run("datasets/prepare_synthetic.py", "--assets", "SYNA", "--output_dir", str(tmp_path / "out"), debug=True)
    assert done.returncode != 0 and "Traceback" in done.stderr and "--assets is 'SYNA'" in done.stderr


def test_run_command_prints_one_line(capsys):
    from flagtrl.cli import run_command

    def bad_close():
        raise MarketDataError("msft.csv: asset MSFT, date 2020-07-02: close is nan (missing);\nsecond line.")

    def unknown_asset():
        raise KeyError("Unknown asset 'ZZZ': the dataset holds ['MSFT'].")

    assert run_command(bad_close, "prepare_prices.py") == 2
    assert run_command(unknown_asset, "flagtrl") == 2
    assert run_command(lambda: None, "flagtrl") == 0
    assert capsys.readouterr().err.splitlines() == [
        "prepare_prices.py: error: msft.csv: asset MSFT, date 2020-07-02: close is nan (missing); second line.",
        "flagtrl: error: Unknown asset 'ZZZ': the dataset holds ['MSFT'].",  # not KeyError's quoted repr
    ]
    with pytest.raises(ZeroDivisionError):  # a bug is not bad input: it keeps its traceback
        run_command(lambda: 1 / 0, "flagtrl")


def test_failed_save_leaves_no_dataset_folder(tmp_path, monkeypatch):
    rows = pd.DataFrame({"date": ["2020-07-01", "2020-07-02"], "asset": "MSFT", "close": [1.0, 2.0]})
    dataset = build_market_dataset(rows, {"stock": {"test": ("2020-07-01", "2020-07-02")}})
    card = DatasetCardInfo(pretty_name="t", license="cc0-1.0", source="a test")

    def broken_card(*args, **kwargs):
        raise ValueError("card failed")

    monkeypatch.setattr(builder, "market_dataset_card", broken_card)
    with pytest.raises(ValueError, match="card failed"):
        save_market_dataset(dataset, tmp_path / "out", card)
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    monkeypatch.undo()

    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="notes exists and is not a dataset folder"):
        save_market_dataset(dataset, tmp_path / "notes", card)
    assert [p.name for p in (tmp_path / "notes").iterdir()] == ["todo.txt"]
    save_market_dataset(dataset, tmp_path / "out", card)
    save_market_dataset(dataset, tmp_path / "out", card)  # a dataset folder is replaced
    assert (tmp_path / "out" / "dataset_dict.json").is_file() and not (tmp_path / ".out.partial").exists()
