"""Market-episode datasets: sources, checks with clear messages, window splits, cards, Hub upload, synthetic data."""

import importlib.util
import json
import os
import subprocess
import sys
import types
from pathlib import Path
from unittest import mock

import numpy as np
import pandas as pd
import pytest
from datasets import DatasetDict, load_from_disk
from huggingface_hub import DatasetCard, HfApi

from flagtrl.data.builder import (
    DatasetCardInfo,
    MarketDatasetArguments,
    build_market_dataset,
    parse_windows,
    push_market_dataset,
    save_market_dataset,
)
from flagtrl.data.schema import (
    DEFAULT_WINDOWS,
    FULL_SPLIT,
    MARKET_FEATURES,
    WINDOWS_FILE,
    load_market_dataset,
    load_windows,
    market_series,
)
from flagtrl.data.sources import read_investorbench, read_price_csv, read_skfolio, read_yfinance
from flagtrl.data.synthetic import make_synthetic_dataset, synthetic_market_frame
from flagtrl.data.validation import MarketDataError, check_window, validate_rows


REPO_ROOT = Path(__file__).parents[1]
INVESTORBENCH = REPO_ROOT.parent / "shared/data/investorbench"
needs_investorbench = pytest.mark.skipif(
    not INVESTORBENCH.is_dir(), reason=f"no InvestorBench data at {INVESTORBENCH}"
)

SMALL_WINDOWS = {"stock": {"train": ("2020-07-01", "2020-07-03"), "test": ("2020-07-06", "2020-07-08")}}


@pytest.fixture(scope="module")
def investorbench_dir(tmp_path_factory) -> Path:
    """The InvestorBench dataset, prepared once through the command line, as a user would."""
    if not INVESTORBENCH.is_dir():
        pytest.skip(f"no InvestorBench data at {INVESTORBENCH}")
    output_dir = tmp_path_factory.mktemp("investorbench")
    command = [sys.executable, "datasets/prepare_investorbench.py", "--data_dir", str(INVESTORBENCH)]
    command += ["--output_dir", str(output_dir)]
    # PYTHONPATH: this checkout's flagtrl, even where another checkout is the installed one.
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1", "PYTHONPATH": str(REPO_ROOT)}
    result = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "full 2102 rows" in result.stdout
    return output_dir


def write_csv(path: Path, text: str) -> Path:
    path.write_text(text.strip() + "\n")
    return path


def price_frame(closes, dates=None, asset="MSFT") -> pd.DataFrame:
    dates = dates or [f"2020-07-{day:02d}" for day in (1, 2, 3, 6, 7, 8)][: len(closes)]
    return pd.DataFrame({"date": dates, "asset": asset, "asset_class": "stock", "close": closes})


# --- InvestorBench ---------------------------------------------------------------------------------------------------


def test_investorbench_dataset_schema_and_splits(investorbench_dir):
    dataset = load_from_disk(str(investorbench_dir))
    assert list(dataset) == [FULL_SPLIT, "train", "test"]
    for split in dataset.values():
        assert split.features == MARKET_FEATURES
    full = dataset[FULL_SPLIT].to_pandas()
    assert sorted(full["asset"].unique()) == ["BTC", "ETH", "HON", "JNJ", "MSFT", "NFLX", "UVV"]
    assert set(full.loc[full["asset"].isin(["BTC", "ETH"]), "asset_class"]) == {"crypto"}
    assert list(zip(full["asset"], full["date"])) == sorted(zip(full["asset"], full["date"]))
    for name in ("train", "test"):
        split = dataset[name].to_pandas()
        for asset_class, windows in DEFAULT_WINDOWS.items():
            dates = split.loc[split["asset_class"] == asset_class, "date"]
            start, end = windows[name]
            assert dates.min() >= start and dates.max() <= end
        assert (split.groupby("asset").size() > 40).all()
    msft = dataset["train"].filter(lambda row: row["asset"] == "MSFT")
    assert msft[0]["date"] == "2020-07-01" and msft[-1]["date"] == "2020-09-30" and len(msft) == 64


def test_investorbench_text_columns(investorbench_dir):
    series = market_series(load_market_dataset(investorbench_dir), "msft")
    assert series.asset_class == "stock" and len(series) == 291 and (series.close > 0).all()
    assert all(isinstance(items, list) for items in series.news)
    assert sum(len(items) for items in series.news) > 1000
    assert all(isinstance(item, str) for items in series.news for item in items)
    filings = [item for items in series.filings for item in items]
    assert any(item.startswith("10-K: ") for item in filings) and any(item.startswith("10-Q: ") for item in filings)
    btc = market_series(load_market_dataset(investorbench_dir), "BTC")
    assert btc.asset_class == "crypto" and btc.trading_days_per_year == 365 and not any(btc.filings)


def test_investorbench_card_and_windows_file(investorbench_dir):
    card = DatasetCard.load(investorbench_dir / "README.md")
    assert card.data.license == "mit"
    assert card.data.windows["crypto"]["test"] == ["2023-04-05", "2023-11-05"]
    msft = next(entry for entry in card.data.assets if entry["asset"] == "MSFT")
    assert msft == {
        "asset": "MSFT",
        "asset_class": "stock",
        "first_date": "2020-03-12",
        "last_date": "2021-05-06",
        "full_rows": 291,
        "train_rows": 64,
        "test_rows": 150,
    }
    for text in ("felis33/INVESTOR-BENCH", "2412.18174", "| stock | train | 2020-07-01 | 2020-09-30 |", "`filings`"):
        assert text in card.text
    assert "prepare_investorbench.py" in card.text  # how it was made
    assert load_windows(investorbench_dir) == DEFAULT_WINDOWS


@needs_investorbench
def test_investorbench_unknown_asset_lists_files():
    with pytest.raises(MarketDataError, match=r"Unknown asset\(s\) \['tsla'\].*msft\.json"):
        read_investorbench(INVESTORBENCH, ["msft", "tsla"])
    rows = read_investorbench(INVESTORBENCH, ["MSFT"])
    assert set(rows["asset"]) == {"MSFT"} and rows["date"].is_monotonic_increasing


def test_investorbench_json_checks(tmp_path):
    (tmp_path / "msft.json").write_text('{"2020-07-02": {"prices": 2.0, "news": []}, "2020-07-01": {"prices": 1.0}}')
    rows = read_investorbench(tmp_path)  # JSON objects are keyed by date: read in date order
    assert rows["date"].tolist() == ["2020-07-01", "2020-07-02"] and rows["news"].tolist() == [[], []]
    (tmp_path / "msft.json").write_text('{"2020-07-01": {"prices": 1.0}, "2020-07-02": {"prices": NaN}}')
    with pytest.raises(MarketDataError, match=r"msft\.json: asset MSFT, date 2020-07-02: close is nan"):
        read_investorbench(tmp_path)
    (tmp_path / "msft.json").write_text('{"2020-07-01": {"prices": 1.0}, "2020-07-02": {"news": []}}')
    with pytest.raises(MarketDataError, match=r"msft\.json: asset MSFT, date 2020-07-02: no `prices`"):
        read_investorbench(tmp_path)


# --- bad input: every message names the file, the asset, the date and the value --------------------------------------

BAD_CSV = {
    "nan": ("date,close\n2020-07-01,1.0\n2020-07-02,\n", ["2020-07-02", "close is nan"]),
    "zero": ("date,close\n2020-07-01,1.0\n2020-07-02,0\n", ["2020-07-02", "close is 0.0", "positive"]),
    "negative": ("date,close\n2020-07-01,-1.5\n2020-07-02,2\n", ["2020-07-01", "close is -1.5", "positive"]),
    "not_a_number": ("date,close\n2020-07-01,1.0\n2020-07-02,n/a?\n", ["2020-07-02", "'n/a?'", "not a number"]),
    "duplicate": (
        "date,close\n2020-07-01,1\n2020-07-02,2\n2020-07-02,3\n",
        ["2020-07-02", "listed 2 times", "[2.0, 3.0]"],
    ),
    "unsorted": (
        "date,close\n2020-07-01,1\n2020-07-03,2\n2020-07-02,3\n",
        ["2020-07-02", "not in ascending order", "--sort"],
    ),
    "bad_date": ("date,close\n2020-07-01,1\n2020-13-45,2\n", ["'2020-13-45'", "cannot read the date"]),
    "negative_volume": ("date,close,volume\n2020-07-01,1,10\n2020-07-02,2,-5\n", ["2020-07-02", "volume is -5.0"]),
}


@pytest.mark.parametrize("case", list(BAD_CSV))
def test_bad_csv_rows_name_file_asset_date_value(tmp_path, case):
    text, fragments = BAD_CSV[case]
    path = write_csv(tmp_path / f"{case}.csv", text)
    with pytest.raises(MarketDataError) as error:
        read_price_csv(path, asset="msft")
    message = str(error.value)
    for fragment in [f"{case}.csv", "asset MSFT", *fragments]:
        assert fragment in message, message


def test_unsorted_dates_are_sorted_on_request(tmp_path):
    path = write_csv(tmp_path / "prices.csv", "date,close\n2020-07-01,1\n2020-07-03,2\n2020-07-02,3\n")
    rows = read_price_csv(path, asset="MSFT", sort=True)
    assert rows["date"].tolist() == ["2020-07-01", "2020-07-02", "2020-07-03"] and rows["close"].tolist() == [1, 3, 2]


def test_missing_columns_are_named(tmp_path):
    path = write_csv(tmp_path / "bars.csv", "Date,Open,Volume\n2020-07-01,1,10\n")
    with pytest.raises(
        MarketDataError, match=r"bars\.csv: missing the close column; found columns \['Date', 'Open', 'Volume'\]"
    ):
        read_price_csv(path, asset="MSFT")
    path = write_csv(tmp_path / "nodate.csv", "when,close\n2020-07-01,1\n")
    with pytest.raises(
        MarketDataError, match=r"nodate\.csv: missing the date column; found columns \['when', 'close'\]"
    ):
        read_price_csv(path, asset="MSFT")
    with pytest.raises(
        MarketDataError, match=r"frame: missing required column\(s\) \['asset'\]; found columns \['date', 'close'\]"
    ):
        validate_rows(pd.DataFrame({"date": ["2020-07-01"], "close": [1.0]}), "frame")


def test_unknown_asset_class_and_unknown_asset(tmp_path):
    rows = price_frame([1.0, 2.0]).assign(asset_class=["stock", "bond"])
    with pytest.raises(MarketDataError, match=r"src: asset MSFT, date 2020-07-02: unknown asset_class 'bond'"):
        validate_rows(rows, "src")
    path = write_csv(tmp_path / "wide.csv", "Date,MSFT,JNJ\n2020-07-01,1,2\n")
    with pytest.raises(
        MarketDataError, match=r"wide\.csv: unknown asset\(s\) \['TSLA'\]; its ticker columns are \['JNJ', 'MSFT'\]"
    ):
        read_price_csv(path, assets=["MSFT", "TSLA"])


def test_too_short_window_names_asset_window_and_range():
    rows = price_frame([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    windows = {"stock": {"train": ("2020-07-01", "2020-07-03"), "test": ("2020-07-08", "2020-12-31")}}
    with pytest.raises(MarketDataError) as error:
        build_market_dataset(rows, windows, min_window_days=2, source="prices.csv")
    message = str(error.value)
    for fragment in ("prices.csv", "test window 2020-07-08 → 2020-12-31", "holds 1 trading day", "asset MSFT"):
        assert fragment in message, message
    assert "run from 2020-07-01 to 2020-07-08" in message and "--windows stock.test=" in message
    assert check_window(["2020-07-01", "2020-07-02"], "X", "train", ("2020-07-01", "2020-07-02")) == 2


def test_asset_class_without_windows():
    rows = price_frame([1.0, 2.0, 3.0]).assign(asset_class="crypto", asset="BTC")
    with pytest.raises(MarketDataError, match=r"asset BTC is of class crypto, for which no windows are given"):
        build_market_dataset(rows, SMALL_WINDOWS)


# --- CSV layouts and spellings ----------------------------------------------------------------------------------------

LONG_CSV = """
Datetime,Ticker,Open,High,Low,Close,Adj Close,Volume
2020-07-01 00:00:00-04:00,msft,10,11,9,10.5,10.0,100
2020-07-02 00:00:00-04:00,msft,10,11,9,11.5,11.0,200
2020-07-01 00:00:00-04:00,jnj,20,21,19,20.5,20.0,300
2020-07-02 00:00:00-04:00,jnj,20,21,19,21.5,21.0,400
"""


def test_long_csv_with_bars_and_tickers(tmp_path):
    rows = read_price_csv(write_csv(tmp_path / "bars.csv", LONG_CSV))
    assert rows["asset"].tolist() == ["JNJ", "JNJ", "MSFT", "MSFT"]
    assert rows["date"].tolist() == ["2020-07-01", "2020-07-02"] * 2  # time zone dropped, not converted
    assert rows["close"].tolist() == [20.0, 21.0, 10.0, 11.0]  # the adjusted close wins over the raw one
    assert rows["volume"].tolist() == [300, 400, 100, 200] and rows["high"].tolist() == [21, 21, 11, 11]
    only = read_price_csv(tmp_path / "bars.csv", asset="MSFT")
    assert set(only["asset"]) == {"MSFT"}


@pytest.mark.parametrize(
    "text",
    [
        "timestamp,symbol,price\n2020-07-01,MSFT,1.5\n2020-07-02,MSFT,2.5\n",
        "date,asset,adj_close\n2020/07/01,MSFT,1.5\n2020/07/02,MSFT,2.5\n",
        "Date,Close\nJul 1 2020,1.5\nJul 2 2020,2.5\n",  # 07/01/2020 is ambiguous: see the date tests below
        "Date,MSFT\n2020-07-01,1.5\n2020-07-02,2.5\n",
    ],
)
def test_csv_column_spellings(tmp_path, text):
    rows = read_price_csv(write_csv(tmp_path / "prices.csv", text), asset="MSFT")
    assert rows[["date", "asset", "asset_class", "close"]].to_dict("list") == {
        "date": ["2020-07-01", "2020-07-02"],
        "asset": ["MSFT", "MSFT"],
        "asset_class": ["stock", "stock"],
        "close": [1.5, 2.5],
    }


def test_wide_csv_trims_unlisted_days_but_rejects_gaps(tmp_path):
    text = "Date,MSFT,NEW\n2020-07-01,1,\n2020-07-02,2,5\n2020-07-03,3,6\n"
    rows = read_price_csv(write_csv(tmp_path / "wide.csv", text), asset_class="stock")
    assert rows.groupby("asset").size().to_dict() == {"MSFT": 3, "NEW": 2}
    text = "Date,MSFT,GAP\n2020-07-01,1,4\n2020-07-02,2,\n2020-07-03,3,6\n"
    with pytest.raises(MarketDataError, match=r"gap\.csv: asset GAP, date 2020-07-02: close is nan"):
        read_price_csv(write_csv(tmp_path / "gap.csv", text))


def test_prices_only_dataset_has_null_optional_columns(tmp_path):
    dataset = build_market_dataset(price_frame([1.0, 2.0, 3.0, 4.0, 5.0, 6.0]), SMALL_WINDOWS)
    assert [len(dataset[name]) for name in dataset] == [6, 3, 3]
    row = dataset["test"][0]
    assert row["date"] == "2020-07-06" and row["open"] is None and row["volume"] is None
    assert row["news"] == [] and row["filings"] == []


# --- skfolio, yfinance ------------------------------------------------------------------------------------------------


def test_skfolio_source_has_msft_in_2020():
    pytest.importorskip("skfolio")
    rows = read_skfolio(["MSFT", "jnj"])
    assert set(rows["asset"]) == {"JNJ", "MSFT"}
    msft = rows[(rows["asset"] == "MSFT") & rows["date"].str.startswith("2020")]
    assert len(msft) == 253 and (msft["close"] > 0).all()
    dataset = build_market_dataset(rows, {"stock": DEFAULT_WINDOWS["stock"]})
    assert len(dataset["train"].filter(lambda row: row["asset"] == "MSFT")) == 64


def test_yfinance_missing_or_offline(monkeypatch):
    monkeypatch.setitem(sys.modules, "yfinance", None)  # as if not installed
    with pytest.raises(ModuleNotFoundError, match=r"pip install 'flagtrl\[yfinance\]'"):
        read_yfinance(["MSFT"], "2020-07-01", "2020-07-31")

    class OfflineTicker:
        def __init__(self, ticker):
            pass

        def history(self, **kwargs):
            raise ConnectionError("Failed to resolve 'query1.finance.yahoo.com'")

    monkeypatch.setitem(sys.modules, "yfinance", types.SimpleNamespace(Ticker=OfflineTicker))
    with pytest.raises(MarketDataError, match=r"cannot download MSFT .*network"):
        read_yfinance(["MSFT"], "2020-07-01", "2020-07-31")


def test_yfinance_bars_become_rows(monkeypatch):
    calls = []

    class FakeTicker:
        def __init__(self, ticker):
            self.ticker = ticker

        def history(self, start, end, **kwargs):
            calls.append((self.ticker, start, end))
            index = pd.DatetimeIndex(["2023-02-11", "2023-02-12"], name="Date").tz_localize("UTC")
            columns = {"Open": [1.0, 2.0], "High": [2.0, 3.0], "Low": [0.5, 1.5], "Close": [1.5, 2.5]}
            return pd.DataFrame({**columns, "Volume": [10, 20], "Dividends": 0.0, "Stock Splits": 0.0}, index=index)

    monkeypatch.setitem(sys.modules, "yfinance", types.SimpleNamespace(Ticker=FakeTicker))
    rows = read_yfinance(["BTC-USD"], "2023-02-11", "2023-02-12", asset_class="crypto")
    assert calls == [("BTC-USD", "2023-02-11", "2023-02-13")]  # yfinance's end is exclusive
    assert rows["asset"].tolist() == ["BTC", "BTC"] and rows["asset_class"].tolist() == ["crypto", "crypto"]
    assert rows["date"].tolist() == ["2023-02-11", "2023-02-12"] and rows["low"].tolist() == [0.5, 1.5]


# --- windows ----------------------------------------------------------------------------------------------------------


def test_parse_windows(tmp_path):
    assert parse_windows(None) == DEFAULT_WINDOWS
    windows = parse_windows("stock.train=2020-01-02:2020-03-31, crypto.valid=2023-01-01:2023-01-31")
    assert windows["stock"] == {"train": ("2020-01-02", "2020-03-31"), "test": DEFAULT_WINDOWS["stock"]["test"]}
    assert windows["crypto"]["valid"] == ("2023-01-01", "2023-01-31")
    file = tmp_path / "windows.json"
    file.write_text(json.dumps({"stock": {"test": ["2021-01-04", "2021-06-30"]}}))
    assert parse_windows(str(file))["stock"]["test"] == ("2021-01-04", "2021-06-30")
    for bad, message in [
        ("stock.train=2020-07-01", "write `class.split=START:END`"),
        ("bond.train=2020-07-01:2020-09-30", "unknown asset class 'bond'"),
        ("stock.train=2020-09-30:2020-07-01", "starts on 2020-09-30, after its end 2020-07-01"),
        ("stock.train=2020-07-01:2020-09-31", "has the date '2020-09-31'"),
        ("stock.full=2020-07-01:2020-09-30", "'full' cannot name a window split"),
    ]:
        with pytest.raises(ValueError, match=message):
            parse_windows(bad)


def test_custom_split_names_become_splits():
    windows = {"stock": {"train": ("2020-07-01", "2020-07-02"), "valid": ("2020-07-03", "2020-07-06")}}
    dataset = build_market_dataset(price_frame([1.0, 2.0, 3.0, 4.0, 5.0, 6.0]), windows)
    assert {name: len(split) for name, split in dataset.items()} == {"full": 6, "train": 2, "valid": 2}


# --- synthetic data ---------------------------------------------------------------------------------------------------


def test_synthetic_is_seeded():
    first = synthetic_market_frame(seed=1)
    pd.testing.assert_frame_equal(first, synthetic_market_frame(seed=1))
    assert not np.allclose(first["close"], synthetic_market_frame(seed=2)["close"])
    alone = synthetic_market_frame({"SYNA": "stock"}, seed=1)  # an asset does not depend on its companions
    pd.testing.assert_frame_equal(alone, first[first["asset"] == "SYNA"].reset_index(drop=True))


def test_synthetic_dataset_covers_windows():
    dataset = make_synthetic_dataset(seed=0)
    assert list(dataset) == ["full", "train", "test"] and dataset["full"].features == MARKET_FEATURES
    series = market_series(dataset, "SYNC")
    assert series.asset_class == "crypto" and series.dates[-1] == DEFAULT_WINDOWS["crypto"]["test"][1]
    assert (series.close > 0).all() and all(len(items) == 1 for items in series.news)
    assert any(item.startswith("10-Q: ") for items in series.filings for item in items)


@pytest.mark.parametrize("accuracy", [0.7, 0.5])
def test_synthetic_news_forecast_the_next_day(accuracy):
    rows = synthetic_market_frame({"SYNA": "stock", "SYNC": "crypto"}, seed=3, news_accuracy=accuracy)
    agreements = []
    for _, asset in rows.groupby("asset"):
        rises = np.diff(asset["close"].to_numpy()) > 0
        positive = np.array(["(Sentiment: positive)" in items[0] for items in asset["news"]])[:-1]
        agreements.append(np.mean(rises == positive))
    if accuracy == 0.5:
        assert all(abs(agreement - 0.5) < 0.08 for agreement in agreements), agreements
    else:
        assert all(agreement > 0.62 for agreement in agreements), agreements


# --- saving and pushing -----------------------------------------------------------------------------------------------

CARD = DatasetCardInfo(pretty_name="Test prices", license="cc0-1.0", source="a unit test", tags=["test"])


def test_save_writes_data_card_and_windows(tmp_path):
    dataset = build_market_dataset(price_frame([1.0, 2.0, 3.0, 4.0, 5.0, 6.0]), SMALL_WINDOWS)
    save_market_dataset(dataset, tmp_path, CARD, SMALL_WINDOWS)
    assert load_market_dataset(tmp_path)["test"]["date"] == ["2020-07-06", "2020-07-07", "2020-07-08"]
    assert load_windows(tmp_path) == SMALL_WINDOWS
    card = DatasetCard.load(tmp_path / "README.md")
    assert card.data.license == "cc0-1.0" and card.data.pretty_name == "Test prices"
    assert (
        card.data.assets[0]["first_date"] == "2020-07-01"
        and "| MSFT | stock | 2020-07-01 | 2020-07-08 | 6 | 3 | 3 |" in card.text
    )
    assert "language" not in card.data.to_dict()  # no text columns with content


def test_push_to_hub_uploads_card_windows_and_data():
    dataset = build_market_dataset(price_frame([1.0, 2.0, 3.0, 4.0, 5.0, 6.0]), SMALL_WINDOWS)
    repo_url = "https://huggingface.co/datasets/someone/prices"
    order = []
    with (
        mock.patch.object(HfApi, "create_repo", return_value=repo_url) as create_repo,
        mock.patch.object(HfApi, "upload_file") as upload_file,
        mock.patch.object(
            DatasetCard, "push_to_hub", autospec=True, side_effect=lambda *a, **k: order.append("card")
        ) as push_card,
        mock.patch.object(
            DatasetDict, "push_to_hub", autospec=True, side_effect=lambda *a, **k: order.append("data")
        ) as push_data,
    ):
        url = push_market_dataset(dataset, "someone/prices", CARD, SMALL_WINDOWS, private=True)
    assert url == repo_url
    create_repo.assert_called_once_with("someone/prices", repo_type="dataset", private=True, exist_ok=True)
    (card, repo_id), _ = push_card.call_args
    assert repo_id == "someone/prices" and card.data.license == "cc0-1.0" and "Test prices" in card.text
    upload = upload_file.call_args.kwargs
    assert upload["path_in_repo"] == WINDOWS_FILE and upload["repo_id"] == "someone/prices"
    assert json.loads(upload["path_or_fileobj"])["stock"]["test"] == ["2020-07-06", "2020-07-08"]
    (pushed, repo_id), kwargs = push_data.call_args
    assert pushed is dataset and repo_id == "someone/prices" and kwargs["private"] is True
    # The card goes up before the data, so that `push_to_hub` adds its metadata to our card rather than a bare one.
    assert order == ["card", "data"]


def test_push_needs_a_repo_id(tmp_path):
    with pytest.raises(ValueError, match="--push_to_hub needs --repo_id"):
        MarketDatasetArguments(output_dir=str(tmp_path), push_to_hub=True)


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "datasets" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_prepare_prices_and_synthetic_scripts(tmp_path):
    prices = load_script("prepare_prices")
    csv = write_csv(tmp_path / "msft.csv", "Date,Close\n" + "\n".join(f"2020-07-{d:02d},{d}" for d in range(1, 9)))
    source_args = prices.PriceSourceArguments(source="csv", csv=str(csv), asset="MSFT", license="cc0-1.0")
    windows = "stock.train=2020-07-01:2020-07-03,stock.test=2020-07-06:2020-07-08"
    prices.main(source_args, MarketDatasetArguments(output_dir=str(tmp_path / "csv"), windows=windows))
    assert len(load_market_dataset(tmp_path / "csv")["test"]) == 3
    assert DatasetCard.load(tmp_path / "csv" / "README.md").data.license == "cc0-1.0"
    with pytest.raises(ValueError, match="--source csv needs --csv"):
        prices.PriceSourceArguments(source="csv")

    synthetic = load_script("prepare_synthetic")
    source_args = synthetic.SyntheticArguments(seed=5, assets="SYNX=stock", news_accuracy="none")
    synthetic.main(source_args, MarketDatasetArguments(output_dir=str(tmp_path / "synthetic")))
    dataset = load_market_dataset(tmp_path / "synthetic")
    assert set(dataset["full"]["asset"]) == {"SYNX"} and not any(dataset["full"]["news"])
    assert "seed 5" in DatasetCard.load(tmp_path / "synthetic" / "README.md").data.pretty_name


# --- Dates: day first or month first -----------------------------------------------------------------------------------

FEBRUARY_DAY_FIRST = "Date,Close\n" + "\n".join(f"{day:02d}/02/2021,{100 + day}" for day in range(1, 13))


def test_ambiguous_day_first_dates_are_refused(tmp_path):
    # 1-12 February written day first: every value also reads as a month-first date (2 January ... 2 December).
    path = write_csv(tmp_path / "feb.csv", FEBRUARY_DAY_FIRST)
    with pytest.raises(MarketDataError) as error:
        read_price_csv(path, asset="MSFT")
    message = str(error.value)
    for fragment in ["feb.csv", "column 'Date'", "'01/02/2021'", "ambiguous", "--date_format"]:
        assert fragment in message, message
    assert "--sort" not in message


@pytest.mark.parametrize("date_format", ["dayfirst", "%d/%m/%Y"])
def test_stated_date_format_reads_day_first(tmp_path, date_format):
    path = write_csv(tmp_path / "feb.csv", FEBRUARY_DAY_FIRST)
    rows = read_price_csv(path, asset="MSFT", date_format=date_format)
    assert rows["date"].tolist() == [f"2021-02-{day:02d}" for day in range(1, 13)]


def test_month_first_stated_or_decided(tmp_path):
    path = write_csv(tmp_path / "jan.csv", "date,close\n01/02/2021,1\n01/03/2021,2\n01/04/2021,3\n")
    rows = read_price_csv(path, asset="MSFT", date_format="monthfirst")
    assert rows["date"].tolist() == ["2021-01-02", "2021-01-03", "2021-01-04"]
    # A day above 12 in the second place decides month first for the whole column.
    path = write_csv(tmp_path / "decided.csv", "date,close\n01/12/2021,1\n01/13/2021,2\n01/14/2021,3\n")
    assert read_price_csv(path, asset="MSFT")["date"].tolist() == ["2021-01-12", "2021-01-13", "2021-01-14"]


def test_a_day_above_12_decides_day_first_for_the_whole_column(tmp_path):
    # Before: 01/02 ... 12/02 read as January ... December and 13/02 as 13 February, so the file looked unsorted and
    # the message suggested `--sort`, which reordered the misread dates.
    text = FEBRUARY_DAY_FIRST + "\n13/02/2021,113\n14.02.2021,114"
    path = write_csv(tmp_path / "feb.csv", text.replace("14.02.2021", "14/02/2021"))
    rows = read_price_csv(path, asset="MSFT")
    assert rows["date"].tolist() == [f"2021-02-{day:02d}" for day in range(1, 15)]
    assert rows["close"].tolist() == [100.0 + day for day in range(1, 15)]


def test_mixed_or_mismatched_date_formats(tmp_path):
    path = write_csv(tmp_path / "mixed.csv", "date,close\n13/01/2021,1\n01/14/2021,2\n")
    with pytest.raises(MarketDataError, match=r"mixed\.csv: column 'date': the dates mix day-first \('13/01/2021'\)"):
        read_price_csv(path, asset="MSFT")
    path = write_csv(tmp_path / "us.csv", "date,close\n01/12/2021,1\n01/13/2021,2\n")
    with pytest.raises(MarketDataError, match=r"cannot read the date '01/13/2021' in column 'date'.*day first"):
        read_price_csv(path, asset="MSFT", date_format="dayfirst")
    with pytest.raises(MarketDataError, match=r"'01/12/2021'.*does not match the format '%Y-%m-%d'"):
        read_price_csv(path, asset="MSFT", date_format="%Y-%m-%d")
    with pytest.raises(ValueError, match="Unknown date format 'european'"):
        read_price_csv(path, asset="MSFT", date_format="european")


def test_iso_and_named_month_dates_need_no_format(tmp_path):
    path = write_csv(tmp_path / "iso.csv", "date,close\n2021-02-01,1\n2021/02/02,2\nFeb 3 2021,3\n")
    assert read_price_csv(path, asset="MSFT")["date"].tolist() == ["2021-02-01", "2021-02-02", "2021-02-03"]


def test_prepare_prices_date_format_option(tmp_path):
    prices = load_script("prepare_prices")
    csv = write_csv(tmp_path / "eu.csv", "Date,Close\n" + "\n".join(f"{d:02d}/07/2020,{d}" for d in range(1, 9)))
    windows = "stock.train=2020-07-01:2020-07-03,stock.test=2020-07-06:2020-07-08"
    output = MarketDatasetArguments(output_dir=str(tmp_path / "eu"), windows=windows)
    with pytest.raises(MarketDataError, match=r"eu\.csv: column 'Date': the dates are ambiguous"):
        prices.main(prices.PriceSourceArguments(source="csv", csv=str(csv), asset="MSFT"), output)
    assert not (tmp_path / "eu").exists()
    prices.main(prices.PriceSourceArguments(source="csv", csv=str(csv), asset="MSFT", date_format="dayfirst"), output)
    assert load_market_dataset(tmp_path / "eu")["test"]["date"] == ["2020-07-06", "2020-07-07", "2020-07-08"]
    with pytest.raises(ValueError, match="Unknown date format 'european'"):
        prices.PriceSourceArguments(source="csv", csv=str(csv), date_format="european")
