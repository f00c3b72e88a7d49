"""Play an agent through an evaluation window and score it in both metric conventions.

The trajectory has one row per trading day of the window (dates inclusive): the price, the action decided that day
(none on the last day, which only closes the books), the position after that decision, and the account (cash, shares,
value at that day's close) before the decision executes at that day's close.

Both conventions credit a decision of day i with the same interval p_i -> p_{i+1} (`flagtrl.envs.trading_env`, timing):
- `paper` metrics score the *decisions*: position a_i (set on day i) earns a_i * ln(p_{i+1} / p_i), InvestorBench's way.
- `standard` metrics score the *account*: its equity curve, with transaction costs.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .actions import ACTIONS
from .agents.base import TradingAgent, choose_action
from .data.schema import MarketSeries
from .envs.trading_env import TradingEnv
from .metrics import TradingMetrics, paper_metrics, standard_metrics


@dataclass
class BacktestResult:
    """The outcome of one agent on one asset and window.

    Args:
        agent (`str`), asset (`str`), start (`str`), end (`str`): What was played.
        seed (`int`): Seed of the environment and of the agent's sampling.
        mode (`str`): Trading mode of the environment.
        trajectory (`list[dict]`): One row per trading day (see module docstring).
        metrics (`dict[str, TradingMetrics]`): Metrics by convention (`paper`, `standard`).
        invalid_actions (`int`): Actions the agent chose although they were masked (executed as hold).
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
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        out = asdict(self)
        out["metrics"] = {name: m.to_dict() for name, m in self.metrics.items()}
        return out

    def to_json(self, path: str | Path) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(self.to_dict(), indent=2))


def run_backtest(
    agent: TradingAgent,
    series: MarketSeries,
    start: str,
    end: str,
    seed: int = 0,
    greedy: bool = True,
    mode: str = "paper",
    initial_cash: float = 100_000.0,
    transaction_cost_bps: float = 0.0,
    risk_free_rate: float = 0.0,
) -> BacktestResult:
    """Run `agent` once through `[start, end]` of `series`.

    Args:
        agent (`TradingAgent`): The agent to play.
        series (`MarketSeries`): The asset's data (the agent sees history before `start`, never after the day).
        start (`str`), end (`str`): Evaluation window, inclusive ISO dates.
        seed (`int`, *optional*, defaults to `0`): Seeds the environment, the agent (`reset`) and action sampling.
        greedy (`bool`, *optional*, defaults to `True`): Take each distribution's argmax instead of sampling it.
        mode (`str`, *optional*, defaults to `"paper"`): Trading mode (`paper` or `position`).
        initial_cash (`float`, *optional*, defaults to `100_000.0`): Starting cash.
        transaction_cost_bps (`float`, *optional*, defaults to `0.0`): Cost per trade, in basis points.
        risk_free_rate (`float`, *optional*, defaults to `0.0`): Annual risk-free rate of the `standard` metrics.
    """
    env = TradingEnv(
        series,
        window=(start, end),
        episode_length=None,
        random_start=False,
        initial_cash=initial_cash,
        transaction_cost_bps=transaction_cost_bps,
        mode=mode,
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
    days = series.trading_days_per_year
    metrics = {
        "paper": paper_metrics(prices[: len(positions) + 1], np.array(positions, dtype=np.float64), days),
        "standard": standard_metrics(equity, days, risk_free_rate=risk_free_rate),
    }
    return BacktestResult(
        agent=getattr(agent, "name", type(agent).__name__),
        asset=series.asset,
        start=trajectory[0]["date"],
        end=trajectory[-1]["date"],
        seed=seed,
        mode=mode,
        trajectory=trajectory,
        metrics=metrics,
        invalid_actions=invalid,
        extra={"actions": list(ACTIONS), "greedy": greedy, "transaction_cost_bps": transaction_cost_bps},
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
    from .data.schema import market_series

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
