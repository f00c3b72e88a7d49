"""Turn checked market rows into a `datasets.DatasetDict` with date-window splits, a dataset card, and a Hub upload.

The flow every preparation script in `datasets/` follows::

    windows = parse_windows(args.windows)  # the paper's windows unless told otherwise
    dataset = build_market_dataset(rows, windows, min_window_days=args.min_window_days)
    save_market_dataset(dataset, args.output_dir, card_info, windows)  # save_to_disk + README.md + windows JSON
    if args.push_to_hub:
        push_market_dataset(dataset, args.repo_id, card_info, windows, private=args.private)

**Windows** are given per asset class and split, `class.split=START:END` (dates inclusive), comma-separated, or as
a JSON file in the layout of `flagtrl.data.schema.DEFAULT_WINDOWS`; whatever is not given keeps the paper's window::

    --windows stock.train=2020-07-01:2020-09-30,stock.test=2020-10-01:2021-05-06
    --windows crypto.test=2023-04-05:2023-06-30
    --windows my_windows.json    # {"stock": {"train": ["2020-07-01", "2020-09-30"], "test": [...]}, "crypto": {...}}

Split names other than `train` and `test` (say `valid`) are allowed and become splits of their own.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.compute as pc
from datasets import Dataset, DatasetDict, List
from huggingface_hub import DatasetCard, DatasetCardData, HfApi

from flagtrl.data.schema import ASSET_CLASSES, DEFAULT_WINDOWS, FULL_SPLIT, MARKET_FEATURES, WINDOWS_FILE
from flagtrl.data.validation import MarketDataError, check_window, validate_rows


Windows = dict[str, dict[str, tuple[str, str]]]

COLUMN_DESCRIPTIONS = {
    "date": "Trading day, ISO `YYYY-MM-DD`.",
    "asset": "Ticker, upper case (`MSFT`, `BTC`).",
    "asset_class": "`stock` (252 trading days a year) or `crypto` (365).",
    "close": "Closing price (adjusted where the source adjusts), > 0.",
    "open": "Opening price; null when the source has none.",
    "high": "Highest price of the day; null when the source has none.",
    "low": "Lowest price of the day; null when the source has none.",
    "volume": "Traded volume; null when the source has none.",
    "news": "News items published that day (possibly empty).",
    "filings": "Filing summaries published that day, each prefixed `10-K: ` or `10-Q: ` (possibly empty).",
}

_WINDOW_ITEM = re.compile(
    r"^\s*(?P<asset_class>\w+)\.(?P<split>\w+)\s*=\s*(?P<start>[^:\s]+)\s*:\s*(?P<end>[^:\s]+)\s*$"
)


def _check_windows(windows: Windows, where: str) -> Windows:
    checked: Windows = {}
    for asset_class, splits in windows.items():
        if asset_class not in ASSET_CLASSES:
            raise ValueError(f"{where}: unknown asset class {asset_class!r}; expected one of {list(ASSET_CLASSES)}.")
        checked[asset_class] = {}
        for split, window in splits.items():
            if split == FULL_SPLIT or not re.fullmatch(r"\w+", split):
                raise ValueError(f"{where}: {split!r} cannot name a window split (`{FULL_SPLIT}` is reserved).")
            if len(window) != 2:
                raise ValueError(f"{where}: window {asset_class}.{split} is {window!r}; expected [start, end].")
            start, end = (str(date) for date in window)
            for date in (start, end):
                try:
                    if pd.Timestamp(date).strftime("%Y-%m-%d") != date:
                        raise ValueError
                except ValueError:
                    raise ValueError(
                        f"{where}: window {asset_class}.{split} has the date {date!r}; write dates as YYYY-MM-DD."
                    ) from None
            if start > end:
                raise ValueError(f"{where}: window {asset_class}.{split} starts on {start}, after its end {end}.")
            checked[asset_class][split] = (start, end)
    return checked


def parse_windows(spec: str | None = None, defaults: Windows = DEFAULT_WINDOWS) -> Windows:
    """Date windows from a command-line value, on top of `defaults`.

    Args:
        spec (`str`, *optional*):
            Comma-separated `class.split=START:END` items, or the path of a JSON file `{class: {split: [start, end]}}`.
            `None` or an empty string gives `defaults`.
        defaults (`dict`, *optional*, defaults to `DEFAULT_WINDOWS`):
            The windows that `spec` overrides, item by item.

    Returns:
        `dict[str, dict[str, tuple[str, str]]]`: Windows per asset class and split, dates inclusive.

    Raises:
        `ValueError`: on an item that does not parse, an unknown asset class, a malformed date or a window that ends
            before it starts.
    """
    windows = {asset_class: dict(splits) for asset_class, splits in defaults.items()}
    if not spec:
        return _check_windows(windows, "windows")
    if spec.strip().endswith(".json"):
        path = Path(spec.strip())
        if not path.is_file():
            raise FileNotFoundError(f"No windows file at {path}.")
        try:
            given = json.loads(path.read_text())
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}: not valid JSON ({error}).") from None
        if not isinstance(given, dict) or not all(isinstance(splits, dict) for splits in given.values()):
            raise ValueError(f'{path}: expected {{"stock": {{"train": ["2020-07-01", "2020-09-30"], ...}}, ...}}.')
        for asset_class, splits in given.items():
            windows.setdefault(asset_class, {}).update(splits)
        return _check_windows(windows, str(path))
    for item in spec.split(","):
        match = _WINDOW_ITEM.match(item)
        if match is None:
            raise ValueError(
                f"Cannot read the window {item.strip()!r}; write `class.split=START:END`, "
                f"e.g. `stock.train=2020-07-01:2020-09-30`."
            )
        windows.setdefault(match["asset_class"], {})[match["split"]] = (match["start"], match["end"])
    return _check_windows(windows, f"--windows {spec}")


def _split_names(windows: Windows) -> list[str]:
    return list(dict.fromkeys(split for splits in windows.values() for split in splits))


def build_market_dataset(
    rows: pd.DataFrame,
    windows: Windows = DEFAULT_WINDOWS,
    min_window_days: int = 2,
    source: str = "rows",
    sort: bool = False,
) -> DatasetDict:
    """Check market rows and split them by date window into a `DatasetDict` in the `MARKET_FEATURES` schema.

    Args:
        rows (`pandas.DataFrame`):
            One row per asset and trading day (see `flagtrl.data.schema`); checked with `validate_rows`. Optional
            columns that are absent become null (prices) or empty lists (`news`, `filings`).
        windows (`dict`, *optional*, defaults to `DEFAULT_WINDOWS`):
            Date windows per asset class and split, dates inclusive (see `parse_windows`).
        min_window_days (`int`, *optional*, defaults to `2`):
            Fewest trading days each asset must have in each window of its class.
        source (`str`, *optional*, defaults to `"rows"`):
            What the rows were read from, for error messages.
        sort (`bool`, *optional*, defaults to `False`):
            Sort dates within each asset instead of rejecting dates out of order.

    Returns:
        `datasets.DatasetDict`: Splits `full` (every row) and one per window name (`train`, `test`), each sorted by
        asset, then date.

    Raises:
        `MarketDataError`: on bad rows (see `validate_rows`), an asset class without windows, or a window in which an
            asset has fewer than `min_window_days` trading days.
    """
    windows = _check_windows(windows, "windows")
    rows = validate_rows(rows, source, sort=sort)
    for (asset, asset_class), dates in rows.groupby(["asset", "asset_class"], sort=False)["date"]:
        if asset_class not in windows:
            raise MarketDataError(
                f"{source}: asset {asset} is of class {asset_class}, for which no windows are given (only for "
                f"{list(windows)}); add them, e.g. `--windows {asset_class}.train=START:END,{asset_class}.test=START:END`."
            )
        for split, window in windows[asset_class].items():
            check_window(dates.tolist(), asset, split, window, min_window_days, source, asset_class)

    for name, feature in MARKET_FEATURES.items():
        if name not in rows.columns:
            rows[name] = [[] for _ in range(len(rows))] if isinstance(feature, List) else np.nan
    # Through Arrow in one go (NaN becomes null); `Dataset.from_dict` would encode the rows one by one.
    full = Dataset.from_pandas(rows[list(MARKET_FEATURES)], features=MARKET_FEATURES, preserve_index=False)

    splits = {FULL_SPLIT: full}
    for split in _split_names(windows):
        inside = np.zeros(len(rows), dtype=bool)
        for asset_class, class_windows in windows.items():
            if split in class_windows:
                start, end = class_windows[split]
                inside |= (
                    (rows["asset_class"] == asset_class) & (rows["date"] >= start) & (rows["date"] <= end)
                ).to_numpy()
        splits[split] = full.select(np.flatnonzero(inside))
    return DatasetDict(splits)


@dataclass
class DatasetCardInfo:
    """What a dataset card says about where the data come from.

    Args:
        pretty_name (`str`): Title of the dataset.
        license (`str`): Hub licence id of the data (`mit`, `bsd-3-clause`, `other`, `unknown`).
        source (`str`): One line on where the rows come from.
        source_url (`str`, *optional*): Link to the source.
        citation (`str`, *optional*): BibTeX of the source.
        description (`str`, *optional*): A paragraph for the top of the card.
        tags (`list[str]`, *optional*): Hub tags added to the default ones.
        prepare_command (`str`, *optional*): The command that wrote the dataset.
    """

    pretty_name: str
    license: str
    source: str
    source_url: str | None = None
    citation: str | None = None
    description: str = ""
    tags: list[str] = field(default_factory=list)
    prepare_command: str | None = None


def _feature_type(feature) -> str:
    if isinstance(feature, List):
        return f"list[{_feature_type(feature.feature)}]"
    return feature.dtype


def _size_category(rows: int) -> str:
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if rows < limit:
            return name
    return "1M<n<10M"


def asset_summary(dataset: DatasetDict) -> list[dict]:
    """Per asset: class, first and last date, and row counts per split (as the dataset card lists them)."""
    summary = []
    frames = {
        name: split.select_columns(["asset", "asset_class", "date"]).to_pandas() for name, split in dataset.items()
    }
    for (asset, asset_class), dates in frames[FULL_SPLIT].groupby(["asset", "asset_class"])["date"]:
        entry = {"asset": asset, "asset_class": asset_class, "first_date": dates.min(), "last_date": dates.max()}
        entry.update({f"{name}_rows": int((frame["asset"] == asset).sum()) for name, frame in frames.items()})
        summary.append(entry)
    return summary


def market_dataset_card(dataset: DatasetDict, info: DatasetCardInfo, windows: Windows) -> DatasetCard:
    """The dataset card (`README.md`): YAML metadata for the Hub, then source, licence, windows, assets and columns."""
    assets = asset_summary(dataset)
    full = dataset[FULL_SPLIT]
    has_text = any(pc.sum(pc.list_value_length(full.data.column(column))).as_py() for column in ("news", "filings"))
    card_data = DatasetCardData(
        license=info.license,
        pretty_name=info.pretty_name,
        language=["en"] if has_text else None,
        size_categories=[_size_category(len(full))],
        task_categories=["reinforcement-learning", "time-series-forecasting"],
        tags=list(dict.fromkeys(["finance", "trading", "flagtrl", *info.tags])),
        source={"name": info.source, "url": info.source_url},
        windows={
            asset_class: {split: list(window) for split, window in splits.items()}
            for asset_class, splits in windows.items()
        },
        assets=assets,
    )
    splits = list(dataset)
    lines = [f"# {info.pretty_name}", ""]
    if info.description:
        lines += [info.description, ""]
    lines += [
        "Market episodes in the flagtrl market-episode schema: one row per asset and trading day. "
        f"Splits: `{FULL_SPLIT}` holds every row (the history an agent looks back on); "
        + ", ".join(f"`{split}`" for split in splits if split != FULL_SPLIT)
        + " hold the rows inside each asset class's window (dates inclusive).",
        "",
        "## Source and licence",
        "",
        f"- Source: {info.source}" + (f" ({info.source_url})" if info.source_url else ""),
        f"- Licence: `{info.license}`",
        "",
        "## Windows",
        "",
        "| asset class | split | first date | last date |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {asset_class} | {split} | {start} | {end} |"
        for asset_class, class_windows in windows.items()
        for split, (start, end) in class_windows.items()
    ]
    lines += [
        "",
        f"The same windows are stored in `{WINDOWS_FILE}` beside the data.",
        "",
        "## Assets",
        "",
        "| asset | class | first date | last date | " + " | ".join(f"{split} rows" for split in splits) + " |",
        "|---|---|---|---|" + "---|" * len(splits),
    ]
    lines += [
        f"| {entry['asset']} | {entry['asset_class']} | {entry['first_date']} | {entry['last_date']} | "
        + " | ".join(str(entry[f"{split}_rows"]) for split in splits)
        + " |"
        for entry in assets
    ]
    lines += ["", "## Columns", "", "| column | type | description |", "|---|---|---|"]
    lines += [
        f"| `{name}` | `{_feature_type(feature)}` | {COLUMN_DESCRIPTIONS.get(name, '')} |"
        for name, feature in MARKET_FEATURES.items()
    ]
    lines += [
        "",
        "## Usage",
        "",
        "```python",
        "from flagtrl.data.schema import load_market_dataset, market_series",
        "",
        'dataset = load_market_dataset("path/to/this/folder")  # or datasets.load_dataset("<repo_id>") from the Hub',
        f'series = market_series(dataset, "{assets[0]["asset"] if assets else "MSFT"}")',
        "```",
    ]
    if info.prepare_command:
        lines += ["", "## How it was made", "", "```bash", info.prepare_command, "```"]
    if info.citation:
        lines += ["", "## Citation", "", "```bibtex", info.citation.strip(), "```"]
    return DatasetCard(f"---\n{card_data.to_yaml()}\n---\n\n" + "\n".join(lines) + "\n")


def _windows_json(windows: Windows) -> str:
    return json.dumps({k: {s: list(w) for s, w in v.items()} for k, v in windows.items()}, indent=2) + "\n"


def save_market_dataset(
    dataset: DatasetDict, output_dir: str | Path, info: DatasetCardInfo, windows: Windows = DEFAULT_WINDOWS
) -> Path:
    """Write the dataset (`save_to_disk`), its card (`README.md`) and its windows (`WINDOWS_FILE`) to `output_dir`.

    The folder then loads with `datasets.load_from_disk` or `flagtrl.data.schema.load_market_dataset`, and
    `flagtrl.data.schema.load_windows` reads back the windows it was split with. Everything is written to a sibling
    folder first and renamed into place, so a failure half-way leaves no folder that loads as a dataset; an existing
    dataset folder at `output_dir` is replaced, any other non-empty folder is refused.

    Raises:
        `FileExistsError`: when `output_dir` exists and is neither empty nor a dataset folder.
    """
    output_dir = Path(output_dir)
    if output_dir.exists() and not (
        output_dir.is_dir() and (not any(output_dir.iterdir()) or (output_dir / "dataset_dict.json").is_file())
    ):
        raise FileExistsError(f"{output_dir} exists and is not a dataset folder; choose another --output_dir.")
    partial = output_dir.with_name(f".{output_dir.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        dataset.save_to_disk(str(partial))
        market_dataset_card(dataset, info, windows).save(partial / "README.md")
        (partial / WINDOWS_FILE).write_text(_windows_json(windows))
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    if output_dir.exists():
        shutil.rmtree(output_dir)
    partial.rename(output_dir)
    return output_dir


def push_market_dataset(
    dataset: DatasetDict,
    repo_id: str,
    info: DatasetCardInfo,
    windows: Windows = DEFAULT_WINDOWS,
    private: bool = False,
    token: str | None = None,
) -> str:
    """Upload the dataset, its card and its windows file to a Hub dataset repository.

    The card goes up first: `DatasetDict.push_to_hub` then merges its `dataset_info` and `configs` metadata into that
    README instead of writing a bare one. The token comes from `token`, `HF_TOKEN` or `huggingface-cli login`; it is
    never printed.

    Returns:
        `str`: The URL of the dataset repository.
    """
    api = HfApi(token=token)
    repo_url = api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
    market_dataset_card(dataset, info, windows).push_to_hub(
        repo_id, token=token, commit_message="Add the dataset card"
    )
    api.upload_file(
        path_or_fileobj=_windows_json(windows).encode(),
        path_in_repo=WINDOWS_FILE,
        repo_id=repo_id,
        repo_type="dataset",
        commit_message="Add the date windows",
    )
    dataset.push_to_hub(repo_id, private=private, token=token, commit_message="Upload the market episodes")
    return str(repo_url)


@dataclass
class MarketDatasetArguments:
    """Where a preparation script writes its dataset, how it splits it, and whether it uploads it.

    Args:
        output_dir (`str`): Folder to write the dataset, its card and its windows to.
        windows (`str`, *optional*): Windows overriding the paper's, `class.split=START:END,...` or a JSON file.
        min_window_days (`int`, *optional*, defaults to `2`): Fewest trading days per asset and window.
        push_to_hub (`bool`, *optional*, defaults to `False`): Also upload the dataset to the Hub.
        repo_id (`str`, *optional*): Hub dataset repository, `user/name`; needed with `push_to_hub`.
        private (`bool`, *optional*, defaults to `False`): Create the Hub repository private.
    """

    output_dir: str = field(metadata={"help": "Folder to write the dataset, its card and its windows to."})
    windows: str | None = field(
        default=None,
        metadata={
            "help": "Windows overriding the paper's: `class.split=START:END` items, comma-separated "
            "(e.g. `stock.train=2020-07-01:2020-09-30,crypto.test=2023-04-05:2023-11-05`), or a JSON file."
        },
    )
    min_window_days: int = field(default=2, metadata={"help": "Fewest trading days each asset needs in a window."})
    push_to_hub: bool = field(default=False, metadata={"help": "Also upload the dataset to the Hugging Face Hub."})
    repo_id: str | None = field(default=None, metadata={"help": "Hub dataset repository (`user/name`)."})
    private: bool = field(default=False, metadata={"help": "Create the Hub repository private."})

    def __post_init__(self):
        if self.push_to_hub and not self.repo_id:
            raise ValueError("--push_to_hub needs --repo_id (e.g. `--repo_id your-name/investorbench-episodes`).")


def write_market_dataset(
    dataset: DatasetDict, output_args: MarketDatasetArguments, info: DatasetCardInfo, windows: Windows
) -> None:
    """What every preparation script ends with: save the dataset and its card, report it, push it when asked."""
    save_market_dataset(dataset, output_args.output_dir, info, windows)
    print(
        f"Wrote {output_args.output_dir}: " + ", ".join(f"{name} {len(split)} rows" for name, split in dataset.items())
    )
    if output_args.push_to_hub:
        url = push_market_dataset(dataset, output_args.repo_id, info, windows, private=output_args.private)
        print(f"Pushed to {url}")
