"""The Sharpe-difference reward (paper eq. 3) against values computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from flagtrl.rewards import running_sharpe, sharpe_delta_reward


def test_running_sharpe_hand_computed():
    # pnl 1, 2, 3: mean 2, sample std sqrt(((-1)^2 + 0 + 1^2) / 2) = 1.
    assert running_sharpe([1.0, 2.0, 3.0]) == pytest.approx(2.0)
    # pnl 0, 25, -25: mean 0.
    assert running_sharpe([0.0, 25.0, -25.0]) == pytest.approx(0.0)
    # pnl 0, 25: mean 12.5, std sqrt(2 * 12.5^2) = 12.5 sqrt(2).
    assert running_sharpe([0.0, 25.0]) == pytest.approx(1 / math.sqrt(2))
    # pnl -2, 4: mean 1, std sqrt(9 + 9) = 3 sqrt(2).
    assert running_sharpe(np.array([-2.0, 4.0])) == pytest.approx(1 / (3 * math.sqrt(2)))


def test_running_sharpe_risk_free_is_subtracted_from_the_mean():
    # pnl 1, 2, 3 with r_f = 0.5 per step: (2 - 0.5) / 1.
    assert running_sharpe([1.0, 2.0, 3.0], risk_free=0.5) == pytest.approx(1.5)


@pytest.mark.parametrize("pnl", [[], [5.0], [-3.0]])
def test_running_sharpe_is_zero_with_fewer_than_two_values(pnl):
    assert running_sharpe(pnl) == 0.0


@pytest.mark.parametrize("pnl", [[0.0, 0.0], [0.0, 0.0, 0.0, 0.0], [7.0, 7.0, 7.0], [1e5 + 0.1] * 5])
def test_running_sharpe_is_zero_for_zero_deviation(pnl):
    value = running_sharpe(pnl)
    assert value == 0.0
    assert math.isfinite(value)


def test_sharpe_delta_reward_first_steps():
    assert sharpe_delta_reward([]) == 0.0
    assert sharpe_delta_reward([10.0]) == 0.0  # SR_1 = SR_0 = 0
    # SR_2 of (0, 25) minus SR_1 = 0.
    assert sharpe_delta_reward([0.0, 25.0]) == pytest.approx(1 / math.sqrt(2))
    # A flat account (pnl all 0) earns 0 every step instead of nan.
    assert sharpe_delta_reward([0.0, 0.0, 0.0]) == 0.0


def test_sharpe_delta_reward_hand_computed():
    # SR_3 of (0, 25, -25) is 0, SR_2 of (0, 25) is 1/sqrt(2).
    assert sharpe_delta_reward([0.0, 25.0, -25.0]) == pytest.approx(-1 / math.sqrt(2))
    # SR_3 of (1, 2, 3) = 2; SR_2 of (1, 2) = 1.5 / sqrt(0.5).
    assert sharpe_delta_reward([1.0, 2.0, 3.0]) == pytest.approx(2.0 - 1.5 / math.sqrt(0.5))


def test_rewards_telescope_to_the_final_sharpe():
    rng = np.random.default_rng(0)
    pnl = rng.normal(5.0, 100.0, size=40)
    pnl[:3] = 0.0  # a flat start: the defined first steps must not break the sum
    rewards = [sharpe_delta_reward(pnl[: t + 1]) for t in range(len(pnl))]
    assert all(math.isfinite(r) for r in rewards)
    assert sum(rewards) == pytest.approx(running_sharpe(pnl))
    direct = (pnl.mean()) / pnl.std(ddof=1)
    assert sum(rewards) == pytest.approx(direct)


def test_rewards_telescope_with_risk_free():
    pnl = [3.0, -1.0, 4.0, 1.0, -5.0, 9.0]
    rewards = [sharpe_delta_reward(pnl[: t + 1], risk_free=0.5) for t in range(len(pnl))]
    expected = (np.mean(pnl) - 0.5) / np.std(pnl, ddof=1)
    assert sum(rewards) == pytest.approx(expected)
