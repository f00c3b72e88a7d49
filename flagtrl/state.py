"""`TradingState`: what a single-asset agent may know on one trading day.

A plain data type with no behaviour of its own, so that the prompt, the agents and the portfolio team can read it
without importing the environment that builds it (`flagtrl.envs.trading_env` re-exports it).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .actions import NUM_ACTIONS


@dataclass(eq=False)
class TradingState:
    """What an agent may know on date `date`: nothing dated after it.

    Args:
        asset (`str`), asset_class (`str`), date (`str`): Which asset and which trading day.
        step (`int`): Steps taken in the episode so far.
        dates (`list[str]`), prices (`np.ndarray`): The asset's history up to and including `date`.
        news (`list[str]`), filings (`list[str]`): Text published on `date`.
        cash (`float`), shares (`float`), account_value (`float`): The account b_t at price P_t.
        position (`int`): Current position: +1 long, 0 flat, -1 short.
        past_actions (`list[str]`), past_rewards (`list[float]`), past_values (`list[float]`): The recent decisions,
            their rewards and the account values after them (newest last).
        action_mask (`np.ndarray`): 1 for valid actions, in `ACTIONS` order.
        mode (`str`): Trading mode, `all_in` or `position`.
    """

    asset: str
    asset_class: str
    date: str
    step: int
    dates: list[str]
    prices: np.ndarray
    news: list[str]
    filings: list[str]
    cash: float
    shares: float
    account_value: float
    position: int
    past_actions: list[str] = field(default_factory=list)
    past_rewards: list[float] = field(default_factory=list)
    past_values: list[float] = field(default_factory=list)
    action_mask: np.ndarray = field(default_factory=lambda: np.ones(NUM_ACTIONS, dtype=np.int8))
    mode: str = "all_in"

    @property
    def price(self) -> float:
        return float(self.prices[-1])

    def __eq__(self, other) -> bool:
        # Field-wise, with numpy arrays compared by value (gymnasium's determinism check compares `info`).
        if not isinstance(other, TradingState):
            return NotImplemented
        return all(
            np.array_equal(a, b) if isinstance(a, np.ndarray) else a == b
            for a, b in zip(vars(self).values(), vars(other).values())
        )
