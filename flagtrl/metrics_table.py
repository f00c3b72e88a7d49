"""The metrics as a Markdown table like FLAG-Trader's Table 1 (the presentation of `flagtrl.metrics`).

Every table is headed by the convention that produced its numbers (`CONVENTION_DESCRIPTIONS`); percentages are x100
with 3 decimals as the paper prints them, and the best value of each column within an asset is in bold.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from .metrics import CONVENTION_DESCRIPTIONS, TradingMetrics, check_convention


# (header, field, scale to display, higher is better). Percentages x100 with 3 decimals as the paper prints them.
TABLE_COLUMNS = (
    ("CR%", "cumulative_return", 100.0, True),
    ("SR", "sharpe_ratio", 1.0, True),
    ("AV%", "annualized_volatility", 100.0, False),
    ("MDD%", "max_drawdown", 100.0, False),
    ("Sortino", "sortino_ratio", 1.0, True),
)


def _best_values(group: Mapping[str, TradingMetrics]) -> dict[str, float]:
    # Compared at display precision, so cells that print the same are all marked; only when there is a comparison.
    best = {}
    for header, field, scale, higher_is_better in TABLE_COLUMNS:
        values = [round(getattr(m, field) * scale, 3) for m in group.values()]
        values = [v for v in values if not math.isnan(v)]
        if len(values) >= 2:
            best[header] = max(values) if higher_is_better else min(values)
    return best


WIPED_OUT_MARK = " ‡"
WIPED_OUT_NOTE = (
    f"{WIPED_OUT_MARK.strip()} wiped out: the run lost everything (the account's value, or the `paper` convention's "
    "compounded curve, reached 0); a wiped-out account's run ends that day."
)


def _cell(metrics: TradingMetrics | None, header: str, field: str, scale: float, best: Mapping[str, float]) -> str:
    if metrics is None:
        return "-"
    value = round(getattr(metrics, field) * scale, 3) + 0.0  # + 0.0 turns a rounded -0.0 into 0.0
    text = f"{value:.3f}"
    text = f"**{text}**" if header in best and value == best[header] else text
    return text + WIPED_OUT_MARK if field == "cumulative_return" and metrics.wiped_out else text


def format_metrics_table(
    results: Mapping[str, Mapping[str, TradingMetrics]],
    convention: str,
    *,
    bold_best: bool = True,
    layout: str = "long",
) -> str:
    r"""
    Formats metrics as a Markdown table like FLAG-Trader's Table 1, headed by the convention that produced them.

    Columns are CR%, SR, AV%, MDD% (x100, 3 decimals, as the paper prints them) and Sortino (3 decimals). A run that
    was wiped out (`TradingMetrics.wiped_out`) has its CR% marked with `‡`, explained in a note below the table.

    Args:
        results (`Mapping[str, Mapping[str, TradingMetrics]]`):
            `results[asset][agent]`: the metrics of each agent (e.g. "Buy & Hold", "FLAG-Trader") on each asset.
            Row order follows the mappings' order.
        convention (`str`):
            The convention every entry must have been computed with; a mix is an error, since the numbers would not
            be comparable.
        bold_best (`bool`, *optional*, defaults to `True`):
            Mark the best value of each column within each asset in bold: highest CR, SR and Sortino, lowest AV and
            MDD. Ties at display precision are all marked; a column with fewer than two values is not marked.
        layout (`str`, *optional*, defaults to `"long"`):
            `"long"`: one row per (asset, agent). `"wide"`: one row per agent and a column group per asset, as in the
            paper (a missing pair shows "-").

    Returns:
        `str`: a caption line naming the convention, a blank line and the Markdown table (then a blank line and the
        wipe-out note, when a run was wiped out).
    """
    check_convention(convention)
    if layout not in ("long", "wide"):
        raise ValueError(f"Unknown table layout {layout!r}; valid layouts are long, wide.")
    for asset, group in results.items():
        for agent, metrics in group.items():
            if metrics.convention != convention:
                raise ValueError(
                    f"results[{asset!r}][{agent!r}] was computed with the {metrics.convention!r} convention, "
                    f"but the table is for {convention!r}."
                )
    best = {asset: _best_values(group) if bold_best else {} for asset, group in results.items()}

    if layout == "long":
        headers = ["Asset", "Agent"] + [column[0] for column in TABLE_COLUMNS]
        rows = [
            [asset, agent] + [_cell(metrics, h, f, s, best[asset]) for h, f, s, _ in TABLE_COLUMNS]
            for asset, group in results.items()
            for agent, metrics in group.items()
        ]
        num_label_columns = 2
    else:
        agents = list(dict.fromkeys(agent for group in results.values() for agent in group))
        headers = ["Agent"] + [f"{asset} {column[0]}" for asset in results for column in TABLE_COLUMNS]
        rows = [
            [agent]
            + [
                _cell(group.get(agent), h, f, s, best[asset])
                for asset, group in results.items()
                for h, f, s, _ in TABLE_COLUMNS
            ]
            for agent in agents
        ]
        num_label_columns = 1

    alignment = [":---"] * num_label_columns + ["---:"] * (len(headers) - num_label_columns)
    lines = [f"Metrics convention: {CONVENTION_DESCRIPTIONS[convention]}.", ""]
    lines += ["| " + " | ".join(cells) + " |" for cells in (headers, alignment, *rows)]
    if any(metrics.wiped_out for group in results.values() for metrics in group.values()):
        lines += ["", WIPED_OUT_NOTE]
    return "\n".join(lines)
