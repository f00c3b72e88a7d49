"""Write a portfolio comparison: Markdown tables in both conventions, JSON and CSV, and PNG plots.

Files written to `output_dir`:

- `report.md`: the metrics tables (`paper` and `standard`, via `flagtrl.metrics_table.format_metrics_table`), the trading
  activity of each policy (turnover, costs, the manager's fallbacks) and the days dropped from the calendar;
- `metrics.json`: metrics of every policy in both conventions, the activity, the dropped days and the run's settings;
- `metrics.csv`: one row per (policy, convention);
- `equity_curves.csv`, `weights.csv`: the account value of each policy per day, and the weights (long format);
- `trajectories.json`: every policy's day-by-day trajectory, decisions included (both JSON files are strict JSON:
  non-finite values as the strings "inf", "-inf", "nan", `flagtrl.strict_json`);
- `equity_curves.png`: account value / initial cash of every policy;
- `weights.png`: stacked-area weights over time of the policies that hold more than one asset.

Plots are `matplotlib.figure.Figure` objects saved with the Agg canvas, as in `flagtrl.benchmark.plots`: no pyplot
state, no global backend switch.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ..metrics import CONVENTIONS
from ..metrics_table import TABLE_COLUMNS, format_metrics_table
from ..strict_json import write_json
from .backtest import PortfolioBacktestResult


PAPER_NOTE = (
    "Portfolio note: the `paper` formulas are applied to the portfolio's daily log returns r_i = ln(V_{i+1}/V_i) "
    "(the equity curve as the price, position +1); `standard` uses the same equity curve's simple returns. Every "
    "policy starts in cash and its decisions execute at the next common close, with costs: the first daily return is "
    "only the first trade's cost, so buy-and-hold rows differ from the single-asset `paper` Buy & Hold (which holds from the first close)."
)


def portfolio_label(assets: list[str]) -> str:
    return "+".join(assets)


def metrics_tables(results: Mapping[str, PortfolioBacktestResult]) -> str:
    """Both conventions' Markdown tables, one row per policy."""
    assets = next(iter(results.values())).assets
    label = portfolio_label(assets)
    parts = []
    for convention in CONVENTIONS:
        table = {label: {name: result.metrics[convention] for name, result in results.items()}}
        parts.append(format_metrics_table(table, convention))
        if convention == "paper":
            parts.append(PAPER_NOTE)
    return "\n\n".join(parts)


def activity(result: PortfolioBacktestResult) -> dict:
    """Turnover, costs and the manager's paths of one run."""
    turnover = [row["turnover"] for row in result.trajectory[1:]]
    return {
        "mean_daily_turnover": float(np.mean(turnover)) if turnover else 0.0,
        "total_cost": result.total_cost,
        "mean_cash_weight": float(np.mean(result.weights()[1:, -1])) if len(result.trajectory) > 1 else 1.0,
        "manager_methods": dict(result.methods),
    }


def activity_table(results: Mapping[str, PortfolioBacktestResult]) -> str:
    lines = [
        "| Policy | Mean daily turnover % | Costs paid | Mean cash % | Manager paths |",
        "| :--- | ---: | ---: | ---: | :--- |",
    ]
    for name, result in results.items():
        a = activity(result)
        paths = ", ".join(f"{k} {v}" for k, v in sorted(a["manager_methods"].items())) or "-"
        lines.append(
            f"| {name} | {100 * a['mean_daily_turnover']:.2f} | {a['total_cost']:.2f} | "
            f"{100 * a['mean_cash_weight']:.1f} | {paths} |"
        )
    return "\n".join(lines)


def plot_equity_curves(results: Mapping[str, PortfolioBacktestResult], path: Path, title: str) -> None:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 5.5))
    axis = figure.subplots()
    for name, result in results.items():
        equity = result.equity
        dates = np.array(result.dates, dtype="datetime64[D]")
        emphasis = {"linewidth": 2.2} if not name.startswith("buy_and_hold") else {"linewidth": 1.0, "alpha": 0.7}
        axis.plot(dates, equity / equity[0], label=name, **emphasis)
    axis.axhline(1.0, color="grey", linewidth=0.6)
    axis.set_title(title, fontsize=10)
    axis.set_ylabel("account value / initial cash")
    axis.legend(fontsize=8, ncol=2)
    axis.grid(alpha=0.3)
    figure.autofmt_xdate()
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def plot_weights(results: Mapping[str, PortfolioBacktestResult], path: Path, title: str) -> list[str]:
    """Stacked-area weights of the policies that hold more than one asset; returns the policies plotted."""
    from matplotlib.figure import Figure

    shown = [name for name, r in results.items() if (r.weights()[:, :-1] > 1e-6).sum(axis=1).max() > 1]
    if not shown:
        return []
    figure = Figure(figsize=(10, 2.8 * len(shown)))
    axes = figure.subplots(len(shown), 1, sharex=True, squeeze=False)
    for axis, name in zip(axes[:, 0], shown):
        result = results[name]
        weights = np.clip(result.weights(), 0.0, 1.0)
        dates = np.array(result.dates, dtype="datetime64[D]")
        axis.stackplot(dates, weights.T, labels=[*result.assets, "cash"], alpha=0.85)
        axis.set_ylim(0, 1)
        axis.set_ylabel(name)
        axis.grid(alpha=0.3)
    axes[0, 0].legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    axes[0, 0].set_title(title, fontsize=10)
    figure.autofmt_xdate()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    return shown


def write_portfolio_report(
    results: Mapping[str, PortfolioBacktestResult],
    output_dir: str | Path,
    title: str,
    settings: dict | None = None,
) -> dict[str, Path]:
    """Write every file of the module docstring; returns their paths by kind."""
    if not results:
        raise ValueError("No results to report.")
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    first = next(iter(results.values()))
    paths = {
        name: output_dir / file
        for name, file in (
            ("report", "report.md"),
            ("json", "metrics.json"),
            ("csv", "metrics.csv"),
            ("equity_csv", "equity_curves.csv"),
            ("weights_csv", "weights.csv"),
            ("trajectories", "trajectories.json"),
            ("equity_png", "equity_curves.png"),
            ("weights_png", "weights.png"),
        )
    }

    dropped = first.dropped_days
    lines = [f"# {title}", "", metrics_tables(results), "", "## Trading activity", "", activity_table(results), ""]
    if dropped:
        by_asset: dict[str, int] = {}
        for missing in dropped.values():
            for asset in missing:
                by_asset[asset] = by_asset.get(asset, 0) + 1
        counts = ", ".join(f"{asset} lacks {count}" for asset, count in by_asset.items())
        lines += [
            f"{len(dropped)} day(s) of the window were dropped because an asset had no price ({counts}): "
            + ", ".join(dropped),
            "",
        ]
    paths["report"].write_text("\n".join(lines))

    summary = {
        "title": title,
        "assets": first.assets,
        "start": first.start,
        "end": first.end,
        "trading_days": len(first.trajectory),
        "dropped_days": dropped,
        "settings": settings or {},
        "policies": {
            name: {"metrics": {c: m.to_dict() for c, m in r.metrics.items()}, "activity": activity(r)}
            for name, r in results.items()
        },
    }
    write_json(paths["json"], summary, indent=2)

    fields = [field for _, field, _, _ in TABLE_COLUMNS] + ["annualized_return", "calmar_ratio"]
    with paths["csv"].open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["policy", "convention", *fields, "num_periods", "total_cost", "mean_daily_turnover"])
        for name, result in results.items():
            a = activity(result)
            for convention, metrics in result.metrics.items():
                values = [getattr(metrics, f) for f in fields]
                writer.writerow(
                    [name, convention, *values, metrics.num_periods, a["total_cost"], a["mean_daily_turnover"]]
                )

    with paths["equity_csv"].open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["date", *results])
        for i, date in enumerate(first.dates):
            writer.writerow([date, *(r.trajectory[i]["account_value"] for r in results.values())])
    with paths["weights_csv"].open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["policy", "date", *first.assets, "cash"])
        for name, result in results.items():
            for date, weights in zip(result.dates, result.weights()):
                writer.writerow([name, date, *weights])
    write_json(paths["trajectories"], {name: r.trajectory for name, r in results.items()}, indent=1)

    plot_equity_curves(results, paths["equity_png"], title)
    if not plot_weights(results, paths["weights_png"], f"Weights at each close (cash last) — {title}"):
        del paths["weights_png"]
    return paths
