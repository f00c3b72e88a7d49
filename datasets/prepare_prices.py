"""Prepare a price-only market dataset from a CSV file, from skfolio's bundled S&P 500 closes, or from Yahoo Finance.

    python datasets/prepare_prices.py --source csv --csv prices.csv --asset MSFT --output_dir data/msft
    python datasets/prepare_prices.py --source skfolio --assets MSFT,JNJ --output_dir data/skfolio
    python datasets/prepare_prices.py --source yfinance --assets MSFT,JNJ --start 2020-01-01 --end 2021-05-06 \
        --output_dir data/yfinance

CSV files may be long (a date, a close and a ticker column, in the usual spellings: `Date`/`timestamp`,
`Close`/`Adj Close`/`price`, `Ticker`/`Symbol`) or wide (a date column and one price column per ticker); see
`flagtrl.data.sources.read_price_csv`. skfolio's data (adjusted closes of 20 US large caps, 1990-01-02 to 2022-12-28)
ship inside the package: no network. yfinance needs `pip install 'flagtrl[yfinance]'` and the network.
Dates like `01/02/2021` need `--date_format dayfirst` (or `monthfirst`, or `%d/%m/%Y`) unless the file decides it.
Common options: `--start/--end` (keep only those dates), `--windows ...`, `--push_to_hub --repo_id ...`.
"""

import dataclasses
import shlex
import sys
from dataclasses import dataclass, field

from transformers import HfArgumentParser

from flagtrl.cli import run_command
from flagtrl.data.builder import (
    MarketDatasetArguments,
    build_market_dataset,
    parse_windows,
    write_market_dataset,
)
from flagtrl.data.sources import (
    SKFOLIO_CARD,
    YFINANCE_CARD,
    clip_dates,
    csv_card,
    read_price_csv,
    read_skfolio,
    read_yfinance,
)
from flagtrl.data.validation import check_date_format


@dataclass
class PriceSourceArguments:
    source: str = field(metadata={"help": "Where the prices come from.", "choices": ["csv", "skfolio", "yfinance"]})
    csv: str | None = field(default=None, metadata={"help": "The CSV file (`--source csv`)."})
    asset: str | None = field(
        default=None, metadata={"help": "Ticker of a CSV file without a ticker column, or the one ticker to keep."}
    )
    assets: str | None = field(default=None, metadata={"help": "Comma-separated tickers to keep (default: all)."})
    asset_class: str = field(default="stock", metadata={"help": "`stock` or `crypto`, when the source does not say."})
    start: str | None = field(default=None, metadata={"help": "First date to keep (needed for yfinance)."})
    end: str | None = field(default=None, metadata={"help": "Last date to keep (needed for yfinance)."})
    sort: bool = field(default=False, metadata={"help": "Sort a CSV file's dates instead of rejecting them."})
    date_format: str | None = field(
        default=None,
        metadata={
            "help": "How to read a CSV file's dates like 01/02/2021: `dayfirst`, `monthfirst` or a strftime format "
            "(`%d/%m/%Y`). Needed when no date in the file has a number above 12 that decides it."
        },
    )
    license: str = field(default="unknown", metadata={"help": "Hub licence id of the CSV data, for the card."})

    def __post_init__(self):
        if self.source == "csv" and not self.csv:
            raise ValueError("--source csv needs --csv path/to/prices.csv.")
        if self.source == "yfinance" and not (self.assets and self.start and self.end):
            raise ValueError("--source yfinance needs --assets, --start and --end.")
        check_date_format(self.date_format)


def main(source_args: PriceSourceArguments, output_args: MarketDatasetArguments) -> None:
    windows = parse_windows(output_args.windows)
    assets = source_args.assets.split(",") if source_args.assets else None
    if source_args.source == "csv":
        rows = read_price_csv(
            source_args.csv,
            source_args.asset,
            assets,
            asset_class=source_args.asset_class,
            sort=source_args.sort,
            date_format=source_args.date_format,
        )
        card = csv_card(source_args.csv, source_args.license)
    elif source_args.source == "skfolio":
        rows, card = read_skfolio(assets or ([source_args.asset] if source_args.asset else None)), SKFOLIO_CARD
    else:
        rows = read_yfinance(assets, source_args.start, source_args.end, asset_class=source_args.asset_class)
        card = YFINANCE_CARD
    rows = clip_dates(rows, source_args.start, source_args.end)
    dataset = build_market_dataset(
        rows, windows, min_window_days=output_args.min_window_days, source=source_args.csv or source_args.source
    )

    card = dataclasses.replace(card, prepare_command=shlex.join(["python", *sys.argv]))
    write_market_dataset(dataset, output_args, card, windows)


if __name__ == "__main__":
    parser = HfArgumentParser((PriceSourceArguments, MarketDatasetArguments))
    sys.exit(run_command(lambda: main(*parser.parse_args_into_dataclasses())))
