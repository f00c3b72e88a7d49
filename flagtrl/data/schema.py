"""The market-episode schema: one row per asset and trading day, as a Hugging Face `datasets.Features`.

A prepared dataset is a `datasets.DatasetDict` saved with `save_to_disk`, with three splits:

- `full`: every row of every asset (the point-in-time history that prompts and rules look back on);
- `train`: the rows inside each asset class's training (warm-up) window;
- `test`: the rows inside each asset class's held-out test window.

Environments and backtests read an asset's whole `full` series and play a date window of it, so an agent on the
first day of a window still sees the days before it, and never a day after the one it decides on.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from datasets import Dataset, DatasetDict, Features, List, Value


ASSET_CLASSES = ("stock", "crypto")
FULL_SPLIT = "full"
WINDOWS_FILE = "flagtrl_windows.json"

MARKET_FEATURES = Features(
    {
        # ISO `YYYY-MM-DD`, a string so that it round-trips through JSON, CSV and the Hub viewer
        "date": Value("string"),
        "asset": Value("string"),  # ticker, upper case: `MSFT`, `BTC`
        "asset_class": Value("string"),  # one of ASSET_CLASSES
        "close": Value("float64"),
        "open": Value("float64"),  # optional columns are null when the source has none
        "high": Value("float64"),
        "low": Value("float64"),
        "volume": Value("float64"),
        "news": List(Value("string")),
        "filings": List(Value("string")),
    }
)
REQUIRED_COLUMNS = ("date", "asset", "close")

# The paper's windows (FLAG-Trader §5.1): warm-up (train) and test, dates inclusive.
DEFAULT_WINDOWS: dict[str, dict[str, tuple[str, str]]] = {
    "stock": {"train": ("2020-07-01", "2020-09-30"), "test": ("2020-10-01", "2021-05-06")},
    "crypto": {"train": ("2023-02-11", "2023-04-04"), "test": ("2023-04-05", "2023-11-05")},
}


@dataclass
class MarketSeries:
    """One asset's point-in-time daily series, as the environment and the agents read it.

    Args:
        asset (`str`): Ticker, e.g. `MSFT`.
        asset_class (`str`): `stock` or `crypto` (sets the annualisation: 252 or 365 days).
        dates (`list[str]`): Sorted ISO dates.
        close (`np.ndarray`): Closing prices, float64, all > 0.
        news (`list[list[str]]`): News items of each day.
        filings (`list[list[str]]`): Filing summaries (10-K/10-Q) of each day.
    """

    asset: str
    asset_class: str
    dates: list[str]
    close: np.ndarray
    news: list[list[str]] = field(default_factory=list)
    filings: list[list[str]] = field(default_factory=list)

    def __post_init__(self):
        self.close = np.asarray(self.close, dtype=np.float64)
        if not self.news:
            self.news = [[] for _ in self.dates]
        if not self.filings:
            self.filings = [[] for _ in self.dates]

    def __len__(self) -> int:
        return len(self.dates)

    @property
    def trading_days_per_year(self) -> int:
        return 365 if self.asset_class == "crypto" else 252

    def index_of(self, date: str, side: str = "left") -> int:
        """Position of `date`, or of the first trading day on/after it (`side="left"`) or last on/before it
        (`side="right"`)."""
        position = int(np.searchsorted(np.asarray(self.dates), date, side=side))
        return position if side == "left" else position - 1

    def window(self, start: str, end: str, min_days: int = 2) -> tuple[int, int]:
        """Index range `[first, last]` (inclusive) of the trading days in `[start, end]`.

        Raises:
            `ValueError`: when the window holds fewer than `min_days` trading days of this asset.
        """
        first, last = self.index_of(start, "left"), self.index_of(end, "right")
        days = last - first + 1
        if days < min_days:
            raise ValueError(
                f"Window {start} → {end} of asset {self.asset} holds {max(days, 0)} trading day(s); at least {min_days} "
                f"are needed. The data of {self.asset} runs from {self.dates[0]} to {self.dates[-1]}."
            )
        return first, last


def load_market_dataset(path: str | Path) -> DatasetDict:
    """Load a prepared dataset folder (`datasets.load_from_disk`) with a clear error when it is not one."""
    from datasets import load_from_disk

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(
            f"No dataset at {path}. Prepare one, e.g. `python datasets/prepare_investorbench.py --output_dir {path}`."
        )
    dataset = load_from_disk(str(path))
    if isinstance(dataset, Dataset):
        dataset = DatasetDict({FULL_SPLIT: dataset})
    if FULL_SPLIT not in dataset:
        raise ValueError(
            f"Dataset {path} has splits {list(dataset)}; a flagtrl market dataset has a `{FULL_SPLIT}` split."
        )
    missing = [c for c in REQUIRED_COLUMNS if c not in dataset[FULL_SPLIT].column_names]
    if missing:
        raise ValueError(f"Dataset {path} lacks the column(s) {missing} of the flagtrl schema.")
    return dataset


def load_windows(path: str | Path) -> dict[str, dict[str, tuple[str, str]]]:
    """The date windows a dataset folder was split with (written by the preparation scripts)."""
    file = Path(path) / WINDOWS_FILE
    if not file.exists():
        return DEFAULT_WINDOWS
    return {k: {s: tuple(w) for s, w in v.items()} for k, v in json.loads(file.read_text()).items()}


def list_assets(dataset: DatasetDict | Dataset) -> list[str]:
    full = dataset[FULL_SPLIT] if isinstance(dataset, DatasetDict) else dataset
    return sorted(set(full["asset"]))


def market_series(dataset: DatasetDict | Dataset, asset: str) -> MarketSeries:
    """Extract one asset's sorted series from a dataset (its `full` split when given a `DatasetDict`).

    Raises:
        `KeyError`: when the asset is not in the dataset (the message lists the assets that are).
    """
    full = dataset[FULL_SPLIT] if isinstance(dataset, DatasetDict) else dataset
    assets = full["asset"]
    wanted = asset.upper()
    rows = [i for i, a in enumerate(assets) if a == wanted]
    if not rows:
        raise KeyError(f"Unknown asset {asset!r}: the dataset holds {sorted(set(assets))}.")
    dates = full.select_columns(["date"]).select(rows)["date"]
    # Sorted here rather than with `Dataset.sort` (which also trips a pyarrow deprecation warning).
    sub = full.select([rows[i] for i in sorted(range(len(rows)), key=dates.__getitem__)])
    columns = sub.column_names
    return MarketSeries(
        asset=wanted,
        asset_class=sub[0]["asset_class"] if "asset_class" in columns else "stock",
        dates=list(sub["date"]),
        close=np.asarray(sub["close"], dtype=np.float64),
        news=[list(n or []) for n in sub["news"]] if "news" in columns else [],
        filings=[list(f or []) for f in sub["filings"]] if "filings" in columns else [],
    )
