"""The differences a benchmark report measures, and how sure they are (the statistics are `flagtrl.statistics`):

- each agent against buy-and-hold on each asset and window: the Sharpe difference with a paired stationary-bootstrap
  interval over the window's days, the probabilistic Sharpe ratio, and optionally StockBench's composite rank;
- over many windows (the rolling benchmark): the distribution of each agent's Sharpe difference to buy-and-hold
  (median, quartiles, win rate) and an interval of its median that resamples whole windows;
- each LLM agent on real against anonymised inputs, over the same days: the memorisation indicator.

Every comparison uses the run each table shows (the median-Sharpe run of an agent's seeds, per convention) and the
daily returns its convention scores: `paper`, the position's log returns a_i · ln(p_{i+1}/p_i); `standard`, the
account's simple returns in excess of the daily risk-free rate. The Sharpe ratios recomputed from them are the
reported ones (`tests/test_benchmark_statistics.py`).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from ..metrics import CONVENTIONS
from ..statistics import (
    annualised_sharpe,
    composite_ranks,
    composite_scores,
    median_ci,
    paper_sharpe,
    probabilistic_sharpe_ratio,
    sharpe_difference_ci,
)


BUY_AND_HOLD_TYPE = "buy_and_hold"


def daily_returns(record: dict, convention: str, risk_free_rate: float = 0.0) -> np.ndarray | None:
    """The daily returns a run's `convention` scores, from its trajectory; `None` for a wiped-out run (its account
    has no returns after it reached 0)."""
    trajectory = record.get("trajectory") or []
    if record.get("wiped_out") or len(trajectory) < 2:
        return None
    if convention == "paper":
        prices = np.array([row["price"] for row in trajectory], dtype=np.float64)
        positions = np.array([row["position"] for row in trajectory[:-1]], dtype=np.float64)
        return positions * np.log(prices[1:] / prices[:-1])
    equity = np.array([row["account_value"] for row in trajectory], dtype=np.float64)
    days = record["metrics"][convention]["trading_days_per_year"]
    return equity[1:] / equity[:-1] - 1.0 - ((1.0 + risk_free_rate) ** (1.0 / days) - 1.0)


def sharpe_function(convention: str, trading_days_per_year: int) -> Callable[[np.ndarray], float]:
    """The Sharpe ratio `convention` reports, as a function of its daily returns."""
    if convention == "paper":
        return lambda returns: paper_sharpe(returns, trading_days_per_year)
    return annualised_sharpe(trading_days_per_year)


def _run_of(records: dict[tuple, dict], entry: dict, convention: str) -> dict | None:
    key = (entry["agent"], entry["asset"], entry["start"], entry["end"], entry["median_seed"][convention])
    return records.get(key)


def _index(records: list[dict]) -> dict[tuple, dict]:
    return {(r["agent"], r["asset"], r["start"], r["end"], r["seed"]): r for r in records if r.get("status") == "ok"}


def benchmark_agent_name(records: list[dict]) -> str | None:
    """The agent the differences are taken against: the first buy-and-hold agent that ran."""
    return next((r["agent"] for r in records if r.get("agent_type") == BUY_AND_HOLD_TYPE), None)


def versus_buy_and_hold(
    summary: list[dict],
    records: list[dict],
    risk_free_rate: float = 0.0,
    confidence: float = 0.95,
    num_resamples: int = 2000,
    composite: bool = False,
) -> list[dict]:
    """One row per (convention, window, asset, agent): the median run's Sharpe ratio, its PSR, and for every agent but
    buy-and-hold its Sharpe difference to buy-and-hold with the bootstrap interval (`None` where no buy-and-hold run
    exists or a run was wiped out); with `composite`, the agent's StockBench rank among the agents of that cell."""
    benchmark = benchmark_agent_name(records)
    index = _index(records)
    cells: dict[tuple, list[dict]] = {}
    for entry in summary:
        cells.setdefault((entry["start"], entry["end"], entry["asset"]), []).append(entry)
    rows = []
    for convention in CONVENTIONS:
        for (start, end, asset), entries in cells.items():
            reference = next((e for e in entries if e["agent"] == benchmark), None)
            reference_run = _run_of(index, reference, convention) if reference else None
            reference_returns = daily_returns(reference_run, convention, risk_free_rate) if reference_run else None
            cell_rows = []
            for entry in entries:
                metrics = entry["median"][convention]
                run = _run_of(index, entry, convention)
                returns = daily_returns(run, convention, risk_free_rate) if run else None
                row = {
                    "convention": convention,
                    "start": start,
                    "end": end,
                    "asset": asset,
                    "agent": entry["agent"],
                    "sharpe_ratio": metrics["sharpe_ratio"],
                    "psr": probabilistic_sharpe_ratio(returns) if returns is not None and returns.size >= 3 else None,
                    "difference": None,
                }
                if (
                    entry["agent"] != benchmark
                    and returns is not None
                    and reference_returns is not None
                    and returns.size == reference_returns.size >= 3
                ):
                    row["difference"] = sharpe_difference_ci(
                        returns,
                        reference_returns,
                        confidence=confidence,
                        num_resamples=num_resamples,
                        sharpe=sharpe_function(convention, metrics["trading_days_per_year"]),
                    ).to_dict()
                cell_rows.append(row)
            if composite:
                scores = composite_scores(
                    [e["median"][convention]["cumulative_return"] for e in entries],
                    [e["median"][convention]["max_drawdown"] for e in entries],
                    [e["median"][convention]["sortino_ratio"] for e in entries],
                )
                for row, score, rank in zip(cell_rows, scores, composite_ranks(scores)):
                    row.update(composite_score=float(score), composite_rank=rank)
            rows += cell_rows
    return rows


def window_distributions(
    summary: list[dict], records: list[dict], confidence: float = 0.95, num_resamples: int = 2000
) -> dict[str, dict[str, dict]]:
    """Per convention and agent (buy-and-hold excepted): the Sharpe differences to buy-and-hold over every (asset,
    window) cell where both ran, summarised by `flagtrl.statistics.median_ci` (windows resampled whole). Empty
    without a buy-and-hold agent."""
    benchmark = benchmark_agent_name(records)
    if benchmark is None:
        return {}
    reference = {(e["asset"], e["start"], e["end"]): e["median"] for e in summary if e["agent"] == benchmark}
    result: dict[str, dict[str, dict]] = {}
    for convention in CONVENTIONS:
        cells: dict[str, tuple[list[float], list[str]]] = {}
        for entry in summary:
            key = (entry["asset"], entry["start"], entry["end"])
            if entry["agent"] == benchmark or key not in reference:
                continue
            difference = entry["median"][convention]["sharpe_ratio"] - reference[key][convention]["sharpe_ratio"]
            values, windows = cells.setdefault(entry["agent"], ([], []))
            values.append(float(difference))
            windows.append(f"{entry['start']}_{entry['end']}")
        per_agent = {}
        for agent, (values, windows) in cells.items():
            if not any(math.isfinite(v) for v in values):
                continue
            distribution = median_ci(values, windows, confidence=confidence, num_resamples=num_resamples)
            per_agent[agent] = {**distribution.to_dict(), "differences": values}
        result[convention] = per_agent
    return result


def real_vs_anonymised(
    summary: list[dict],
    records: list[dict],
    twins: dict[str, str],
    risk_free_rate: float = 0.0,
    confidence: float = 0.95,
    num_resamples: int = 2000,
) -> list[dict]:
    """One row per (convention, window, asset, agent with an anonymised twin): the metrics on real and anonymised
    inputs and Sharpe(real) - Sharpe(anonymised) with a paired bootstrap interval over the same days. `twins` maps
    each anonymised agent's name to its real-input agent's."""
    index = _index(records)
    entries = {(e["agent"], e["asset"], e["start"], e["end"]): e for e in summary}
    rows = []
    for convention in CONVENTIONS:
        for (agent, asset, start, end), anonymised in entries.items():
            real_name = twins.get(agent)
            real = entries.get((real_name, asset, start, end)) if real_name else None
            if real is None:
                continue
            real_metrics, anonymised_metrics = real["median"][convention], anonymised["median"][convention]
            row = {
                "convention": convention,
                "start": start,
                "end": end,
                "asset": asset,
                "agent": real_name,
                "real": {k: real_metrics[k] for k in ("cumulative_return", "sharpe_ratio", "max_drawdown")},
                "anonymised": {
                    k: anonymised_metrics[k] for k in ("cumulative_return", "sharpe_ratio", "max_drawdown")
                },
                "contamination": real.get("contamination"),
                "difference": None,
            }
            real_run, anonymised_run = _run_of(index, real, convention), _run_of(index, anonymised, convention)
            a = daily_returns(real_run, convention, risk_free_rate) if real_run else None
            b = daily_returns(anonymised_run, convention, risk_free_rate) if anonymised_run else None
            if a is not None and b is not None and a.size == b.size >= 3:
                row["difference"] = sharpe_difference_ci(
                    a,
                    b,
                    confidence=confidence,
                    num_resamples=num_resamples,
                    sharpe=sharpe_function(convention, real_metrics["trading_days_per_year"]),
                ).to_dict()
            rows.append(row)
    return rows
