"""The action set A = {sell: -1, hold: 0, buy: 1} (paper §3) and its masks.

Index order is fixed across flagtrl (environment, prompt, policy head, agents): 0 = sell, 1 = hold, 2 = buy, so that
`ACTION_VALUES[i] = i - 1`.
"""

from __future__ import annotations

import warnings

import numpy as np


ACTIONS: tuple[str, ...] = ("sell", "hold", "buy")
NUM_ACTIONS = len(ACTIONS)
ACTION_VALUES: tuple[int, ...] = (-1, 0, 1)
SELL, HOLD, BUY = 0, 1, 2
# Trading modes: `all_in` (the paper's MDP, §3: buy invests all cash, sell liquidates every share) and `position`
# (InvestorBench's scoring: the action is the position held to the next close). `paper` names only the metric
# convention (`flagtrl.metrics`); as a trading mode it is a deprecated alias of `all_in`.
TRADING_MODES = ("all_in", "position")
DEPRECATED_TRADING_MODES = {"paper": "all_in"}


def resolve_trading_mode(mode: str) -> str:
    """The trading mode's name, with a deprecated alias replaced (and a `FutureWarning` saying so).

    Raises:
        `ValueError`: `mode` is neither a trading mode nor a deprecated alias of one.
    """
    if mode in DEPRECATED_TRADING_MODES:
        new = DEPRECATED_TRADING_MODES[mode]
        warnings.warn(
            f"trading mode {mode!r} is deprecated: use {new!r} (same behaviour; {mode!r} now names only the metric "
            "convention)",
            FutureWarning,
            stacklevel=3,
        )
        return new
    if mode not in TRADING_MODES:
        raise ValueError(f"Unknown trading mode {mode!r}; choose one of {list(TRADING_MODES)}.")
    return mode


def action_mask(cash: float, shares: float, mode: str = "all_in") -> np.ndarray:
    """Valid actions in an account state (paper eq. 8): no sell without shares, no buy without cash.

    In `position` mode (daily long/flat/short, as InvestorBench scores) every action is always valid.

    Returns:
        `np.ndarray`: int8 mask of shape (NUM_ACTIONS,), 1 where the action is valid; `hold` is always valid.
    """
    if mode == "position":
        return np.ones(NUM_ACTIONS, dtype=np.int8)
    return np.array([shares > 0, True, cash > 0], dtype=np.int8)


def action_index(name: str) -> int:
    """Index of an action name (`buy`, `sell`, `hold`; case-insensitive)."""
    key = name.strip().lower()
    if key not in ACTIONS:
        raise ValueError(f"Unknown action {name!r}; the actions are {list(ACTIONS)}.")
    return ACTIONS.index(key)
