"""How much of each reward's signal sits on the first steps, and how well its discounted sum tracks the episode's Sharpe.

    HF_HUB_OFFLINE=1 python benchmarks/reward_diagnostics.py                       # MSFT prices shipped by skfolio
    HF_HUB_OFFLINE=1 python benchmarks/reward_diagnostics.py --episodes 2000 --episode_length 40 --gamma 0.95

A seeded random agent (uniform over the valid actions) plays `--episodes` episodes of `--episode_length` steps from
random starts in MSFT's 2015-2020 adjusted closes, in both trading modes, with every reward of `flagtrl.rewards`. Per
reward and mode it prints:

- `first-3 share`: the fraction of the summed squared rewards that falls on steps 1-3 (a reward whose first steps
  dominate teaches the policy about the start of an episode, not about trading);
- `corr(G, Sharpe)`: the correlation over episodes between the discounted return from the start, sum gamma^t r_t, and
  the episode's Sharpe ratio of daily account returns (what a policy maximising the return would maximise).

The Sharpe difference with the paper's first steps defined as 0 (`sharpe_min_periods=2`, flagtrl's rule before the
warm-up) is printed as the baseline. Pure numpy: no model, a few seconds.
"""

from __future__ import annotations

import argparse
import os

import numpy as np


os.environ.setdefault("HF_HUB_OFFLINE", "1")

from flagtrl.actions import TRADING_MODES  # noqa: E402
from flagtrl.data.schema import MarketSeries  # noqa: E402
from flagtrl.data.sources import read_skfolio  # noqa: E402
from flagtrl.envs import TradingEnv  # noqa: E402


VARIANTS = (
    ("sharpe_delta (first steps 0, min_periods 2)", "sharpe_delta", {"sharpe_min_periods": 2}),
    ("sharpe_delta (min_periods 10, default)", "sharpe_delta", {}),
    ("differential_sharpe", "differential_sharpe", {}),
    ("log_return", "log_return", {}),
)


def msft_series() -> MarketSeries:
    rows = read_skfolio(["MSFT"])
    rows = rows[(rows["date"].astype(str) >= "2015-01-01") & (rows["date"].astype(str) <= "2020-12-31")]
    dates = [str(d)[:10] for d in rows["date"]]
    return MarketSeries(asset="MSFT", asset_class="stock", dates=dates, close=rows["close"].to_numpy(dtype=float))


def diagnose(series: MarketSeries, mode: str, reward: str, kwargs: dict, episodes: int, length: int, gamma: float):
    env = TradingEnv(series, episode_length=length, mode=mode, reward=reward, reward_kwargs=kwargs)
    rng = np.random.default_rng(0)
    squared, first, returns, sharpes = 0.0, 0.0, [], []
    for episode in range(episodes):
        env.reset(seed=episode)
        rewards = []
        for _ in range(length):
            action = int(rng.choice(np.flatnonzero(env._mask())))
            _, r, terminated, truncated, _ = env.step(action)
            rewards.append(r)
            if terminated or truncated:
                break
        rewards = np.array(rewards)
        squared += float((rewards**2).sum())
        first += float((rewards[:3] ** 2).sum())
        returns.append(float((gamma ** np.arange(len(rewards)) * rewards).sum()))
        daily = np.diff(env.account_values) / np.array(env.account_values[:-1])
        sharpes.append(float(daily.mean() / daily.std(ddof=1)) if daily.std(ddof=1) > 0 else 0.0)
    correlation = float(np.corrcoef(returns, sharpes)[0, 1])
    return first / squared if squared else float("nan"), correlation


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--episodes", type=int, default=1000)
    parser.add_argument("--episode_length", type=int, default=40)
    parser.add_argument("--gamma", type=float, default=0.95)
    args = parser.parse_args()
    series = msft_series()
    print(
        f"MSFT {series.dates[0]} → {series.dates[-1]}, random agent, {args.episodes} episodes of "
        f"{args.episode_length} steps, gamma {args.gamma}\n"
    )
    print("| reward | mode | first-3 share of squared reward | corr(G, episode Sharpe) |")
    print("| :--- | :--- | ---: | ---: |")
    for label, reward, kwargs in VARIANTS:
        for mode in TRADING_MODES:
            share, correlation = diagnose(series, mode, reward, kwargs, args.episodes, args.episode_length, args.gamma)
            print(f"| {label} | {mode} | {100 * share:.1f} % | {correlation:.2f} |")


if __name__ == "__main__":
    main()
