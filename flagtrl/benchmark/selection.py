"""Which run a benchmark table shows: the paper's rule (FLAG-Trader §5, "the test run at the median of the metrics over
runs"), shared by the report's tables and the plots."""

from __future__ import annotations

import math


def _sort_key(value: float) -> float:
    return math.inf if value is None or math.isnan(value) else value


def median_sharpe_run(records: list[dict], convention: str) -> dict:
    """The run at the median Sharpe ratio (lower middle for an even count; NaN Sharpe ranks last)."""
    ordered = sorted(records, key=lambda r: (_sort_key(r["metrics"][convention]["sharpe_ratio"]), r["seed"]))
    return ordered[(len(ordered) - 1) // 2]
