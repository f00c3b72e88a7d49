"""Baseline portfolio policies: equal weight (rebalanced daily), buy-and-hold of one asset, max-Sharpe without views.

A portfolio policy has a `name`, `reset(seed)` and `target_weights(state: PortfolioState) -> np.ndarray` (N asset
weights then cash); `Team` is one too.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from .environment import PortfolioState
from .manager import PortfolioManager
from .risk import RiskManager
from .team import Team


@runtime_checkable
class PortfolioPolicy(Protocol):
    """Anything that sets target weights from a point-in-time `PortfolioState`."""

    name: str

    def reset(self, seed: int | None = None) -> None: ...

    def target_weights(self, state: PortfolioState) -> np.ndarray: ...


class EqualWeightPolicy:
    """1/N in every asset, no cash, rebalanced back to 1/N every day."""

    name = "equal_weight"

    def reset(self, seed: int | None = None) -> None:
        pass

    def target_weights(self, state: PortfolioState) -> np.ndarray:
        n = len(state.assets)
        return np.append(np.full(n, 1.0 / n), 0.0)


class BuyAndHoldPolicy:
    """Everything in one asset from the first rebalance on (a single asset at 100 % never needs rebalancing).

    Args:
        asset (`str`): The asset held.
    """

    def __init__(self, asset: str):
        self.asset = asset
        self.name = f"buy_and_hold_{asset}"

    def reset(self, seed: int | None = None) -> None:
        pass

    def target_weights(self, state: PortfolioState) -> np.ndarray:
        if self.asset not in state.assets:
            raise ValueError(f"Buy-and-hold of {self.asset}, which is not in the portfolio {state.assets}.")
        weights = np.zeros(len(state.assets) + 1)
        weights[state.assets.index(self.asset)] = 1.0
        return weights


def max_sharpe_policy(
    manager: PortfolioManager,
    estimation_window: int = 60,
    risk_manager: RiskManager | None = None,
    name: str = "max_sharpe",
) -> Team:
    """The manager on its own: max-Sharpe weights from the trailing estimates, no views (and no risk overlay unless
    `risk_manager` is given)."""
    return Team(manager, analysts=None, risk_manager=risk_manager, estimation_window=estimation_window, name=name)
