"""flagtrl.statistics against hand-computed values and against `arch` / `scipy` themselves."""

from __future__ import annotations

import math

import numpy as np
import pytest

from flagtrl.metrics import paper_metrics, standard_metrics
from flagtrl.sharpe import sharpe_ratio
from flagtrl.statistics import (
    composite_ranks,
    composite_scores,
    median_ci,
    paper_sharpe,
    probabilistic_sharpe_ratio,
    sharpe_difference_ci,
)


def market(n: int = 250, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0005, 0.012, size=n)


@pytest.mark.parametrize("days", [252, 365])
def test_paper_sharpe_is_the_paper_metric(days):
    prices = 100 * np.exp(np.cumsum(np.r_[0.0, market(60)]))
    positions = np.random.default_rng(1).choice([-1.0, 0.0, 1.0], size=60)
    log_returns = positions * np.log(prices[1:] / prices[:-1])
    assert paper_sharpe(log_returns, days) == pytest.approx(paper_metrics(prices, positions, days).sharpe_ratio)


def test_sharpe_difference_ci_is_archs_percentile_interval():
    from arch.bootstrap import StationaryBootstrap

    a, b = market(seed=0), market(seed=1)
    ours = sharpe_difference_ci(a, b, periods_per_year=252, num_resamples=500, block_length=5.0, seed=3)

    def difference(x, y):
        return sharpe_ratio(x, periods_per_year=252) - sharpe_ratio(y, periods_per_year=252)

    reference = StationaryBootstrap(5.0, a, b, seed=np.random.default_rng(3))
    (low,), (high,) = reference.conf_int(difference, reps=500, method="percentile", size=0.95)
    assert ours.difference == pytest.approx(difference(a, b))
    assert (ours.low, ours.high) == pytest.approx((low, high), abs=1e-12)
    assert ours.finite_resamples == 500 and ours.block_length == 5.0


def test_sharpe_difference_ci_resamples_the_same_days():
    # b is a with a small daily fee: paired resampling keeps their difference nearly constant (a narrow interval
    # that excludes 0); resampling the two series independently would mix the market's noise into it.
    a = market(seed=0)
    b = a - 0.0002
    result = sharpe_difference_ci(a, b, seed=0, num_resamples=300)
    assert result.difference > 0
    assert result.excludes_zero and result.high - result.low < 0.1

    same = sharpe_difference_ci(a, a, num_resamples=100)
    assert (same.difference, same.low, same.high) == (0.0, 0.0, 0.0)
    # Seeded: the same seed gives the same interval, another seed another one.
    again = sharpe_difference_ci(a, b, seed=0, num_resamples=300)
    assert (again.low, again.high) == (result.low, result.high)
    assert sharpe_difference_ci(a, b, seed=1, num_resamples=300).low != result.low


def test_sharpe_difference_ci_estimates_the_block_length_and_takes_a_paper_sharpe():
    a, b = market(seed=0), market(seed=2)
    result = sharpe_difference_ci(a, b, num_resamples=50, sharpe=lambda r: paper_sharpe(r, 252))
    assert result.block_length >= 1.0
    assert result.difference == pytest.approx(paper_sharpe(a, 252) - paper_sharpe(b, 252))
    # A flat agent (all returns 0) against the market: block length from the market alone, finite interval.
    flat = sharpe_difference_ci(np.zeros(100), market(100), num_resamples=50)
    assert math.isfinite(flat.low) and flat.difference == pytest.approx(
        -sharpe_ratio(market(100), periods_per_year=252)
    )


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"returns_b": np.zeros(10)}, "same days"),
        ({"returns_a": [0.1, float("nan"), 0.2], "returns_b": [0.1, 0.2, 0.3]}, r"returns_a\[1\] = nan"),
        ({"confidence": 1.5}, "confidence"),
        ({"block_length": 0.5}, "block_length"),
        ({"returns_a": [0.1, 0.2], "returns_b": [0.1, 0.2]}, "at least 3"),
    ],
)
def test_sharpe_difference_ci_rejects_bad_input(kwargs, message):
    arguments = {"returns_a": market(20), "returns_b": market(20, seed=1), **kwargs}
    with pytest.raises(ValueError, match=message):
        sharpe_difference_ci(**arguments)


def test_probabilistic_sharpe_ratio_by_hand():
    r = np.array([0.010, -0.004, 0.007, 0.012, -0.009, 0.003, 0.015, -0.002, 0.006, 0.001])
    n = len(r)
    mean = sum(r) / n
    sd = math.sqrt(sum((x - mean) ** 2 for x in r) / (n - 1))
    m2 = sum((x - mean) ** 2 for x in r) / n
    skew = (sum((x - mean) ** 3 for x in r) / n) / m2**1.5
    kurt = (sum((x - mean) ** 4 for x in r) / n) / m2**2
    sr = mean / sd
    z = sr * math.sqrt(n - 1) / math.sqrt(1 - skew * sr + (kurt - 1) / 4 * sr**2)
    expected = 0.5 * (1 + math.erf(z / math.sqrt(2)))
    assert probabilistic_sharpe_ratio(r) == pytest.approx(expected, rel=1e-12)
    # Against a benchmark equal to the sample's own Sharpe ratio: a coin flip.
    assert probabilistic_sharpe_ratio(r, benchmark_sharpe=sr) == pytest.approx(0.5)
    # Longer samples of the same returns are surer.
    assert probabilistic_sharpe_ratio(np.tile(r, 5)) > probabilistic_sharpe_ratio(r)
    # A sure gain and a sure loss.
    assert probabilistic_sharpe_ratio([0.01] * 5) == 1.0 and probabilistic_sharpe_ratio([-0.01] * 5) == 0.0
    with pytest.raises(ValueError, match="at least 3"):
        probabilistic_sharpe_ratio([0.01, 0.02])


def test_composite_scores_by_hand():
    cr, mdd, sortino = [0.10, 0.00, -0.10], [0.05, 0.10, 0.15], [2.0, 0.0, -2.0]
    # Each metric's z-scores (population std) are +1.2247, 0, -1.2247 once drawdown is negated: the mean too.
    z = math.sqrt(1.5)
    assert composite_scores(cr, mdd, sortino) == pytest.approx([z, 0.0, -z])
    assert composite_ranks([z, 0.0, -z]) == [1, 2, 3]
    assert composite_ranks([1.0, 1.0, 0.5]) == [1, 1, 3]
    # A tie on a metric adds 0; an infinite Sortino ranks first without breaking the others.
    scores = composite_scores([0.1, 0.1, 0.1], [0.1, 0.1, 0.1], [math.inf, 1.0, 0.0])
    assert np.isfinite(scores).all() and composite_ranks(scores) == [1, 2, 3]
    with pytest.raises(ValueError, match="one cumulative return"):
        composite_scores([0.1], [0.1, 0.2], [1.0])


def test_median_ci_summarises_and_resamples_windows():
    differences = [-0.5, 0.2, 0.4, 1.0, -0.1, 0.3, float("nan")]
    windows = ["w1", "w1", "w2", "w2", "w3", "w3", "w3"]
    result = median_ci(differences, windows, num_resamples=200)
    finite = np.array(differences[:6])
    assert (result.cells, result.windows) == (6, 3)
    assert result.median == pytest.approx(np.median(finite))
    assert (result.q1, result.q3) == pytest.approx(tuple(np.percentile(finite, [25, 75])))
    assert result.win_rate == pytest.approx(4 / 6)
    assert finite.min() <= result.median_low <= result.median <= result.median_high <= finite.max()
    single = median_ci([0.1, 0.2], ["w", "w"])
    assert math.isnan(single.median_low)
    with pytest.raises(ValueError, match="one cluster per difference"):
        median_ci([0.1], ["a", "b"])


def test_standard_sharpe_of_account_returns_matches_the_metric():
    equity = 100_000 * np.cumprod(np.r_[1.0, 1 + market(40)])
    returns = equity[1:] / equity[:-1] - 1
    assert sharpe_ratio(returns, periods_per_year=252) == pytest.approx(standard_metrics(equity, 252).sharpe_ratio)
