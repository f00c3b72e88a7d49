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

from flagtrl.cli import run_command
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

    def asset_classes(self) -> dict[str, str]:
        """`--assets` as ticker → asset class."""
        items = [item.strip() for item in self.assets.split(",") if item.strip()]
        if not items or not all(item.count("=") == 1 for item in items):
            raise ValueError(
                f"--assets is {self.assets!r}; write `TICKER=asset_class` items, e.g. `SYNA=stock,SYNC=crypto`."
            )
        return dict(item.split("=") for item in items)

    def accuracy(self) -> float | None:
        """`--news_accuracy` as a probability, `None` for no news."""
        if self.news_accuracy.lower() == "none":
            return None
        try:
            return float(self.news_accuracy)
        except ValueError:
            raise ValueError(
                f"--news_accuracy is {self.news_accuracy!r}; write a probability such as 0.7, or `none`."
            ) from None

    def __post_init__(self):
        self.asset_classes(), self.accuracy()


def main(source_args: SyntheticArguments, output_args: MarketDatasetArguments) -> None:
    windows = parse_windows(output_args.windows)
    assets, accuracy = source_args.asset_classes(), source_args.accuracy()
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
    parser = HfArgumentParser((SyntheticArguments, MarketDatasetArguments))
    sys.exit(run_command(lambda: main(*parser.parse_args_into_dataclasses())))
