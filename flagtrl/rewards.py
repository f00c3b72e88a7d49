"""The Sharpe-difference reward of FLAG-Trader (paper §3, eq. 3): R_t = SR_t - SR_{t-1}.

SR_t = (mean(pnl_1..t) - r_f) / std(pnl_1..t) over the episode's profit-and-loss so far. The paper leaves the first
steps undefined; flagtrl defines them: SR_t = 0 while fewer than two pnl values exist or while their standard deviation
is 0 (e.g. an agent that has only held cash), so the reward is finite on every step and sums to the final SR.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def running_sharpe(pnl: Sequence[float] | np.ndarray, risk_free: float = 0.0) -> float:
    """Sharpe ratio SR_t of a pnl history (not annualised), with the first steps defined as 0.

    Args:
        pnl (`Sequence[float]`): Profit and loss of each step so far, pnl_1..pnl_t, in account currency.
        risk_free (`float`, *optional*, defaults to `0.0`): r_f per step, in the same units as `pnl`.

    Returns:
        `float`: (mean(pnl) - r_f) / std(pnl, ddof=1), or 0.0 when fewer than two values or a zero deviation.
    """
    values = np.asarray(pnl, dtype=np.float64)
    if values.size < 2:
        return 0.0
    deviation = values.std(ddof=1)
    # A relative threshold: a flat account has pnl exactly 0, but float noise on 1e5-sized values must not blow up.
    if deviation <= 1e-12 * max(1.0, float(np.abs(values).max())):
        return 0.0
    return float((values.mean() - risk_free) / deviation)


def sharpe_delta_reward(pnl: Sequence[float] | np.ndarray, risk_free: float = 0.0) -> float:
    """R_t = SR_t - SR_{t-1}, where `pnl` holds pnl_1..pnl_t (the newest last)."""
    values = np.asarray(pnl, dtype=np.float64)
    if values.size == 0:
        return 0.0
    return running_sharpe(values, risk_free) - running_sharpe(values[:-1], risk_free)
