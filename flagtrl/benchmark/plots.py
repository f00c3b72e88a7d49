"""PNG plots of a benchmark (matplotlib figures drawn off-screen with the Agg canvas: no display, no pyplot state).

Per asset and window, from each agent's median-Sharpe run (`paper` convention, the run the main table shows):

- `equity_<asset>_<start>_<end>.png`: account value / initial cash of every agent against buy-and-hold (the
  `buy_and_hold` agent when it ran, else the asset's price relative to the window's first day);
- `actions_<asset>_<start>_<end>.png`: one panel per agent, the price with the agent's buys and sells over time.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .selection import median_sharpe_run


def _median_runs(records: list[dict]) -> dict[tuple[str, str, str], dict[str, dict]]:
    groups: dict[tuple[str, str, str], dict[str, list[dict]]] = {}
    for record in records:
        if record.get("status") == "ok" and record.get("trajectory"):
            key = (record["asset"], record["start"], record["end"])
            groups.setdefault(key, {}).setdefault(record["agent"], []).append(record)
    return {key: {a: median_sharpe_run(runs, "paper") for a, runs in agents.items()} for key, agents in groups.items()}


def _dates(trajectory: list[dict]) -> np.ndarray:
    return np.array([row["date"] for row in trajectory], dtype="datetime64[D]")


def plot_equity(asset: str, runs: dict[str, dict], path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 5))
    ax = fig.subplots()
    if "buy_and_hold" not in runs:
        first = next(iter(runs.values()))["trajectory"]
        prices = np.array([row["price"] for row in first])
        ax.plot(_dates(first), prices / prices[0], color="black", linewidth=2.2, label="buy & hold (price)")
    for agent, run in runs.items():
        trajectory = run["trajectory"]
        values = np.array([row["account_value"] for row in trajectory])
        style = {"color": "black", "linewidth": 2.2} if agent == "buy_and_hold" else {"linewidth": 1.3}
        ax.plot(_dates(trajectory), values / values[0], label=f"{agent} (seed {run['seed']})", **style)
    ax.axhline(1.0, color="grey", linewidth=0.6, linestyle=":")
    first = next(iter(runs.values()))
    ax.set_title(f"{asset} {first['start']} → {first['end']}: account value / initial cash ({first['mode']} mode)")
    ax.set_ylabel("growth of 1")
    ax.legend(loc="best", fontsize=8)
    ax.grid(alpha=0.3)
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def plot_actions(asset: str, runs: dict[str, dict], path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 1.8 * len(runs) + 0.8))
    axes = fig.subplots(len(runs), 1, sharex=True, squeeze=False)
    for ax, (agent, run) in zip(axes[:, 0], runs.items()):
        trajectory = run["trajectory"]
        dates, prices = _dates(trajectory), np.array([row["price"] for row in trajectory])
        actions = np.array([row["action"] or "" for row in trajectory])
        ax.plot(dates, prices, color="grey", linewidth=1.0)
        for action, marker, color in (("buy", "^", "tab:green"), ("sell", "v", "tab:red")):
            chosen = actions == action
            ax.scatter(dates[chosen], prices[chosen], marker=marker, color=color, s=28, label=action, zorder=3)
        held = np.array([row["position"] for row in trajectory]) != 0
        ax.fill_between(dates, prices.min(), prices.max(), where=held, color="tab:blue", alpha=0.08, step="post")
        ax.set_ylabel(agent, rotation=0, ha="right", fontsize=8)
        ax.grid(alpha=0.3)
    axes[0, 0].set_title(f"{asset}: actions over time (▲ buy, ▼ sell; shaded: position held)")
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def plot_benchmark(records: list[dict], folder: Path) -> list[str]:
    """Write both plots for every (asset, window) with finished runs; returns the paths written."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for (asset, start, end), runs in _median_runs(records).items():
        equity = folder / f"equity_{asset}_{start}_{end}.png"
        actions = folder / f"actions_{asset}_{start}_{end}.png"
        plot_equity(asset, runs, equity)
        plot_actions(asset, runs, actions)
        paths += [str(equity), str(actions)]
    return paths
