"""Classic baselines: buy-and-hold, a seeded random agent, moving-average crossover, momentum, and a news-sentiment
rule (the agent that reads the day's news the way the synthetic markets write it: the upper bound of what a policy can
learn from them)."""

from __future__ import annotations

import numpy as np

from ..actions import BUY, HOLD, NUM_ACTIONS, SELL
from ..state import TradingState
from .base import masked_distribution, one_hot


class BuyAndHoldAgent:
    """Buy on the first day and hold: position +1 every day (the paper's Buy & Hold row)."""

    name = "buy_and_hold"

    def reset(self, seed: int | None = None) -> None:
        pass

    def action_distribution(self, state: TradingState) -> np.ndarray:
        # In `position` mode the action *is* the day's position, so buy-and-hold answers buy every day.
        return one_hot(BUY, state.action_mask)


class RandomAgent:
    """Uniform over the valid actions; its own seeded generator makes runs repeatable.

    Args:
        seed (`int`, *optional*, defaults to `0`): Default seed, replaced by `reset(seed)`.
    """

    name = "random"

    def __init__(self, seed: int = 0):
        self.seed = seed
        self.rng = np.random.default_rng(seed)

    def reset(self, seed: int | None = None) -> None:
        self.rng = np.random.default_rng(self.seed if seed is None else seed)

    def action_distribution(self, state: TradingState) -> np.ndarray:
        # The randomness is in the distribution itself (a one-hot draw), so greedy backtests of it stay random.
        mask = state.action_mask.astype(bool)
        choice = int(self.rng.choice(np.flatnonzero(mask)))
        return one_hot(choice, state.action_mask)


class MovingAverageCrossoverAgent:
    """Long while the short moving average is above the long one, out (or short, in position mode) otherwise.

    Args:
        short_window (`int`, *optional*, defaults to `5`): Days of the fast average.
        long_window (`int`, *optional*, defaults to `20`): Days of the slow average; with less history it holds.
    """

    name = "ma_crossover"

    def __init__(self, short_window: int = 5, long_window: int = 20):
        if not 0 < short_window < long_window:
            raise ValueError(f"Need 0 < short_window < long_window, got {short_window} and {long_window}.")
        self.short_window, self.long_window = short_window, long_window

    def reset(self, seed: int | None = None) -> None:
        pass

    def action_distribution(self, state: TradingState) -> np.ndarray:
        prices = state.prices
        if len(prices) < self.long_window:
            return one_hot(HOLD, state.action_mask)
        fast, slow = prices[-self.short_window :].mean(), prices[-self.long_window :].mean()
        return one_hot(BUY if fast > slow else SELL, state.action_mask)


class MomentumAgent:
    """Time-series momentum: long after a positive `lookback`-day return, out (or short) after a negative one.

    Args:
        lookback (`int`, *optional*, defaults to `10`): Days of the trailing return.
        threshold (`float`, *optional*, defaults to `0.0`): Minimum absolute return to act; hold in between.
    """

    name = "momentum"

    def __init__(self, lookback: int = 10, threshold: float = 0.0):
        self.lookback, self.threshold = lookback, threshold

    def reset(self, seed: int | None = None) -> None:
        pass

    def action_distribution(self, state: TradingState) -> np.ndarray:
        prices = state.prices
        if len(prices) <= self.lookback:
            return one_hot(HOLD, state.action_mask)
        trailing = prices[-1] / prices[-1 - self.lookback] - 1.0
        if trailing > self.threshold:
            return one_hot(BUY, state.action_mask)
        if trailing < -self.threshold:
            return one_hot(SELL, state.action_mask)
        return masked_distribution(np.eye(NUM_ACTIONS)[HOLD], state.action_mask)


class NewsSentimentAgent:
    """Follow the day's news: buy when its `(Sentiment: positive)` tags outnumber the negative ones, sell when the
    negative ones do, hold otherwise (no news, neutral or a tie).

    On a synthetic market (`flagtrl.data.synthetic`) the news published on day t forecasts the move that a decision of
    day t trades, so this agent's edge is what the news accuracy allows: the reference a trained policy is measured
    against. In `all_in` mode sell means liquidate (flat); in `position` mode it means short.
    """

    name = "news_sentiment"

    def reset(self, seed: int | None = None) -> None:
        pass

    def action_distribution(self, state: TradingState) -> np.ndarray:
        positive = sum("(Sentiment: positive)" in item for item in state.news)
        negative = sum("(Sentiment: negative)" in item for item in state.news)
        if positive > negative:
            return one_hot(BUY, state.action_mask)
        if negative > positive:
            return one_hot(SELL, state.action_mask)
        return one_hot(HOLD, state.action_mask)


BASELINE_AGENTS = {
    cls.name: cls
    for cls in (BuyAndHoldAgent, RandomAgent, MovingAverageCrossoverAgent, MomentumAgent, NewsSentimentAgent)
}


def make_baseline(name: str, **kwargs):
    """Build a baseline agent by name (`buy_and_hold`, `random`, `ma_crossover`, `momentum`, `news_sentiment`)."""
    if name not in BASELINE_AGENTS:
        raise ValueError(f"Unknown agent {name!r}; the baselines are {sorted(BASELINE_AGENTS)}.")
    return BASELINE_AGENTS[name](**kwargs)
