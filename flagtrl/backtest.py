"""Play an agent through an evaluation window and score it in both metric conventions.

The trajectory has one row per trading day of the window (dates inclusive): the price, the action decided that day
(none on the last day, which only closes the books), the position after that decision, and the account (cash, shares,
value at that day's close) before the decision executes at that day's close.

Both conventions credit a decision of day i with the same interval p_i -> p_{i+1} (`flagtrl.envs.trading_env`, timing):
- `paper` metrics score the *decisions*: position a_i (set on day i) earns a_i * ln(p_{i+1} / p_i), InvestorBench's way.
- `standard` metrics score the *account*: its equity curve, with transaction costs.

A short position (`position` mode) through a price that more than doubles in a day can take the account to 0 or below.
The environment then ends the episode, and so does the backtest: the trajectory ends on that day (its last row keeps
the true, possibly negative, account value), `wiped_out` and `wiped_out_on` say so, and both conventions' metrics carry
`wiped_out=True` (`flagtrl.metrics`: the `standard` ones report a -100 % return and a 100 % drawdown).

A one-day price move beyond a factor of 1.8 either way is warned about (`SplitLikeMoveWarning`, naming the asset and
the dates): in daily closes it is most often a stock split the data was not adjusted for, which the metrics would read
as a crash or a rally.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .actions import ACTIONS
from .agents.base import TradingAgent, choose_action
from .data.schema import MarketSeries, market_series
from .envs.trading_env import TradingEnv
from .metrics import TradingMetrics, paper_metrics, standard_metrics
from .strict_json import write_json


# A 2-for-1 split halves the close, give or take the day's move: a threshold at a factor of exactly 2 would miss half of
# them. A factor of 1.8 (a fall of 44 % or a rise of 80 % in one day) is rare for a stock's real moves, and this is only
# a warning.
SPLIT_LIKE_FACTOR = 1.8


class SplitLikeMoveWarning(UserWarning):
    """A one-day price move so large that the data likely misses a split adjustment."""


def warn_split_like_moves(asset: str, dates: list[str], prices: np.ndarray) -> None:
    """Warn once per day whose close moves by more than `SPLIT_LIKE_FACTOR` (either way) from the day before."""
    prices = np.asarray(prices, dtype=np.float64)
    moves = np.abs(np.log(prices[1:] / prices[:-1]))
    for i in np.flatnonzero(moves > math.log(SPLIT_LIKE_FACTOR)):
        warnings.warn(
            f"{asset}: the close moves from {prices[i]:g} on {dates[i]} to {prices[i + 1]:g} on {dates[i + 1]} "
            f"({prices[i + 1] / prices[i] - 1:+.1%} in one day); if the prices are not split-adjusted, the metrics "
            "read a split as a real move.",
            SplitLikeMoveWarning,
            stacklevel=3,
        )


class ResultRecord:
    """The shape every backtest result shares: a dataclass of what was played, its trajectory and `metrics` (each
    metric convention's `TradingMetrics`), written as a plain dict or strict JSON. `BacktestResult` (one asset) and
    `flagtrl.portfolio.PortfolioBacktestResult` extend it with their own fields.

    A plain mixin, not a dataclass, so that each result keeps its own field order (the keys of its JSON).
    """

    metrics: dict[str, TradingMetrics]

    def to_dict(self) -> dict:
        out = asdict(self)
        out["metrics"] = {name: m.to_dict() for name, m in self.metrics.items()}
        return out

    def to_json(self, path: str | Path) -> None:
        """Writes `to_dict()` as strict JSON (non-finite metrics as strings, `flagtrl.strict_json`)."""
        write_json(path, self.to_dict(), indent=2)


@dataclass
class BacktestResult(ResultRecord):
    """The outcome of one agent on one asset and window.

    Args:
        agent (`str`), asset (`str`), start (`str`), end (`str`): What was played.
        seed (`int`): Seed of the environment and of the agent's sampling.
        mode (`str`): Trading mode of the environment.
        trajectory (`list[dict]`): One row per trading day (see module docstring).
        metrics (`dict[str, TradingMetrics]`): Metrics by convention (`paper`, `standard`).
        invalid_actions (`int`): Actions the agent chose although they were masked (executed as hold).
        wiped_out (`bool`): The account's value fell to 0 or below (a short through a price that more than doubled)
            and the run ended that day, before the window's end (module docstring).
        wiped_out_on (`str`, *optional*): The date of the close at which the account was wiped out.
        extra (`dict`): Settings of the run; `requested_end` when a wipe-out ended it early.
    """

    agent: str
    asset: str
    start: str
    end: str
    seed: int
    mode: str
    trajectory: list[dict]
    metrics: dict[str, TradingMetrics]
    invalid_actions: int = 0
    wiped_out: bool = False
    wiped_out_on: str | None = None
    extra: dict = field(default_factory=dict)


def run_backtest(
    agent: TradingAgent,
    series: MarketSeries,
    start: str,
    end: str,
    seed: int = 0,
    greedy: bool = True,
    mode: str = "all_in",
    initial_cash: float = 100_000.0,
    transaction_cost_bps: float = 0.0,
    risk_free_rate: float = 0.0,
    reward: str = "sharpe_delta",
    reward_kwargs: dict | None = None,
) -> BacktestResult:
    """Run `agent` once through `[start, end]` of `series`.

    Args:
        agent (`TradingAgent`): The agent to play.
        series (`MarketSeries`): The asset's data (the agent sees history before `start`, never after the day).
        start (`str`), end (`str`): Evaluation window, inclusive ISO dates.
        seed (`int`, *optional*, defaults to `0`): Seeds the environment, the agent (`reset`) and action sampling.
        greedy (`bool`, *optional*, defaults to `True`): Take each distribution's argmax instead of sampling it.
        mode (`str`, *optional*, defaults to `"all_in"`): Trading mode (`all_in` or `position`).
        initial_cash (`float`, *optional*, defaults to `100_000.0`): Starting cash.
        transaction_cost_bps (`float`, *optional*, defaults to `0.0`): Cost per trade, in basis points.
        risk_free_rate (`float`, *optional*, defaults to `0.0`): Annual risk-free rate of the `standard` metrics.
        reward (`str`, *optional*, defaults to `"sharpe_delta"`), reward_kwargs (`dict`, *optional*): The reward of
            the trajectory's `reward` column (`flagtrl.rewards`); it does not enter the metrics.
    """
    env = TradingEnv(
        series,
        window=(start, end),
        episode_length=None,
        random_start=False,
        initial_cash=initial_cash,
        transaction_cost_bps=transaction_cost_bps,
        mode=mode,
        reward=reward,
        reward_kwargs=reward_kwargs,
    )
    rng = np.random.default_rng(seed)
    agent.reset(seed)
    _, info = env.reset(seed=seed)
    trajectory, positions, invalid = [], [], 0
    done = False
    while not done:
        state = info["state"]
        probs = np.asarray(agent.action_distribution(state), dtype=np.float64)
        action = choose_action(probs, rng, greedy)
        _, reward, terminated, truncated, info = env.step(action)
        invalid += int(info["invalid_action"])
        positions.append(env.position)
        trajectory.append(
            {
                "date": state.date,
                "price": state.price,
                "action": info["executed_action"],
                "probabilities": [round(float(p), 6) for p in probs],
                "position": env.position,
                "cash": state.cash,
                "shares": state.shares,
                "account_value": state.account_value,
                "reward": reward,
            }
        )
        done = terminated or truncated
    final = env.state()
    trajectory.append(
        {
            "date": final.date,
            "price": final.price,
            "action": None,
            "probabilities": None,
            "position": env.position,
            "cash": final.cash,
            "shares": final.shares,
            "account_value": final.account_value,
            "reward": None,
        }
    )
    prices = np.array([row["price"] for row in trajectory])
    equity = np.array([row["account_value"] for row in trajectory])
    warn_split_like_moves(series.asset, [row["date"] for row in trajectory], prices)
    days = series.trading_days_per_year
    metrics = {
        "paper": paper_metrics(prices[: len(positions) + 1], np.array(positions, dtype=np.float64), days),
        "standard": standard_metrics(equity, days, risk_free_rate=risk_free_rate),
    }
    extra = {"actions": list(ACTIONS), "greedy": greedy, "transaction_cost_bps": transaction_cost_bps}
    wiped_out = final.account_value <= 0
    if wiped_out:
        # The paper convention has no account: flag its metrics too, so no table shows this run as an ordinary one.
        metrics = {name: dataclasses.replace(m, wiped_out=True) for name, m in metrics.items()}
        extra["requested_end"] = end
    return BacktestResult(
        agent=getattr(agent, "name", type(agent).__name__),
        asset=series.asset,
        start=trajectory[0]["date"],
        end=trajectory[-1]["date"],
        seed=seed,
        mode=env.mode,
        trajectory=trajectory,
        metrics=metrics,
        invalid_actions=invalid,
        wiped_out=wiped_out,
        wiped_out_on=final.date if wiped_out else None,
        extra=extra,
    )


def split_windows(dataset, split: str, assets: list[str]) -> dict[str, tuple[str, str]]:
    """Each asset's date window in a split of a prepared dataset: its first and last date there.

    Raises:
        `ValueError`: when an asset has no rows in the split (the message names the split and the asset).
    """
    if split not in dataset:
        raise ValueError(f"The dataset has no split {split!r}; it has {list(dataset)}.")
    rows = dataset[split].select_columns(["asset", "date"])
    windows: dict[str, list[str]] = {}
    for asset, date in zip(rows["asset"], rows["date"]):
        first_last = windows.setdefault(asset, [date, date])
        first_last[0], first_last[1] = min(first_last[0], date), max(first_last[1], date)
    missing = [a for a in assets if a not in windows]
    if missing:
        raise ValueError(f"Asset(s) {missing} have no rows in the {split!r} split (it holds {sorted(windows)}).")
    return {asset: (windows[asset][0], windows[asset][1]) for asset in assets}


def evaluate_agents(
    agents: dict[str, TradingAgent],
    dataset,
    split: str,
    assets: list[str],
    max_days: int | None = None,
    seed: int = 0,
    **backtest_kwargs,
) -> dict[tuple[str, str], BacktestResult]:
    """Backtest each agent on each asset's window of `split` (its first `max_days` trading days when set)."""
    windows = split_windows(dataset, split, assets)
    results = {}
    for asset in assets:
        series = market_series(dataset, asset)
        start, end = windows[asset]
        if max_days is not None:
            first, last = series.window(start, end)
            end = series.dates[min(last, first + max_days - 1)]
        for name, agent in agents.items():
            result = run_backtest(agent, series, start, end, seed=seed, **backtest_kwargs)
            result.agent = name
            results[(name, asset)] = result
    return results
