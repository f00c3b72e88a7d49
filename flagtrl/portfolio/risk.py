"""The risk manager: turns the manager's fully invested risky weights into target weights with a cash share.

Three rules, applied in this order, each only ever *reducing* risky exposure (what is taken off goes to cash):

1. position caps: w_i <= max_weight (the excess goes to cash; the manager already optimises under the same cap, so
   this binds only for weights that come from elsewhere);
2. volatility target: if the predicted annualised volatility sqrt(w' Sigma w · D) exceeds `volatility_target`, all
   risky weights are scaled by target / predicted (never levered up when it is below);
3. drawdown brake: while the account is more than `drawdown_limit` below its running peak (from the values seen so far
   in the episode), risky exposure is multiplied by `drawdown_exposure`.

The formulas are small pure functions so that each can be tested by hand.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np


def cap_weights(weights: np.ndarray, max_weight: float) -> np.ndarray:
    """Clip each risky weight at `max_weight` (the excess will be held in cash)."""
    return np.minimum(np.asarray(weights, dtype=np.float64), max_weight)


def predicted_volatility(weights: np.ndarray, covariance: np.ndarray, trading_days_per_year: int) -> float:
    """Annualised volatility sqrt(w' Sigma w · D) of risky weights under a per-period covariance."""
    weights = np.asarray(weights, dtype=np.float64)
    variance = float(weights @ np.asarray(covariance, dtype=np.float64) @ weights)
    return math.sqrt(max(variance, 0.0) * trading_days_per_year)


def volatility_scale(predicted: float, target: float) -> float:
    """min(1, target / predicted): scale down to the target, never lever up (1 for a riskless portfolio)."""
    return 1.0 if predicted <= target or predicted == 0.0 else target / predicted


def current_drawdown(values: Sequence[float] | np.ndarray) -> float:
    """How far the latest value is below the running peak, as a positive fraction (0 at a new high)."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return 0.0
    return float(1.0 - values[-1] / values.max())


@dataclass
class RiskDecision:
    """Target weights after the risk rules, and which rules bound.

    Args:
        weights (`np.ndarray`): N risky weights then cash, >= 0, summing to 1.
        exposure (`float`): Sum of the risky weights.
        predicted_volatility (`float`): Annualised volatility of the capped weights before scaling (nan without a
            covariance).
        drawdown (`float`): Current drawdown of the account.
        notes (`list[str]`): The rules that bound.
    """

    weights: np.ndarray
    exposure: float
    predicted_volatility: float
    drawdown: float
    notes: list[str] = field(default_factory=list)


class RiskManager:
    """Caps, volatility target and drawdown brake (see the module docstring); `None` switches a rule off.

    Args:
        max_weight (`float`, *optional*, defaults to `1.0`): Cap on each risky weight.
        volatility_target (`float`, *optional*): Annualised volatility target (0.2 is 20 %).
        drawdown_limit (`float`, *optional*): Drawdown from the peak (0.1 is 10 %) beyond which the brake acts.
        drawdown_exposure (`float`, *optional*, defaults to `0.5`): Multiplier on risky exposure while braking.
        trading_days_per_year (`int`, *optional*, defaults to `252`): D, to annualise the daily covariance.
    """

    def __init__(
        self,
        max_weight: float = 1.0,
        volatility_target: float | None = None,
        drawdown_limit: float | None = None,
        drawdown_exposure: float = 0.5,
        trading_days_per_year: int = 252,
    ):
        if not 0 < max_weight <= 1:
            raise ValueError(f"max_weight must be in (0, 1], got {max_weight}.")
        if volatility_target is not None and volatility_target <= 0:
            raise ValueError(f"volatility_target must be positive, got {volatility_target}.")
        if drawdown_limit is not None and not 0 < drawdown_limit < 1:
            raise ValueError(f"drawdown_limit must be in (0, 1), got {drawdown_limit}.")
        if not 0 <= drawdown_exposure <= 1:
            raise ValueError(f"drawdown_exposure must be in [0, 1], got {drawdown_exposure}.")
        self.max_weight = max_weight
        self.volatility_target = volatility_target
        self.drawdown_limit = drawdown_limit
        self.drawdown_exposure = drawdown_exposure
        self.trading_days_per_year = trading_days_per_year

    def apply(
        self,
        risky_weights: np.ndarray,
        covariance: np.ndarray | None,
        past_values: Sequence[float],
    ) -> RiskDecision:
        """Target weights (N assets + cash) from fully invested risky weights.

        Args:
            risky_weights (`np.ndarray`): The manager's weights, >= 0, summing to 1.
            covariance (`np.ndarray`, *optional*): Per-period covariance of the assets; without it the volatility
                target is skipped.
            past_values (`Sequence[float]`): Account values so far, the latest last.
        """
        weights = np.asarray(risky_weights, dtype=np.float64)
        notes = []
        capped = cap_weights(weights, self.max_weight)
        if np.any(capped < weights - 1e-12):
            notes.append(f"capped at {self.max_weight:g}")
        weights = capped

        volatility = math.nan
        if covariance is not None:
            volatility = predicted_volatility(weights, covariance, self.trading_days_per_year)
            if self.volatility_target is not None:
                scale = volatility_scale(volatility, self.volatility_target)
                if scale < 1.0:
                    weights = weights * scale
                    notes.append(f"volatility {volatility:.1%} scaled to {self.volatility_target:.1%}")

        drawdown = current_drawdown(past_values)
        if self.drawdown_limit is not None and drawdown > self.drawdown_limit:
            weights = weights * self.drawdown_exposure
            notes.append(f"drawdown {drawdown:.1%} > {self.drawdown_limit:.1%}: exposure x{self.drawdown_exposure:g}")

        exposure = float(weights.sum())
        return RiskDecision(
            weights=np.append(weights, max(0.0, 1.0 - exposure)),
            exposure=exposure,
            predicted_volatility=volatility,
            drawdown=drawdown,
            notes=notes,
        )
