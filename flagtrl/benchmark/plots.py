"""PNG plots of a benchmark (matplotlib figures drawn off-screen with the Agg canvas: no display, no pyplot state).

Per asset and window, from each agent's median-Sharpe run (`paper` convention, the run the main table shows):

- `equity_<asset>_<start>_<end>.png`: account value / initial cash of every agent against buy-and-hold (the
  `buy_and_hold` agent when it ran, else the asset's price relative to the window's first day);
- `actions_<asset>_<start>_<end>.png`: one panel per agent, the price with the agent's buys and sells over time.

Across windows (when the benchmark has several): `sharpe_difference_distribution.png`, per convention, each agent's
Sharpe difference to buy-and-hold over every (asset, window) cell: a box (quartiles), its cells as dots, the median's
interval and the win rate.
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


def plot_sharpe_differences(distributions: dict[str, dict[str, dict]], path: Path, title: str) -> None:
    """One panel per convention: per agent, the box of its Sharpe differences to buy-and-hold, the cells as dots, the
    median's bootstrap interval (black bar) and the win rate."""
    from matplotlib.figure import Figure

    conventions = [c for c, agents in distributions.items() if agents]
    agents = list(dict.fromkeys(a for c in conventions for a in distributions[c]))
    fig = Figure(figsize=(4.2 + 1.1 * len(agents), 2.6 + 2.4 * len(conventions)))
    axes = fig.subplots(len(conventions), 1, squeeze=False)[:, 0]
    rng = np.random.default_rng(0)  # the dots' horizontal jitter only
    for ax, convention in zip(axes, conventions):
        for i, agent in enumerate(agents):
            d = distributions[convention].get(agent)
            if d is None:
                continue
            values = np.array([v for v in d["differences"] if np.isfinite(v)])
            ax.boxplot(values, positions=[i], widths=0.5, showfliers=False, medianprops={"color": "tab:red"})
            ax.scatter(i + rng.uniform(-0.18, 0.18, values.size), values, s=5, alpha=0.25, color="tab:blue", zorder=2)
            ax.errorbar(
                i + 0.32,
                d["median"],
                yerr=[[d["median"] - d["median_low"]], [d["median_high"] - d["median"]]],
                fmt="o",
                color="black",
                capsize=3,
                markersize=4,
            )
            ax.annotate(
                f"wins {d['win_rate']:.0%}",
                (i, 1.0),
                xycoords=("data", "axes fraction"),
                ha="center",
                va="bottom",
                fontsize=8,
            )
        ax.axhline(0.0, color="black", linewidth=0.8)
        ax.set_xticks(range(len(agents)), agents, fontsize=8)
        ax.set_ylabel(f"Sharpe − buy & hold\n({convention})")
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def plot_benchmark(
    records: list[dict],
    folder: Path,
    per_window: bool = True,
    distributions: dict[str, dict[str, dict]] | None = None,
    title: str = "",
) -> list[str]:
    """Write both plots for every (asset, window) with finished runs (with `per_window`) and the distribution of the
    Sharpe differences (when `distributions` span several windows); returns the paths written."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    if distributions and any(d["windows"] > 1 for agents in distributions.values() for d in agents.values()):
        path = folder / "sharpe_difference_distribution.png"
        plot_sharpe_differences(distributions, path, title)
        paths.append(str(path))
    if not per_window:
        return paths
    for (asset, start, end), runs in _median_runs(records).items():
        equity = folder / f"equity_{asset}_{start}_{end}.png"
        actions = folder / f"actions_{asset}_{start}_{end}.png"
        plot_equity(asset, runs, equity)
        plot_actions(asset, runs, actions)
        paths += [str(equity), str(actions)]
    return paths
