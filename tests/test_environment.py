"""The trading environment: gymnasium API, the paper's MDP by hand, masks, costs, seeding, errors, no look-ahead."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from flagtrl.actions import BUY, HOLD, SELL, action_mask
from flagtrl.agents import BuyAndHoldAgent
from flagtrl.backtest import run_backtest
from flagtrl.data.schema import MarketSeries
from flagtrl.envs import TradingEnv
from flagtrl.rewards import running_sharpe


def business_dates(n: int, start: str = "2021-01-04") -> list[str]:
    return [str(d) for d in np.busday_offset(start, np.arange(n), roll="forward")]


def synthetic_series(n: int = 120, seed: int = 0, asset: str = "SYN") -> MarketSeries:
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.02, size=n)))
    dates = business_dates(n)
    news = [[f"{asset} news of {d} (Sentiment: positive)"] if i % 3 == 0 else [] for i, d in enumerate(dates)]
    return MarketSeries(asset=asset, asset_class="stock", dates=dates, close=close, news=news)


def four_prices() -> MarketSeries:
    return MarketSeries(
        asset="TOY", asset_class="stock", dates=business_dates(4), close=np.array([10.0, 20.0, 25.0, 20.0])
    )


def toy_env(**kwargs) -> TradingEnv:
    kwargs = {"episode_length": None, "random_start": False, "initial_cash": 100.0, **kwargs}
    return TradingEnv(four_prices(), **kwargs)


# --- gymnasium API -------------------------------------------------------------------------------------------------


def strict_check_env(env: TradingEnv) -> None:
    # The passive checker only warns (observation outside its space, wrong dtypes...): treat those as failures. The
    # unbounded Box warnings are expected (price ratios and a short account have no upper bound).
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env, skip_render_check=True)
    unexpected = [str(w.message) for w in caught if "infinity" not in str(w.message)]
    assert not unexpected


@pytest.mark.parametrize("mode", ["all_in", "position"])
@pytest.mark.parametrize("cost", [0.0, 10.0])
def test_check_env_synthetic(mode, cost):
    strict_check_env(TradingEnv(synthetic_series(), episode_length=20, mode=mode, transaction_cost_bps=cost))


@pytest.mark.parametrize("mode", ["all_in", "position"])
def test_check_env_msft(msft_series, mode):
    strict_check_env(TradingEnv(msft_series, window=("2020-10-01", "2021-05-05"), mode=mode, transaction_cost_bps=5.0))


# --- the MDP by hand on prices 10, 20, 25, 20 ----------------------------------------------------------------------


def test_paper_mdp_by_hand():
    # The decision of day t executes at day t's close and earns P_t -> P_{t+1} (the paper metrics' interval).
    env = toy_env(reward_kwargs={"sharpe_min_periods": 2})
    obs, info = env.reset(seed=0)
    assert info["date"] == env.series.dates[0]
    assert (env.cash, env.shares, env.account_value) == (100.0, 0.0, 100.0)

    # Day 0: buy executes at today's close P_0 = 10: 100 / 10 = 10 shares, no cash; value at P_1 = 20 is 200.
    _, reward, terminated, truncated, info = env.step(BUY)
    assert env.cash == 0.0
    assert env.shares == pytest.approx(10.0)
    assert env.account_value == pytest.approx(200.0)
    assert info["pnl"] == pytest.approx(100.0)
    assert reward == 0.0  # SR_1 = SR_0 = 0
    assert info["executed_action"] == "buy" and not info["invalid_action"]
    assert info["state"].cash == 0.0 and info["state"].shares == pytest.approx(10.0)
    assert not terminated and not truncated

    # Day 1: hold, account unchanged; its value moves with P_2 = 25: pnl 50.
    _, reward, _, truncated, info = env.step(HOLD)
    assert (env.cash, env.shares) == (0.0, pytest.approx(10.0))
    assert env.account_value == pytest.approx(250.0)
    assert info["pnl"] == pytest.approx(50.0)
    # SR_2 of pnl (100, 50): mean 75, std 25 sqrt 2.
    assert reward == pytest.approx(3 / math.sqrt(2))
    assert not truncated

    # Day 2: sell liquidates at today's close P_2 = 25: cash 250, no shares; the fall to P_3 = 20 is not suffered.
    _, reward, terminated, truncated, info = env.step(SELL)
    assert env.cash == pytest.approx(250.0)
    assert env.shares == 0.0
    assert env.account_value == pytest.approx(250.0)
    assert info["pnl"] == pytest.approx(0.0)
    # SR_3 of (100, 50, 0) = 50 / 50 = 1: R_3 = 1 - 3/sqrt(2).
    assert reward == pytest.approx(1 - 3 / math.sqrt(2))
    assert truncated and not terminated
    assert env.pnl == pytest.approx([100.0, 50.0, 0.0])
    assert info["state"].past_actions == ["buy", "hold", "sell"]
    assert info["state"].past_values == pytest.approx([200.0, 250.0, 250.0])


def test_hold_keeps_cash_and_earns_zero_reward():
    env = toy_env()
    env.reset(seed=0)
    rewards = []
    for _ in range(3):
        _, reward, _, _, info = env.step(HOLD)
        rewards.append(reward)
        assert (env.cash, env.shares, env.account_value) == (100.0, 0.0, 100.0)
        assert info["pnl"] == 0.0
    assert rewards == [0.0, 0.0, 0.0]


def test_episode_rewards_telescope_to_final_sharpe(msft_series):
    env = TradingEnv(msft_series, window=("2020-10-01", "2021-05-05"), episode_length=40)
    env.reset(seed=3)
    rng = np.random.default_rng(3)
    total, done = 0.0, False
    while not done:
        valid = np.flatnonzero(env._mask())
        _, reward, terminated, truncated, _ = env.step(int(rng.choice(valid)))
        total += reward
        done = terminated or truncated
    assert len(env.pnl) == 40
    assert total == pytest.approx(running_sharpe(env.pnl))


def test_position_mode_by_hand():
    env = toy_env(mode="position")
    env.reset(seed=0)
    # Day 0: long at today's close P_0 = 10: 10 shares, held to P_1 = 20: value 200.
    _, _, _, _, info = env.step(BUY)
    assert env.position == 1
    assert env.shares == pytest.approx(10.0)
    assert env.account_value == pytest.approx(200.0)
    assert info["pnl"] == pytest.approx(100.0)
    # Day 1: short at P_1 = 20: -10 shares, cash 400; at P_2 = 25 the value is 400 - 250 = 150.
    _, _, _, _, info = env.step(SELL)
    assert env.position == -1
    assert env.shares == pytest.approx(-10.0)
    assert env.cash == pytest.approx(400.0)
    assert env.account_value == pytest.approx(150.0)
    assert info["pnl"] == pytest.approx(-50.0)
    # Day 2: flat: all cash, the value stays 150 whatever P_3.
    _, _, _, truncated, info = env.step(HOLD)
    assert env.position == 0
    assert env.shares == pytest.approx(0.0)
    assert env.account_value == pytest.approx(150.0)
    assert truncated


# --- transaction costs -----------------------------------------------------------------------------------------


def test_paper_transaction_costs():
    env = toy_env(transaction_cost_bps=50.0)  # 0.5 %
    env.reset(seed=0)
    env.step(BUY)  # at today's close P_0 = 10
    assert env.shares == pytest.approx(100.0 * 0.995 / 10.0)
    assert env.cash == 0.0
    env.step(HOLD)
    assert env.shares == pytest.approx(100.0 * 0.995 / 10.0)
    env.step(SELL)  # at today's close P_2 = 25
    assert env.cash == pytest.approx(100.0 * 0.995 / 10.0 * 25.0 * 0.995)
    assert env.shares == 0.0


def test_position_transaction_costs():
    env = toy_env(mode="position", transaction_cost_bps=100.0)  # 1 %
    env.reset(seed=0)
    env.step(BUY)  # flat -> long: 1 % of the value 100
    assert env.shares == pytest.approx(99.0 / 10.0)
    value = 99.0 / 10.0 * 20.0
    assert env.account_value == pytest.approx(value)
    env.step(SELL)  # long -> short: |(-1) - 1| = 2 units of turnover
    assert env.shares == pytest.approx(-value * 0.98 / 20.0)
    # At P_2 = 25 the short is worth cash 2 v' minus v'/20 shares at 25, with v' = 0.98 value: 0.75 v'.
    assert env.account_value == pytest.approx(0.75 * 0.98 * value)
    env.step(SELL)  # unchanged position: no cost, the short is re-sized to the value at P_2
    assert env.shares == pytest.approx(-0.75 * 0.98 * value / 25.0)
    assert env.cash == pytest.approx(2 * 0.75 * 0.98 * value)


# --- action masks and invalid actions --------------------------------------------------------------------------


def test_action_mask_function():
    assert action_mask(100.0, 0.0).tolist() == [0, 1, 1]  # no sell without shares
    assert action_mask(0.0, 5.0).tolist() == [1, 1, 0]  # no buy without cash
    assert action_mask(10.0, 5.0).tolist() == [1, 1, 1]
    assert action_mask(0.0, 0.0).tolist() == [0, 1, 0]
    assert action_mask(0.0, 0.0, mode="position").tolist() == [1, 1, 1]


def test_env_masks_follow_the_account():
    env = toy_env()
    obs, info = env.reset(seed=0)
    assert info["action_mask"].tolist() == [0, 1, 1]
    assert obs["action_mask"].tolist() == [0, 1, 1]
    assert info["state"].action_mask.tolist() == [0, 1, 1]
    obs, _, _, _, info = env.step(BUY)
    assert info["action_mask"].tolist() == [1, 1, 0]
    assert obs["action_mask"].tolist() == [1, 1, 0]
    _, _, _, _, info = env.step(SELL)
    assert info["action_mask"].tolist() == [0, 1, 1]


def test_position_mode_all_actions_valid():
    env = toy_env(mode="position")
    _, info = env.reset(seed=0)
    assert info["action_mask"].tolist() == [1, 1, 1]
    for action in (BUY, BUY, SELL):
        _, _, _, _, info = env.step(action)
        assert info["action_mask"].tolist() == [1, 1, 1]
        assert not info["invalid_action"]


def test_invalid_action_is_executed_as_hold():
    env = toy_env()
    env.reset(seed=0)
    _, reward, _, _, info = env.step(SELL)  # no shares to sell
    assert info["invalid_action"] is True
    assert info["executed_action"] == "hold"
    assert (env.cash, env.shares, env.account_value) == (100.0, 0.0, 100.0)
    assert reward == 0.0
    env.step(BUY)
    _, _, _, _, info = env.step(BUY)  # no cash left
    assert info["invalid_action"] is True
    assert info["executed_action"] == "hold"
    assert env.shares == pytest.approx(100.0 / 20.0)  # bought at P_1 = 20, unchanged by the invalid buy
    assert info["state"].past_actions == ["hold", "buy", "hold"]


def test_action_outside_the_space_raises():
    env = toy_env()
    env.reset(seed=0)
    with pytest.raises(ValueError, match="outside the action space"):
        env.step(3)


# --- seeding, episode length, truncation -----------------------------------------------------------------------


def test_same_seed_same_start_dates():
    series = synthetic_series(200)
    a, b = TradingEnv(series, episode_length=10), TradingEnv(series, episode_length=10)
    dates_a = [a.reset(seed=7)[1]["date"]] + [a.reset()[1]["date"] for _ in range(5)]
    dates_b = [b.reset(seed=7)[1]["date"]] + [b.reset()[1]["date"] for _ in range(5)]
    assert dates_a == dates_b


def test_random_start_differs_across_seeds_and_stays_in_the_window():
    series = synthetic_series(200)
    env = TradingEnv(series, window=(series.dates[20], series.dates[150]), episode_length=10)
    starts = {env.reset(seed=seed)[1]["date"] for seed in range(20)}
    assert len(starts) > 5
    assert all(series.dates[20] <= d <= series.dates[140] for d in starts)


def test_fixed_start_without_random_start():
    series = synthetic_series(200)
    env = TradingEnv(series, window=(series.dates[30], series.dates[150]), episode_length=10, random_start=False)
    assert {env.reset(seed=seed)[1]["date"] for seed in range(5)} == {series.dates[30]}
    _, info = env.reset(seed=0, options={"start_date": series.dates[50]})
    assert info["date"] == series.dates[50]


def test_default_episode_length_is_65_with_truncation():
    series = synthetic_series(120)
    env = TradingEnv(series)
    assert env.episode_length == 65
    _, info = env.reset(seed=1)
    start = series.dates.index(info["date"])
    for step in range(1, 66):
        _, _, terminated, truncated, info = env.step(HOLD)
        assert not terminated
        assert truncated == (step == 65)
    assert info["date"] == series.dates[start + 65]


# --- errors ----------------------------------------------------------------------------------------------------


def test_episode_too_long_for_the_window():
    series = synthetic_series(120)
    window = (series.dates[0], series.dates[29])  # 30 trading days: 29 steps at most
    TradingEnv(series, window=window, episode_length=29)
    with pytest.raises(ValueError) as error:
        TradingEnv(series, window=window, episode_length=30)
    message = str(error.value)
    assert "SYN" in message and series.dates[0] in message and series.dates[29] in message


def test_unknown_mode():
    with pytest.raises(ValueError, match="Unknown trading mode 'margin'"):
        TradingEnv(synthetic_series(), mode="margin")


def test_window_outside_the_data():
    series = synthetic_series(50)
    with pytest.raises(ValueError, match="SYN"):
        TradingEnv(series, window=("2030-01-01", "2030-12-31"))


# --- no look-ahead ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["all_in", "position"])
def test_state_holds_only_data_up_to_today(msft_series, mode):
    env = TradingEnv(
        msft_series, window=("2020-10-01", "2021-05-05"), episode_length=None, random_start=False, mode=mode
    )
    _, info = env.reset(seed=0)
    rng = np.random.default_rng(0)
    done, steps = False, 0
    while True:
        state = info["state"]
        index = msft_series.dates.index(state.date)
        assert info["date"] == state.date
        assert max(state.dates) == state.date
        assert state.dates == msft_series.dates[: index + 1]
        assert len(state.prices) == index + 1
        assert state.price == msft_series.close[index]
        np.testing.assert_array_equal(state.prices, msft_series.close[: index + 1])
        assert state.news == msft_series.news[index]
        assert state.filings == msft_series.filings[index]
        if done:
            break
        _, _, terminated, truncated, info = env.step(int(rng.choice(np.flatnonzero(info["action_mask"]))))
        done = terminated or truncated
        steps += 1
    assert state.date == "2021-05-05"
    assert steps == msft_series.dates.index("2021-05-05") - msft_series.dates.index("2020-10-01")


def test_paper_trading_mode_is_a_deprecated_alias_of_all_in():
    """`paper` names the metric convention; as a trading mode it still works, as `all_in`, with a FutureWarning."""
    series = synthetic_series(10)
    with pytest.warns(FutureWarning, match="'paper' is deprecated: use 'all_in'"):
        env = TradingEnv(series, mode="paper", episode_length=None, random_start=False)
    assert env.mode == "all_in"
    with pytest.warns(FutureWarning):
        result = run_backtest(BuyAndHoldAgent(), series, series.dates[0], series.dates[-1], mode="paper")
    assert result.mode == "all_in"
    assert result.metrics == run_backtest(BuyAndHoldAgent(), series, series.dates[0], series.dates[-1]).metrics
    with pytest.raises(ValueError, match="Unknown trading mode 'long_only'"):
        TradingEnv(series, mode="long_only")


def test_configs_resolve_the_deprecated_trading_mode(tmp_path):
    from conftest import tiny_ppo_config

    with pytest.warns(FutureWarning, match="'paper' is deprecated"):
        assert tiny_ppo_config(tmp_path, trading_mode="paper").trading_mode == "all_in"
    assert tiny_ppo_config(tmp_path).trading_mode == "all_in"
    with pytest.raises(ValueError, match="Unknown trading mode 'long'"):
        tiny_ppo_config(tmp_path, trading_mode="long")
