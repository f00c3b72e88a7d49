"""The action set A = {sell: -1, hold: 0, buy: 1} (paper §3) and its masks.

Index order is fixed across flagtrl (environment, prompt, policy head, agents): 0 = sell, 1 = hold, 2 = buy, so that
`ACTION_VALUES[i] = i - 1`.
"""

from __future__ import annotations

import numpy as np


ACTIONS: tuple[str, ...] = ("sell", "hold", "buy")
NUM_ACTIONS = len(ACTIONS)
ACTION_VALUES: tuple[int, ...] = (-1, 0, 1)
SELL, HOLD, BUY = 0, 1, 2
TRADING_MODES = ("paper", "position")


def action_mask(cash: float, shares: float, mode: str = "paper") -> np.ndarray:
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
