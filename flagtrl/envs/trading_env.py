"""The single-asset trading environment: FLAG-Trader's MDP (paper §3) as a `gymnasium.Env`.

State s_t = (market m_t, account b_t). Actions (index: 0 sell, 1 hold, 2 buy).

**Timing (one convention for the account, the reward and every metric).** The state s_t shows day t's close P_t. The
decision taken on day t executes at that close P_t (a market-on-close order, InvestorBench's evaluation assumption),
and the step ends at day t+1's close: the account, the reward and both metric conventions credit the decision with
the interval P_t -> P_{t+1}, whose log return is ln(P_{t+1} / P_t) — exactly the a_t * ln(p_{t+1} / p_t) that the
paper's metrics score. The paper's MDP writes the trade at "P_{t+1}"; read with its state indexing (the state after
the step is valued at P_{t+1}) and its metrics, this is the same interval. News published on day t may forecast that
interval and nothing later (see `flagtrl.data.synthetic`).

- `all_in` mode (the paper's MDP; `paper` is its deprecated alias): buy puts all cash into the asset, sell liquidates every share, hold keeps the
  account. Invalid actions (buy with no cash, sell with no shares) are masked (eq. 8); an invalid action that reaches
  `step` anyway is executed as hold and reported in `info`.
- `position` mode (InvestorBench's scoring): the action is the position held from day t to t+1 (long +1 / flat 0 /
  short -1); the account earns a * (P_{t+1} / P_t - 1) on its value.

Transaction costs (basis points of the traded notional) are charged at execution. The reward is chosen by name
(`flagtrl.rewards`): the paper's Sharpe difference (default), the differential Sharpe ratio or the log return.

**Episodes and time limits.** An episode ends with `truncated=True` after `episode_length` steps (a time limit, not
a state of the MDP: learners should bootstrap the value of the last state, as `FlagPPOTrainer` does) and with
`terminated=True` only when the account is wiped out (value <= 0, reachable by a short position in `position` mode).

The numeric observation satisfies gymnasium's API; the full point-in-time state that LLM agents read (prices up to t,
the day's news and filings, the account and the recent decisions) is `info["state"]`, a `TradingState` built only
from data dated on or before t.
"""

from __future__ import annotations

import copy
import logging

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from ..actions import ACTION_VALUES, ACTIONS, BUY, HOLD, SELL, action_mask, resolve_trading_mode
from ..data.schema import MarketSeries
from ..rewards import REWARDS, get_reward_function
from ..state import TradingState


logger = logging.getLogger(__name__)


class TradingEnv(gym.Env):
    """Trade one asset over a date window of a `MarketSeries`.

    Args:
        series (`MarketSeries`): The asset's point-in-time daily data.
        window (`tuple[str, str]` or `None`, *optional*): Inclusive date window the episodes are drawn from;
            the whole series when `None`.
        episode_length (`int` or `None`, *optional*, defaults to `65`): Steps per episode (the paper's
            `max_episode_steps`); `None` plays the whole window once.
        random_start (`bool`, *optional*, defaults to `True`): Draw each episode's first day uniformly from the
            window (seeded by `reset(seed=...)`); `False` always starts on the window's first day.
        initial_cash (`float`, *optional*, defaults to `100_000.0`): Starting cash C_0.
        transaction_cost_bps (`float`, *optional*, defaults to `0.0`): Cost in basis points of the traded notional.
        mode (`str`, *optional*, defaults to `"all_in"`): `all_in` (the paper's all-in/liquidate MDP) or `position`
            (long/flat/short); `paper` is a deprecated alias of `all_in`.
        risk_free (`float`, *optional*, defaults to `0.0`): r_f per step in the Sharpe reward, in account currency.
        reward (`str`, *optional*, defaults to `"sharpe_delta"`): `sharpe_delta` (paper eq. 3),
            `differential_sharpe` (Moody & Saffell 2001) or `log_return` (see `flagtrl.rewards`).
        reward_kwargs (`dict`, *optional*): Parameters of the reward (`sharpe_min_periods`, `dsr_eta`,
            `dsr_initial_volatility`), passed to `flagtrl.rewards.get_reward_function`.
        price_lookback (`int`, *optional*, defaults to `10`): Past prices in the numeric observation.
        decision_history (`int`, *optional*, defaults to `10`): Past decisions kept in `TradingState`.
    """

    metadata = {"render_modes": ["ansi"]}

    def __init__(
        self,
        series: MarketSeries,
        window: tuple[str, str] | None = None,
        episode_length: int | None = 65,
        random_start: bool = True,
        initial_cash: float = 100_000.0,
        transaction_cost_bps: float = 0.0,
        mode: str = "all_in",
        risk_free: float = 0.0,
        price_lookback: int = 10,
        decision_history: int = 10,
        render_mode: str | None = None,
        reward: str = "sharpe_delta",
        reward_kwargs: dict | None = None,
    ):
        mode = resolve_trading_mode(mode)
        if initial_cash <= 0:
            raise ValueError(f"initial_cash must be positive, got {initial_cash}.")
        if transaction_cost_bps < 0:
            raise ValueError(f"transaction_cost_bps must be >= 0, got {transaction_cost_bps}.")
        self.series = series
        start, end = window if window is not None else (series.dates[0], series.dates[-1])
        self.first, self.last = series.window(start, end, min_days=2)
        window_steps = self.last - self.first
        if episode_length is not None and episode_length > window_steps:
            raise ValueError(
                f"episode_length={episode_length} needs {episode_length + 1} trading days, but the window "
                f"{start} → {end} of {series.asset} holds {window_steps + 1}."
            )
        self.episode_length = episode_length if episode_length is not None else window_steps
        if random_start and self.episode_length == window_steps:
            logger.warning(
                "Every episode of %s spans its whole window %s → %s (%d steps): random starts cannot vary it, so each "
                "episode replays the same path. Use a longer window or shorter episodes to train.",
                series.asset,
                series.dates[self.first],
                series.dates[self.last],
                window_steps,
            )
        if reward not in REWARDS:
            raise ValueError(f"Unknown reward {reward!r}; choose one of {list(REWARDS)}.")
        self.reward_name = reward
        self.reward_function = get_reward_function(reward, risk_free=risk_free, **(reward_kwargs or {}))
        self.random_start = random_start
        self.initial_cash = float(initial_cash)
        self.cost_rate = transaction_cost_bps / 10_000.0
        self.mode = mode
        self.risk_free = risk_free
        self.price_lookback = price_lookback
        self.decision_history = decision_history
        self.render_mode = render_mode

        self.action_space = spaces.Discrete(len(ACTIONS))
        self.observation_space = spaces.Dict(
            {
                # Past closes relative to today's (scale-free), oldest first, padded with the first available price.
                "prices": spaces.Box(0.0, np.inf, shape=(price_lookback,), dtype=np.float64),
                # Cash share, asset share of the account value, account value relative to the initial cash.
                # Unbounded: a short position's cash share exceeds 2 when the price rises.
                "account": spaces.Box(-np.inf, np.inf, shape=(3,), dtype=np.float64),
                "action_mask": spaces.MultiBinary(len(ACTIONS)),
            }
        )
        self._t = self.first

    # --- gymnasium API -------------------------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        options = options or {}
        latest_start = self.last - self.episode_length
        if "start_date" in options:
            self.start = self.series.index_of(options["start_date"], "left")
            if not self.first <= self.start <= latest_start:
                raise ValueError(
                    f"start_date {options['start_date']} leaves no room for {self.episode_length} steps in the window "
                    f"{self.series.dates[self.first]} → {self.series.dates[self.last]}."
                )
        elif self.random_start:
            self.start = int(self.np_random.integers(self.first, latest_start + 1))
        else:
            self.start = self.first
        self._t = self.start
        self.cash, self.shares, self.position = self.initial_cash, 0.0, 0
        self.account_value = self.initial_cash
        self.pnl: list[float] = []
        self.account_values: list[float] = [self.initial_cash]
        self.past_actions: list[str] = []
        self.past_rewards: list[float] = []
        self.past_values: list[float] = []
        return self._observation(), self._info()

    def step(self, action):
        action = int(action)
        if not self.action_space.contains(action):
            raise ValueError(f"Action {action} is outside the action space {{0: sell, 1: hold, 2: buy}}.")
        mask = self._mask()
        invalid = not mask[action]
        executed = HOLD if invalid else action
        price_now, price_next = float(self.series.close[self._t]), float(self.series.close[self._t + 1])
        value_before = self.account_value
        # The decision of day t executes at day t's close and earns P_t -> P_{t+1} (module docstring: timing).
        if self.mode == "all_in":
            self._execute_all_in(executed, price_now)
        else:
            self._execute_position(executed, price_now)
        self._t += 1
        self.account_value = float(self.cash + self.shares * price_next)
        self.pnl.append(self.account_value - value_before)
        self.account_values.append(self.account_value)
        reward = float(self.reward_function(np.asarray(self.account_values)))

        self.past_actions.append(ACTIONS[executed])
        self.past_rewards.append(reward)
        self.past_values.append(self.account_value)
        truncated = self._t - self.start >= self.episode_length
        terminated = self.account_value <= 0  # only reachable by a short position in `position` mode
        info = self._info()
        info.update(invalid_action=invalid, executed_action=ACTIONS[executed], pnl=self.pnl[-1])
        return self._observation(), reward, bool(terminated), bool(truncated), info

    def render(self):
        if self.render_mode == "ansi":
            return (
                f"{self.series.asset} {self.series.dates[self._t]} price={self.series.close[self._t]:.2f} "
                f"cash={self.cash:.2f} shares={self.shares:.4f} value={self.account_value:.2f}"
            )
        return None

    # --- the MDP -----------------------------------------------------------------------------------------------
    def _execute_all_in(self, action: int, price: float) -> None:
        if action == BUY:
            self.shares += self.cash * (1.0 - self.cost_rate) / price
            self.cash = 0.0
            self.position = 1
        elif action == SELL:
            self.cash += self.shares * price * (1.0 - self.cost_rate)
            self.shares = 0.0
            self.position = 0

    def _execute_position(self, action: int, price_now: float) -> None:
        # The position is set at today's close and held to the next one (InvestorBench's a_i * ln(p_{i+1} / p_i)).
        target = ACTION_VALUES[action]
        value = self.cash + self.shares * price_now
        value -= abs(target - self.position) * value * self.cost_rate
        self.shares = target * value / price_now
        self.cash = value - self.shares * price_now
        self.position = target

    # --- observations ----------------------------------------------------------------------------------------
    def _mask(self) -> np.ndarray:
        return action_mask(self.cash, self.shares, self.mode)

    def _observation(self) -> dict[str, np.ndarray]:
        history = self.series.close[max(0, self._t - self.price_lookback + 1) : self._t + 1]
        padded = np.concatenate([np.full(self.price_lookback - len(history), history[0]), history])
        value = self.account_value
        return {
            "prices": (padded / self.series.close[self._t]).astype(np.float64),
            "account": np.array(
                [
                    self.cash / value if value else 0.0,
                    1.0 - self.cash / value if value else 0.0,
                    value / self.initial_cash,
                ],
                dtype=np.float64,
            ),
            "action_mask": self._mask(),
        }

    def state(self) -> TradingState:
        """The point-in-time `TradingState` of the current day (built from data up to today only)."""
        t, s, k = self._t, self.series, self.decision_history
        return TradingState(
            asset=s.asset,
            asset_class=s.asset_class,
            date=s.dates[t],
            step=t - self.start,
            dates=s.dates[: t + 1],
            prices=s.close[: t + 1],
            news=list(s.news[t]),
            filings=list(s.filings[t]),
            cash=self.cash,
            shares=self.shares,
            account_value=self.account_value,
            position=self.position,
            past_actions=self.past_actions[-k:],
            past_rewards=self.past_rewards[-k:],
            past_values=self.past_values[-k:],
            action_mask=self._mask(),
            mode=self.mode,
        )

    # --- checkpointing ------------------------------------------------------------------------------------------
    _DYNAMIC_STATE = (
        "start",
        "_t",
        "cash",
        "shares",
        "position",
        "account_value",
        "pnl",
        "account_values",
        "past_actions",
        "past_rewards",
        "past_values",
    )

    def get_state(self) -> dict:
        """The episode's dynamic state and RNG, to checkpoint a rollout mid-episode (the data are not included)."""
        state = {name: copy.deepcopy(getattr(self, name)) for name in self._DYNAMIC_STATE}
        state["np_random"] = self.np_random.bit_generator.state
        return state

    def set_state(self, state: dict) -> None:
        """Restore what `get_state` returned: the environment continues exactly where it was saved."""
        for name in self._DYNAMIC_STATE:
            if name == "account_values" and name not in state:  # checkpoints written before rewards had a choice
                state = {**state, name: [self.initial_cash] + list(np.cumsum(state["pnl"]) + self.initial_cash)}
            setattr(self, name, copy.deepcopy(state[name]))
        self.np_random.bit_generator.state = state["np_random"]

    def _info(self) -> dict:
        return {"date": self.series.dates[self._t], "action_mask": self._mask(), "state": self.state()}
