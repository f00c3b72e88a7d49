"""Analyst views: an agent's distribution over (sell, hold, buy) on one asset becomes a view on its expected return.

For asset i with analyst distribution p = (p_sell, p_hold, p_buy) and trailing daily volatility sigma_i:

- tilt_i = (p_buy - p_sell) · view_scale · sigma_i: a conviction-weighted excess return in volatility units, so
  `view_scale` is the daily information ratio an analyst who is sure is credited with (0.05 ≈ 0.8 a year);
- confidence_i = 1 - H(p) / ln 3, with H the entropy (0 · ln 0 = 0): 1 for a one-hot answer, 0 for a uniform one.

The view is absolute, E[r_i] = prior_mu_i + tilt_i, held with Idzorek's confidence (0..1). The portfolio manager
blends the views into its prior with skfolio's `BlackLitterman` prior (Idzorek's method, He-Litterman's formulas):
confidence 1 makes the posterior mean of a single view equal to the view, confidence 0 ignores it. A hold answer
gives tilt 0: with confidence it confirms the prior, it does not move it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..actions import ACTIONS, BUY, NUM_ACTIONS, SELL


# Views below this confidence are left out: Idzorek's omega for them is ~1e16 times the prior's, they change nothing.
MIN_VIEW_CONFIDENCE = 1e-6


def view_tilt(probabilities: Sequence[float] | np.ndarray, volatility: float, view_scale: float) -> float:
    """tilt = (p_buy - p_sell) · view_scale · volatility (per period, like `volatility`)."""
    p = np.asarray(probabilities, dtype=np.float64)
    return float((p[BUY] - p[SELL]) * view_scale * volatility)


def view_confidence(probabilities: Sequence[float] | np.ndarray) -> float:
    """confidence = 1 - H(p) / ln(NUM_ACTIONS): 1 for a certain analyst, 0 for a uniform one."""
    p = np.asarray(probabilities, dtype=np.float64)
    if p.shape != (NUM_ACTIONS,) or np.any(p < -1e-12) or not np.isclose(p.sum(), 1.0, atol=1e-6):
        raise ValueError(
            f"An analyst distribution is {NUM_ACTIONS} probabilities ({', '.join(ACTIONS)}) summing to 1, "
            f"got {p.tolist()}."
        )
    p = np.clip(p, 0.0, 1.0)
    positive = p[p > 0]
    entropy = float(-(positive * np.log(positive)).sum())
    return float(min(1.0, max(0.0, 1.0 - entropy / math.log(NUM_ACTIONS))))


@dataclass
class AssetViews:
    """The analysts' views on some assets of a portfolio.

    Args:
        assets (`list[str]`): The assets with a view.
        tilts (`np.ndarray`): Expected-return tilts over the prior, per period.
        confidences (`np.ndarray`): Idzorek confidences in [0, 1].
    """

    assets: list[str]
    tilts: np.ndarray
    confidences: np.ndarray

    def __len__(self) -> int:
        return len(self.assets)

    def to_dict(self) -> dict[str, dict[str, float]]:
        return {
            asset: {"tilt": float(tilt), "confidence": float(confidence)}
            for asset, tilt, confidence in zip(self.assets, self.tilts, self.confidences)
        }


def analyst_views(
    distributions: dict[str, np.ndarray], volatilities: dict[str, float], view_scale: float
) -> AssetViews:
    """Views of the assets that have an analyst: tilt and confidence from each distribution (module docstring)."""
    assets = list(distributions)
    return AssetViews(
        assets=assets,
        tilts=np.array([view_tilt(distributions[a], volatilities[a], view_scale) for a in assets]),
        confidences=np.array([view_confidence(distributions[a]) for a in assets]),
    )


def black_litterman_views(
    views: AssetViews, prior_mu: np.ndarray, assets: Sequence[str], names: Sequence[str]
) -> tuple[list[str], list[float]]:
    """skfolio `BlackLitterman` view equations `"<name> = <prior_mu + tilt>"` and their confidences.

    Args:
        views (`AssetViews`): The analysts' views.
        prior_mu (`np.ndarray`): The prior expected returns, in `assets` order.
        assets (`Sequence[str]`): The portfolio's assets.
        names (`Sequence[str]`): The column names the optimiser sees for `assets` (plain identifiers, so that a ticker
            such as `BRK-B` cannot be read as a subtraction by skfolio's equation parser).

    Returns:
        `tuple[list[str], list[float]]`: The equations and confidences of the views with a confidence above
        `MIN_VIEW_CONFIDENCE` (possibly none).
    """
    equations, confidences = [], []
    for asset, tilt, confidence in zip(views.assets, views.tilts, views.confidences):
        if confidence < MIN_VIEW_CONFIDENCE:
            continue
        index = list(assets).index(asset)
        value = float(prior_mu[index] + tilt)
        equations.append(f"{names[index]} = {value:.12f}")
        confidences.append(float(min(confidence, 1.0)))
    return equations, confidences
