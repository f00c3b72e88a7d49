"""Baseline agents on hand-made prices, the backtest runner, and the paper's Buy & Hold rows reproduced."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from conftest import load_investorbench_series

from flagtrl.actions import BUY, HOLD, SELL
from flagtrl.agents import (
    BuyAndHoldAgent,
    MomentumAgent,
    MovingAverageCrossoverAgent,
    RandomAgent,
    TradingAgent,
    make_baseline,
)
from flagtrl.backtest import SplitLikeMoveWarning, run_backtest
from flagtrl.data.schema import MarketSeries
from flagtrl.envs import TradingEnv, TradingState


def business_dates(n: int, start: str = "2021-01-04") -> list[str]:
    return [str(d) for d in np.busday_offset(start, np.arange(n), roll="forward")]


def series_of(prices, asset: str = "TOY", asset_class: str = "stock") -> MarketSeries:
    prices = np.asarray(prices, dtype=np.float64)
    return MarketSeries(asset=asset, asset_class=asset_class, dates=business_dates(len(prices)), close=prices)


def state_of(prices, cash: float = 1000.0, shares: float = 0.0, mode: str = "all_in") -> TradingState:
    prices = np.asarray(prices, dtype=np.float64)
    dates = business_dates(len(prices))
    mask = np.ones(3, dtype=np.int8) if mode == "position" else np.array([shares > 0, True, cash > 0], dtype=np.int8)
    return TradingState(
        asset="TOY",
        asset_class="stock",
        date=dates[-1],
        step=0,
        dates=dates,
        prices=prices,
        news=[],
        filings=[],
        cash=cash,
        shares=shares,
        account_value=cash + shares * prices[-1],
        position=int(shares > 0),
        action_mask=mask,
        mode=mode,
    )


RISING = np.linspace(100.0, 160.0, 40)
FALLING = np.linspace(160.0, 100.0, 40)


# --- the agents ------------------------------------------------------------------------------------------------


def test_agents_follow_the_protocol():
    for name in ("buy_and_hold", "random", "ma_crossover", "momentum"):
        agent = make_baseline(name)
        assert isinstance(agent, TradingAgent)
        assert agent.name == name
    with pytest.raises(ValueError, match="Unknown agent 'oracle'"):
        make_baseline("oracle")


def test_buy_and_hold():
    agent = BuyAndHoldAgent()
    assert agent.action_distribution(state_of(RISING)).tolist() == [0.0, 0.0, 1.0]
    # Once invested (no cash), buy is masked: it holds.
    assert agent.action_distribution(state_of(FALLING, cash=0.0, shares=5.0)).tolist() == [0.0, 1.0, 0.0]
    # In position mode the action is the day's position: long every day.
    assert agent.action_distribution(state_of(FALLING, cash=0.0, shares=5.0, mode="position")).tolist() == [0, 0, 1]


def test_momentum_buys_a_rise_and_sells_a_fall():
    agent = MomentumAgent(lookback=10)
    assert int(np.argmax(agent.action_distribution(state_of(RISING)))) == BUY
    assert int(np.argmax(agent.action_distribution(state_of(FALLING, cash=0.0, shares=5.0)))) == SELL
    # Too little history (lookback + 1 prices needed): hold.
    assert agent.action_distribution(state_of(RISING[:10])).tolist() == [0.0, 1.0, 0.0]
    # The trailing return is p_t / p_{t-10} - 1: +2 % is below a 5 % threshold, so hold.
    prices = np.r_[np.full(5, 100.0), 100.0, np.full(9, 101.0), 102.0]
    assert MomentumAgent(lookback=10, threshold=0.05).action_distribution(state_of(prices)).tolist() == [0, 1, 0]
    assert MomentumAgent(lookback=10, threshold=0.01).action_distribution(state_of(prices)).tolist() == [0, 0, 1]
    # Falling with only cash: sell is masked, so it holds.
    assert agent.action_distribution(state_of(FALLING)).tolist() == [0.0, 1.0, 0.0]


def test_ma_crossover():
    agent = MovingAverageCrossoverAgent(short_window=3, long_window=6)
    assert int(np.argmax(agent.action_distribution(state_of(RISING)))) == BUY
    assert int(np.argmax(agent.action_distribution(state_of(FALLING, cash=0.0, shares=5.0)))) == SELL
    assert agent.action_distribution(state_of(RISING[:5])).tolist() == [0.0, 1.0, 0.0]  # < long_window prices
    # A dip: the 3-day mean (10 + 10 + 4) / 3 = 8 is below the 6-day mean (10 * 5 + 4) / 6 = 9: out.
    dip = [10.0, 10.0, 10.0, 10.0, 10.0, 4.0]
    assert agent.action_distribution(state_of(dip, mode="position")).tolist() == [1.0, 0.0, 0.0]
    # A spike: 3-day mean 12 is above the 6-day mean 11: in.
    spike = [10.0, 10.0, 10.0, 10.0, 10.0, 16.0]
    assert agent.action_distribution(state_of(spike)).tolist() == [0.0, 0.0, 1.0]
    with pytest.raises(ValueError, match="short_window < long_window"):
        MovingAverageCrossoverAgent(short_window=20, long_window=5)


def test_random_agent_is_seeded():
    def actions(agent, seed):
        agent.reset(seed)
        return [int(np.argmax(agent.action_distribution(state_of(RISING, cash=500.0, shares=2.0)))) for _ in range(50)]

    agent = RandomAgent()
    first = actions(agent, 1)
    assert actions(agent, 1) == first
    assert actions(RandomAgent(), 1) == first
    assert actions(agent, 2) != first
    assert set(first) == {SELL, HOLD, BUY}
    # Only valid actions: with cash and no shares, never sell.
    agent.reset(3)
    drawn = {int(np.argmax(agent.action_distribution(state_of(RISING)))) for _ in range(50)}
    assert drawn == {HOLD, BUY}


@pytest.mark.parametrize("name", ["buy_and_hold", "random", "ma_crossover", "momentum"])
@pytest.mark.parametrize("mode", ["all_in", "position"])
def test_agents_return_valid_distributions(name, mode, msft_series):
    agent = make_baseline(name)
    agent.reset(0)
    env = TradingEnv(
        msft_series, window=("2020-10-01", "2021-01-29"), episode_length=None, random_start=False, mode=mode
    )
    _, info = env.reset(seed=0)
    done = False
    while not done:
        state = info["state"]
        probs = agent.action_distribution(state)
        assert probs.shape == (3,)
        assert probs.sum() == pytest.approx(1.0)
        assert np.all(probs >= 0)
        assert np.all(probs[state.action_mask == 0] == 0)
        _, _, terminated, truncated, info = env.step(int(np.argmax(probs)))
        assert not info["invalid_action"]
        done = terminated or truncated


# --- the backtest runner ---------------------------------------------------------------------------------------


def test_backtest_trajectory_rows():
    series = series_of(100.0 + 10.0 * np.sin(np.arange(60) / 4.0))
    start, end = series.dates[10], series.dates[49]
    result = run_backtest(MomentumAgent(lookback=5), series, start, end)
    rows = result.trajectory
    assert [row["date"] for row in rows] == series.dates[10:50]
    assert [row["price"] for row in rows] == series.close[10:50].tolist()
    assert all(row["action"] in ("sell", "hold", "buy") for row in rows[:-1])
    assert rows[-1]["action"] is None and rows[-1]["reward"] is None
    assert (result.start, result.end, result.asset, result.agent) == (start, end, "TOY", "momentum")
    assert result.metrics["paper"].num_periods == 39
    assert result.metrics["standard"].num_periods == 39
    assert result.metrics["paper"].convention == "paper"
    assert result.metrics["standard"].convention == "standard"
    # Each row's account is the one before its decision, which executes at that day's close: a buy on day i shows
    # as shares on day i + 1, bought at day i's price.
    for before, after in zip(rows, rows[1:]):
        if before["action"] == "buy":
            assert before["cash"] > 0 and after["cash"] == 0.0
            assert after["shares"] == pytest.approx(before["cash"] / before["price"])
        if before["action"] == "sell":
            assert after["shares"] == 0.0
            assert after["cash"] == pytest.approx(before["cash"] + before["shares"] * before["price"])
    # The rewards telescope to the final Sharpe ratio of the account's daily pnl.
    pnl = np.diff([row["account_value"] for row in rows])
    sharpe = pnl.mean() / pnl.std(ddof=1)
    assert sum(row["reward"] for row in rows[:-1]) == pytest.approx(sharpe)


def test_backtest_window_snaps_to_trading_days():
    series = series_of(np.linspace(10.0, 20.0, 10))  # 2021-01-04 (Mon) .. 2021-01-15 (Fri)
    result = run_backtest(BuyAndHoldAgent(), series, "2021-01-02", "2021-01-10")
    assert [row["date"] for row in result.trajectory] == series.dates[:5]


def test_buy_and_hold_paper_metrics_by_hand():
    prices = [100.0, 110.0, 99.0, 121.0, 133.1]
    result = run_backtest(BuyAndHoldAgent(), series_of(prices), business_dates(5)[0], business_dates(5)[-1])
    paper = result.metrics["paper"]
    assert paper.cumulative_return == pytest.approx(math.log(133.1 / 100.0))
    returns = np.log(np.array(prices[1:]) / np.array(prices[:-1]))
    volatility = returns.std(ddof=1) * math.sqrt(252)
    assert paper.annualized_volatility == pytest.approx(volatility)
    assert paper.sharpe_ratio == pytest.approx(math.log(1.331) / (5 / 252) / volatility)
    # The curve 1, 1 + r_0, (1 + r_0)(1 + r_1), ...: the fall is on day 2, from 1 + ln 1.1 to (1 + ln 1.1)(1 + ln 0.9).
    assert paper.max_drawdown == pytest.approx(-math.log(0.9))
    # Paper mode: bought at day 0's close P_0, so the account gains P_4 / P_0, the interval the paper metric credits.
    assert result.metrics["standard"].cumulative_return == pytest.approx(133.1 / 100.0 - 1)
    assert [row["action"] for row in result.trajectory] == ["buy", "hold", "hold", "hold", None]


def test_buy_and_hold_position_mode_standard_return(msft_series):
    result = run_backtest(BuyAndHoldAgent(), msft_series, "2020-10-01", "2021-05-05", mode="position")
    first, last = msft_series.index_of("2020-10-01"), msft_series.index_of("2021-05-05")
    p0, pn = msft_series.close[first], msft_series.close[last]
    assert result.metrics["standard"].cumulative_return == pytest.approx(pn / p0 - 1)
    assert result.metrics["paper"].cumulative_return == pytest.approx(math.log(pn / p0))
    assert len(result.trajectory) == last - first + 1


def test_transaction_costs_lower_the_result(msft_series):
    window = ("2020-10-01", "2021-05-05")
    for agent in (MomentumAgent(lookback=5), RandomAgent()):
        free = run_backtest(agent, msft_series, *window, seed=0)
        costly = run_backtest(agent, msft_series, *window, seed=0, transaction_cost_bps=10.0)
        trades = sum(row["action"] in ("buy", "sell") for row in free.trajectory)
        assert trades >= 4
        # Costs change the account, not the decisions.
        assert [row["action"] for row in costly.trajectory] == [row["action"] for row in free.trajectory]
        assert costly.metrics["standard"].cumulative_return < free.metrics["standard"].cumulative_return
        # Each trade costs 10 bps of the traded value: the final values differ by a factor of at most 0.999^trades.
        ratio = costly.trajectory[-1]["account_value"] / free.trajectory[-1]["account_value"]
        assert ratio == pytest.approx(0.999**trades)


def test_random_backtest_is_reproducible(msft_series):
    window = ("2020-10-01", "2021-01-29")
    a = run_backtest(RandomAgent(), msft_series, *window, seed=5)
    b = run_backtest(RandomAgent(), msft_series, *window, seed=5)
    c = run_backtest(RandomAgent(), msft_series, *window, seed=6)
    assert [r["action"] for r in a.trajectory] == [r["action"] for r in b.trajectory]
    assert [r["action"] for r in a.trajectory] != [r["action"] for r in c.trajectory]


def test_backtest_result_to_json(tmp_path):
    import json

    result = run_backtest(BuyAndHoldAgent(), series_of([10.0, 11.0, 12.0, 11.5]), "2021-01-04", "2021-01-07")
    result.to_json(tmp_path / "out" / "result.json")
    data = json.loads((tmp_path / "out" / "result.json").read_text())
    assert set(data["metrics"]) == {"paper", "standard"}
    assert data["metrics"]["paper"]["cumulative_return"] == pytest.approx(math.log(11.5 / 10.0))
    assert len(data["trajectory"]) == 4


def test_backtest_results_share_one_shape():
    # Both results serialise through `ResultRecord`: the dataclass fields in their own order, metrics as dicts.
    import dataclasses

    from flagtrl.backtest import ResultRecord
    from flagtrl.portfolio import PortfolioBacktestResult

    result = run_backtest(BuyAndHoldAgent(), series_of([10.0, 11.0, 12.0, 11.5]), "2021-01-04", "2021-01-07")
    expected = dataclasses.asdict(result)
    expected["metrics"] = {name: m.to_dict() for name, m in result.metrics.items()}
    assert list(result.to_dict()) == [f.name for f in dataclasses.fields(result)]
    assert result.to_dict() == expected
    portfolio = PortfolioBacktestResult("equal_weight", ["A"], "2021-01-04", "2021-01-07", [], result.metrics)
    assert isinstance(result, ResultRecord) and isinstance(portfolio, ResultRecord)
    assert list(portfolio.to_dict()) == [f.name for f in dataclasses.fields(portfolio)]
    assert portfolio.to_dict()["metrics"] == expected["metrics"]


def test_make_agent_builds_every_kind_of_spec():
    from flagtrl.agents import make_agent

    assert make_agent("momentum").name == "momentum"
    assert make_agent("buy_and_hold", name="bh", seed=3).name == "bh"  # agents without randomness ignore the seed
    assert make_agent("random", seed=7).seed == 7
    with pytest.raises(ValueError, match=r"Unknown agent 'oracle'.*flag:<adapter.*zero_shot:<model"):
        make_agent("oracle")
    with pytest.raises(FileNotFoundError, match="FLAG adapter 'no-such-adapter' not found"):
        make_agent("flag:no-such-adapter")


class AlwaysShortAgent:
    name = "always_short"

    def reset(self, seed: int | None = None) -> None:
        pass

    def action_distribution(self, state: TradingState) -> np.ndarray:
        return np.eye(3)[SELL]


def test_a_wiped_out_short_is_reported_not_raised(tmp_path):
    # The case: short at 10, 11 -> 30 takes the account below 0; the environment ends the episode there.
    series = series_of([10.0, 11.0, 30.0, 31.0, 29.0])
    with pytest.warns(SplitLikeMoveWarning):
        result = run_backtest(AlwaysShortAgent(), series, series.dates[0], series.dates[-1], mode="position")
    assert result.wiped_out and result.wiped_out_on == series.dates[2] == result.end
    assert result.extra["requested_end"] == series.dates[-1]
    assert result.trajectory[-1]["account_value"] < 0  # the trajectory keeps the true value
    standard, paper = result.metrics["standard"], result.metrics["paper"]
    assert standard.wiped_out and paper.wiped_out
    assert (standard.cumulative_return, standard.annualized_return, standard.max_drawdown) == (-1.0, -1.0, 1.0)
    assert paper.max_drawdown == 1.0 and paper.cumulative_return == pytest.approx(-math.log(30.0 / 10.0))
    result.to_json(tmp_path / "short.json")
    assert '"wiped_out": true' in (tmp_path / "short.json").read_text()
    # Short through x2.5: the account is wiped out (1 - 1.5 < 0) although the paper's curve is not (1 - ln 2.5 > 0);
    # the paper metrics still carry the flag, so no table shows the run as an ordinary one.
    with pytest.warns(SplitLikeMoveWarning):
        result = run_backtest(
            AlwaysShortAgent(), series_of([10.0, 25.0, 26.0]), *business_dates(3)[::2], mode="position"
        )
    assert result.wiped_out and result.metrics["paper"].wiped_out and result.metrics["paper"].max_drawdown < 1.0
    # An account that is not wiped out says so.
    assert not run_backtest(BuyAndHoldAgent(), series_of(RISING[:5]), *business_dates(5)[::4]).wiped_out


def test_split_like_move_warns_with_asset_and_dates():
    # 410 -> 102.5: a 4-for-1 split left unadjusted.
    series = series_of([408.0, 406.0, 410.0, 102.5, 104.0, 103.0], asset="SPLT")
    with pytest.warns(SplitLikeMoveWarning, match=rf"SPLT: .*410 on {series.dates[2]} to 102.5 on {series.dates[3]}"):
        result = run_backtest(BuyAndHoldAgent(), series, series.dates[0], series.dates[-1])
    assert result.metrics["paper"].max_drawdown == 1.0  # was 1.39: the curve prod(1 + r) went negative
    # A 2-for-1 split on a day the stock gained 1 %: 100 -> 50.5, a factor below 2 but above 1.8.
    with pytest.warns(SplitLikeMoveWarning, match=r"-49.5%"):
        run_backtest(BuyAndHoldAgent(), series_of([100.0, 50.5, 51.0]), *business_dates(3)[::2])
    with warnings.catch_warnings():
        warnings.simplefilter("error", SplitLikeMoveWarning)
        run_backtest(BuyAndHoldAgent(), series_of([100.0, 60.0, 100.0]), *business_dates(3)[::2])  # -40 %, +67 %


# --- THE PAPER CHECK: FLAG-Trader's Buy & Hold rows (Table 1) -----------------------------------------------------

STOCK_TEST = ("2020-10-01", "2021-05-05")
CRYPTO_TEST = ("2023-04-05", "2023-11-05")
# (asset, asset class, window, CR %, SR, AV %, MDD %) as printed in the paper.
PAPER_BUY_AND_HOLD = [
    ("MSFT", "stock", STOCK_TEST, 15.340, 1.039, 24.980, 9.428),
    ("JNJ", "stock", STOCK_TEST, 13.895, 1.343, 17.500, 9.847),
    ("UVV", "stock", STOCK_TEST, 36.583, 2.112, 29.299, 15.406),
    ("HON", "stock", STOCK_TEST, 33.256, 2.347, 23.967, 9.195),
    ("BTC", "crypto", CRYPTO_TEST, 21.821, 0.683, 37.426, 20.796),  # the paper truncates CR 21.8216
]


@pytest.mark.parametrize("asset, asset_class, window, cr, sr, av, mdd", PAPER_BUY_AND_HOLD, ids=lambda v: str(v))
def test_paper_buy_and_hold_rows(investorbench_dir, asset, asset_class, window, cr, sr, av, mdd):
    series = load_investorbench_series(investorbench_dir, asset, asset_class)
    result = run_backtest(BuyAndHoldAgent(), series, *window)
    paper = result.metrics["paper"]
    assert paper.trading_days_per_year == (365 if asset_class == "crypto" else 252)
    assert abs(100 * paper.cumulative_return - cr) <= 0.0011
    assert abs(paper.sharpe_ratio - sr) <= 0.0011
    assert abs(100 * paper.annualized_volatility - av) <= 0.0011
    assert abs(100 * paper.max_drawdown - mdd) <= 0.0011
