"""Prepare the InvestorBench market episodes (5 stocks, 2 crypto assets; prices, news, 10-K/10-Q) as a dataset.

    python datasets/prepare_investorbench.py --data_dir ../shared/data/investorbench --output_dir data/investorbench

Options: `--assets msft,btc` (default: every `<asset>.json` in `--data_dir`), `--windows stock.train=START:END,...`
(default: the paper's windows), `--push_to_hub --repo_id you/investorbench-episodes [--private]`.
The data are InvestorBench's (felis33/INVESTOR-BENCH, MIT licence); the card written beside them says so.
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
from flagtrl.data.sources import INVESTORBENCH_CARD, read_investorbench


@dataclass
class InvestorBenchArguments:
    data_dir: str = field(metadata={"help": "Folder with InvestorBench's `<asset>.json` files."})
    assets: str | None = field(
        default=None, metadata={"help": "Comma-separated assets, e.g. `msft,btc` (default: all)."}
    )


def main(source_args: InvestorBenchArguments, output_args: MarketDatasetArguments) -> None:
    windows = parse_windows(output_args.windows)
    rows = read_investorbench(source_args.data_dir, source_args.assets.split(",") if source_args.assets else None)
    dataset = build_market_dataset(rows, windows, min_window_days=output_args.min_window_days, source="investorbench")

    card = dataclasses.replace(INVESTORBENCH_CARD, prepare_command=shlex.join(["python", *sys.argv]))
    write_market_dataset(dataset, output_args, card, windows)


if __name__ == "__main__":
    parser = HfArgumentParser((InvestorBenchArguments, MarketDatasetArguments))
    sys.exit(run_command(lambda: main(*parser.parse_args_into_dataclasses())))
