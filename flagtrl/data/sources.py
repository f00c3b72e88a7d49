"""Readers that turn outside market data into checked rows of the flagtrl schema (a `pandas.DataFrame`).

- `read_investorbench`: the InvestorBench JSON files (prices, news, 10-K/10-Q summaries), one file per asset;
- `read_price_csv`: any daily price CSV, long (one row per asset and day) or wide (one column per ticker);
- `read_skfolio`: the adjusted closes of 20 US large caps that ship inside the `skfolio` package (no network);
- `read_yfinance`: daily bars from Yahoo Finance (needs `yfinance` and the network).

Each reader returns the output of `validate_rows`, so a bad value stops it with the file, asset, date and value. The
matching `*_CARD` objects say where the data come from in the dataset card.
"""

from __future__ import annotations

import importlib.util
import json
import re
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from flagtrl.data.builder import DatasetCardInfo
from flagtrl.data.validation import MarketDataError, validate_rows


# --- InvestorBench -------------------------------------------------------------------------------------------------

INVESTORBENCH_CRYPTO = ("btc", "eth")
INVESTORBENCH_CARD = DatasetCardInfo(
    pretty_name="InvestorBench market episodes",
    license="mit",
    source="InvestorBench (felis33/INVESTOR-BENCH, folder `data/`), Li et al. 2024, arXiv 2412.18174",
    source_url="https://github.com/felis33/INVESTOR-BENCH",
    description=(
        "Daily closes, LLM-summarised news (each item ends in `(Sentiment: positive|negative|neutral)`) and 10-K/10-Q "
        "summaries of five US stocks and two crypto assets, as used by InvestorBench and the FLAG-Trader paper "
        "(Xiong et al. 2025, arXiv 2502.11433). Copyright 2024 Haohang Li, Yupeng Cao, Yangyang Yu; MIT licence."
    ),
    tags=["news", "sec-filings", "investorbench"],
    citation="""@article{li2024investorbench,
  title={INVESTORBENCH: A Benchmark for Financial Decision-Making Tasks with LLM-based Agent},
  author={Li, Haohang and Cao, Yupeng and Yu, Yangyang and Javaji, Shashidhar Reddy and Deng, Zhiyang and He, Yueru
    and Jiang, Yuechen and Zhu, Zining and Subbalakshmi, Koduvayur and Xiong, Guojun and others},
  journal={arXiv preprint arXiv:2412.18174},
  year={2024}
}""",
)
_FILING_PREFIXES = {"10k": "10-K: ", "10q": "10-Q: "}


def read_investorbench(data_dir: str | Path, assets: Sequence[str] | None = None) -> pd.DataFrame:
    """Read InvestorBench asset files (`msft.json`, `btc.json`, ...) into schema rows.

    Each file is a JSON object keyed by date, whose values hold `prices` (close), `news` (list of strings) and, for
    stocks, `10k` / `10q` (lists of filing summaries). Filings become one `filings` list, each item prefixed with
    `10-K: ` or `10-Q: `. `btc` and `eth` are crypto, every other file a stock.

    Args:
        data_dir (`str` or `Path`): Folder with the `<asset>.json` files.
        assets (`Sequence[str]`, *optional*): Assets to read (case-insensitive); all files in the folder by default.

    Raises:
        `MarketDataError`: for a requested asset without a file (the message lists the files there), a day without
            `prices`, or a bad value (see `validate_rows`).
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise FileNotFoundError(f"No InvestorBench folder at {data_dir}.")
    available = {path.stem.lower(): path for path in sorted(data_dir.glob("*.json"))}
    if not available:
        raise MarketDataError(f"{data_dir}: no `<asset>.json` files.")
    wanted = [asset.strip().lower() for asset in assets if asset.strip()] if assets else list(available)
    unknown = [asset for asset in wanted if asset not in available]
    if unknown:
        raise MarketDataError(
            f"Unknown asset(s) {unknown}: {data_dir} has no such file; available: {[p.name for p in available.values()]}."
        )
    frames = []
    for asset in wanted:
        path = available[asset]
        try:
            days = json.loads(path.read_text())
        except json.JSONDecodeError as error:
            raise MarketDataError(f"{path.name}: not valid JSON ({error}).") from None
        if not isinstance(days, dict):
            raise MarketDataError(f"{path.name}: expected an object keyed by date, found {type(days).__name__}.")
        rows = []
        for date, day in days.items():
            if not isinstance(day, dict) or "prices" not in day:
                raise MarketDataError(
                    f"{path.name}: asset {asset.upper()}, date {date}: no `prices` entry (found {day!r:.80})."
                )
            filings = []
            for kind, prefix in _FILING_PREFIXES.items():
                texts = day.get(kind) or []
                if not isinstance(texts, list) or not all(isinstance(text, str) for text in texts):
                    raise MarketDataError(
                        f"{path.name}: asset {asset.upper()}, date {date}: `{kind}` is {texts!r:.80}; it must be a list "
                        f"of strings."
                    )
                filings += [prefix + text for text in texts]
            rows.append({"date": date, "close": day["prices"], "news": day.get("news") or [], "filings": filings})
        frame = pd.DataFrame(rows, columns=["date", "close", "news", "filings"])
        frame.insert(1, "asset", asset.upper())
        frame.insert(2, "asset_class", "crypto" if asset in INVESTORBENCH_CRYPTO else "stock")
        # A JSON object has no order of its own: sort by date rather than trust key order.
        frames.append(validate_rows(frame, path.name, sort=True))
    return pd.concat(frames, ignore_index=True)


# --- CSV files -----------------------------------------------------------------------------------------------------

# Spellings accepted for each schema column, compared after lower-casing and dropping spaces, `_` and `-`. `adjclose`
# comes before `close`: with both present the adjusted close is the one that returns are computed from.
COLUMN_SPELLINGS = {
    "date": ("date", "datetime", "timestamp", "time", "day"),
    "close": ("adjclose", "adjustedclose", "close", "closeprice", "price"),
    "open": ("open",),
    "high": ("high",),
    "low": ("low",),
    "volume": ("volume",),
    "asset": ("ticker", "symbol", "asset", "tic"),
    "asset_class": ("assetclass",),
    "news": ("news",),
    "filings": ("filings",),
}


def _normalised(name: object) -> str:
    return str(name).lower().replace(" ", "").replace("_", "").replace("-", "")


def _find_columns(columns: Sequence[object]) -> dict[str, object]:
    """Map schema names to the file's columns, by the first accepted spelling that the file has."""
    by_spelling = {_normalised(column): column for column in columns}
    found = {}
    for name, spellings in COLUMN_SPELLINGS.items():
        for spelling in spellings:
            if spelling in by_spelling:
                found[name] = by_spelling[spelling]
                break
    return found


def price_rows_from_table(
    table: pd.DataFrame,
    source: str,
    asset: str | None = None,
    assets: Sequence[str] | None = None,
    asset_class: str = "stock",
    sort: bool = False,
    date_format: str | None = None,
) -> pd.DataFrame:
    """Schema rows from a price table in the long or the wide layout (see `read_price_csv`)."""
    found = _find_columns(list(table.columns))
    if "date" not in found:
        raise MarketDataError(
            f"{source}: missing the date column; found columns {[str(c) for c in table.columns]}. "
            f"Accepted names: {list(COLUMN_SPELLINGS['date'])} (any case)."
        )
    if "close" in found:  # long layout: one row per asset and day
        frame = pd.DataFrame({name: table[column] for name, column in found.items()})
        if "asset" not in frame:
            if not asset:
                raise MarketDataError(
                    f"{source}: no ticker column (accepted names: {list(COLUMN_SPELLINGS['asset'])}) and no asset "
                    f"given; name the asset, e.g. `--asset MSFT`. Found columns {[str(c) for c in table.columns]}."
                )
            frame["asset"] = asset
        if "asset_class" not in frame:
            frame["asset_class"] = asset_class
        selected = [a.upper() for a in assets] if assets else ([asset.upper()] if asset and "asset" in found else None)
        if selected:
            tickers = frame["asset"].astype(str).str.strip().str.upper()
            unknown = sorted(set(selected) - set(tickers))
            if unknown:
                raise MarketDataError(
                    f"{source}: unknown asset(s) {unknown}; the file holds {sorted(set(tickers.dropna()))}."
                )
            frame = frame[tickers.isin(selected)]
        return validate_rows(frame, source, sort=sort, date_format=date_format, date_column=str(found["date"]))

    # Wide layout: a date column and one close column per ticker. A file with bar or ticker columns but no close is a
    # long file that lacks its close, not a wide file with tickers named `Open` and `Volume`.
    tickers = [column for column in table.columns if column != found["date"]]
    if not tickers or set(found) & {"open", "high", "low", "volume", "asset", "asset_class", "news", "filings"}:
        raise MarketDataError(
            f"{source}: missing the close column; found columns {[str(c) for c in table.columns]}. Accepted names: "
            f"{list(COLUMN_SPELLINGS['close'])} (long layout), or one price column per ticker (wide layout)."
        )
    by_name = {str(column).upper(): column for column in tickers}
    selected = [a.upper() for a in assets] if assets else ([asset.upper()] if asset else list(by_name))
    unknown = [name for name in selected if name not in by_name]
    if unknown:
        raise MarketDataError(f"{source}: unknown asset(s) {unknown}; its ticker columns are {sorted(by_name)}.")
    frames = []
    for name in selected:
        closes = table[by_name[name]]
        # A ticker column is empty before the asset listed and after it delisted; only gaps inside are errors.
        present = closes.notna().to_numpy().nonzero()[0]
        if len(present) == 0:
            raise MarketDataError(f"{source}: asset {name}: the column holds no prices.")
        span = slice(present[0], present[-1] + 1)
        frames.append(
            pd.DataFrame(
                {
                    "date": table[found["date"]].iloc[span].to_numpy(),
                    "asset": name,
                    "asset_class": asset_class,
                    "close": closes.iloc[span].to_numpy(),
                }
            )
        )
    return validate_rows(
        pd.concat(frames, ignore_index=True),
        source,
        sort=sort,
        date_format=date_format,
        date_column=str(found["date"]),
    )


def read_price_csv(
    path: str | Path,
    asset: str | None = None,
    assets: Sequence[str] | None = None,
    asset_class: str = "stock",
    sort: bool = False,
    date_format: str | None = None,
) -> pd.DataFrame:
    """Read daily prices from a CSV file (plain or compressed) into schema rows.

    Two layouts are recognised:

    - **long**: a date column, a close column, optionally open/high/low/volume, and a ticker column (or `asset`);
    - **wide**: a date column and one close column per ticker (no column spelled like a close).

    Column names are matched case-insensitively, ignoring spaces, `_` and `-`: dates from `Date`, `date`,
    `timestamp`, `Datetime`; closes from `Adj Close`/`adj_close` (preferred) or `Close`/`close`/`price`; tickers
    from `Ticker`, `Symbol`, `asset`. In the wide layout a ticker's leading and trailing empty cells (before listing,
    after delisting) are dropped; an empty cell in between is an error.

    Dates in ISO (`2021-02-01`) or with a named month are read as they are. Dates like `01/02/2021` are read day or
    month first only when some value of the column decides it (`13/02/2021` can only be day first); a column where no
    value decides is refused unless `date_format` says how to read it.

    Args:
        path (`str` or `Path`): The CSV file.
        asset (`str`, *optional*): The ticker of a long file without a ticker column; otherwise the one asset to keep.
        assets (`Sequence[str]`, *optional*): Tickers to keep (all by default).
        asset_class (`str`, *optional*, defaults to `"stock"`): Class of the assets when the file has no such column.
        sort (`bool`, *optional*, defaults to `False`): Sort dates instead of rejecting a file out of date order.
        date_format (`str`, *optional*): `dayfirst`, `monthfirst` or a strftime format (`%d/%m/%Y`) for the dates.

    Raises:
        `MarketDataError`: on a file that is not CSV, a missing date or close column (naming the columns found), an
            ambiguous date column, an unknown asset, or a bad value (see `validate_rows`).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No CSV file at {path}.")
    try:
        table = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise MarketDataError(f"{path.name}: not a readable CSV file ({str(error).strip()}).") from None
    return price_rows_from_table(
        table, path.name, asset=asset, assets=assets, asset_class=asset_class, sort=sort, date_format=date_format
    )


def csv_card(path: str | Path, license: str = "unknown") -> DatasetCardInfo:
    return DatasetCardInfo(
        pretty_name=f"Daily prices from {Path(path).name}",
        license=license,
        source=f"the CSV file `{Path(path).name}`",
        tags=["prices"],
    )


# --- skfolio -------------------------------------------------------------------------------------------------------

SKFOLIO_FILE = "datasets/data/sp500_dataset.csv.gz"
SKFOLIO_CARD = DatasetCardInfo(
    pretty_name="S&P 500 large caps, adjusted daily closes (skfolio)",
    license="bsd-3-clause",
    source=f"`{SKFOLIO_FILE}` shipped in the skfolio package (BSD-3-Clause): adjusted closes of 20 US large caps, "
    "1990-01-02 to 2022-12-28",
    source_url="https://skfolio.org/generated/skfolio.datasets.load_sp500_dataset.html",
    description="Adjusted daily closes only (no open/high/low/volume, no news).",
    tags=["prices", "skfolio", "sp500"],
)


def skfolio_prices_file() -> Path:
    """The S&P 500 price file inside the installed skfolio package (found without importing skfolio or the network).

    Raises:
        `ModuleNotFoundError`: when skfolio is not installed.
    """
    spec = importlib.util.find_spec("skfolio")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("The skfolio source needs the skfolio package: `pip install skfolio`.")
    path = Path(spec.submodule_search_locations[0]) / SKFOLIO_FILE
    if not path.is_file():
        raise FileNotFoundError(f"skfolio is installed but has no {SKFOLIO_FILE} (looked at {path}).")
    return path


def read_skfolio(assets: Sequence[str] | None = None) -> pd.DataFrame:
    """Adjusted daily closes of skfolio's 20 US large caps (`AAPL`, `JNJ`, `MSFT`, ...), all of them by default."""
    path = skfolio_prices_file()
    return price_rows_from_table(pd.read_csv(path), f"skfolio/{SKFOLIO_FILE}", assets=assets, asset_class="stock")


# --- yfinance ------------------------------------------------------------------------------------------------------

YFINANCE_CARD = DatasetCardInfo(
    pretty_name="Daily bars from Yahoo Finance",
    license="other",
    source="Yahoo Finance through the yfinance package (Yahoo's terms of use apply; check them before redistributing)",
    source_url="https://github.com/ranaroussi/yfinance",
    tags=["prices", "yfinance"],
)


def read_yfinance(
    assets: Sequence[str], start: str, end: str, asset_class: str = "stock", sort: bool = True
) -> pd.DataFrame:
    """Daily bars (closes adjusted for splits and dividends) of `assets` from `start` to `end` inclusive.

    Crypto tickers are Yahoo's pairs (`BTC-USD`); the `-USD` suffix is dropped from the asset name (`BTC`).

    Raises:
        `ModuleNotFoundError`: when yfinance is not installed.
        `MarketDataError`: when Yahoo returns nothing for a ticker (no network, or an unknown ticker).
    """
    try:
        import yfinance
    except ImportError:
        raise ModuleNotFoundError(
            "The yfinance source needs the yfinance package: `pip install 'flagtrl[yfinance]'`."
        ) from None
    # yfinance's `end` is exclusive.
    end_exclusive = (pd.Timestamp(end) + pd.Timedelta(days=1)).strftime("%Y-%m-%d")
    frames = []
    for ticker in assets:
        try:
            bars = yfinance.Ticker(ticker).history(start=start, end=end_exclusive, interval="1d", auto_adjust=True)
        except Exception as error:  # yfinance raises many kinds of network and parsing errors
            raise MarketDataError(
                f"yfinance: cannot download {ticker} ({type(error).__name__}: {error}). Is the network reachable?"
            ) from error
        if bars is None or len(bars) == 0:
            raise MarketDataError(
                f"yfinance: no prices for {ticker} from {start} to {end}: the network may be unreachable, or Yahoo "
                f"does not know the ticker."
            )
        name = ticker.upper().removesuffix("-USD") if asset_class == "crypto" else ticker.upper()
        table = bars.reset_index()
        frames.append(
            price_rows_from_table(
                table[
                    [
                        c
                        for c in table.columns
                        if _normalised(c) in {"date", "datetime", "open", "high", "low", "close", "volume"}
                    ]
                ],
                f"yfinance:{ticker}",
                asset=name,
                asset_class=asset_class,
                sort=sort,
            )
        )
    return pd.concat(frames, ignore_index=True)


def clip_dates(rows: pd.DataFrame, start: str | None = None, end: str | None = None) -> pd.DataFrame:
    """Keep the rows from `start` to `end` (ISO dates, inclusive; either may be `None`).

    Raises:
        `ValueError`: when `start` or `end` is not an ISO date (they are compared as strings with the ISO row dates).
    """
    for name, date in (("start", start), ("end", end)):
        if date and not re.fullmatch(r"\d{4}-\d{2}-\d{2}", date):
            raise ValueError(f"--{name} is {date!r}; write dates as YYYY-MM-DD.")
    keep = pd.Series(True, index=rows.index)
    if start:
        keep &= rows["date"] >= start
    if end:
        keep &= rows["date"] <= end
    return rows[keep].reset_index(drop=True)
