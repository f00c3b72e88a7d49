"""Checks that market rows are fit to train and backtest on, with messages that say where the bad value is.

Every source (InvestorBench JSON, a CSV file, skfolio, yfinance, the synthetic generator) ends as a `pandas.DataFrame`
in the long layout of `flagtrl.data.schema` (one row per asset and trading day) and goes through `validate_rows`
before it becomes a dataset. A bad row stops the preparation with a `MarketDataError` that names the file, the asset,
the date and the offending value, e.g.::

    msft.csv: asset MSFT, date 2020-07-02: close is -1.5; prices must be positive.

Prices are never repaired silently (no forward fill, no dropped rows): a backtest on repaired prices would report
returns that never existed.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Sequence

import numpy as np
import pandas as pd

from flagtrl.data.schema import ASSET_CLASSES, REQUIRED_COLUMNS


PRICE_COLUMNS = ("open", "high", "low")
TEXT_COLUMNS = ("news", "filings")


class MarketDataError(ValueError):
    """Market data that cannot be used as they are; the message names the file, asset, date and value."""


def _where(source: str, asset: object, date: object) -> str:
    return f"{source}: asset {asset}, date {date}"


def _show(value: object) -> str:
    """`repr` of a value as the user wrote it (`nan`, `-1.5`, `'n/a'`), without numpy's type wrappers."""
    if isinstance(value, np.generic):
        value = value.item()
    return repr(value)


DATE_ORDERS = ("dayfirst", "monthfirst")

# Two numbers and a year with the same separator: `01/02/2021`, `1.2.21`, `01-02-2021`. One such value alone cannot say
# whether the first number is the day or the month; pandas guesses month first, and day first when that fails.
_NUMERIC_DATE = re.compile(r"^(\d{1,2})([/.\-])(\d{1,2})\2(\d{4}|\d{2})(?=$|[\sT])(.*)$")


def check_date_format(date_format: str | None) -> str | None:
    """`date_format` if it is `None`, `dayfirst`, `monthfirst` or a strftime format (with a `%`); else an error."""
    if date_format is None or date_format in DATE_ORDERS or "%" in date_format:
        return date_format
    raise ValueError(
        f"Unknown date format {date_format!r}: use `dayfirst`, `monthfirst` or a strftime format such as `%d/%m/%Y`."
    )


def _parse_date(value: object, date_format: str | None = None) -> str | None:
    """ISO `YYYY-MM-DD` of one date value, or `None` when it is not a date (or does not match `date_format`).

    `date_format` is `dayfirst` / `monthfirst` (how to read `01/02/2021`; year-first and named-month dates read as
    usual) or a strftime format. Time zones are dropped without conversion: a daily bar stamped
    `2020-07-01 00:00-04:00` belongs to 2020-07-01 on its own exchange, whereas converting it to UTC first would move it
    to another day for sources east of UTC.
    """
    try:
        if isinstance(value, pd.Timestamp | datetime.date):
            timestamp = pd.Timestamp(value)
        elif date_format and "%" in date_format:
            timestamp = pd.to_datetime(str(value).strip(), format=date_format)
        else:
            text = str(value).strip()
            match = _NUMERIC_DATE.match(text)
            if match:
                first, second = int(match[1]), int(match[3])
                day, month = (first, second) if date_format == "dayfirst" else (second, first)
                year = int(match[4]) if len(match[4]) == 4 else datetime.datetime.strptime(match[4], "%y").year
                text = f"{year:04d}-{month:02d}-{day:02d}{match[5]}"
            timestamp = pd.Timestamp(text)
    except (ValueError, TypeError, OverflowError):
        return None
    if pd.isna(timestamp):
        return None
    return timestamp.strftime("%Y-%m-%d")


def _date_order(values: Sequence[object], source: str, date_column: str) -> str | None:
    """`dayfirst` or `monthfirst` as the column's `01/02/2021`-like values decide it, `None` when it has none.

    A value whose first number is above 12 (`13/02/2021`) can only be day first, one whose second number is, month
    first; the whole column must agree. When no value decides, the column is ambiguous and refused.
    """
    numeric = []
    for value in values:
        if isinstance(value, str) and (match := _NUMERIC_DATE.match(value.strip())):
            numeric.append((value, int(match[1]), int(match[3])))
    if not numeric:
        return None
    where = f"{source}: column {date_column!r}"
    dayfirst = next((value for value, first, second in numeric if first > 12 >= second), None)
    monthfirst = next((value for value, first, second in numeric if second > 12 >= first), None)
    if dayfirst and monthfirst:
        raise MarketDataError(
            f"{where}: the dates mix day-first ({dayfirst!r}) and month-first ({monthfirst!r}) values; fix the file "
            f"(ISO dates like 2021-02-01 are never ambiguous)."
        )
    if dayfirst or monthfirst:
        return "dayfirst" if dayfirst else "monthfirst"
    ambiguous = next(((value, first, second) for value, first, second in numeric if first != second), None)
    if ambiguous is None:  # every value reads the same both ways (`01/01/2021`)
        return "dayfirst"
    value, first, second = ambiguous
    raise MarketDataError(
        f"{where}: the dates are ambiguous: {value!r} is {_parse_date(value, 'dayfirst')} read day first or "
        f"{_parse_date(value, 'monthfirst')} read month first, and no date in the column has a number above 12 to "
        f"decide. State the format: `--date_format dayfirst`, `--date_format monthfirst` or a strftime format such "
        f"as `--date_format %d/%m/%Y`."
    )


def _iso_dates(frame: pd.DataFrame, source: str, date_format: str | None, date_column: str) -> pd.Series:
    unique = list(pd.unique(frame["date"].dropna()))
    if date_format is None:
        date_format = _date_order(unique, source, date_column)
    parsed = {value: _parse_date(value, date_format) for value in unique}
    dates = frame["date"].map(lambda value: None if pd.isna(value) else parsed[value])
    bad = dates.isna()
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        value = frame["date"].iloc[row]
        expected = (
            f"it does not match the format {date_format!r}"
            if date_format and "%" in date_format
            else f"it cannot be read {date_format.replace('first', ' first')}"
            if date_format
            else "dates must look like 2020-07-01"
        )
        raise MarketDataError(
            f"{_where(source, frame['asset'].iloc[row], repr(value))}: cannot read the date {value!r} in column "
            f"{date_column!r} (data row {row + 1}); {expected}."
        )
    return dates.astype(object)


def _numbers(frame: pd.DataFrame, column: str, source: str) -> pd.Series:
    """The column as float64; a value that is present but not a number is an error."""
    numbers = pd.to_numeric(frame[column], errors="coerce").astype("float64")
    not_numbers = numbers.isna() & frame[column].notna()
    if not_numbers.any():
        row = int(np.flatnonzero(not_numbers.to_numpy())[0])
        raise MarketDataError(
            f"{_where(source, frame['asset'].iloc[row], frame['date'].iloc[row])}: {column} is "
            f"{_show(frame[column].iloc[row])}, which is not a number."
        )
    return numbers


def _texts(frame: pd.DataFrame, column: str, source: str) -> list[list[str]]:
    """Each row's list of strings (`None` becomes `[]`, a single string a one-item list)."""
    texts = []
    for row, value in enumerate(frame[column]):
        if value is None or (isinstance(value, float) and np.isnan(value)):
            texts.append([])
        elif isinstance(value, str):
            texts.append([value])
        elif isinstance(value, list | tuple | np.ndarray) and all(isinstance(item, str) for item in value):
            texts.append(list(value))
        else:
            raise MarketDataError(
                f"{_where(source, frame['asset'].iloc[row], frame['date'].iloc[row])}: {column} is {_show(value)}; "
                f"it must be a list of strings."
            )
    return texts


def validate_rows(
    frame: pd.DataFrame, source: str, sort: bool = False, date_format: str | None = None, date_column: str = "date"
) -> pd.DataFrame:
    """Check market rows and return them normalised to the schema's conventions.

    Normalised means: `date` as ISO `YYYY-MM-DD` strings, `asset` upper case, `asset_class` lower case (`stock` when
    the column is absent), prices as float64 with `NaN` for a missing optional price, `news` and `filings` as lists
    of strings when present; rows ordered by asset, then date.

    Args:
        frame (`pandas.DataFrame`):
            Rows in the long layout: at least `date`, `asset`, `close`; optionally `asset_class`, `open`, `high`,
            `low`, `volume`, `news`, `filings`. Other columns are dropped.
        source (`str`):
            What the rows were read from (a file name), for the error messages.
        sort (`bool`, *optional*, defaults to `False`):
            Sort each asset's rows by date. Without it, dates that go backwards within an asset are an error: in a
            file that is meant to be in time order, they point to a bad export. Sources keyed by date (JSON objects)
            have no order of their own and are read with `sort=True`.
        date_format (`str`, *optional*):
            How to read dates such as `01/02/2021`: `dayfirst`, `monthfirst`, or a strftime format (`%d/%m/%Y`).
            By default ISO and named-month dates are read as they are, and a column of `01/02/2021`-like dates only
            when some value has a number above 12 that decides the order for the whole column; otherwise the column
            is ambiguous and refused (guessing would swap day and month without a word).
        date_column (`str`, *optional*, defaults to `"date"`):
            Name of the date column in the source, for the error messages.

    Returns:
        `pandas.DataFrame`: The checked rows, with a fresh index.

    Raises:
        `MarketDataError`: on a missing required column, an empty asset, an unreadable date, an unknown asset class, a
            date column that is ambiguous or mixes day-first and month-first dates, a close that is missing, not a number, zero or negative, an optional price that is zero or negative, a
            negative volume, news or filings that are not lists of strings, a date listed twice for an asset, or dates
            out of order (without `sort`). The message names the source, the asset, the date and the value.
    """
    missing = [column for column in REQUIRED_COLUMNS if column not in frame.columns]
    if missing:
        raise MarketDataError(
            f"{source}: missing required column(s) {missing}; found columns {[str(c) for c in frame.columns]}. "
            f"Market rows need {list(REQUIRED_COLUMNS)}."
        )
    if len(frame) == 0:
        raise MarketDataError(f"{source}: no rows.")
    frame = frame.reset_index(drop=True)

    no_asset = frame["asset"].isna() | (frame["asset"].astype(str).str.strip() == "")
    if no_asset.any():
        row = int(np.flatnonzero(no_asset.to_numpy())[0])
        raise MarketDataError(
            f"{_where(source, repr(frame['asset'].iloc[row]), frame['date'].iloc[row])}: the asset is empty (data row "
            f"{row + 1})."
        )
    rows = pd.DataFrame({"asset": frame["asset"].astype(str).str.strip().str.upper()})
    date_format = check_date_format(date_format)
    rows["date"] = _iso_dates(frame.assign(asset=rows["asset"]), source, date_format, date_column)
    located = frame.assign(asset=rows["asset"], date=rows["date"])

    if "asset_class" in frame.columns:
        rows["asset_class"] = located["asset_class"].astype(str).str.strip().str.lower()
        unknown = ~rows["asset_class"].isin(ASSET_CLASSES)
        if unknown.any():
            row = int(np.flatnonzero(unknown.to_numpy())[0])
            raise MarketDataError(
                f"{_where(source, rows['asset'].iloc[row], rows['date'].iloc[row])}: unknown asset_class "
                f"{_show(located['asset_class'].iloc[row])}; expected one of {list(ASSET_CLASSES)}."
            )
    else:
        rows["asset_class"] = "stock"

    rows["close"] = _numbers(located, "close", source)
    nan_close = rows["close"].isna()
    if nan_close.any():
        row = int(np.flatnonzero(nan_close.to_numpy())[0])
        raise MarketDataError(
            f"{_where(source, rows['asset'].iloc[row], rows['date'].iloc[row])}: close is "
            f"{_show(located['close'].iloc[row])} (missing); every trading day needs a closing price. Drop the day or fix "
            f"the source rather than filling it in."
        )
    for column in ("close", *PRICE_COLUMNS, "volume"):
        if column == "close":
            values = rows["close"]
        elif column in frame.columns:
            values = rows[column] = _numbers(located, column, source)
        else:
            rows[column] = np.nan
            continue
        bad = values < 0 if column == "volume" else values <= 0
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            rule = "volumes cannot be negative" if column == "volume" else "prices must be positive"
            raise MarketDataError(
                f"{_where(source, rows['asset'].iloc[row], rows['date'].iloc[row])}: {column} is "
                f"{_show(values.iloc[row])}; {rule}."
            )
    for column in TEXT_COLUMNS:
        if column in frame.columns:
            rows[column] = _texts(located, column, source)

    if rows["asset_class"].groupby(rows["asset"]).nunique().max() > 1:
        classes = rows.groupby("asset")["asset_class"].unique()
        asset = classes[classes.map(len) > 1].index[0]
        raise MarketDataError(f"{source}: asset {asset} is listed with several asset classes {list(classes[asset])}.")

    duplicated = rows.duplicated(["asset", "date"], keep=False)
    if duplicated.any():
        row = int(np.flatnonzero(duplicated.to_numpy())[0])
        asset, date = rows["asset"].iloc[row], rows["date"].iloc[row]
        closes = rows.loc[duplicated & (rows["asset"] == asset) & (rows["date"] == date), "close"].tolist()
        raise MarketDataError(
            f"{_where(source, asset, date)}: the date is listed {len(closes)} times (close {closes}); each asset has "
            f"one row per trading day."
        )

    if not sort:
        # Sorting cannot repair dates read with the wrong format: then the format is what to fix.
        remedy = (
            f"Check `--date_format {date_format}` (the dates were read with it), or fix the file"
            if date_format
            else "Fix the file, or sort it on reading (`sort=True`, `--sort`)"
        )
        for asset, group in rows.groupby("asset", sort=False):
            dates = group["date"].to_numpy()
            backwards = np.flatnonzero(dates[1:] < dates[:-1])
            if len(backwards):
                i = int(backwards[0])
                raise MarketDataError(
                    f"{_where(source, asset, dates[i + 1])}: dates are not in ascending order: {dates[i + 1]} comes "
                    f"after {dates[i]} (data row {int(group.index[i + 1]) + 1}). {remedy}."
                )
    return rows.sort_values(["asset", "date"], kind="stable").reset_index(drop=True)


def check_window(
    dates: Sequence[str],
    asset: str,
    split: str,
    window: tuple[str, str],
    min_days: int = 2,
    source: str | None = None,
    asset_class: str | None = None,
) -> int:
    """Check that an asset has enough trading days inside a date window.

    Args:
        dates (`Sequence[str]`):
            The asset's sorted ISO dates.
        asset (`str`):
            Ticker, for the message.
        split (`str`):
            The window's name (`train`, `test`), for the message.
        window (`tuple[str, str]`):
            First and last date of the window, inclusive.
        min_days (`int`, *optional*, defaults to `2`):
            Fewest trading days accepted (two prices make one return).
        source (`str`, *optional*):
            Where the dates come from, for the message.
        asset_class (`str`, *optional*):
            The asset's class, for the hint on how to choose another window.

    Returns:
        `int`: The number of trading days of `asset` inside the window.

    Raises:
        `MarketDataError`: when the window holds fewer than `min_days` days; the message names the asset, the window
            and the date range the data cover.
    """
    start, end = window
    days = sum(start <= date <= end for date in dates)
    if days < min_days:
        where = f"{source}: " if source else ""
        covered = f"{dates[0]} to {dates[-1]}" if len(dates) else "nothing"
        raise MarketDataError(
            f"{where}the {split} window {start} → {end} holds {days} trading day(s) of asset {asset}; at least "
            f"{min_days} are needed. The data of {asset} run from {covered}. Choose windows inside that range, e.g. "
            f"`--windows {asset_class or '<asset_class>'}.{split}=START:END`."
        )
    return days
