"""Play a portfolio policy through a date window and score its account in both metric conventions.

- `standard`: the textbook metrics of the equity curve V_0..V_n (`flagtrl.metrics.standard_metrics`): simple returns,
  excess over r_f, annualised Sharpe and Sortino, costs included.
- `paper`: the paper's formulas (`flagtrl.metrics.paper_metrics`) applied to the portfolio's daily *log* returns
  r_i = ln(V_{i+1} / V_i): CR = sum(r) = ln(V_n / V_0), AV = std(r)·sqrt(D), SR = (CR / ((n+1)/252)) / AV, MDD of
  prod(1 + r_i). This is the single-asset convention with the equity curve in place of the price and a +1 position;
  for one asset held throughout it reduces to the paper's buy-and-hold (up to the one-day execution lag and costs).

The trajectory has one row per trading day: the account at that day's close (value, cash, weights), the cost and
turnover of the rebalance executed at that close, and the policy's decision taken that day (target weights and, for a
`Team`, the manager's method and the risk notes); the last day has no decision.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..backtest import ResultRecord
from ..metrics import TradingMetrics, paper_metrics, standard_metrics
from .environment import AlignedMarket, PortfolioEnv


@dataclass
class PortfolioBacktestResult(ResultRecord):
    """The outcome of one portfolio policy over one window.

    Args:
        policy (`str`), assets (`list[str]`), start (`str`), end (`str`): What was played.
        trajectory (`list[dict]`): One row per trading day (module docstring).
        metrics (`dict[str, TradingMetrics]`): Metrics by convention (`paper`, `standard`).
        total_cost (`float`): Transaction costs paid, in account currency.
        methods (`dict[str, int]`): How often the manager took each path (`max_sharpe`, `min_variance`, ...), for
            policies that have a manager.
        dropped_days (`dict[str, list[str]]`): Days in the window dropped because an asset had no price.
    """

    policy: str
    assets: list[str]
    start: str
    end: str
    trajectory: list[dict]
    metrics: dict[str, TradingMetrics]
    total_cost: float = 0.0
    methods: dict[str, int] = field(default_factory=dict)
    dropped_days: dict[str, list[str]] = field(default_factory=dict)

    @property
    def equity(self) -> np.ndarray:
        return np.array([row["account_value"] for row in self.trajectory])

    @property
    def dates(self) -> list[str]:
        return [row["date"] for row in self.trajectory]

    def weights(self) -> np.ndarray:
        """Weights at each close, shape (days, N + 1), cash last."""
        return np.array([[row["weights"][name] for name in [*self.assets, "cash"]] for row in self.trajectory])


def portfolio_metrics(
    equity: np.ndarray, trading_days_per_year: int, risk_free_rate: float = 0.0
) -> dict[str, TradingMetrics]:
    """Both conventions of an equity curve (module docstring)."""
    equity = np.asarray(equity, dtype=np.float64)
    return {
        "paper": paper_metrics(equity, np.ones(len(equity) - 1), trading_days_per_year),
        "standard": standard_metrics(equity, trading_days_per_year, risk_free_rate=risk_free_rate),
    }


def _named(assets: list[str], weights: np.ndarray) -> dict[str, float]:
    return {name: round(float(w), 10) for name, w in zip([*assets, "cash"], weights)}


def run_portfolio_backtest(
    policy,
    market: AlignedMarket,
    start: str | None = None,
    end: str | None = None,
    initial_cash: float = 100_000.0,
    transaction_cost_bps: float = 0.0,
    risk_free_rate: float = 0.0,
    seed: int = 0,
) -> PortfolioBacktestResult:
    """Run `policy` once through `[start, end]` of `market`.

    Args:
        policy (`PortfolioPolicy`): Sets target weights from each day's `PortfolioState`.
        market (`AlignedMarket`): The assets on their common days (the policy sees history before `start`).
        start (`str`), end (`str`), *optional*: Inclusive window; the whole calendar when `None`.
        initial_cash (`float`, *optional*, defaults to `100_000.0`): Starting cash.
        transaction_cost_bps (`float`, *optional*, defaults to `0.0`): Cost per unit of traded notional, in bps.
        risk_free_rate (`float`, *optional*, defaults to `0.0`): Annual risk-free rate of the `standard` metrics.
        seed (`int`, *optional*, defaults to `0`): Seeds the environment and the policy (`reset`).
    """
    env = PortfolioEnv(
        market, window=(start, end), initial_cash=initial_cash, transaction_cost_bps=transaction_cost_bps
    )
    policy.reset(seed)
    _, info = env.reset(seed=seed)
    state = info["state"]
    trajectory = [
        {
            "date": state.date,
            "account_value": state.account_value,
            "cash": state.cash,
            "weights": _named(market.assets, state.weights),
            "cost": 0.0,
            "turnover": 0.0,
        }
    ]
    methods: dict[str, int] = {}
    done = False
    while not done:
        target = np.asarray(policy.target_weights(state), dtype=np.float64)
        decision = dict(getattr(policy, "last_decision", {}) or {})
        if "method" in decision:
            methods[decision["method"]] = methods.get(decision["method"], 0) + 1
        _, _, terminated, truncated, info = env.step(target)
        trajectory[-1]["target_weights"] = _named(market.assets, info["target_weights"])
        if decision:
            trajectory[-1]["decision"] = decision
        state = info["state"]
        trajectory.append(
            {
                "date": state.date,
                "account_value": state.account_value,
                "cash": state.cash,
                "weights": _named(market.assets, state.weights),
                "cost": info["cost"],
                "turnover": info["turnover"],
            }
        )
        done = terminated or truncated
    equity = np.array([row["account_value"] for row in trajectory])
    first, last = trajectory[0]["date"], trajectory[-1]["date"]
    return PortfolioBacktestResult(
        policy=getattr(policy, "name", type(policy).__name__),
        assets=list(market.assets),
        start=first,
        end=last,
        trajectory=trajectory,
        metrics=portfolio_metrics(equity, market.trading_days_per_year, risk_free_rate),
        total_cost=env.total_cost,
        methods=methods,
        dropped_days=market.dropped_in(first, last),
    )
