"""Prepare a seeded synthetic market (regime-switching prices, news that forecasts the next day) as a dataset.

    python datasets/prepare_synthetic.py --output_dir data/synthetic --seed 0

Options: `--assets SYNA=stock,SYNC=crypto`, `--news_accuracy 0.7` (0.5: news carry no information; `none`: no news),
`--windows ...` (the series cover each class's windows plus `--history_days` before), `--push_to_hub --repo_id ...`.
"""

import dataclasses
import shlex
import sys
from dataclasses import dataclass, field

from transformers import HfArgumentParser

from flagtrl.data.builder import MarketDatasetArguments, parse_windows, write_market_dataset
from flagtrl.data.synthetic import make_synthetic_dataset, synthetic_card


@dataclass
class SyntheticArguments:
    seed: int = field(default=0, metadata={"help": "Random seed; the same seed gives the same data."})
    assets: str = field(
        default="SYNA=stock,SYNB=stock,SYNC=crypto", metadata={"help": "Comma-separated `TICKER=asset_class` items."}
    )
    news_accuracy: str = field(
        default="0.7",
        metadata={"help": "Probability that the news sentiment matches the next day's move; `none` for no news."},
    )
    history_days: int = field(default=120, metadata={"help": "Calendar days of history before the first window."})


def main(source_args: SyntheticArguments, output_args: MarketDatasetArguments) -> None:
    windows = parse_windows(output_args.windows)
    assets = dict(item.split("=") for item in source_args.assets.split(","))
    accuracy = None if source_args.news_accuracy.lower() == "none" else float(source_args.news_accuracy)
    dataset = make_synthetic_dataset(
        assets,
        seed=source_args.seed,
        windows=windows,
        min_window_days=output_args.min_window_days,
        news_accuracy=accuracy,
        history_days=source_args.history_days,
    )

    card = dataclasses.replace(
        synthetic_card(source_args.seed, accuracy), prepare_command=shlex.join(["python", *sys.argv])
    )
    write_market_dataset(dataset, output_args, card, windows)


if __name__ == "__main__":
    main(*HfArgumentParser((SyntheticArguments, MarketDatasetArguments)).parse_args_into_dataclasses())
