"""The one Sharpe ratio (`flagtrl.sharpe`) against hand-computed values, and the three places that use it."""

from __future__ import annotations

import math

import numpy as np
import pytest

from flagtrl.metrics import standard_metrics
from flagtrl.rewards import running_sharpe
from flagtrl.sharpe import sharpe_ratio


def test_sharpe_ratio_hand_computed():
    # mean 2, sample deviation 1.
    assert sharpe_ratio([1.0, 2.0, 3.0]) == pytest.approx(2.0)
    assert sharpe_ratio([1.0, 2.0, 3.0], risk_free=0.5) == pytest.approx(1.5)
    # Annualised: 2 · 4 / (1 · sqrt(4)) = 4.
    assert sharpe_ratio([1.0, 2.0, 3.0], periods_per_year=4) == pytest.approx(4.0)
    # mean 1, deviation sqrt(((−2)² + 2²) / 1) = 2·sqrt(2).
    assert sharpe_ratio(np.array([-1.0, 3.0])) == pytest.approx(1 / (2 * math.sqrt(2)))


def test_sharpe_ratio_degenerate_cases():
    assert math.isnan(sharpe_ratio([])) and math.isnan(sharpe_ratio([0.01]))
    assert sharpe_ratio([0.01, 0.01, 0.01]) == math.inf  # a sure gain
    assert sharpe_ratio([-0.01, -0.01]) == -math.inf
    assert sharpe_ratio([0.0, 0.0, 0.0]) == 0.0
    assert sharpe_ratio([0.01, 0.01], risk_free=0.01) == 0.0
    assert sharpe_ratio([0.01, 0.01], risk_free=0.02) == -math.inf
    # Equal up to rounding (one ulp of 0.1) counts as equal, not as a ratio near 1e16.
    assert sharpe_ratio([0.1, np.nextafter(0.1, 1.0), 0.1]) == math.inf


@pytest.mark.parametrize("pnl", [[1.0, 2.0, 3.0], [0.0, 25.0, -25.0, 7.0], [-2.0, 4.0], [120.5, -30.25, 8.0]])
def test_running_sharpe_is_the_shared_ratio(pnl):
    assert running_sharpe(pnl) == sharpe_ratio(pnl)
    assert running_sharpe(pnl, risk_free=0.5) == sharpe_ratio(pnl, risk_free=0.5)


def test_standard_metrics_sharpe_is_the_shared_ratio():
    equity = np.array([100.0, 101.0, 99.5, 102.0, 103.5, 103.0])
    returns = equity[1:] / equity[:-1] - 1.0
    assert standard_metrics(equity, 252).sharpe_ratio == sharpe_ratio(returns, periods_per_year=252)
