"""The Sharpe ratio of a series of per-period returns: the one formula that the rewards (`running_sharpe`), the metrics
(`standard_metrics`) and the trainer's episode statistics share.

Only the degenerate cases differ by use, and each caller keeps its rule in place: a reward must stay finite (0 for a
flat history, `flagtrl.rewards`), while a metric ranks a sure gain above every risky one (+-inf, `flagtrl.metrics`).
This function takes the metric's rule; a caller that wants 0 checks the deviation first.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def sharpe_ratio(
    returns: Sequence[float] | np.ndarray, risk_free: float = 0.0, periods_per_year: int | float = 1
) -> float:
    """(mean(r) - r_f) / std(r, ddof=1), times sqrt(`periods_per_year`) to annualise.

    Computed as (mean(r) - r_f) · D / (std(r, ddof=1) · sqrt(D)), the annualised excess return over the annualised
    volatility, so that D = 1 gives the per-period ratio exactly.

    Args:
        returns (`Sequence[float]` or `np.ndarray`): Per-period returns r_1..r_n (fractions, or pnl in currency).
        risk_free (`float`, *optional*, defaults to `0.0`): r_f per period, in the units of `returns`.
        periods_per_year (`int` or `float`, *optional*, defaults to `1`): D; 1 for the per-period ratio.

    Returns:
        `float`: the ratio; `nan` with fewer than 2 returns; for returns that agree to 12 significant digits (equal up
        to rounding, whose sample deviation would be a residue near 1e-16) +-inf by the sign of mean(r) - r_f, and 0.0
        when that is 0.
    """
    values = np.asarray(returns, dtype=np.float64)
    if values.size < 2:
        return math.nan
    excess_return = float(values.mean() - risk_free) * periods_per_year
    if np.ptp(values) <= 1e-12 * np.max(np.abs(values)):
        return math.copysign(math.inf, excess_return) if excess_return != 0.0 else 0.0
    return excess_return / float(values.std(ddof=1) * math.sqrt(periods_per_year))
