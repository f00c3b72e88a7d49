"""Portfolio mode: the max-Sharpe manager against closed forms, the environment's ledger and costs by hand, views,
risk rules, degenerate fallbacks, check_env, and the `flagtrl portfolio` recipe end to end on synthetic data."""

from __future__ import annotations

import json
import logging
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
from datasets import Dataset, DatasetDict
from gymnasium.utils.env_checker import check_env
from trl import TrlParser

from flagtrl.actions import BUY, HOLD, SELL
from flagtrl.agents import MomentumAgent
from flagtrl.cli import main
from flagtrl.data.schema import MARKET_FEATURES, MarketSeries
from flagtrl.portfolio import (
    AssetViews,
    BuyAndHoldPolicy,
    EqualWeightPolicy,
    PortfolioConfig,
    PortfolioEnv,
    PortfolioManager,
    RiskManager,
    Team,
    align_market,
    max_sharpe_policy,
    run_portfolio_backtest,
    view_confidence,
    view_tilt,
)
from flagtrl.portfolio.environment import normalise_weights, rebalance
from flagtrl.portfolio.risk import current_drawdown, predicted_volatility, volatility_scale
from flagtrl.portfolio.team import asset_trading_state


ROOT = Path(__file__).resolve().parents[1]


def business_dates(n: int, start: str = "2021-01-04") -> list[str]:
    return [str(d) for d in np.busday_offset(start, np.arange(n), roll="forward")]


def random_walk(seed: int, n: int, drift: float = 3e-4, volatility: float = 0.015, start: float = 100.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return start * np.exp(np.cumsum(rng.normal(drift, volatility, n)))


def synthetic_series(n: int = 120, skip: tuple[int, ...] = ()) -> list[MarketSeries]:
    """Three stocks; the third lacks the days at positions `skip`."""
    dates = business_dates(n)
    series = []
    for i, asset in enumerate(("AAA", "BBB", "CCC")):
        keep = [k for k in range(n) if not (asset == "CCC" and k in skip)]
        prices = random_walk(i, n, drift=(i + 1) * 2e-4)
        series.append(
            MarketSeries(
                asset,
                "stock",
                [dates[k] for k in keep],
                prices[keep],
                news=[[f"{asset} day {k}. (Sentiment: neutral)"] for k in keep],
            )
        )
    return series


def small_manager(**kwargs) -> PortfolioManager:
    return PortfolioManager(min_observations=10, **kwargs)


# --- the optimiser against closed forms ---------------------------------------------------------------------------


def test_two_uncorrelated_assets_match_the_closed_form():
    # Uncorrelated, r_f = 0: the tangency weights are proportional to mu_i / sigma_i^2.
    mu, sigma = np.array([0.001, 0.0005]), np.array([0.02, 0.01])
    allocation = PortfolioManager().allocate_from_moments(mu, np.diag(sigma**2), ["A", "B"])
    expected = (mu / sigma**2) / (mu / sigma**2).sum()
    assert allocation.method == "max_sharpe"
    np.testing.assert_allclose(allocation.weights, expected, atol=1e-3)
    assert allocation.weights.sum() == pytest.approx(1.0, abs=1e-12) and np.all(allocation.weights >= 0)


def test_two_correlated_assets_with_a_risk_free_rate_match_the_closed_form():
    # General case: w* ∝ Sigma^-1 (mu - r_f), normalised (interior solution: both components positive).
    mu, risk_free = np.array([0.0012, 0.0008]), 0.0002
    covariance = np.array([[4e-4, 6e-5], [6e-5, 1e-4]])
    raw = np.linalg.solve(covariance, mu - risk_free)
    assert np.all(raw > 0)
    allocation = PortfolioManager(risk_free_rate=risk_free).allocate_from_moments(mu, covariance, ["A", "B"])
    np.testing.assert_allclose(allocation.weights, raw / raw.sum(), atol=1e-3)


def test_max_weight_is_a_constraint_of_the_optimisation():
    mu, sigma = np.array([0.002, 0.0005, 0.0005]), np.array([0.01, 0.02, 0.02])
    allocation = PortfolioManager(max_weight=0.5).allocate_from_moments(mu, np.diag(sigma**2), ["A", "B", "C"])
    assert allocation.weights.max() <= 0.5 + 1e-6
    assert allocation.weights.sum() == pytest.approx(1.0)


# --- degenerate cases ----------------------------------------------------------------------------------------------


def test_all_negative_means_fall_back_to_minimum_variance():
    mu, sigma = np.array([-0.001, -0.0005]), np.array([0.02, 0.01])
    allocation = PortfolioManager().allocate_from_moments(mu, np.diag(sigma**2), ["A", "B"])
    assert allocation.method == "min_variance" and "risk-free" in allocation.reason
    # Long-only minimum variance of uncorrelated assets: weights ∝ 1 / sigma_i^2.
    np.testing.assert_allclose(allocation.weights, [0.2, 0.8], atol=1e-3)


def test_bearish_views_on_every_asset_fall_back_to_minimum_variance():
    mu, covariance = np.array([0.001, 0.001]), np.diag([1e-4, 4e-4])
    views = AssetViews(["A", "B"], np.array([-0.003, -0.003]), np.array([1.0, 1.0]))
    allocation = PortfolioManager().allocate_from_moments(mu, covariance, ["A", "B"], views=views)
    assert allocation.method == "min_variance"
    assert np.all(allocation.expected_returns < 0)
    assert np.all(allocation.weights >= 0) and allocation.weights.sum() == pytest.approx(1.0)


def test_singular_sample_covariance_is_shrunk_and_reported():
    returns = np.random.default_rng(0).normal(5e-4, 0.01, (60, 3))
    returns[:, 2] = returns[:, 1]  # two identical assets: the sample covariance has rank 2
    allocation = small_manager().allocate(returns, ["A", "B", "C"])
    assert allocation.method in ("max_sharpe", "min_variance")
    assert any("singular" in note for note in allocation.notes)
    assert np.all(allocation.weights >= 0) and allocation.weights.sum() == pytest.approx(1.0)


def test_fewer_days_than_assets_still_gives_valid_weights():
    returns = np.random.default_rng(1).normal(5e-4, 0.01, (12, 15))
    allocation = small_manager().allocate(returns, [f"S{i}" for i in range(15)])
    assert any("singular" in note for note in allocation.notes)
    assert np.all(allocation.weights >= 0) and allocation.weights.sum() == pytest.approx(1.0)


def test_an_asset_that_did_not_move_is_left_out():
    returns = np.random.default_rng(2).normal(5e-4, 0.01, (60, 3))
    returns[:, 1] = 0.0
    allocation = small_manager().allocate(returns, ["A", "B", "C"])
    assert allocation.weights[1] == 0.0 and allocation.weights.sum() == pytest.approx(1.0)
    assert any("left out" in note and "B" in note for note in allocation.notes)
    assert allocation.covariance.shape == (3, 3)


@pytest.mark.parametrize("mean_estimator", ["shrunk", "empirical"])
def test_a_flat_asset_next_to_one_that_moves_gets_no_weight(mean_estimator):
    returns = np.random.default_rng(0).normal(5e-4, 0.01, (60, 2))
    returns[:, 0] = 0.0
    allocation = small_manager(mean_estimator=mean_estimator).allocate(returns, ["FLAT", "MOVE"])
    np.testing.assert_allclose(allocation.weights, [0.0, 1.0])
    assert allocation.method == "max_sharpe" and allocation.reason is None
    assert any("left out" in note and "FLAT" in note for note in allocation.notes)
    assert np.all(np.isfinite(allocation.expected_returns)) and allocation.expected_returns[0] == 0.0


@pytest.mark.parametrize("drift, method", [(5e-4, "max_sharpe"), (-5e-3, "min_variance")])
def test_a_single_asset_gets_all_the_weight_for_the_true_reason(drift, method):
    returns = np.random.default_rng(1).normal(drift, 0.01, (60, 1))
    allocation = small_manager().allocate(returns, ["ONLY"])
    np.testing.assert_allclose(allocation.weights, [1.0])
    assert allocation.method == method
    assert allocation.reason is None if method == "max_sharpe" else "risk-free rate" in allocation.reason
    assert allocation.expected_returns == pytest.approx(returns.mean(axis=0))  # the sample mean, noted
    assert any("sample mean used" in note and "one asset" in note for note in allocation.notes)


@pytest.mark.parametrize("columns", [1, 3])
def test_the_shrunk_mean_is_guarded_where_james_stein_is_undefined(columns):
    # One asset, or assets whose sample means are equal: skfolio's ShrunkMu divides 0 by 0 (NaN), or by a rounding
    # error (a mean of -2e12 for these three columns); shrinking equal means changes nothing: the sample mean.
    base = np.random.default_rng(2).normal(5e-4, 0.01, 60)
    returns = np.stack([np.roll(base, k) for k in range(columns)], axis=1)  # the same mean up to rounding
    manager = small_manager(mean_estimator="shrunk")
    allocation = manager.allocate(returns, [f"A{i}" for i in range(columns)])
    assert allocation.method == "max_sharpe"
    np.testing.assert_allclose(allocation.expected_returns, returns.mean(axis=0))
    assert manager.mean_estimator_for(returns)[0] == "empirical"
    spread = returns + np.arange(columns) * 1e-4  # distinct means: James-Stein applies
    assert manager.mean_estimator_for(spread) == ("shrunk", None) or columns == 1


def test_a_failed_optimisation_keeps_a_left_out_asset_out(monkeypatch):
    from skfolio.optimization import MeanRisk

    def broken(self, X, y=None, **kwargs):
        raise RuntimeError("solver exploded")

    monkeypatch.setattr(MeanRisk, "fit", broken)
    returns = np.random.default_rng(3).normal(5e-4, 0.01, (60, 3))
    returns[:, 1] = 0.0
    allocation = small_manager().allocate(returns, ["A", "FLAT", "C"])
    assert allocation.method == "equal_weight" and "solver exploded" in allocation.reason
    np.testing.assert_allclose(allocation.weights, [0.5, 0.0, 0.5])


def test_short_history_gives_equal_weight():
    allocation = small_manager().allocate(np.zeros((5, 4)), list("ABCD"))
    assert allocation.method == "equal_weight" and "insufficient_history" in allocation.reason
    np.testing.assert_allclose(allocation.weights, 0.25)


def test_solver_failure_falls_back_to_previous_then_equal_weights(monkeypatch):
    from skfolio.optimization import MeanRisk

    def broken(self, X, y=None, **kwargs):
        raise RuntimeError("solver exploded")

    monkeypatch.setattr(MeanRisk, "fit", broken)
    mu, covariance = np.array([0.001, 0.002]), np.diag([1e-4, 1e-4])
    manager = PortfolioManager()
    allocation = manager.allocate_from_moments(mu, covariance, ["A", "B"], previous_weights=np.array([0.3, 0.7]))
    assert allocation.method == "previous_weights" and "solver exploded" in allocation.reason
    np.testing.assert_allclose(allocation.weights, [0.3, 0.7])
    allocation = manager.allocate_from_moments(mu, covariance, ["A", "B"])
    assert allocation.method == "equal_weight"
    np.testing.assert_allclose(allocation.weights, [0.5, 0.5])


def test_manager_rejects_an_infeasible_cap():
    with pytest.raises(ValueError, match="max_weight"):
        PortfolioManager(max_weight=0.2).allocate(np.zeros((30, 3)) + 0.001, ["A", "B", "C"])


# --- views ---------------------------------------------------------------------------------------------------------


def test_view_tilt_and_confidence_by_hand():
    buy, sell, hold = np.eye(3)[BUY], np.eye(3)[SELL], np.eye(3)[HOLD]
    assert view_tilt(buy, 0.02, 0.05) == pytest.approx(0.001)
    assert view_tilt(sell, 0.02, 0.05) == pytest.approx(-0.001)
    assert view_tilt(hold, 0.02, 0.05) == 0.0
    assert view_confidence(buy) == 1.0 and view_confidence(hold) == 1.0
    assert view_confidence(np.full(3, 1 / 3)) == pytest.approx(0.0, abs=1e-12)
    split = np.array([0.5, 0.0, 0.5])  # two analysts that disagree
    assert view_tilt(split, 0.02, 0.05) == 0.0
    assert view_confidence(split) == pytest.approx(1 - math.log(2) / math.log(3))
    with pytest.raises(ValueError, match="sum"):
        view_confidence([0.5, 0.5, 0.5])


@pytest.mark.parametrize("tilt", [0.0005, -0.0005])
def test_views_tilt_weights_in_their_direction(tilt):
    mu, covariance = np.array([0.001, 0.001]), np.diag([1e-4, 1e-4])
    manager = PortfolioManager()
    neutral = manager.allocate_from_moments(mu, covariance, ["A", "B"]).weights
    np.testing.assert_allclose(neutral, [0.5, 0.5], atol=1e-3)
    viewed = manager.allocate_from_moments(
        mu, covariance, ["A", "B"], views=AssetViews(["A"], np.array([tilt]), np.array([0.8]))
    ).weights
    assert np.sign(viewed[0] - 0.5) == np.sign(tilt) and abs(viewed[0] - 0.5) > 0.05
    # A more confident view moves the weights further.
    stronger = manager.allocate_from_moments(
        mu, covariance, ["A", "B"], views=AssetViews(["A"], np.array([tilt]), np.array([0.99]))
    ).weights
    assert abs(stronger[0] - 0.5) > abs(viewed[0] - 0.5)


def test_certain_views_set_the_posterior_mean_and_unconfident_ones_change_nothing():
    mu, covariance = np.array([0.001, 0.0008]), np.array([[1e-4, 2e-5], [2e-5, 2e-4]])
    manager = PortfolioManager()
    certain = manager.allocate_from_moments(
        mu, covariance, ["A", "B"], views=AssetViews(["A", "B"], np.array([0.0004, -0.0002]), np.array([1.0, 1.0]))
    )
    np.testing.assert_allclose(certain.expected_returns, mu + [0.0004, -0.0002], atol=1e-10)
    ignored = manager.allocate_from_moments(
        mu, covariance, ["A", "B"], views=AssetViews(["A"], np.array([0.01]), np.array([0.0]))
    )
    np.testing.assert_allclose(ignored.weights, manager.allocate_from_moments(mu, covariance, ["A", "B"]).weights)


# --- risk manager --------------------------------------------------------------------------------------------------


def test_risk_manager_caps_send_the_excess_to_cash():
    decision = RiskManager(max_weight=0.5).apply(np.array([0.7, 0.3]), None, [100.0])
    np.testing.assert_allclose(decision.weights, [0.5, 0.3, 0.2])
    assert decision.notes == ["capped at 0.5"]


def test_risk_manager_volatility_target_by_hand():
    # One asset with 2 % daily volatility: 0.02 · sqrt(252) = 31.7 % a year, scaled to 20 %.
    covariance = np.array([[0.02**2]])
    assert predicted_volatility(np.array([1.0]), covariance, 252) == pytest.approx(0.02 * math.sqrt(252))
    decision = RiskManager(volatility_target=0.2).apply(np.array([1.0]), covariance, [100.0])
    assert decision.exposure == pytest.approx(0.2 / (0.02 * math.sqrt(252)))
    assert decision.weights.sum() == pytest.approx(1.0)
    assert volatility_scale(0.1, 0.2) == 1.0  # never levered up


def test_risk_manager_drawdown_brake():
    assert current_drawdown([100.0, 120.0, 100.0]) == pytest.approx(1 / 6)
    manager = RiskManager(drawdown_limit=0.1, drawdown_exposure=0.5)
    braked = manager.apply(np.array([0.6, 0.4]), None, [100.0, 120.0, 100.0])
    np.testing.assert_allclose(braked.weights, [0.3, 0.2, 0.5])
    calm = manager.apply(np.array([0.6, 0.4]), None, [100.0, 120.0, 115.0])
    np.testing.assert_allclose(calm.weights, [0.6, 0.4, 0.0])


# --- the environment -----------------------------------------------------------------------------------------------


def test_alignment_drops_days_an_asset_lacks_and_logs_them(caplog):
    with caplog.at_level(logging.WARNING):
        market = align_market(synthetic_series(40, skip=(5, 6, 20)))
    assert len(market.dates) == 37
    assert market.dropped_days == {market.series["AAA"].dates[k]: ["CCC"] for k in (5, 6, 20)}
    assert "CCC has no price on 3 day(s)" in caplog.text
    np.testing.assert_allclose(market.close[:, 0], np.delete(market.series["AAA"].close, [5, 6, 20]))


def test_alignment_names_assets_whose_calendars_do_not_overlap():
    early = MarketSeries("EARLY", "stock", business_dates(10, "2021-01-04"), np.linspace(10, 11, 10))
    late = MarketSeries("LATE", "stock", business_dates(10, "2021-06-01"), np.linspace(10, 11, 10))
    other = MarketSeries("WIDE", "stock", business_dates(200, "2021-01-04"), np.linspace(10, 11, 200))
    with pytest.raises(ValueError, match=r"\['EARLY', 'LATE'\] do not overlap"):
        align_market([early, late, other])


def test_action_validation():
    np.testing.assert_allclose(normalise_weights([2.0, 1.0, 1.0], 3), [0.5, 0.25, 0.25])
    np.testing.assert_allclose(normalise_weights([0.0, 0.0, 0.0], 3), [0.0, 0.0, 1.0])  # nothing asked: cash
    np.testing.assert_allclose(normalise_weights([0.5, -1e-12, 0.5], 3), [0.5, 0.0, 0.5])  # rounding noise
    with pytest.raises(ValueError, match="long-only"):
        normalise_weights([0.5, -0.1, 0.6], 3)
    with pytest.raises(ValueError, match="finite"):
        normalise_weights([0.5, np.nan, 0.5], 3)
    with pytest.raises(ValueError, match="3 weights"):
        normalise_weights([1.0, 0.0], 3)


def test_rebalance_costs_by_hand():
    # Holdings 60 and 40, no cash, to 50/50 at 10 bps: 0.5 V' stays between 40 and 60, so the traded notional is
    # (60 - 0.5 V') + (0.5 V' - 40) = 20 whatever V' is, and V' = 100 - 0.001 · 20 = 99.98.
    cash, shares, cost, turnover = rebalance(0.0, np.array([6.0, 4.0]), np.array([10.0, 10.0]), [0.5, 0.5, 0.0], 1e-3)
    assert cost == pytest.approx(0.02)
    np.testing.assert_allclose(shares * 10.0, [49.99, 49.99])
    assert cash == 0.0 and turnover == pytest.approx(0.2)


def test_environment_costs_and_next_price_execution_by_hand():
    dates = business_dates(4)
    a = MarketSeries("A", "stock", dates, [10.0, 20.0, 25.0, 20.0])
    b = MarketSeries("B", "stock", dates, [50.0, 50.0, 40.0, 40.0])
    env = PortfolioEnv([a, b], initial_cash=1000.0, transaction_cost_bps=10.0)
    env.reset(seed=0)
    # Day 0 → 1: all cash until the trade at the day-1 closes; buying 50/50 costs c · V', so V' = 1000 / 1.001.
    _, reward, _, _, info = env.step([0.5, 0.5, 0.0])
    value = 1000.0 / 1.001
    assert env.account_value == pytest.approx(value)
    assert info["cost"] == pytest.approx(1000.0 - value)
    np.testing.assert_allclose(env.shares, [value / 2 / 20.0, value / 2 / 50.0])
    assert reward == pytest.approx(math.log(value / 1000.0))
    # Day 1 → 2: A +25 %, B -20 %; the holdings move, then everything is sold to cash at the day-2 closes.
    before = value / 2 * 1.25 + value / 2 * 0.8
    env.step([0.0, 0.0, 1.0])
    assert env.account_value == pytest.approx(before - 1e-3 * before)
    np.testing.assert_allclose(env.weights, [0.0, 0.0, 1.0])


def strict_check_env(env) -> None:
    # The passive checker only warns: treat warnings as failures, except the expected unbounded-Box ones.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env, skip_render_check=True)
    unexpected = [str(w.message) for w in caught if "infinity" not in str(w.message)]
    assert not unexpected


@pytest.mark.parametrize("cost", [0.0, 10.0])
def test_check_env(cost):
    strict_check_env(PortfolioEnv(synthetic_series(60, skip=(3, 30)), transaction_cost_bps=cost, lookback=5))


def test_state_is_point_in_time():
    env = PortfolioEnv(synthetic_series(60, skip=(10,)), window=("2021-02-01", "2021-03-01"))
    _, info = env.reset()
    for _ in range(5):
        state = info["state"]
        assert state.dates[-1] == state.date and all(d <= state.date for d in state.dates)
        for asset in state.assets:
            assert state.asset_dates[asset][-1] == state.date
            single = asset_trading_state(state, asset)
            assert single.dates[-1] == state.date and single.mode == "position"
            assert single.price == state.prices[-1, state.assets.index(asset)]
        _, _, _, _, info = env.step(env.action_space.sample())


def test_weights_stay_long_only_and_sum_to_one_after_every_step():
    market = align_market(synthetic_series(120, skip=(7, 50)))
    team = Team(
        small_manager(max_weight=0.5),
        analysts={asset: MomentumAgent(lookback=5) for asset in market.assets},
        risk_manager=RiskManager(max_weight=0.5, volatility_target=0.1, drawdown_limit=0.05),
        estimation_window=30,
        view_scale=0.1,
    )
    env = PortfolioEnv(market, window=(market.dates[40], market.dates[80]), transaction_cost_bps=10.0)
    _, info = env.reset(seed=0)
    done, steps = False, 0
    while not done:
        target = team.target_weights(info["state"])
        assert np.all(target >= 0) and target.sum() == pytest.approx(1.0, abs=1e-9)
        assert target[:-1].max() <= 0.5 + 1e-6
        _, _, terminated, truncated, info = env.step(target)
        weights = info["state"].weights
        assert np.all(weights >= -1e-12) and weights.sum() == pytest.approx(1.0, abs=1e-9)
        np.testing.assert_allclose(weights, target, atol=1e-9)  # the trade reaches its target after costs
        done, steps = terminated or truncated, steps + 1
    assert steps == env.episode_length
    assert team.last_decision["views"] and team.last_decision["method"] in ("max_sharpe", "min_variance")


# --- backtest ------------------------------------------------------------------------------------------------------


def test_backtest_metrics_and_baselines():
    market = align_market(synthetic_series(100))
    start, end = market.dates[30], market.dates[-1]
    result = run_portfolio_backtest(BuyAndHoldPolicy("AAA"), market, start, end, transaction_cost_bps=10.0)
    equity = result.equity
    assert equity[1] == pytest.approx(100_000 / 1.001)  # bought at the second close: only the cost so far
    assert result.metrics["paper"].cumulative_return == pytest.approx(math.log(equity[-1] / equity[0]))
    assert result.metrics["standard"].cumulative_return == pytest.approx(equity[-1] / equity[0] - 1)
    prices = market.close[30:, 0]
    assert equity[-1] == pytest.approx(100_000 / 1.001 * prices[-1] / prices[1])
    assert result.total_cost == pytest.approx(100_000 - 100_000 / 1.001)

    equal = run_portfolio_backtest(EqualWeightPolicy(), market, start, end)
    np.testing.assert_allclose(equal.weights()[1:, :-1], 1 / 3, atol=1e-9)
    sharpe = run_portfolio_backtest(max_sharpe_policy(small_manager(), 30), market, start, market.dates[60])
    assert sum(sharpe.methods.values()) == len(sharpe.trajectory) - 1
    assert np.all(sharpe.weights() >= -1e-9)


# --- recipe and CLI ------------------------------------------------------------------------------------------------


@pytest.fixture
def dataset_dir(tmp_path):
    rows = []
    for series in synthetic_series(130, skip=(12, 110)):
        for date, price, news in zip(series.dates, series.close, series.news):
            rows.append(
                {
                    "date": date,
                    "asset": series.asset,
                    "asset_class": "stock",
                    "close": float(price),
                    "open": None,
                    "high": None,
                    "low": None,
                    "volume": None,
                    "news": news,
                    "filings": [],
                }
            )
    path = tmp_path / "market"
    DatasetDict({"full": Dataset.from_list(rows, features=MARKET_FEATURES)}).save_to_disk(str(path))
    return path


def test_portfolio_recipe_end_to_end(dataset_dir, tmp_path, capsys):
    dates = business_dates(130)
    config = tmp_path / "portfolio.yaml"
    config.write_text(
        f"dataset_name: {dataset_dir}\nassets: [AAA, BBB, CCC]\nstart: '{dates[100]}'\nend: '{dates[-1]}'\n"
        "estimation_window: 40\nmax_weight: 0.5\nanalysts: [momentum, ma_crossover]\n"
        "asset_analysts: ['CCC=buy_and_hold']\n"
    )
    output = tmp_path / "report"
    assert main(["portfolio", "--config", str(config), "--output_dir", str(output)]) == 0
    out = capsys.readouterr().out
    assert "Metrics convention: paper" in out and "Metrics convention: standard" in out
    for name in ("team", "max_sharpe", "max_sharpe_risk", "equal_weight", "buy_and_hold_AAA", "buy_and_hold_CCC"):
        assert f"| {name} |" in out
    for file in (
        "report.md",
        "metrics.json",
        "metrics.csv",
        "equity_curves.csv",
        "weights.csv",
        "trajectories.json",
        "equity_curves.png",
        "weights.png",
    ):
        assert (output / file).stat().st_size > 0, file
    summary = json.loads((output / "metrics.json").read_text())
    assert set(summary["policies"]["team"]["metrics"]) == {"paper", "standard"}
    assert list(summary["dropped_days"].values()) == [["CCC"]]  # day 110 is in the window, day 12 before it
    assert summary["settings"]["asset_analysts"] == ["CCC=buy_and_hold"]
    rows = (output / "metrics.csv").read_text().splitlines()
    assert len(rows) == 1 + 2 * len(summary["policies"])
    trajectory = json.loads((output / "trajectories.json").read_text())["team"]
    assert trajectory[0]["decision"]["views"]["CCC"]["confidence"] == 1.0  # buy-and-hold analyst: always sure


def test_portfolio_recipes_parse_and_unknown_keys_fail(tmp_path):
    recipes = sorted((ROOT / "recipes" / "portfolio").glob("*.yaml"))
    assert recipes
    for recipe in recipes:
        (config,) = TrlParser((PortfolioConfig,)).parse_args_and_config(args=["--config", str(recipe)])
        assert config.assets and config.start < config.end
    investorbench = TrlParser((PortfolioConfig,)).parse_args_and_config(
        args=["--config", str(ROOT / "recipes/portfolio/investorbench_stocks.yaml")]
    )[0]
    assert investorbench.assets == ["MSFT", "JNJ", "UVV", "HON", "NFLX"]
    assert (investorbench.start, investorbench.end) == ("2020-10-01", "2021-05-05")
    assert (investorbench.estimation_window, investorbench.transaction_cost_bps) == (60, 10.0)
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "dataset_name: x\nassets: [A, B, C]\nstart: '2021-01-01'\nend: '2021-02-01'\noutput_dir: o\nnope: 1\n"
    )
    with pytest.raises(ValueError, match="nope"):
        TrlParser((PortfolioConfig,)).parse_args_and_config(args=["--config", str(bad)])


def test_config_rejects_bad_settings():
    with pytest.raises(ValueError, match="max_weight"):
        PortfolioConfig("d", ["A", "B", "C"], "2021-01-01", "2021-02-01", "o", max_weight=0.3)
    with pytest.raises(ValueError, match="baseline"):
        PortfolioConfig("d", ["A", "B", "C"], "2021-01-01", "2021-02-01", "o", baselines=["magic"])
    with pytest.raises(ValueError, match="ASSET=spec"):
        PortfolioConfig("d", ["A", "B", "C"], "2021-01-01", "2021-02-01", "o", asset_analysts=["ZZZ=momentum"])
