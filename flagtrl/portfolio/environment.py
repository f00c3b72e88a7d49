"""The multi-asset portfolio environment: N assets plus cash, actions are target weights, rebalanced every day.

- **Calendar.** The assets are aligned on the days that *all* of them traded (inner join of their calendars). A day
  that some asset lacks is dropped for every asset and logged (`AlignedMarket.dropped_days`); the return across a
  dropped day is then a two-day return. Assets whose calendars do not overlap at all are an error that names them.
- **Action.** A vector of N + 1 non-negative numbers, the target weights of the assets and, last, of cash. It is
  normalised to sum to 1, so `[2, 1, 1]` means 50 % / 25 % / 25 %; the zero vector means all cash. A negative entry
  (below -1e-9: the environment is long-only) or a non-finite one is an error; entries in (-1e-9, 0) are rounding
  noise and clipped to 0.
- **Execution.** The weights decided on day t (from data up to t) are traded at the *next* close P_{t+1}, as in the
  single-asset MDP (`flagtrl.envs.TradingEnv`), so no decision sees the price it trades at. The cost is
  `transaction_cost_bps` of the traded notional of each asset (cash moves are free) and is paid out of the account, so
  that the target weights hold exactly *after* the cost: the post-trade value V' solves
  V' = V - c · sum_i |w_i V' - H_i P_i|, found by fixed-point iteration (a contraction: c · sum_i w_i < 1).
- **Ledger.** Cash, shares of each asset and the account value at each close (`PortfolioState`).
- **Reward.** `log_return` (default): ln(V_{t+1} / V_t); or `sharpe_delta`: FLAG-Trader's Sharpe difference over the
  episode's pnl (`flagtrl.rewards`), as in the single-asset environment.

The first decision trades at the window's second close, so every policy's first daily return is only the cost of its
first trade.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from ..data.schema import MarketSeries
from ..rewards import sharpe_delta_reward


logger = logging.getLogger(__name__)

REWARDS = ("log_return", "sharpe_delta")
# Entries of an action between -NEGATIVE_TOLERANCE and 0 are rounding noise of an optimiser, not a short position.
NEGATIVE_TOLERANCE = 1e-9


# ----------------------------------------------------------------------------------------------------------------
# The aligned market
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class AlignedMarket:
    """Several assets on their common trading days.

    Args:
        assets (`list[str]`): Tickers, in column order.
        dates (`list[str]`): The days on which every asset has a price, sorted.
        close (`np.ndarray`): Closes of shape (len(dates), len(assets)).
        series (`dict[str, MarketSeries]`): Each asset's own full series (its own calendar, news and filings).
        dropped_days (`dict[str, list[str]]`): Each day some asset lacks, with the assets that lack it.
        trading_days_per_year (`int`): 365 when every asset is crypto, else 252.
    """

    assets: list[str]
    dates: list[str]
    close: np.ndarray
    series: dict[str, MarketSeries]
    dropped_days: dict[str, list[str]] = field(default_factory=dict)
    trading_days_per_year: int = 252

    def window(self, start: str | None = None, end: str | None = None, min_days: int = 2) -> tuple[int, int]:
        """Index range `[first, last]` (inclusive) of the common days in `[start, end]` (the whole calendar if None).

        Raises:
            `ValueError`: when the window holds fewer than `min_days` common days.
        """
        dates = np.asarray(self.dates)
        first = int(np.searchsorted(dates, start, "left")) if start else 0
        last = int(np.searchsorted(dates, end, "right")) - 1 if end else len(self.dates) - 1
        if last - first + 1 < min_days:
            raise ValueError(
                f"Window {start} → {end} holds {max(last - first + 1, 0)} day(s) on which all of {self.assets} traded; "
                f"at least {min_days} are needed. Their common days run from {self.dates[0]} to {self.dates[-1]}."
            )
        return first, last

    def dropped_in(self, start: str, end: str) -> dict[str, list[str]]:
        """The dropped days inside `[start, end]`."""
        return {day: missing for day, missing in self.dropped_days.items() if start <= day <= end}


def align_market(series: Sequence[MarketSeries] | Mapping[str, MarketSeries], min_days: int = 2) -> AlignedMarket:
    """Align assets on the days all of them traded, and log the days dropped for each asset that lacks them.

    Args:
        series (`Sequence[MarketSeries]` or `Mapping[str, MarketSeries]`): One series per asset.
        min_days (`int`, *optional*, defaults to `2`): Fewest common days accepted.

    Raises:
        `ValueError`: for no assets, a repeated asset, or assets with fewer than `min_days` common days (the message
            names the assets whose date ranges do not overlap and gives every asset's range).
    """
    series = list(series.values()) if isinstance(series, Mapping) else list(series)
    if not series:
        raise ValueError("A portfolio needs at least one asset.")
    assets = [s.asset for s in series]
    repeated = sorted({a for a in assets if assets.count(a) > 1})
    if repeated:
        raise ValueError(f"Asset(s) {repeated} appear more than once in the portfolio.")
    calendars = [set(s.dates) for s in series]
    common = sorted(set.intersection(*calendars))
    if len(common) < min_days:
        latest_start = max(s.dates[0] for s in series)
        earliest_end = min(s.dates[-1] for s in series)
        culprits = [s.asset for s in series if s.dates[0] == latest_start or s.dates[-1] == earliest_end]
        ranges = ", ".join(f"{s.asset} {s.dates[0]} → {s.dates[-1]}" for s in series)
        raise ValueError(
            f"The calendars of {culprits} do not overlap: the assets share {len(common)} trading day(s), at least "
            f"{min_days} are needed ({ranges})."
        )
    every_day = sorted(set.union(*calendars))
    dropped = {day: [s.asset for s, days in zip(series, calendars) if day not in days] for day in every_day}
    dropped = {day: missing for day, missing in dropped.items() if missing}
    for s, days in zip(series, calendars):
        lacking = [day for day in every_day if day not in days]
        if lacking:
            shown = ", ".join(lacking[:5]) + (", ..." if len(lacking) > 5 else "")
            logger.warning(
                "%s has no price on %d day(s) that other assets traded (%s); those days are dropped for every asset.",
                s.asset,
                len(lacking),
                shown,
            )
    close = np.column_stack([s.close[np.searchsorted(np.asarray(s.dates), common)] for s in series])
    crypto = all(s.asset_class == "crypto" for s in series)
    return AlignedMarket(
        assets=assets,
        dates=common,
        close=close.astype(np.float64),
        series={s.asset: s for s in series},
        dropped_days=dropped,
        trading_days_per_year=365 if crypto else 252,
    )


# ----------------------------------------------------------------------------------------------------------------
# Pure ledger functions
# ----------------------------------------------------------------------------------------------------------------


def normalise_weights(action: Sequence[float] | np.ndarray, num_weights: int) -> np.ndarray:
    """Target weights (N assets + cash) from an action: validated, negatives within rounding clipped, summing to 1.

    Raises:
        `ValueError`: for a wrong shape, a non-finite entry, or a negative one below -1e-9 (long-only).
    """
    weights = np.asarray(action, dtype=np.float64).reshape(-1)
    if weights.size != num_weights:
        raise ValueError(f"An action holds {num_weights} weights (the assets, then cash); got {weights.size}.")
    if not np.all(np.isfinite(weights)):
        raise ValueError(f"Target weights must be finite, got {weights.tolist()}.")
    if np.any(weights < -NEGATIVE_TOLERANCE):
        raise ValueError(f"Target weights must be >= 0 (the portfolio is long-only), got {weights.tolist()}.")
    weights = np.clip(weights, 0.0, None)
    total = weights.sum()
    if total == 0.0:
        weights = np.zeros(num_weights)
        weights[-1] = 1.0  # nothing asked for: hold cash
        return weights
    return weights / total


def current_weights(cash: float, shares: np.ndarray, prices: np.ndarray) -> np.ndarray:
    """Weights of the assets and cash (last) in an account at `prices`."""
    holdings = np.asarray(shares, dtype=np.float64) * np.asarray(prices, dtype=np.float64)
    value = cash + holdings.sum()
    return np.append(holdings, cash) / value


def rebalance(
    cash: float, shares: np.ndarray, prices: np.ndarray, target_weights: np.ndarray, cost_rate: float
) -> tuple[float, np.ndarray, float, float]:
    """Trade an account to `target_weights` at `prices`, paying `cost_rate` of each asset's traded notional.

    The cost comes out of the account so that the weights hold exactly after it: V' = V - c · sum_i |w_i V' - H_i P_i|.

    Args:
        cash (`float`), shares (`np.ndarray`): The account before the trade.
        prices (`np.ndarray`): Execution prices, one per asset.
        target_weights (`np.ndarray`): N asset weights then cash, >= 0, summing to 1.
        cost_rate (`float`): Cost per unit of traded notional (10 bps is 0.001).

    Returns:
        `tuple`: cash and shares after the trade, the cost paid, and the turnover (traded notional / value before).
    """
    prices = np.asarray(prices, dtype=np.float64)
    holdings = np.asarray(shares, dtype=np.float64) * prices
    value = float(cash + holdings.sum())
    if value <= 0:
        raise ValueError(f"Cannot rebalance an account worth {value}.")
    asset_weights = np.asarray(target_weights[:-1], dtype=np.float64)
    post_value = value
    for _ in range(100):
        updated = value - cost_rate * float(np.abs(asset_weights * post_value - holdings).sum())
        if abs(updated - post_value) <= 1e-13 * value:
            post_value = updated
            break
        post_value = updated
    traded = float(np.abs(asset_weights * post_value - holdings).sum())
    new_shares = asset_weights * post_value / prices
    new_cash = float(target_weights[-1] * post_value)
    return new_cash, new_shares, value - post_value, traded / value


# ----------------------------------------------------------------------------------------------------------------
# The point-in-time state
# ----------------------------------------------------------------------------------------------------------------


def _same(a, b) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and np.array_equal(a, b)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


@dataclass(eq=False)
class PortfolioState:
    """What a portfolio policy may know on `date`: nothing dated after it.

    Args:
        assets (`list[str]`): Tickers, in weight order (cash comes last in `weights`).
        asset_classes (`dict[str, str]`): `stock` or `crypto`, per asset.
        date (`str`), step (`int`): The day, and the steps taken in the episode so far.
        dates (`list[str]`), prices (`np.ndarray`): The common calendar up to `date` and its closes, shape (days, N).
        asset_dates (`dict[str, list[str]]`), asset_prices (`dict[str, np.ndarray]`): Each asset's own calendar and
            closes up to `date` (they include days that another asset lacks).
        news (`dict[str, list[str]]`), filings (`dict[str, list[str]]`): Text published on `date`, per asset.
        cash (`float`), shares (`np.ndarray`), account_value (`float`): The ledger at the close of `date`.
        weights (`np.ndarray`): Current weights of the assets and cash (last), at today's closes.
        past_values (`list[float]`): Account values since the episode began, today's last.
        past_rewards (`list[float]`): Rewards of the recent steps, newest last.
    """

    assets: list[str]
    asset_classes: dict[str, str]
    date: str
    step: int
    dates: list[str]
    prices: np.ndarray
    asset_dates: dict[str, list[str]]
    asset_prices: dict[str, np.ndarray]
    news: dict[str, list[str]]
    filings: dict[str, list[str]]
    cash: float
    shares: np.ndarray
    account_value: float
    weights: np.ndarray
    past_values: list[float]
    past_rewards: list[float]

    def trailing_returns(self, window: int) -> np.ndarray:
        """Simple daily returns of the last `window` common days (fewer when the history is shorter), shape (k, N)."""
        prices = self.prices[-(window + 1) :]
        return prices[1:] / prices[:-1] - 1.0

    def __eq__(self, other) -> bool:
        # By value (gymnasium's determinism check compares `info`).
        if not isinstance(other, PortfolioState):
            return NotImplemented
        return all(_same(a, b) for a, b in zip(vars(self).values(), vars(other).values()))


# ----------------------------------------------------------------------------------------------------------------
# The environment
# ----------------------------------------------------------------------------------------------------------------


class PortfolioEnv(gym.Env):
    """Hold N assets and cash over a date window, rebalancing daily to target weights (see the module docstring).

    Args:
        market (`AlignedMarket` or a sequence of `MarketSeries`): The assets (aligned here when given as series).
        window (`tuple[str, str]`, *optional*): Inclusive dates of the episode; the whole common calendar if `None`.
        initial_cash (`float`, *optional*, defaults to `100_000.0`): Starting cash; the account starts all in cash.
        transaction_cost_bps (`float`, *optional*, defaults to `0.0`): Cost in basis points of each asset's traded
            notional.
        lookback (`int`, *optional*, defaults to `20`): Days of trailing returns in the observation.
        reward (`str`, *optional*, defaults to `"log_return"`): `log_return` or `sharpe_delta`.
        decision_history (`int`, *optional*, defaults to `10`): Past rewards kept in `PortfolioState`.

    Observation (a `Dict`): `returns` (lookback, N) trailing simple returns, oldest first, zeros before the data
    begin; `weights` (N + 1,) the current weights; `account_value` (1,) the value over the initial cash. The full
    point-in-time state is `info["state"]`.
    """

    metadata = {"render_modes": ["ansi"]}

    def __init__(
        self,
        market: AlignedMarket | Sequence[MarketSeries],
        window: tuple[str, str] | None = None,
        initial_cash: float = 100_000.0,
        transaction_cost_bps: float = 0.0,
        lookback: int = 20,
        reward: str = "log_return",
        decision_history: int = 10,
        render_mode: str | None = None,
    ):
        if initial_cash <= 0:
            raise ValueError(f"initial_cash must be positive, got {initial_cash}.")
        if transaction_cost_bps < 0:
            raise ValueError(f"transaction_cost_bps must be >= 0, got {transaction_cost_bps}.")
        if reward not in REWARDS:
            raise ValueError(f"Unknown reward {reward!r}; choose one of {list(REWARDS)}.")
        if lookback < 1:
            raise ValueError(f"lookback must be >= 1, got {lookback}.")
        self.market = market if isinstance(market, AlignedMarket) else align_market(market)
        self.first, self.last = self.market.window(*(window or (None, None)))
        dropped = self.market.dropped_in(self.market.dates[self.first], self.market.dates[self.last])
        if dropped:
            logger.info(
                "%d day(s) inside the window %s → %s are dropped because some asset has no price on them.",
                len(dropped),
                self.market.dates[self.first],
                self.market.dates[self.last],
            )
        self.num_assets = len(self.market.assets)
        self.initial_cash = float(initial_cash)
        self.cost_rate = transaction_cost_bps / 10_000.0
        self.lookback = lookback
        self.reward_name = reward
        self.decision_history = decision_history
        self.render_mode = render_mode
        # Each asset's own calendar, to cut its history at a common day without searching every step.
        self._own_index = {
            asset: np.searchsorted(np.asarray(s.dates), self.market.dates) for asset, s in self.market.series.items()
        }

        n = self.num_assets
        self.action_space = spaces.Box(0.0, 1.0, shape=(n + 1,), dtype=np.float64)
        self.observation_space = spaces.Dict(
            {
                "returns": spaces.Box(-1.0, np.inf, shape=(lookback, n), dtype=np.float64),
                "weights": spaces.Box(0.0, 1.0, shape=(n + 1,), dtype=np.float64),
                "account_value": spaces.Box(0.0, np.inf, shape=(1,), dtype=np.float64),
            }
        )
        self._t = self.first
        self._reset_ledger()

    @property
    def episode_length(self) -> int:
        return self.last - self.first

    @property
    def weights(self) -> np.ndarray:
        """Current weights of the assets and cash (last) at today's closes."""
        return current_weights(self.cash, self.shares, self.market.close[self._t])

    # --- gymnasium API -------------------------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._t = self.first
        self._reset_ledger()
        return self._observation(), self._info()

    def step(self, action):
        if self._t >= self.last:
            raise RuntimeError("The episode is over; call reset().")
        target = normalise_weights(action, self.num_assets + 1)
        value_before = self.account_value
        self._t += 1
        self.cash, self.shares, cost, turnover = rebalance(
            self.cash, self.shares, self.market.close[self._t], target, self.cost_rate
        )
        self.account_value = float(self.cash + self.shares @ self.market.close[self._t])
        self.pnl.append(self.account_value - value_before)
        self.past_values.append(self.account_value)
        if self.reward_name == "log_return":
            reward = math.log(self.account_value / value_before)
        else:
            reward = float(sharpe_delta_reward(self.pnl))
        self.past_rewards.append(reward)
        self.total_cost += cost
        info = self._info()
        info.update(target_weights=target, cost=cost, turnover=turnover)
        truncated = self._t >= self.last
        return self._observation(), float(reward), False, bool(truncated), info

    def render(self):
        if self.render_mode == "ansi":
            weights = ", ".join(f"{a}={w:.3f}" for a, w in zip(self.market.assets + ["cash"], self.weights))
            return f"{self.market.dates[self._t]} value={self.account_value:.2f} weights: {weights}"
        return None

    # --- internals ---------------------------------------------------------------------------------------------
    def _reset_ledger(self) -> None:
        self.cash = self.initial_cash
        self.shares = np.zeros(self.num_assets)
        self.account_value = self.initial_cash
        self.total_cost = 0.0
        self.pnl: list[float] = []
        self.past_values: list[float] = [self.initial_cash]
        self.past_rewards: list[float] = []

    def _observation(self) -> dict[str, np.ndarray]:
        t, k = self._t, self.lookback
        prices = self.market.close[max(0, t - k) : t + 1]
        returns = prices[1:] / prices[:-1] - 1.0
        padded = np.vstack([np.zeros((k - len(returns), self.num_assets)), returns])
        return {
            "returns": padded.astype(np.float64),
            "weights": np.clip(self.weights, 0.0, 1.0),
            "account_value": np.array([self.account_value / self.initial_cash], dtype=np.float64),
        }

    def state(self) -> PortfolioState:
        """The point-in-time `PortfolioState` of the current day (built from data up to today only)."""
        t, m = self._t, self.market
        own = {asset: int(self._own_index[asset][t]) for asset in m.assets}
        return PortfolioState(
            assets=list(m.assets),
            asset_classes={a: s.asset_class for a, s in m.series.items()},
            date=m.dates[t],
            step=t - self.first,
            dates=m.dates[: t + 1],
            prices=m.close[: t + 1].copy(),
            asset_dates={a: m.series[a].dates[: own[a] + 1] for a in m.assets},
            asset_prices={a: m.series[a].close[: own[a] + 1].copy() for a in m.assets},
            news={a: list(m.series[a].news[own[a]]) for a in m.assets},
            filings={a: list(m.series[a].filings[own[a]]) for a in m.assets},
            cash=float(self.cash),
            shares=self.shares.copy(),
            account_value=float(self.account_value),
            weights=self.weights,
            past_values=list(self.past_values),
            past_rewards=self.past_rewards[-self.decision_history :],
        )

    def _info(self) -> dict:
        return {"date": self.market.dates[self._t], "state": self.state()}
