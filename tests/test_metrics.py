import math
import os
from pathlib import Path

import numpy as np
import pytest

import flagtrl
from flagtrl.metrics import (
    CONVENTIONS,
    TradingMetrics,
    compute_metrics,
    equity_from_positions,
    max_drawdown,
    paper_log_returns,
    paper_metrics,
    simple_returns,
    standard_metrics,
)
from flagtrl.metrics_table import format_metrics_table


os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

# Up 10 %, down 10 %, up 10 %: 100 -> 110 -> 99 -> 108.9.
PRICES = [100.0, 110.0, 99.0, 108.9]
UP = math.log(1.1)  # ln(110/100) = ln(108.9/99)
DOWN = math.log(0.9)  # ln(99/110), negative

METRICS_FOLDER = Path(flagtrl.__file__).parent / "evaluate_metrics" / "trading_metrics"


def sample_std(values):
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


# ---------------------------------------------------------------------------------------------------------------
# paper convention: hand-computed values
# ---------------------------------------------------------------------------------------------------------------


def test_paper_log_returns_are_position_times_log_price_ratio():
    # r = [1*ln 1.1, 0*ln 0.9, -1*ln 1.1]
    np.testing.assert_allclose(paper_log_returns(PRICES, [1, 0, -1]), [UP, 0.0, -UP], rtol=0, atol=1e-15)


def test_paper_always_long():
    metrics = paper_metrics(PRICES, [1, 1, 1], trading_days_per_year=252)
    returns = [UP, DOWN, UP]
    # CR = ln 1.1 + ln 0.9 + ln 1.1 = ln(1.089)
    assert metrics.cumulative_return == pytest.approx(math.log(1.089), rel=1e-12)
    # AV = sample std of the three returns * sqrt(252)
    assert metrics.annualized_volatility == pytest.approx(sample_std(returns) * math.sqrt(252), rel=1e-12)
    # SR = (CR / (4 prices / 252)) / AV
    assert metrics.sharpe_ratio == pytest.approx(
        (math.log(1.089) / (4 / 252)) / (sample_std(returns) * math.sqrt(252)), rel=1e-12
    )
    # curve 1, 1+UP, (1+UP)(1+DOWN), ...: peak 1+UP, trough (1+UP)(1+DOWN), fall = -DOWN
    assert metrics.max_drawdown == pytest.approx(-DOWN, rel=1e-12)
    # downside deviation = sqrt((0 + DOWN^2 + 0) / 3) * sqrt(252)
    downside = abs(DOWN) / math.sqrt(3) * math.sqrt(252)
    assert metrics.sortino_ratio == pytest.approx((math.log(1.089) / (4 / 252)) / downside, rel=1e-12)
    assert metrics.convention == "paper"
    assert metrics.num_periods == 3
    assert metrics.annualized_return is None and metrics.calmar_ratio is None and metrics.risk_free_rate is None


def test_paper_long_flat_short():
    metrics = paper_metrics(PRICES, [1, 0, -1], trading_days_per_year=252)
    # r = [UP, 0, -UP]: CR = 0, mean 0, sample std = sqrt((UP^2 + 0 + UP^2) / 2) = UP
    assert metrics.cumulative_return == pytest.approx(0.0, abs=1e-15)
    assert metrics.annualized_volatility == pytest.approx(UP * math.sqrt(252), rel=1e-12)
    assert metrics.sharpe_ratio == pytest.approx(0.0, abs=1e-12)
    assert metrics.sortino_ratio == pytest.approx(0.0, abs=1e-12)
    # curve 1, 1+UP, 1+UP, (1+UP)(1-UP): fall from the peak 1+UP is 1 - (1-UP) = UP
    assert metrics.max_drawdown == pytest.approx(UP, rel=1e-12)


def test_paper_no_downside_gives_infinite_sortino():
    # r = [UP, -DOWN, 0], all >= 0 and not all equal: CR = ln(1.1/0.9) > 0, no shortfall
    metrics = paper_metrics(PRICES, [1, -1, 0], trading_days_per_year=252)
    assert metrics.cumulative_return == pytest.approx(math.log(1.1 / 0.9), rel=1e-12)
    assert metrics.sortino_ratio == math.inf
    assert metrics.max_drawdown == 0.0
    assert metrics.sharpe_ratio == pytest.approx(
        (math.log(1.1 / 0.9) / (4 / 252)) / (sample_std([UP, -DOWN, 0.0]) * math.sqrt(252)), rel=1e-12
    )


def test_paper_sharpe_numerator_uses_252_even_for_crypto():
    stock = paper_metrics(PRICES, [1, 1, 1], trading_days_per_year=252)
    crypto = paper_metrics(PRICES, [1, 1, 1], trading_days_per_year=365)
    assert crypto.cumulative_return == stock.cumulative_return
    assert crypto.annualized_volatility == pytest.approx(stock.annualized_volatility * math.sqrt(365 / 252), rel=1e-12)
    # Only AV changes with D: SR scales by sqrt(252/365), not by anything of the numerator.
    assert crypto.sharpe_ratio == pytest.approx(stock.sharpe_ratio * math.sqrt(252 / 365), rel=1e-12)


def test_paper_buy_and_hold_cumulative_return_is_log_of_price_ratio():
    rng = np.random.default_rng(0)
    prices = 50.0 * np.exp(np.cumsum(rng.normal(0.0, 0.03, size=150)))
    metrics = paper_metrics(prices, np.ones(prices.size - 1), trading_days_per_year=365)
    assert metrics.cumulative_return == pytest.approx(math.log(prices[-1] / prices[0]), rel=1e-10)
    # Shorting every day mirrors every return: same volatility, opposite CR and SR.
    short = paper_metrics(prices, -np.ones(prices.size - 1), trading_days_per_year=365)
    assert short.cumulative_return == pytest.approx(-metrics.cumulative_return, rel=1e-10)
    assert short.annualized_volatility == pytest.approx(metrics.annualized_volatility, rel=1e-10)
    assert short.sharpe_ratio == pytest.approx(-metrics.sharpe_ratio, rel=1e-10)


def test_paper_degenerate_series():
    # Flat all period: every return 0, zero dispersion -> ratios 0.0, not nan.
    flat = paper_metrics(PRICES, [0, 0, 0], trading_days_per_year=252)
    assert (flat.cumulative_return, flat.annualized_volatility, flat.max_drawdown) == (0.0, 0.0, 0.0)
    assert (flat.sharpe_ratio, flat.sortino_ratio) == (0.0, 0.0)
    # Constant positive return (geometric prices): a sure gain, Sharpe +inf; no downside, Sortino +inf.
    steady = paper_metrics([100.0, 110.0, 121.0, 133.1], [1, 1, 1], trading_days_per_year=252)
    assert steady.annualized_volatility == 0.0 and steady.sharpe_ratio == math.inf and steady.sortino_ratio == math.inf
    assert steady.cumulative_return > 0
    # One return: the sample volatility is undefined.
    single = paper_metrics([100.0, 110.0], [1], trading_days_per_year=252)
    assert single.cumulative_return == pytest.approx(UP)
    assert math.isnan(single.annualized_volatility) and math.isnan(single.sharpe_ratio)
    assert math.isnan(single.sortino_ratio)


# ---------------------------------------------------------------------------------------------------------------
# standard convention
# ---------------------------------------------------------------------------------------------------------------


def test_standard_hand_computed():
    metrics = standard_metrics(PRICES, trading_days_per_year=252)
    # r = [0.1, -0.1, 0.1]; mean 0.1/3; deviations 0.2/3, -0.4/3, 0.2/3 -> sample var 0.04/3, std 0.2/sqrt(3)
    assert metrics.cumulative_return == pytest.approx(0.089, rel=1e-12)  # 108.9/100 - 1
    assert metrics.annualized_volatility == pytest.approx(0.2 / math.sqrt(3) * math.sqrt(252), rel=1e-12)
    # Sharpe = (0.1/3) / (0.2/sqrt 3) * sqrt 252 = sqrt(252) / (2 sqrt 3) = sqrt(84) / 2
    assert metrics.sharpe_ratio == pytest.approx(math.sqrt(84) / 2, rel=1e-12)
    # downside = sqrt(0.01 / 3) * sqrt 252; Sortino = (0.1/3 * 252) / downside = sqrt(84)
    assert metrics.sortino_ratio == pytest.approx(math.sqrt(84), rel=1e-12)
    assert metrics.max_drawdown == pytest.approx(0.1, rel=1e-12)  # 110 -> 99
    assert metrics.annualized_return == pytest.approx(1.089 ** (252 / 3) - 1, rel=1e-12)
    assert metrics.calmar_ratio == pytest.approx((1.089 ** (252 / 3) - 1) / 0.1, rel=1e-12)
    assert metrics.convention == "standard" and metrics.risk_free_rate == 0.0


def test_standard_risk_free_rate_moves_sharpe_not_volatility():
    base = standard_metrics(PRICES, trading_days_per_year=252)
    with_rf = standard_metrics(PRICES, trading_days_per_year=252, risk_free_rate=0.05)
    daily_rf = 1.05 ** (1 / 252) - 1
    assert with_rf.annualized_volatility == base.annualized_volatility
    assert with_rf.cumulative_return == base.cumulative_return
    # Subtracting a constant leaves the std alone: Sharpe = (0.1/3 - rf_d) / (0.2/sqrt 3) * sqrt 252
    assert with_rf.sharpe_ratio == pytest.approx((0.1 / 3 - daily_rf) / (0.2 / math.sqrt(3)) * math.sqrt(252))


def test_standard_max_drawdown_counts_a_fall_on_the_first_day():
    # V_0 is a peak: 100 -> 80 is a 20 % drawdown even though the curve then recovers past 100.
    assert standard_metrics([100.0, 80.0, 90.0, 120.0], trading_days_per_year=252).max_drawdown == pytest.approx(0.2)
    assert max_drawdown([1.0, 2.0, 1.5, 3.0, 0.75]) == pytest.approx(0.75)


def test_standard_flat_cash_account():
    metrics = standard_metrics([1000.0] * 5, trading_days_per_year=252)
    assert metrics.cumulative_return == 0.0 and metrics.max_drawdown == 0.0
    assert metrics.sharpe_ratio == 0.0 and metrics.sortino_ratio == 0.0 and metrics.calmar_ratio == 0.0


@pytest.mark.parametrize("trading_days_per_year", [252, 365])
@pytest.mark.parametrize("risk_free_rate", [0.0, 0.02])
def test_standard_matches_empyrical(trading_days_per_year, risk_free_rate):
    empyrical = pytest.importorskip("empyrical")
    rng = np.random.default_rng(1234)
    returns = rng.normal(0.0005, 0.02, size=200)
    equity = 10_000.0 * np.concatenate([[1.0], np.cumprod(1.0 + returns)])
    daily_rf = (1.0 + risk_free_rate) ** (1.0 / trading_days_per_year) - 1.0
    D = trading_days_per_year

    metrics = standard_metrics(equity, trading_days_per_year=D, risk_free_rate=risk_free_rate)

    assert metrics.cumulative_return == pytest.approx(empyrical.cum_returns_final(returns), rel=1e-10)
    assert metrics.annualized_volatility == pytest.approx(
        empyrical.annual_volatility(returns, annualization=D), rel=1e-10
    )
    assert metrics.sharpe_ratio == pytest.approx(
        empyrical.sharpe_ratio(returns, risk_free=daily_rf, annualization=D), rel=1e-10
    )
    assert metrics.sortino_ratio == pytest.approx(
        empyrical.sortino_ratio(returns, required_return=daily_rf, period="daily", annualization=D), rel=1e-10
    )
    # empyrical reports the drawdown as a negative fraction.
    assert metrics.max_drawdown == pytest.approx(-empyrical.max_drawdown(returns), rel=1e-10)
    assert metrics.annualized_return == pytest.approx(empyrical.annual_return(returns, annualization=D), rel=1e-10)
    assert metrics.calmar_ratio == pytest.approx(empyrical.calmar_ratio(returns, annualization=D), rel=1e-10)
    np.testing.assert_allclose(simple_returns(equity), returns, rtol=1e-10)


def test_equity_from_positions():
    # Long all along: the equity follows the price; flat: it stays put; short: it gains when the price falls.
    np.testing.assert_allclose(equity_from_positions(PRICES, [1, 1, 1], initial_value=100.0), PRICES)
    np.testing.assert_allclose(equity_from_positions(PRICES, [0, 0, 0]), [1.0, 1.0, 1.0, 1.0])
    # +10 % long, flat, short through +10 %: 1 -> 1.1 -> 1.1 -> 1.1 * 0.9
    np.testing.assert_allclose(equity_from_positions(PRICES, [1, 0, -1]), [1.0, 1.1, 1.1, 0.99])


# ---------------------------------------------------------------------------------------------------------------
# edge cases: steady losses, overflow, curves below 0, wiped-out accounts
# ---------------------------------------------------------------------------------------------------------------


def test_a_steady_loss_ranks_below_a_risky_one():
    # -1 % every day: zero dispersion and a negative mean. Sharpe 0 would rank it above any noisy loser.
    steady_loss = standard_metrics([100.0, 99.0, 98.01, 97.0299], trading_days_per_year=252)
    noisy_loss = standard_metrics([100.0, 99.5, 98.0, 97.9], trading_days_per_year=252)
    assert steady_loss.annualized_volatility == 0.0 and steady_loss.sharpe_ratio == -math.inf
    assert noisy_loss.sharpe_ratio < 0 and steady_loss.sharpe_ratio < noisy_loss.sharpe_ratio
    # Sortino is defined there (downside deviation |mean| > 0): -sqrt(D), the lowest a Sortino ratio can be.
    assert steady_loss.sortino_ratio == pytest.approx(-math.sqrt(252), rel=1e-9)
    assert steady_loss.sortino_ratio < noisy_loss.sortino_ratio < 0
    # The paper convention: a short on geometric prices loses the same log return every day.
    paper = paper_metrics([100.0, 110.0, 121.0, 133.1], [-1, -1, -1], trading_days_per_year=252)
    assert paper.sharpe_ratio == -math.inf and paper.sortino_ratio < 0
    # A cash account below the risk-free rate is a steady excess loss; at rf = 0 it is flat: 0.
    assert standard_metrics([1000.0] * 5, 252, risk_free_rate=0.02).sharpe_ratio == -math.inf
    assert standard_metrics([1000.0] * 5, 252).sharpe_ratio == 0.0


@pytest.mark.parametrize(("equity", "days"), [([100.0, 1000.0], 365), ([100.0, 2000.0], 252)])
def test_cagr_of_a_huge_gain_is_inf_not_an_overflow_error(equity, days):
    metrics = standard_metrics(equity, trading_days_per_year=days)
    assert metrics.cumulative_return == pytest.approx(equity[1] / equity[0] - 1)
    assert metrics.annualized_return == math.inf and metrics.calmar_ratio == math.inf  # 10^365 > float max


def test_cagr_is_computed_in_log_space():
    # Large but finite: 10^126, which the float pow computes too.
    assert standard_metrics([100.0, 1000.0, 1000.0], 252).annualized_return == pytest.approx(1e126, rel=1e-9)
    assert standard_metrics([100.0, 110.0], 252).annualized_return == pytest.approx(1.1**252 - 1, rel=1e-12)


def test_no_exception_for_finite_positive_inputs():
    rng = np.random.default_rng(0)
    for _ in range(300):
        size = int(rng.integers(2, 9))
        values = 10.0 ** rng.uniform(-6, 6, size=size)
        positions = rng.choice([-1.0, 0.0, 1.0], size=size - 1)
        days = int(rng.choice([252, 365]))
        for metrics in (
            paper_metrics(values, positions, days),
            standard_metrics(values, days),
            standard_metrics(equity_from_positions(values, positions), days),
        ):
            assert 0.0 <= metrics.max_drawdown <= 1.0
            assert metrics.cumulative_return >= -1.0 or metrics.convention == "paper"


def test_paper_drawdown_never_exceeds_100_percent():
    # The example: a 4-for-1 split read as a 75 % fall, log return ln(0.25) = -1.39 < -1. The paper's curve
    # prod(1 + r) went negative (MDD 139 %); each factor is now floored at 0: the curve stays at 0, MDD 100 %.
    metrics = paper_metrics([408.0, 406.0, 410.0, 102.5, 104.0, 103.0], [1] * 5, trading_days_per_year=252)
    assert metrics.max_drawdown == 1.0 and metrics.wiped_out
    assert metrics.cumulative_return == pytest.approx(math.log(103.0 / 408.0))  # the sum is the paper's, unchanged
    # Monotone in the size of the fall: 60 % (log return above -1, the paper's own value), 70 %, 80 % (floored).
    drawdowns = [paper_metrics([100.0, 100.0 * (1 - f), 100.0], [1, 1], 252).max_drawdown for f in (0.6, 0.7, 0.8)]
    assert drawdowns[0] == pytest.approx(-math.log(0.4)) and drawdowns == sorted(drawdowns) and drawdowns[-1] == 1.0
    assert not paper_metrics(PRICES, [1, 1, 1], 252).wiped_out
    # Whatever the curve, a value below 0 counts as 0.
    assert max_drawdown([1.0, 2.0, -1.0, 3.0]) == 1.0


def test_a_wiped_out_account_loses_100_percent():
    # The short: 10 -> 11 -> 30, value 1 -> 0.9 -> 0.9 * (1 - 19/11) < 0; the series ends there.
    equity = equity_from_positions([10.0, 11.0, 30.0, 31.0, 29.0], [-1, -1, -1, -1])
    np.testing.assert_allclose(equity, [1.0, 0.9, 0.0, 0.0, 0.0])  # floored at 0: a wiped-out account stays at 0
    for curve in (equity, [100_000.0, 90_000.0, -65_454.5]):
        metrics = standard_metrics(curve, trading_days_per_year=252)
        assert metrics.wiped_out and metrics.num_periods == 2
        assert (metrics.cumulative_return, metrics.annualized_return, metrics.max_drawdown) == (-1.0, -1.0, 1.0)
        assert metrics.calmar_ratio == -1.0 and math.isfinite(metrics.sharpe_ratio) and metrics.sharpe_ratio < 0
    paper = paper_metrics([10.0, 11.0, 30.0, 31.0, 29.0], [-1, -1, -1, -1], trading_days_per_year=252)
    assert paper.wiped_out and paper.max_drawdown == 1.0
    assert not standard_metrics(PRICES, 252).wiped_out
    # A wiped-out account cannot come back.
    with pytest.raises(ValueError, match=r"equity\[2\] = 0.0 is followed by equity\[3\] = 5.0"):
        standard_metrics([1.0, 0.5, 0.0, 5.0], trading_days_per_year=252)


def test_table_marks_a_wiped_out_run():
    metrics = standard_metrics([100.0, 90.0, -10.0], trading_days_per_year=252)
    table = format_metrics_table({"TOY": {"Short": metrics}}, "standard")
    assert table_cells(table)[0]["CR%"] == "-100.000 ‡" and table_cells(table)[0]["MDD%"] == "100.000"
    assert table.splitlines()[-1].startswith("‡ wiped out")
    assert "‡" not in format_metrics_table({"TOY": {"Flat": standard_metrics([1.0, 1.0], 252)}}, "standard")


# ---------------------------------------------------------------------------------------------------------------
# dispatch and validation
# ---------------------------------------------------------------------------------------------------------------


def test_compute_metrics_dispatches_by_convention():
    assert compute_metrics("paper", prices=PRICES, positions=[1, 0, -1], trading_days_per_year=252) == paper_metrics(
        PRICES, [1, 0, -1], trading_days_per_year=252
    )
    assert compute_metrics(
        "standard", equity=PRICES, trading_days_per_year=365, risk_free_rate=0.01
    ) == standard_metrics(PRICES, trading_days_per_year=365, risk_free_rate=0.01)
    assert CONVENTIONS == ("paper", "standard")


def test_compute_metrics_unknown_convention_names_valid_ones():
    with pytest.raises(
        ValueError, match=r"Unknown metrics convention 'textbook'; valid conventions are paper, standard"
    ):
        compute_metrics("textbook", equity=PRICES, trading_days_per_year=252)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"convention": "paper", "prices": PRICES}, "needs `prices` and `positions`"),
        ({"convention": "paper", "prices": PRICES, "positions": [1, 1, 1], "equity": PRICES}, "`equity` is for"),
        ({"convention": "paper", "prices": PRICES, "positions": [1, 1, 1], "risk_free_rate": 0.02}, "no risk-free"),
        ({"convention": "standard", "prices": PRICES}, "needs `equity`"),
        ({"convention": "standard", "equity": PRICES, "positions": [1, 1, 1]}, "are for 'paper'"),
    ],
)
def test_compute_metrics_rejects_arguments_of_the_other_convention(kwargs, message):
    with pytest.raises(ValueError, match=message):
        compute_metrics(trading_days_per_year=252, **kwargs)


def test_length_mismatch_names_both_lengths():
    with pytest.raises(ValueError, match=r"len\(prices\) = 4 needs len\(positions\) = 3, got 4"):
        paper_metrics(PRICES, [1, 1, 1, 1], trading_days_per_year=252)


@pytest.mark.parametrize(("bad", "shown"), [(0.0, "0.0"), (-3.0, "-3.0"), (float("nan"), "nan"), (math.inf, "inf")])
def test_bad_prices_name_index_and_value(bad, shown):
    prices = [100.0, 101.0, bad, 102.0]
    with pytest.raises(ValueError, match=rf"prices\[2\] = {shown}"):
        paper_metrics(prices, [1, 1, 1], trading_days_per_year=252)
    with pytest.raises(ValueError, match=rf"equity\[2\] = {shown}"):
        standard_metrics(prices, trading_days_per_year=252)


def test_too_few_prices():
    with pytest.raises(ValueError, match=r"`prices` needs at least 2 values .*got 1"):
        paper_metrics([100.0], [], trading_days_per_year=252)
    with pytest.raises(ValueError, match=r"`equity` needs at least 2 values .*got 0"):
        standard_metrics([], trading_days_per_year=252)


def test_positions_outside_long_flat_short():
    with pytest.raises(ValueError, match=r"positions\[1\] = 0.5"):
        paper_metrics(PRICES, [1, 0.5, -1], trading_days_per_year=252)


def test_bad_days_and_risk_free_rate():
    with pytest.raises(ValueError, match="`trading_days_per_year` must be positive .*got 0"):
        paper_metrics(PRICES, [1, 1, 1], trading_days_per_year=0)
    with pytest.raises(ValueError, match=r"`risk_free_rate` .* got -1.5"):
        standard_metrics(PRICES, trading_days_per_year=252, risk_free_rate=-1.5)


def test_to_dict_holds_every_field():
    as_dict = paper_metrics(PRICES, [1, 1, 1], trading_days_per_year=252).to_dict()
    assert as_dict["convention"] == "paper" and as_dict["num_periods"] == 3
    assert as_dict["cumulative_return"] == pytest.approx(math.log(1.089))
    assert set(as_dict) >= {"sharpe_ratio", "annualized_volatility", "max_drawdown", "sortino_ratio"}


# ---------------------------------------------------------------------------------------------------------------
# table
# ---------------------------------------------------------------------------------------------------------------


def make_metrics(cr, sr, av, mdd, sortino, convention="paper"):
    return TradingMetrics(
        cumulative_return=cr,
        sharpe_ratio=sr,
        annualized_volatility=av,
        max_drawdown=mdd,
        sortino_ratio=sortino,
        convention=convention,
        trading_days_per_year=252,
        num_periods=10,
    )


def table_cells(table):
    rows = [line for line in table.splitlines() if line.startswith("|")]
    header = [cell.strip() for cell in rows[0].strip("|").split("|")]
    return [dict(zip(header, (cell.strip() for cell in row.strip("|").split("|")))) for row in rows[2:]]


def test_table_marks_best_per_column_and_asset():
    results = {
        "MSFT": {
            # Buy & Hold: best CR and SR; FLAG-Trader: best AV, MDD and Sortino.
            "Buy & Hold": make_metrics(0.2, 1.5, 0.30, 0.25, 1.0),
            "FLAG-Trader": make_metrics(0.1, 1.2, 0.10, 0.05, 2.0),
        },
        "BTC": {
            "Buy & Hold": make_metrics(-0.1, -0.5, 0.6, 0.4, -0.8),
            "FLAG-Trader": make_metrics(0.3, 0.9, 0.7, 0.5, math.inf),
        },
    }
    table = format_metrics_table(results, "paper")
    assert table.splitlines()[0].startswith("Metrics convention: paper")
    rows = {(row["Asset"], row["Agent"]): row for row in table_cells(table)}
    # Percent columns are x100 with 3 decimals.
    assert rows["MSFT", "Buy & Hold"]["CR%"] == "**20.000**" and rows["MSFT", "FLAG-Trader"]["CR%"] == "10.000"
    assert rows["MSFT", "Buy & Hold"]["SR"] == "**1.500**" and rows["MSFT", "FLAG-Trader"]["SR"] == "1.200"
    # Lower is better for AV and MDD.
    assert rows["MSFT", "FLAG-Trader"]["AV%"] == "**10.000**" and rows["MSFT", "Buy & Hold"]["AV%"] == "30.000"
    assert rows["MSFT", "FLAG-Trader"]["MDD%"] == "**5.000**" and rows["MSFT", "Buy & Hold"]["MDD%"] == "25.000"
    assert rows["MSFT", "FLAG-Trader"]["Sortino"] == "**2.000**"
    # Best is per asset: on BTC Buy & Hold has the lower AV and MDD, FLAG-Trader the rest (inf Sortino included).
    assert rows["BTC", "Buy & Hold"]["AV%"] == "**60.000**" and rows["BTC", "Buy & Hold"]["MDD%"] == "**40.000**"
    assert rows["BTC", "FLAG-Trader"]["CR%"] == "**30.000**" and rows["BTC", "FLAG-Trader"]["Sortino"] == "**inf**"
    assert rows["BTC", "Buy & Hold"]["CR%"] == "-10.000"

    plain = format_metrics_table(results, "paper", bold_best=False)
    assert "**" not in plain


def test_table_wide_layout_and_ties():
    results = {
        "JNJ": {"A": make_metrics(0.05, 1.0, 0.2, 0.1, 1.0), "B": make_metrics(0.05, 0.5, 0.2, 0.1, 0.5)},
        "HON": {"A": make_metrics(0.01, 0.1, 0.2, 0.1, 0.1)},
    }
    rows = {row["Agent"]: row for row in table_cells(format_metrics_table(results, "paper", layout="wide"))}
    # A tie at display precision marks both cells.
    assert rows["A"]["JNJ CR%"] == rows["B"]["JNJ CR%"] == "**5.000**"
    assert rows["A"]["JNJ SR"] == "**1.000**" and rows["B"]["JNJ SR"] == "0.500"
    # B has no HON result; a single value in a column is not marked.
    assert rows["B"]["HON CR%"] == "-" and rows["A"]["HON CR%"] == "1.000"


def test_table_prints_no_negative_zero():
    # -1e-9 is -0.0000001 % and rounds to 0.000, which must not print as "-0.000".
    table = format_metrics_table({"MSFT": {"A": make_metrics(-1e-9, -1e-9, 0.2, 0.1, -1e-9)}}, "paper")
    assert table_cells(table)[0]["CR%"] == "0.000" and table_cells(table)[0]["Sortino"] == "0.000"


def test_table_rejects_mixed_conventions():
    results = {"MSFT": {"Buy & Hold": make_metrics(0.1, 1.0, 0.2, 0.1, 1.0, convention="standard")}}
    with pytest.raises(ValueError, match=r"results\['MSFT'\]\['Buy & Hold'\] was computed with the 'standard'"):
        format_metrics_table(results, "paper")
    with pytest.raises(ValueError, match="valid conventions are paper, standard"):
        format_metrics_table(results, "sharpe")


# ---------------------------------------------------------------------------------------------------------------
# evaluate module
# ---------------------------------------------------------------------------------------------------------------


def test_evaluate_module_matches_library():
    evaluate = pytest.importorskip("evaluate")
    metric = evaluate.load(str(METRICS_FOLDER))
    rng = np.random.default_rng(7)
    prices = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.02, size=40)))
    positions = rng.choice([-1.0, 0.0, 1.0], size=prices.size - 1)
    # One pair per day; the position paired with the last price is ignored, whatever it is.
    predictions = [*positions, 1.0]

    paper = metric.compute(predictions=predictions, references=prices, trading_days_per_year=365)
    assert paper == pytest.approx(paper_metrics(prices, positions, trading_days_per_year=365).to_dict())

    standard = metric.compute(
        predictions=predictions,
        references=prices,
        convention="standard",
        trading_days_per_year=252,
        risk_free_rate=0.03,
    )
    expected = standard_metrics(equity_from_positions(prices, positions), 252, risk_free_rate=0.03)
    assert standard == pytest.approx(expected.to_dict())

    with pytest.raises(ValueError, match="trading_days_per_year"):
        metric.compute(predictions=predictions, references=prices)
