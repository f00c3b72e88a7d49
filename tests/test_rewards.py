"""The rewards (Sharpe difference, paper eq. 3; differential Sharpe ratio; log return) against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from flagtrl.rewards import (
    WIPED_OUT_VALUE_RATIO,
    differential_sharpe_ratio,
    get_reward_function,
    log_return_reward,
    running_sharpe,
    sharpe_delta_reward,
)


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


# --- the warm-up rule of the Sharpe difference ------------------------------------------------------------------


def test_sharpe_delta_min_periods_silences_the_first_steps():
    # With two values the ratio is +-1/sqrt(2) whatever the size of the move: the warm-up rule drops it.
    for move in (0.0001, 5.0):
        assert sharpe_delta_reward([0.0, move]) == pytest.approx(1 / math.sqrt(2))
        assert sharpe_delta_reward([0.0, move], min_periods=10) == 0.0
    pnl = [1.0, 2.0, 3.0, 0.5, -1.0, 4.0, 2.0, 1.0, 0.0, 3.0, 2.5]
    rewards = [sharpe_delta_reward(pnl[: t + 1], min_periods=10) for t in range(len(pnl))]
    assert rewards[:9] == [0.0] * 9
    assert rewards[9] == pytest.approx(np.mean(pnl[:10]) / np.std(pnl[:10], ddof=1))
    assert sum(rewards) == pytest.approx(np.mean(pnl) / np.std(pnl, ddof=1))  # still telescopes to the final SR


# --- the differential Sharpe ratio (Moody & Saffell 2001, eq. 14) ------------------------------------------------


def test_differential_sharpe_first_step_is_the_standardised_return():
    # A_0 = 0, B_0 = sigma_0^2: D_1 = sigma_0^2 R_1 / sigma_0^3 = R_1 / sigma_0.
    assert differential_sharpe_ratio([0.01], eta=0.05, initial_volatility=0.01) == pytest.approx(1.0)
    assert differential_sharpe_ratio([-0.03], eta=0.1, initial_volatility=0.02) == pytest.approx(-1.5)
    assert differential_sharpe_ratio([]) == 0.0


def test_differential_sharpe_hand_computed():
    eta, sigma = 0.05, 0.01
    # Step 1 updates the moments with R_1 = 0.01: A_1 = 0.0005, B_1 = 1e-4 + 0.05 (1e-4 - 1e-4) = 1e-4.
    a1, b1 = 0.0005, 1e-4
    r2 = -0.02
    d_a, d_b = r2 - a1, r2**2 - b1
    expected = (b1 * d_a - 0.5 * a1 * d_b) / (b1 - a1**2) ** 1.5
    assert differential_sharpe_ratio([0.01, r2], eta=eta, initial_volatility=sigma) == pytest.approx(expected)
    assert expected == pytest.approx(-2.13298, abs=1e-4)


def test_differential_sharpe_rewards_the_sign_of_the_newest_return():
    rng = np.random.default_rng(0)
    history = list(rng.normal(0.0005, 0.01, size=30))
    assert differential_sharpe_ratio(history + [0.02]) > 0 > differential_sharpe_ratio(history + [-0.02])


@pytest.mark.parametrize("kwargs", [{"eta": 0.0}, {"eta": 1.5}, {"initial_volatility": 0.0}])
def test_differential_sharpe_rejects_bad_parameters(kwargs):
    with pytest.raises(ValueError):
        differential_sharpe_ratio([0.01], **kwargs)


# --- log return and the registry ---------------------------------------------------------------------------------


def test_log_return_reward_hand_computed():
    assert log_return_reward([100.0]) == 0.0
    assert log_return_reward([100.0, 110.0]) == pytest.approx(math.log(1.1))
    assert log_return_reward([100.0, 110.0, 99.0]) == pytest.approx(math.log(0.9))
    # A wiped-out account has no log: the documented floor.
    assert log_return_reward([100.0, -5.0]) == pytest.approx(math.log(WIPED_OUT_VALUE_RATIO))


def test_reward_registry():
    values = np.array([100.0, 101.0, 99.0, 102.0])
    assert get_reward_function("log_return")(values) == pytest.approx(math.log(102.0 / 99.0))
    assert get_reward_function("sharpe_delta", sharpe_min_periods=2)(values) == pytest.approx(
        sharpe_delta_reward(np.diff(values))
    )
    assert get_reward_function("sharpe_delta")(values) == 0.0  # the default warm-up is 10 pnl values
    returns = values[1:] / values[:-1] - 1
    assert get_reward_function("differential_sharpe", dsr_eta=0.1)(values) == pytest.approx(
        differential_sharpe_ratio(returns, eta=0.1)
    )
    with pytest.raises(ValueError, match="Unknown reward 'sharpe'"):
        get_reward_function("sharpe")
    with pytest.raises(ValueError, match="sharpe_min_periods"):
        get_reward_function("sharpe_delta", sharpe_min_periods=1)
