"""The `flagtrl` console command.

    flagtrl backtest --dataset data/investorbench --asset MSFT --start 2020-10-01 --end 2021-05-05 \
        --agent buy_and_hold --convention paper --output_json results.json
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from transformers import HfArgumentParser


@dataclass
class BacktestArguments:
    """Arguments of `flagtrl backtest`.

    Parameters:
        dataset (`str`): Folder of a prepared market dataset (`datasets/prepare_*.py`).
        asset (`str`): Ticker to trade, e.g. `MSFT`.
        start (`str`), end (`str`): Evaluation window, inclusive ISO dates.
        agent (`str`): A baseline name (`buy_and_hold`, `random`, `ma_crossover`, `momentum`, `news_sentiment`),
            `flag:<adapter folder or Hub id>` for a trained FLAG policy or `zero_shot:<model>` for an untrained LLM
            (`flagtrl.agents.registry.make_agent`).
        convention (`str`): Metric convention of the printed table (`paper` or `standard`); the JSON has both.
        mode (`str`): Trading mode: `all_in` (all-in buy / liquidate sell) or `position` (long / flat / short).
        seed (`int`): Seed of the environment and of sampled actions.
        greedy (`bool`): Take the most likely action instead of sampling.
        transaction_cost_bps (`float`): Cost of each trade in basis points.
        initial_cash (`float`): Starting cash.
        risk_free_rate (`float`): Annual risk-free rate of the `standard` metrics.
        output_json (`str`, *optional*): Where to write the metrics (both conventions) and the trajectory.
        anonymise (`bool`): LLM agents read anonymised prompts (no ticker, names, dates or price levels;
            `flagtrl.anonymisation`).
    """

    dataset: str = field(metadata={"help": "Folder of a prepared market dataset."})
    asset: str = field(metadata={"help": "Ticker to trade, e.g. MSFT."})
    start: str = field(metadata={"help": "First day of the evaluation window (YYYY-MM-DD)."})
    end: str = field(metadata={"help": "Last day of the evaluation window (YYYY-MM-DD)."})
    agent: str = field(
        default="buy_and_hold",
        metadata={"help": "Baseline name, flag:<adapter folder or Hub id> or zero_shot:<model>."},
    )
    convention: str = field(default="paper", metadata={"help": "Metric convention of the table: paper or standard."})
    mode: str = field(default="all_in", metadata={"help": "Trading mode: all_in or position."})
    seed: int = field(default=0, metadata={"help": "Seed of the environment and of sampled actions."})
    greedy: bool = field(default=True, metadata={"help": "Take the most likely action instead of sampling."})
    transaction_cost_bps: float = field(default=0.0, metadata={"help": "Cost of each trade in basis points."})
    initial_cash: float = field(default=100_000.0, metadata={"help": "Starting cash."})
    risk_free_rate: float = field(default=0.0, metadata={"help": "Annual risk-free rate of the standard metrics."})
    output_json: str | None = field(default=None, metadata={"help": "Where to write metrics and trajectory (JSON)."})
    anonymise: bool = field(default=False, metadata={"help": "LLM agents read anonymised prompts."})

    def __post_init__(self):
        # Dates are compared as ISO strings: `01/10/2020` would silently select the wrong days.
        for name in ("start", "end"):
            if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", getattr(self, name)):
                raise ValueError(f"--{name} is {getattr(self, name)!r}; write dates as YYYY-MM-DD.")
        if self.start > self.end:
            raise ValueError(f"--start {self.start} is after --end {self.end}.")
        if self.convention not in ("paper", "standard"):
            raise ValueError(f"Unknown --convention {self.convention!r}; choose paper or standard.")
        if self.anonymise and not self.agent.startswith(("flag:", "zero_shot:")):
            raise ValueError(
                f"--anonymise changes what an LLM reads; {self.agent!r} is a rule that reads prices only."
            )


def backtest(argv: list[str]) -> int:
    from .agents.registry import make_agent
    from .backtest import run_backtest
    from .data.schema import load_market_dataset, market_series
    from .metrics_table import format_metrics_table
    from .prompt import PromptConfig

    (args,) = HfArgumentParser(BacktestArguments, prog="flagtrl backtest").parse_args_into_dataclasses(args=argv)
    series = market_series(load_market_dataset(args.dataset), args.asset)
    params = {}
    if args.anonymise:  # an adapter keeps its other prompt settings; a zero-shot model gets the default prompt
        if args.agent.startswith("flag:"):
            params["prompt_overrides"] = {"anonymise": True}
        else:
            params["prompt_config"] = PromptConfig(anonymise=True)
    agent = make_agent(args.agent, seed=args.seed, **params)
    result = run_backtest(
        agent,
        series,
        args.start,
        args.end,
        seed=args.seed,
        greedy=args.greedy,
        mode=args.mode,
        initial_cash=args.initial_cash,
        transaction_cost_bps=args.transaction_cost_bps,
        risk_free_rate=args.risk_free_rate,
    )
    title = f"{result.asset} {result.start} → {result.end} ({len(result.trajectory)} trading days, mode={result.mode})"
    print(title)
    print(format_metrics_table({result.asset: {result.agent: result.metrics[args.convention]}}, args.convention))
    if result.wiped_out:
        print(
            f"The account was wiped out on {result.wiped_out_on} (value {result.trajectory[-1]['account_value']:,.2f}): "
            f"the run ended there, before {result.extra['requested_end']}."
        )
    if result.invalid_actions:
        print(f"{result.invalid_actions} masked action(s) were chosen and executed as hold.")
    if args.output_json:
        result.to_json(args.output_json)
        print(f"Wrote {args.output_json}")
    return 0


def benchmark(argv: list[str]) -> int:
    """`flagtrl benchmark --config recipes/benchmark/<name>.yaml [--strict]` (see `flagtrl.benchmark`)."""
    from .benchmark.runner import benchmark_main

    return benchmark_main(argv)


def portfolio(argv: list[str]) -> int:
    """`flagtrl portfolio --config recipes/portfolio/<name>.yaml` (see `flagtrl.portfolio.comparison`)."""
    from .portfolio.comparison import main as portfolio_main

    return portfolio_main(argv)


COMMANDS = {"backtest": backtest, "benchmark": benchmark, "portfolio": portfolio}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        print(f"usage: flagtrl {{{','.join(COMMANDS)}}} [--help]")
        if not argv or argv[0] in ("-h", "--help"):
            return 0
        print(f"flagtrl: error: unknown command {argv[0]!r}; choose one of {', '.join(COMMANDS)}.", file=sys.stderr)
        return 2
    return COMMANDS[argv[0]](argv[1:])


# Exceptions that mean bad input (a file, a column, a value, a flag, a YAML file, a missing optional package), not a bug
# in flagtrl.
INPUT_ERRORS = (ValueError, KeyError, OSError, ModuleNotFoundError, yaml.YAMLError)


def run_command(command: Callable[[], int | None], prog: str | None = None) -> int:
    """Run a command-line entry point so that bad input prints one line, `<prog>: error: <message>`, and exits with 2.

    Shared by the `flagtrl` command and the `datasets/prepare_*.py` scripts. Set `FLAGTRL_DEBUG=1` for the traceback.

    Args:
        command (`Callable[[], int | None]`): Parses the arguments and runs; returns the exit code (`None` is 0).
        prog (`str`, *optional*): Name in the message; the script's file name by default.

    Returns:
        `int`: The exit code.
    """
    try:
        return command() or 0
    except INPUT_ERRORS as error:
        if os.environ.get("FLAGTRL_DEBUG"):
            raise
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"{prog or Path(sys.argv[0]).name}: error: {' '.join(str(message).split())}", file=sys.stderr)
        return 2


def console_main() -> int:
    """Entry point of the `flagtrl` command (see `run_command`)."""
    return run_command(main, "flagtrl")


if __name__ == "__main__":
    sys.exit(console_main())
